//! Drawing: the status bar, the run panel, the curves, the coefficients and the
//! landscape. Each function paints from the app's state and turns clicks into calls.

use crate::app::{TwaApp, PRESETS};
use crate::landscape_worker::View;
use eframe::egui::{self, Color32, RichText};
use egui_plot::{
    Bar, BarChart, HLine, Legend, Line, MarkerShape, Plot, PlotImage, PlotPoint, Points, VLine,
};
use twa::landscape::render::colormap;
use twa::landscape::{Metric, PlaneKind};
use twa::twa::directions::Coefficients;

const TWA_COLOUR: Color32 = Color32::from_rgb(230, 60, 40);
const SWA_COLOUR: Color32 = Color32::from_rgb(60, 140, 230);
const MARK_COLOUR: Color32 = Color32::from_rgb(40, 120, 255);

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
            match crate::app::Settings::from_preset(&preset) {
                Ok(s) => app.settings = s,
                Err(e) => app.error = Some(e.to_string()),
            }
        }
        let s = &mut app.settings;
        egui::Grid::new("settings").num_columns(2).show(ui, |ui| {
            if s.preset != "spirals" {
                row(ui, "data", egui::TextEdit::singleline(&mut s.data_dir));
            }
            if s.arch == twa::nn::model::Arch::Mlp {
                row(ui, "hidden", egui::TextEdit::singleline(&mut s.hidden));
                row(
                    ui,
                    "BatchNorm",
                    egui::Checkbox::without_text(&mut s.batchnorm),
                );
            } else {
                row(
                    ui,
                    "model",
                    egui::Label::new(format!("{:?}", s.arch).to_lowercase()),
                );
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
        let pause = if app.paused() { "Resume" } else { "Pause" };
        if ui.add_enabled(running, egui::Button::new(pause)).clicked() {
            app.toggle_pause();
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
            for (method, acc, loss) in &app.curves.results {
                ui.label(method);
                ui.label(format!("{:.2}%", 100.0 * acc));
                ui.label(format!("{loss:.4}"));
                ui.end_row();
            }
        });
    }
}

fn phase_lines(app: &TwaApp, plot: &mut egui_plot::PlotUi) {
    for (x, name) in &app.curves.phases {
        let short: String = name.split([',', '(']).next().unwrap_or(name).trim().into();
        plot.vline(VLine::new(short, *x).color(Color32::GRAY));
    }
}

/// One curve plot: running (per step), train and test series per epoch, optionally the
/// LR, with the phases and the SWA/TWA results (`value` picks accuracy or loss).
fn curve_plot(
    app: &TwaApp,
    ui: &mut egui::Ui,
    title: &str,
    series: [&[[f64; 2]]; 3],
    lr: Option<&[[f64; 2]]>,
    value: impl Fn(&(String, f64, f64)) -> f64,
) {
    ui.label(RichText::new(title).strong());
    Plot::new(title)
        .height(170.0)
        .legend(Legend::default())
        .x_axis_label("epochs run (all phases)")
        .show(ui, |plot| {
            for (name, points) in ["running (train)", "train", "test"].into_iter().zip(series) {
                plot.line(Line::new(name, points.to_vec()));
            }
            if let Some(lr) = lr {
                plot.line(Line::new("LR", lr.to_vec()).style(egui_plot::LineStyle::dashed_dense()));
            }
            phase_lines(app, plot);
            reference_lines(app, plot, value);
        });
}

fn curves(app: &TwaApp, ui: &mut egui::Ui) {
    let c = &app.curves;
    let losses = [&c.running_loss[..], &c.train_loss, &c.test_loss];
    curve_plot(app, ui, "Loss", losses, None, |r| r.2);
    let accuracies = [&c.running_acc[..], &c.train_acc, &c.test_acc];
    curve_plot(app, ui, "Accuracy and LR", accuracies, Some(&c.lr), |r| r.1);
}

fn reference_lines(
    app: &TwaApp,
    plot: &mut egui_plot::PlotUi,
    value: impl Fn(&(String, f64, f64)) -> f64,
) {
    for r in &app.curves.results {
        let colour = match r.0.as_str() {
            "TWA" => TWA_COLOUR,
            "SWA" => SWA_COLOUR,
            _ => continue,
        };
        plot.hline(HLine::new(r.0.clone(), value(r)).color(colour));
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
    let size = ui
        .available_width()
        .min(ui.available_height() - 120.0)
        .max(120.0);
    ui.horizontal(|ui| {
        let response = Plot::new("landscape")
            .width(size - 70.0)
            .height(size - 70.0)
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
        colour_bar(ui, shown.scale, size - 70.0);
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
