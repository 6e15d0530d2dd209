//! The app: what it does with its state ([`crate::state`]) each frame. Work happens in
//! two worker tasks (training, landscape: threads natively, futures on the web); this
//! only sends requests, takes messages and paints.

use crate::landscape_worker::{self, Reply, Request};
use crate::panels;
use crate::state::{Curves, Mark, Settings, Shown, TwaApp, PRESETS};
use crate::worker::{self, Msg, Run};
use eframe::egui;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use twa::landscape::{Metric, PlaneKind};
use twa::train::Event;

/// Pixels per side of the landscape texture.
const TEXTURE_SIZE: usize = 256;

impl TwaApp {
    /// A new app; nothing runs until Start.
    pub fn new(ctx: &egui::Context, preset: &str) -> TwaApp {
        let settings = Settings::from_preset(preset)
            .unwrap_or_else(|_| Settings::from_preset(PRESETS[0]).expect("shipped preset"));
        // Dark whatever the system prefers: the colours are chosen for it.
        ctx.set_theme(egui::Theme::Dark);
        let wake = ctx.clone();
        TwaApp {
            settings,
            run: None,
            landscape: landscape_worker::Worker::start(move || wake.request_repaint()),
            data: None,
            model: Default::default(),
            adapter: String::new(),
            status: "Choose a preset and press Start.".into(),
            error: None,
            curves: Curves::default(),
            alpha: None,
            alpha_per_layer: Vec::new(),
            trajectory: Vec::new(),
            samples: 0,
            in_twa: false,
            subspace_ready: false,
            shown: None,
            plane: PlaneKind::SwaTwaLast,
            metric: Metric::TestLoss,
            grid: 33,
            requested: 0,
            marks: Vec::new(),
            frames: Vec::new(),
            timings: Vec::new(),
            out_dir: PathBuf::from("runs/app"),
            ctx: ctx.clone(),
        }
    }

    /// Start a run with the current settings (replacing a running one).
    pub fn start(&mut self) {
        let config = match self.settings.to_config() {
            Ok(c) => c,
            Err(e) => {
                self.error = Some(e.to_string());
                return;
            }
        };
        self.run = None;
        self.model = config.model.clone();
        self.curves = Curves::default();
        (self.alpha, self.trajectory, self.marks) = (None, Vec::new(), Vec::new());
        self.alpha_per_layer.clear();
        (self.shown, self.subspace_ready, self.in_twa) = (None, false, false);
        self.error = None;
        self.status = format!("Starting {}…", self.settings.preset);
        self.landscape.next_generation();
        let wake = self.ctx.clone();
        self.run = Some(Run::start(config, self.out_dir.clone(), move || {
            wake.request_repaint()
        }));
    }

    /// Whether a run is active.
    pub fn running(&self) -> bool {
        self.run.as_ref().is_some_and(|r| !r.finished())
    }

    /// Pause or resume the run.
    pub fn toggle_pause(&mut self) {
        if let Some(r) = &self.run {
            let paused = !r.control.pause.load(Ordering::Relaxed);
            r.control.pause.store(paused, Ordering::Relaxed);
            self.status = if paused { "Paused." } else { "Running…" }.into();
        }
    }

    /// Whether the run is paused.
    pub fn paused(&self) -> bool {
        self.run
            .as_ref()
            .is_some_and(|r| r.control.pause.load(Ordering::Relaxed))
    }

    /// Stop the run at its next step.
    pub fn stop(&mut self) {
        if let Some(r) = &self.run {
            r.control.stop.store(true, Ordering::Relaxed);
            r.control.pause.store(false, Ordering::Relaxed);
        }
    }

    /// Ask for the landscape of the current plane, metric and TWA point.
    pub fn request_landscape(&mut self) {
        if !self.subspace_ready {
            return;
        }
        self.requested = self.landscape.next_generation();
        let _ = self
            .landscape
            .requests
            .send(Request::Compute(landscape_worker::Compute {
                generation: self.requested,
                plane: self.plane,
                twa: self.alpha.clone(),
                metric: self.metric,
                grid: self.grid,
                trajectory: self.trajectory.clone(),
            }));
    }

    /// Evaluate the model at a plane point (the result arrives later as a mark).
    pub fn evaluate_at(&mut self, x: f64, y: f64) {
        self.marks.push(Mark { x, y, result: None });
        let _ = self.landscape.requests.send(Request::Evaluate { x, y });
    }

    /// Whether a landscape is being computed.
    pub fn landscape_busy(&self) -> bool {
        self.subspace_ready
            && self
                .shown
                .as_ref()
                .is_none_or(|s| s.view.generation != self.requested || !s.view.grid.complete())
    }

    /// Take every pending message from both workers.
    pub fn poll(&mut self) {
        let messages = self.run.as_ref().map(|r| worker::drain(&r.messages));
        for m in messages.into_iter().flatten() {
            self.take(m);
        }
        for r in worker::drain(&self.landscape.replies) {
            self.take_reply(r);
        }
    }

