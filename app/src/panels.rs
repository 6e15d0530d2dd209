//! Drawing: the status bar, the run panel, the curves, the coefficients and the
//! landscape. Each function paints from the app's state and turns clicks into calls.

use crate::landscape_worker::View;
use crate::state::{Outcome, Series, TwaApp, PRESETS};
use eframe::egui::{self, Color32, RichText};
use egui_plot::{
    Bar, BarChart, Corner, HLine, Legend, Line, MarkerShape, Plot, PlotImage, PlotPoint, Points,
    Text, VLine,
};
use twa::landscape::render::colormap;
use twa::landscape::{Metric, PlaneKind};
use twa::twa::directions::Coefficients;

const TWA_COLOUR: Color32 = Color32::from_rgb(230, 60, 40);
const SWA_COLOUR: Color32 = Color32::from_rgb(60, 140, 230);
const MARK_COLOUR: Color32 = Color32::from_rgb(40, 120, 255);
const RUNNING_COLOUR: Color32 = Color32::from_rgb(120, 120, 120);
const TRAIN_COLOUR: Color32 = Color32::from_rgb(150, 200, 90);
const TEST_COLOUR: Color32 = Color32::from_rgb(240, 240, 240);
const TWA_RUNNING: Color32 = Color32::from_rgb(150, 80, 70);
const TWA_TRAIN: Color32 = Color32::from_rgb(250, 160, 110);

/// The whole window.
pub fn show(app: &mut TwaApp, ui: &mut egui::Ui) {
    egui::Panel::top("status").show(ui, |ui| status_bar(app, ui));
    egui::Panel::left("run")
        .resizable(false)
        .default_size(240.0)
        .show(ui, |ui| run_panel(app, ui));
    egui::CentralPanel::default().show(ui, |ui| {
        ui.columns(2, |cols| {
            curves(app, &mut cols[0]);
            coefficients(app, &mut cols[0]);
            landscape(app, &mut cols[1]);
        });
    });
}

fn status_bar(app: &TwaApp, ui: &mut egui::Ui) {
    ui.horizontal(|ui| {
        ui.heading("twa");
        ui.label("Trainable Weight Averaging");
        ui.separator();
        ui.label(&app.status);
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            let recent = &app.frames[app.frames.len().saturating_sub(120)..];
            if !recent.is_empty() {
                let mean = recent.iter().map(|f| f.0).sum::<f32>() / recent.len() as f32;
                ui.label(format!("frame {:.1} ms", 1000.0 * mean));
            }
            if !app.adapter.is_empty() {
                ui.label(RichText::new(&app.adapter).small());
            }
        });
    });
}

/// A labelled row of the settings grid.
fn row(ui: &mut egui::Ui, label: &str, widget: impl egui::Widget) {
    let label = ui.label(label);
    ui.add(widget).labelled_by(label.id);
    ui.end_row();
}

fn number<T: egui::emath::Numeric>(ui: &mut egui::Ui, label: &str, value: &mut T, speed: f64) {
    row(ui, label, egui::DragValue::new(value).speed(speed));
}