    fn take(&mut self, msg: Msg) {
        match msg {
            Msg::Adapter(a) => {
                self.adapter = a;
                self.status = "Running…".into();
            }
            Msg::Data(d) => self.data = Some(d),
            Msg::Event(e) => self.take_event(e),
            Msg::Finished(rows) => {
                let table: Vec<String> = rows
                    .iter()
                    .map(|r| format!("{} {:.2}%", r.method, 100.0 * r.test_acc))
                    .collect();
                self.status = format!("Finished: {}", table.join(" · "));
            }
            Msg::Stopped => self.status = "Stopped.".into(),
            Msg::Failed(e) => {
                self.status = "The run failed.".into();
                self.error = Some(e);
            }
        }
    }

    fn take_event(&mut self, e: Event) {
        self.curves.take(&e);
        match e {
            Event::Phase(name) => {
                self.in_twa = name.starts_with("TWA");
                self.status = name;
            }
            Event::Epoch(_) if self.in_twa => self.request_landscape(),
            Event::Coefficients { alpha, per_layer } => {
                self.trajectory.push(alpha.clone());
                self.alpha = Some(alpha);
                self.alpha_per_layer = per_layer;
            }
            Event::Samples(samples) => {
                self.samples = samples.samples.len() / samples.dim.max(1);
                if let Some(data) = &self.data {
                    let _ = self.landscape.requests.send(Request::Load {
                        data: data.clone(),
                        model: self.model.clone(),
                        samples,
                        seed: self.settings.seed,
                    });
                }
            }
            Event::Result {
                method,
                alpha: Some(alpha),
                ..
            } if method == "TWA" => {
                self.in_twa = false;
                self.alpha = Some(alpha);
                self.request_landscape();
            }
            _ => {}
        }
    }

    fn take_reply(&mut self, reply: Reply) {
        match reply {
            Reply::Adapter(_) => {}
            Reply::Ready { rank, seconds } => {
                self.subspace_ready = true;
                self.status = format!("Subspace of rank {rank} ready in {seconds:.1} s.");
                self.request_landscape();
            }
            Reply::View(view) if view.generation == self.requested => {
                let done = view.grid.loss.iter().filter(|v| !v.is_nan()).count();
                self.timings.push((view.generation, done, view.seconds));
                let (rgb, scale) =
                    twa::landscape::render::heatmap(&view.grid, view.metric, TEXTURE_SIZE);
                let image = egui::ColorImage::from_rgb([TEXTURE_SIZE, TEXTURE_SIZE], &rgb);
                let texture = match self.shown.take() {
                    Some(mut s) => {
                        s.texture.set(image, egui::TextureOptions::LINEAR);
                        s.texture
                    }
                    None => self
                        .ctx
                        .load_texture("landscape", image, egui::TextureOptions::LINEAR),
                };
                self.shown = Some(Shown {
                    view: *view,
                    texture,
                    scale,
                });
            }
            Reply::View(_) => {}
            Reply::Point { x, y, loss, acc } => {
                if let Some(m) = self
                    .marks
                    .iter_mut()
                    .find(|m| m.result.is_none() && m.x == x && m.y == y)
                {
                    m.result = Some((loss, acc));
                }
            }
            Reply::Failed(e) => self.error = Some(format!("landscape: {e}")),
        }
    }

    /// Write the current landscape with its overlays as a PNG under the output directory.
    pub fn export_png(&mut self) {
        let Some(shown) = &self.shown else { return };
        let v = &shown.view;
        let mut overlay = v.overlay.clone();
        overlay.trajectory = panels::trajectory_points(self, v);
        overlay.twa = overlay.trajectory.last().copied().or(overlay.twa);
        overlay.marks = self.marks.iter().map(|m| [m.x, m.y]).collect();
        let labels = twa::landscape::labels(
            v.plane.kind,
            v.metric,
            v.grid.spec.n,
            landscape_worker::BATCH,
            32,
        );
        let png = twa::landscape::render::render_png(&v.grid, v.metric, &overlay, &labels, 768);
        let name = format!(
            "landscape-{}-{}.png",
            v.plane.kind.name(),
            v.metric.label().replace(' ', "-")
        );
        // In a browser: a download.
        #[cfg(target_arch = "wasm32")]
        let written = crate::page::download(&name, &png).map(|()| name);
        #[cfg(not(target_arch = "wasm32"))]
        let written = {
            let path = self.out_dir.join(&name);
            twa::files::ensure_writable_dir(&self.out_dir)
                .and_then(|_| twa::files::write_atomic(&path, &png))
                .map(|()| path.display().to_string())
        };
        match written {
            Ok(place) => self.status = format!("Wrote {place}"),
            Err(e) => self.error = Some(e.to_string()),
        }
    }
}

impl eframe::App for TwaApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.poll();
        let dt = ui.input(|i| i.unstable_dt);
        let busy = self.landscape_busy();
        self.frames.push((dt, busy));
        if self.frames.len() > 2000 {
            self.frames.drain(..1000);
        }
        panels::show(self, ui);
        if self.running() || busy {
            ui.ctx().request_repaint();
        }
    }
}