fn run_panel(app: &mut TwaApp, ui: &mut egui::Ui) {
    ui.heading("Run");
    let running = app.running();
    ui.add_enabled_ui(!running, |ui| {
        let mut preset = app.settings.preset.clone();
        egui::ComboBox::from_label("preset")
            .selected_text(&preset)
            .show_ui(ui, |ui| {
                for p in PRESETS {
                    ui.selectable_value(&mut preset, p.to_string(), p);
                }
            });
        if preset != app.settings.preset {
            match crate::state::Settings::from_preset(&preset) {
                Ok(s) => app.settings = s,
                Err(e) => app.error = Some(e.to_string()),
            }
        }
        let s = &mut app.settings;
        egui::Grid::new("settings").num_columns(2).show(ui, |ui| {
            if s.preset != "spirals" {
                row(ui, "data", egui::TextEdit::singleline(&mut s.data_dir));
            }
            if s.arch == twa::nn::architecture::Arch::Mlp {
                row(ui, "hidden", egui::TextEdit::singleline(&mut s.hidden));
                row(
                    ui,
                    "BatchNorm",
                    egui::Checkbox::without_text(&mut s.batchnorm),
                );
            } else {
                row(ui, "model", egui::Label::new(s.arch.name()));
            }
            number(ui, "epochs", &mut s.epochs, 0.2);
            number(ui, "LR", &mut s.lr, 0.001);
            number(ui, "head epochs", &mut s.head_epochs, 0.2);
            number(ui, "samples / epoch", &mut s.samples_per_epoch, 0.2);
            number(ui, "TWA epochs", &mut s.twa_epochs, 0.2);
            number(ui, "TWA LR", &mut s.twa_lr, 0.01);
            let label = ui.label("TWA α");
            egui::ComboBox::from_id_salt("coefficients")
                .selected_text(coefficients_name(s.coefficients))
                .show_ui(ui, |ui| {
                    for c in [
                        Coefficients::Orthonormal,
                        Coefficients::Global,
                        Coefficients::Layer,
                    ] {
                        ui.selectable_value(&mut s.coefficients, c, coefficients_name(c));
                    }
                })
                .response
                .labelled_by(label.id);
            ui.end_row();
            number(ui, "seed", &mut s.seed, 0.2);
        });
    });
    ui.horizontal(|ui| {
        if ui
            .add_enabled(!running, egui::Button::new("Start"))
            .clicked()
        {
            app.start();
        }
        // (In a browser the worker cannot block between steps: no Pause there.)
        if !cfg!(target_arch = "wasm32") {
            let pause = if app.paused() { "Resume" } else { "Pause" };
            if ui.add_enabled(running, egui::Button::new(pause)).clicked() {
                app.toggle_pause();
            }
        }
        if ui.add_enabled(running, egui::Button::new("Stop")).clicked() {
            app.stop();
        }
    });
    if let Some(e) = &app.error {
        ui.colored_label(Color32::from_rgb(220, 50, 50), format!("Error: {e}"));
    }
    if !app.curves.results.is_empty() {
        ui.separator();
        ui.label(RichText::new("Results (test)").strong());
        egui::Grid::new("results").num_columns(3).show(ui, |ui| {
            for Outcome {
                method, acc, loss, ..
            } in &app.curves.results
            {
                ui.label(method);
                ui.label(format!("{:.2}%", 100.0 * acc));
                ui.label(format!("{loss:.4}"));
                ui.end_row();
            }
        });
    }
}

/// Where each SGD phase begins (unnamed: the legend is for the curves).
fn phase_lines(app: &TwaApp, plot: &mut egui_plot::PlotUi) {
    for (x, _) in &app.curves.phases {
        plot.vline(VLine::new("", *x).color(Color32::from_gray(90)));
    }
}

/// A short explanation under a panel's title, opened on request.
fn explain(ui: &mut egui::Ui, id: &str, text: &str) {
    egui::CollapsingHeader::new("What am I looking at?")
        .id_salt(id)
        .show(ui, |ui| {
            ui.label(RichText::new(text).small());
        });
}

/// One curve plot: the SGD run's running (per step), train and test values per epoch
/// along the axis, TWA's as a branch from where it started, and the SGD/SWA/TWA
/// results as markers at the epochs they cost (`pick` chooses accuracy or loss).
fn curve_plot(
    app: &TwaApp,
    ui: &mut egui::Ui,
    title: &str,
    pick: impl Fn(&Series) -> [&Vec<[f64; 2]>; 3],
    value: impl Fn(&Outcome) -> f64,
) {
    ui.label(RichText::new(title).strong());
    let c = &app.curves;
    Plot::new(title)
        .height(150.0)
        .set_margin_fraction(egui::vec2(0.1, 0.08))
        .x_axis_label("epochs of training")
        .link_axis(egui::Id::unique("curves"), [true, false])
        .show(ui, |plot| {
            let [running, train, test] = pick(&c.sgd);
            plot.line(Line::new("", running.clone()).color(RUNNING_COLOUR));
            plot.line(Line::new("", train.clone()).color(TRAIN_COLOUR));
            plot.line(Line::new("", test.clone()).color(TEST_COLOUR));
            let [running, train, test] = pick(&c.twa);
            plot.line(Line::new("", running.clone()).color(TWA_RUNNING));
            plot.line(Line::new("", train.clone()).color(TWA_TRAIN));
            plot.line(Line::new("", test.clone()).color(TWA_COLOUR).width(2.0));
            phase_lines(app, plot);
            results(app, plot, value);
        });
}

fn curves(app: &TwaApp, ui: &mut egui::Ui) {
    explain(
        ui,
        "curves",
        "Loss and accuracy per epoch of training. SGD runs along the axis (grey lines \
         mark its phases); TWA branches off where it starts — after the sampled head \
         epochs — and trains only the averaging coefficients, so its epochs count on \
         top of those. Markers: each result (test split) at the epochs it cost; SWA \
         costs no extra epoch. TWA at the head ending near SGD's final accuracy with \
         far fewer epochs is the method's point.",
    );
    curves_legend(ui);
    curve_plot(
        app,
        ui,
        "Loss",
        |s| [&s.running_loss, &s.train_loss, &s.test_loss],
        |r| r.loss,
    );
    curve_plot(
        app,
        ui,
        "Accuracy",
        |s| [&s.running_acc, &s.train_acc, &s.test_acc],
        |r| r.acc,
    );
    learning_rates(app, ui);
}

/// How a legend entry is drawn.
#[derive(Clone, Copy)]
enum Swatch {
    Line,
    Diamond,
    Square,
    Disc,
}

/// The curves' legend, above them (not over them): painted swatches and names.
fn curves_legend(ui: &mut egui::Ui) {
    ui.horizontal_wrapped(|ui| {
        let entries = [
            ("SGD test", TEST_COLOUR, Swatch::Line),
            ("SGD train", TRAIN_COLOUR, Swatch::Line),
            ("running (per step)", RUNNING_COLOUR, Swatch::Line),
            ("TWA test", TWA_COLOUR, Swatch::Line),
            ("TWA train", TWA_TRAIN, Swatch::Line),
            ("SGD", TEST_COLOUR, Swatch::Diamond),
            ("SWA", SWA_COLOUR, Swatch::Square),
            ("TWA", TWA_COLOUR, Swatch::Disc),
        ];
        for (text, colour, swatch) in entries {
            let (rect, _) = ui.allocate_exact_size(egui::vec2(14.0, 10.0), egui::Sense::hover());
            let (c, p) = (rect.center(), ui.painter());
            match swatch {
                Swatch::Line => {
                    p.line_segment([rect.left_center(), rect.right_center()], (2.0, colour));
                }
                Swatch::Diamond => {
                    let d = 4.5;
                    let points = vec![
                        c + egui::vec2(0.0, -d),
                        c + egui::vec2(d, 0.0),
                        c + egui::vec2(0.0, d),
                        c + egui::vec2(-d, 0.0),
                    ];
                    p.add(egui::Shape::convex_polygon(
                        points,
                        colour,
                        egui::Stroke::NONE,
                    ));
                }
                Swatch::Square => {
                    p.rect_filled(
                        egui::Rect::from_center_size(c, egui::vec2(8.0, 8.0)),
                        0.0,
                        colour,
                    );
                }
                Swatch::Disc => {
                    p.circle_filled(c, 4.5, colour);
                }
            }
            ui.label(RichText::new(text).small().color(colour));
            ui.add_space(4.0);
        }
    });
}

/// SGD's and TWA's learning rates on a log axis of their own (TWA's can be 20× SGD's).
fn learning_rates(app: &TwaApp, ui: &mut egui::Ui) {
    let c = &app.curves;
    let log = |points: &[[f64; 2]]| -> Vec<[f64; 2]> {
        points
            .iter()
            .filter(|p| p[1] > 0.0)
            .map(|p| [p[0], p[1].log10()])
            .collect()
    };
    Plot::new("learning rate")
        .height(70.0)
        .legend(
            Legend::default()
                .position(Corner::LeftBottom)
                .background_alpha(0.6)
                .text_style(egui::TextStyle::Small),
        )
        .link_axis(egui::Id::unique("curves"), [true, false])
        .y_axis_label("LR")
        .y_axis_formatter(|mark, _| format!("{}", 10f64.powf(mark.value)))
        .show(ui, |plot| {
            plot.line(Line::new("SGD LR", log(&c.sgd.lr)).color(TRAIN_COLOUR));
            plot.line(Line::new("TWA LR", log(&c.twa.lr)).color(TWA_COLOUR));
            phase_lines(app, plot);
        });
}

/// The results as markers at (epochs they cost, value).
fn results(app: &TwaApp, plot: &mut egui_plot::PlotUi, value: impl Fn(&Outcome) -> f64) {
    for r in &app.curves.results {
        let (colour, shape) = match r.method.as_str() {
            m if m.starts_with("TWA") => (TWA_COLOUR, MarkerShape::Circle),
            "SWA" => (SWA_COLOUR, MarkerShape::Square),
            _ => (TEST_COLOUR, MarkerShape::Diamond),
        };
        let at = [r.epochs, value(r)];
        plot.points(
            Points::new("", vec![at])
                .color(colour)
                .shape(shape)
                .filled(true)
                .radius(5.0),
        );
        let label = r.method.replace("SGD (epoch ", "SGD@").replace(')', "");
        plot.text(
            Text::new(
                "",
                PlotPoint::new(at[0] + 0.4, at[1]),
                RichText::new(label).small(),
            )
            .color(colour)
            .anchor(egui::Align2::LEFT_CENTER),
        );
    }
}

/// The settings' name of a coefficients mode.
fn coefficients_name(c: Coefficients) -> &'static str {
    match c {
        Coefficients::Orthonormal => "orthonormal (P-SGD)",
        Coefficients::Global => "global",
        Coefficients::Layer => "per layer",
    }
}

/// TWA's α over the samples as bars (with per-layer coefficients: their mean weighted
/// by the layers' sizes, and each layer's α as a line), SWA's 1/n as a line.
fn coefficients(app: &TwaApp, ui: &mut egui::Ui) {
    let title = if app.alpha_per_layer.is_empty() {
        "Averaging coefficients α (TWA) vs SWA's 1/n"
    } else {
        "Averaging coefficients α per layer (TWA) vs SWA's 1/n"
    };
    ui.label(RichText::new(title).strong());
    explain(
        ui,
        "alpha",
        "TWA's model is Σ αᵢ wᵢ over the sampled solutions wᵢ (the coefficients sum to \
         1). SWA gives every sample the same weight 1/n (blue line); TWA trains the α, \
         so the bars show which samples it leans on — often late samples up, early \
         ones down, some negative (extrapolating past them). With per-layer \
         coefficients each layer has its own α (one line each).",
    );
    Plot::new("alpha")
        .height(150.0)
        .legend(Legend::default())
        .x_axis_label("sample")
        .show(ui, |plot| {
            if let Some(alpha) = &app.alpha {
                let bars = alpha
                    .iter()
                    .enumerate()
                    .map(|(i, a)| Bar::new(i as f64, *a).width(0.8))
                    .collect();
                let name = if app.alpha_per_layer.is_empty() {
                    "TWA α"
                } else {
                    "TWA α (layers' mean)"
                };
                plot.bar_chart(BarChart::new(name, bars).color(TWA_COLOUR));
            }
            for (name, alpha) in &app.alpha_per_layer {
                let points: Vec<[f64; 2]> = alpha
                    .iter()
                    .enumerate()
                    .map(|(i, a)| [i as f64, *a])
                    .collect();
                plot.line(Line::new(format!("layer {name}"), points).width(1.5));
            }
            if app.samples > 0 {
                plot.hline(HLine::new("SWA 1/n", 1.0 / app.samples as f64).color(SWA_COLOUR));
            }
        });
}

/// TWA's path projected onto the view's plane.
pub fn trajectory_points(app: &TwaApp, view: &View) -> Vec<[f64; 2]> {
    app.trajectory
        .iter()
        .filter(|a| a.len() == view.anchors.samples.len())
        .map(|a| view.plane.project(&view.anchors.combine(a)))
        .collect()
}

fn landscape_controls(app: &mut TwaApp, ui: &mut egui::Ui) {
    let (plane, metric, grid) = (app.plane, app.metric, app.grid);
    ui.horizontal_wrapped(|ui| {
        egui::ComboBox::from_label("plane")
            .selected_text(match app.plane {
                PlaneKind::SwaTwaLast => "SWA · TWA · last",
                PlaneKind::Pca => "PCA",
            })
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut app.plane, PlaneKind::SwaTwaLast, "SWA · TWA · last");
                ui.selectable_value(&mut app.plane, PlaneKind::Pca, "PCA");
            });
        egui::ComboBox::from_label("metric")
            .selected_text(app.metric.label())
            .show_ui(ui, |ui| {
                for m in Metric::ALL {
                    ui.selectable_value(&mut app.metric, m, m.label());
                }
            });
        egui::ComboBox::from_label("grid")
            .selected_text(format!("{0}²", app.grid))
            .show_ui(ui, |ui| {
                for n in [17, 33, 65] {
                    ui.selectable_value(&mut app.grid, n, format!("{n}²"));
                }
            });
        if ui
            .add_enabled(app.shown.is_some(), egui::Button::new("Export PNG"))
            .clicked()
        {
            app.export_png();
        }
    });
    if (plane, metric, grid) != (app.plane, app.metric, app.grid) {
        app.request_landscape();
    }
}

fn landscape(app: &mut TwaApp, ui: &mut egui::Ui) {
    ui.label(RichText::new("Loss landscape of the coefficient space").strong());
    explain(
        ui,
        "landscape",
        "Every point of this picture is a model: a weighted average of the sampled \
         SGD solutions (white dots, the last one larger). The plane passes through SWA \
         (their plain mean, blue square), the TWA point (red, with the path TWA took) \
         and the last sample; distances are distances between weight vectors. The \
         colour is the loss (or error) of that averaged model on a fixed batch, with \
         contour lines. SWA sits where all samples count alike; TWA learns how much \
         each sample should count and moves downhill within the samples' span — \
         usually to a lower point than SWA's. Switch to the PCA plane to see the \
         samples' two main directions of spread.",
    );
    landscape_controls(app, ui);
    let Some(shown) = &app.shown else {
        ui.label(if app.samples > 0 {
            "Building the subspace of the samples…"
        } else {
            "The landscape appears once the samples are taken (the head of training)."
        });
        return;
    };
    let v = &shown.view;
    let spec = &v.grid.spec;
    let trajectory = trajectory_points(app, v);
    let mut clicked = None;
    let mut hover = None;
    // The plot takes the grid's shape (equal scales), as wide as the panel allows
    // beside the colour bar.
    let ratio = ((spec.y.1 - spec.y.0) / (spec.x.1 - spec.x.0)) as f32;
    let height = ((ui.available_width() - 70.0) * ratio)
        .min(ui.available_height() - 150.0)
        .max(80.0);
    let width = height / ratio;
    ui.horizontal(|ui| {
        let response = Plot::new("landscape")
            .width(width)
            .height(height)
            .data_aspect(1.0)
            .allow_double_click_reset(true)
            .show(ui, |plot| {
                let centre =
                    PlotPoint::new((spec.x.0 + spec.x.1) / 2.0, (spec.y.0 + spec.y.1) / 2.0);
                let extent = [(spec.x.1 - spec.x.0) as f32, (spec.y.1 - spec.y.0) as f32];
                plot.image(PlotImage::new(
                    "landscape",
                    shown.texture.id(),
                    centre,
                    extent,
                ));
                let samples: Vec<[f64; 2]> = v.overlay.samples.clone();
                if let Some(last) = samples.last().copied() {
                    plot.points(
                        Points::new("samples", samples)
                            .color(Color32::WHITE)
                            .radius(2.0),
                    );
                    plot.points(
                        Points::new("last sample", vec![last])
                            .color(Color32::WHITE)
                            .radius(5.0)
                            .shape(MarkerShape::Diamond),
                    );
                }
                if let Some(swa) = v.overlay.swa {
                    plot.points(
                        Points::new("SWA", vec![swa])
                            .color(SWA_COLOUR)
                            .radius(6.0)
                            .shape(MarkerShape::Square),
                    );
                }
                if trajectory.len() > 1 {
                    plot.line(
                        Line::new("TWA path", trajectory.clone())
                            .color(TWA_COLOUR)
                            .width(2.0),
                    );
                }
                if let Some(twa) = trajectory.last().copied().or(v.overlay.twa) {
                    plot.points(Points::new("TWA", vec![twa]).color(TWA_COLOUR).radius(6.0));
                }
                let marks: Vec<[f64; 2]> = app.marks.iter().map(|m| [m.x, m.y]).collect();
                if !marks.is_empty() {
                    plot.points(
                        Points::new("evaluated", marks)
                            .color(MARK_COLOUR)
                            .radius(4.0),
                    );
                }
                hover = plot.pointer_coordinate();
                if plot.response().clicked() {
                    clicked = hover;
                }
            });
        response
            .response
            .on_hover_cursor(egui::CursorIcon::Crosshair);
        colour_bar(ui, shown.scale, height);
    });
    let value_at = |p: PlotPoint| {
        let n = spec.n;
        let fx = (p.x - spec.x.0) / (spec.x.1 - spec.x.0) * (n - 1) as f64;
        let fy = (p.y - spec.y.0) / (spec.y.1 - spec.y.0) * (n - 1) as f64;
        let inside = (0.0..=(n - 1) as f64).contains(&fx) && (0.0..=(n - 1) as f64).contains(&fy);
        inside.then(|| {
            v.grid
                .value(v.metric, fx.round() as usize, fy.round() as usize)
        })
    };
    match hover.and_then(|p| value_at(p).map(|val| (p, val))) {
        Some((p, val)) => ui.label(format!(
            "x {:.3}  y {:.3}  {} {val:.4}",
            p.x,
            p.y,
            v.metric.label()
        )),
        None => ui.label("Hover for the value; click to evaluate the model there."),
    };
    let done = v.grid.loss.iter().filter(|x| !x.is_nan()).count();
    ui.label(format!(
        "{} plane · {} · {done}/{} points in {:.1} s",
        match v.plane.kind {
            PlaneKind::SwaTwaLast => "SWA–TWA–last",
            PlaneKind::Pca => "PCA",
        },
        v.metric.label(),
        spec.n * spec.n,
        v.seconds
    ));
    ui.label(
        RichText::new("white dots: samples (large: the last) · blue square: SWA · red: TWA and its path · blue dots: evaluated points")
            .small(),
    );
    if let Some(note) = &v.note {
        ui.label(RichText::new(note).italics());
    }
    ui.label(
        RichText::new(format!(
            "At grid points BatchNorm normalises with the statistics of the evaluation batch itself ({} samples of the {} split), not re-estimated running statistics; a click evaluates exactly (BN re-estimated, whole test split).",
            crate::landscape_worker::BATCH,
            if v.metric == Metric::TrainLoss { "training" } else { "test" }
        ))
        .small(),
    );
    for m in &app.marks {
        match m.result {
            Some((loss, acc)) => ui.label(format!(
                "({:.3}, {:.3}): test loss {loss:.4}, accuracy {:.2}%",
                m.x,
                m.y,
                100.0 * acc
            )),
            None => ui.label(format!("({:.3}, {:.3}): evaluating…", m.x, m.y)),
        };
    }
    if let Some(p) = clicked {
        app.evaluate_at(p.x, p.y);
    }
}

fn colour_bar(ui: &mut egui::Ui, scale: twa::landscape::ColorScale, height: f32) {
    let (rect, _) = ui.allocate_exact_size(egui::vec2(64.0, height), egui::Sense::hover());
    let painter = ui.painter_at(rect);
    let bar = egui::Rect::from_min_size(
        rect.min + egui::vec2(0.0, 8.0),
        egui::vec2(14.0, height - 16.0),
    );
    let steps = 64;
    for k in 0..steps {
        let t = k as f32 / (steps - 1) as f32;
        let [r, g, b] = colormap(t);
        let y1 = bar.bottom() - bar.height() * k as f32 / steps as f32;
        let y0 = bar.bottom() - bar.height() * (k + 1) as f32 / steps as f32;
        painter.rect_filled(
            egui::Rect::from_x_y_ranges(bar.x_range(), y0..=y1),
            0.0,
            Color32::from_rgb(r, g, b),
        );
    }
    for k in 0..5 {
        let t = k as f32 / 4.0;
        let y = bar.bottom() - bar.height() * t;
        painter.text(
            egui::pos2(bar.right() + 4.0, y),
            egui::Align2::LEFT_CENTER,
            format!("{:.3}", scale.value_at(t)),
            egui::FontId::proportional(11.0),
            ui.visuals().text_color(),
        );
    }
}
