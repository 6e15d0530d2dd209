//! The app's state and what it draws. Work happens in two worker tasks (training,
//! landscape: threads natively, futures on the web); this only sends requests, takes
//! messages and paints.

use crate::landscape_worker::{self, Reply, Request, View};
use crate::panels;
use crate::worker::{self, Msg, Run};
use eframe::egui;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use twa::data::Dataset;
use twa::landscape::{ColorScale, Metric, PlaneKind};
use twa::run::config::RunConfig;
use twa::train::Event;
use twa::twa::directions::Coefficients;

/// Presets offered in the run panel: the teaching demo first.
pub const PRESETS: [&str; 4] = ["spirals", "head", "tail", "head-cnn"];

/// Where the web build's page finds the shipped Fashion-MNIST subset (`web/build.sh`).
pub const WEB_DATA: &str = "data/fashion-mnist-subset";

/// The editable settings of the next run.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub preset: String,
    /// The preset's network family (hidden widths and BatchNorm apply to the MLP).
    pub arch: twa::nn::model::Arch,
    pub data_dir: String,
    pub hidden: String,
    pub batchnorm: bool,
    pub epochs: usize,
    pub lr: f64,
    pub head_epochs: usize,
    pub samples_per_epoch: usize,
    pub twa_epochs: usize,
    pub twa_lr: f64,
    /// How TWA parametrises the average (orthonormal P-SGD, global or per-layer
    /// coefficients over the directions).
    pub coefficients: Coefficients,
    pub seed: u64,
}

impl Settings {
    /// The settings of a shipped preset.
    pub fn from_preset(name: &str) -> twa::error::Result<Settings> {
        let c = RunConfig::preset(name)?;
        let hidden: Vec<String> = c.model.hidden.iter().map(|h| h.to_string()).collect();
        // In a browser the data is fetched from beside the page: the shipped subset.
        let data_dir = if cfg!(target_arch = "wasm32") {
            WEB_DATA.to_string()
        } else {
            c.data.dir.clone()
        };
        Ok(Settings {
            preset: name.into(),
            arch: c.model.arch,
            data_dir,
            hidden: hidden.join(", "),
            batchnorm: c.model.batchnorm,
            epochs: c.train.epochs,
            lr: c.train.lr,
            head_epochs: c.pipeline.head_epochs,
            samples_per_epoch: c.pipeline.samples_per_epoch,
            twa_epochs: c.twa.epochs,
            twa_lr: c.twa.lr,
            coefficients: c.twa.coefficients,
            seed: c.train.seed,
        })
    }

    /// The run config: the preset with these settings applied.
    pub fn to_config(&self) -> twa::error::Result<RunConfig> {
        let mut c = RunConfig::preset(&self.preset)?;
        c.model.hidden = self
            .hidden
            .split(',')
            .map(|h| h.trim().parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                twa::error::Error::Config(format!(
                    "hidden widths `{}`: expected numbers separated by commas",
                    self.hidden
                ))
            })?;
        c.model.batchnorm = self.batchnorm;
        if c.data.generated.is_empty() {
            c.data.dir = self.data_dir.clone();
        }
        c.train.epochs = self.epochs;
        c.train.lr = self.lr;
        c.train.seed = self.seed;
        c.pipeline.head_epochs = self.head_epochs;
        c.pipeline.samples_per_epoch = self.samples_per_epoch;
        c.twa.epochs = self.twa_epochs;
        c.twa.lr = self.twa_lr;
        c.twa.coefficients = self.coefficients;
        Ok(c)
    }
}

/// Per-epoch and running (per-step) values of one branch of training.
#[derive(Default)]
pub struct Series {
    pub running_loss: Vec<[f64; 2]>,
    pub running_acc: Vec<[f64; 2]>,
    pub train_loss: Vec<[f64; 2]>,
    pub test_loss: Vec<[f64; 2]>,
    pub train_acc: Vec<[f64; 2]>,
    pub test_acc: Vec<[f64; 2]>,
    pub lr: Vec<[f64; 2]>,
}

/// A result as it comes: method, test accuracy, test loss, and the training epochs it
/// cost (SWA: the SGD epochs it averages; TWA: those plus its own).
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub method: String,
    pub acc: f64,
    pub loss: f64,
    pub epochs: f64,
}

/// Training curves, x in epochs of training (fractional while an epoch runs): the SGD
/// run along the axis, TWA as a branch from the SGD epoch it started at (the end of
/// the head, or of the SWA phase), so that the epochs each result cost line up.
#[derive(Default)]
pub struct Curves {
    /// SGD epochs finished (every phase but TWA).
    pub sgd_epochs: f64,
    /// TWA epochs finished, and the SGD epoch its branch starts at (while in TWA).
    twa_epochs: f64,
    branch: Option<f64>,
    steps: usize,
    step: usize,
    pub sgd: Series,
    pub twa: Series,
    /// Where each phase began, and its name.
    pub phases: Vec<(f64, String)>,
    pub results: Vec<Outcome>,
}

impl Curves {
    /// The x of the current position, and the series it belongs to.
    fn position(&mut self) -> (f64, &mut Series) {
        let part = self.step as f64 / self.steps.max(1) as f64;
        match self.branch {
            Some(from) => (from + self.twa_epochs + part, &mut self.twa),
            None => (self.sgd_epochs + part, &mut self.sgd),
        }
    }

    fn take(&mut self, event: &Event) {
        match event {
            // (Other phases are notes: a held-out split, dropped samples.)
            Event::Phase(name) if ["SGD", "SWA", "TWA"].iter().any(|p| name.starts_with(p)) => {
                let twa = name.starts_with("TWA");
                self.branch = twa.then_some(self.sgd_epochs);
                self.twa_epochs = 0.0;
                if !twa {
                    self.phases.push((self.sgd_epochs, name.clone()));
                }
            }
            Event::Phase(_) => {}
            Event::EpochStart { steps, .. } => (self.steps, self.step) = (*steps, 0),
            Event::Step { step } => self.step = *step,
            Event::Running { loss, acc } => {
                let (x, series) = self.position();
                series.running_loss.push([x, *loss]);
                series.running_acc.push([x, *acc]);
            }
            Event::Epoch(m) => {
                match self.branch {
                    Some(_) => self.twa_epochs += 1.0,
                    None => self.sgd_epochs += 1.0,
                }
                self.step = 0;
                let (x, series) = self.position();
                series.train_loss.push([x, m.train_loss]);
                series.test_loss.push([x, m.test_loss]);
                series.train_acc.push([x, m.train_acc]);
                series.test_acc.push([x, m.test_acc]);
                series.lr.push([x, m.lr]);
            }
            Event::Result {
                method,
                test_acc,
                test_loss,
                ..
            } => {
                // SWA averages the SGD epochs before TWA's branch, whenever it is
                // reported; TWA's result ends the branch.
                let twa = method.starts_with("TWA");
                let from = self.branch.unwrap_or(self.sgd_epochs);
                let epochs = match method.as_str() {
                    _ if twa => from + self.twa_epochs,
                    "SWA" => from,
                    _ => self.sgd_epochs,
                };
                self.results.push(Outcome {
                    method: method.clone(),
                    acc: *test_acc,
                    loss: *test_loss,
                    epochs,
                });
                if twa {
                    self.branch = None;
                }
            }
            Event::Coefficients { .. } | Event::Samples(_) => {}
        }
    }
}

/// The landscape on screen: the worker's view, its texture and colour scale.
pub struct Shown {
    pub view: View,
    pub texture: egui::TextureHandle,
    pub scale: ColorScale,
}

/// A point evaluated on request.
pub struct Mark {
    pub x: f64,
    pub y: f64,
    /// (test loss, test accuracy) once known.
    pub result: Option<(f64, f64)>,
}

/// Pixels per side of the landscape texture.
const TEXTURE_SIZE: usize = 256;

/// The application.
pub struct TwaApp {
    pub settings: Settings,
    pub run: Option<Run>,
    pub landscape: landscape_worker::Worker,
    data: Option<Arc<Dataset>>,
    model: twa::nn::ModelConfig,
    pub adapter: String,
    pub status: String,
    pub error: Option<String>,
    pub curves: Curves,
    /// TWA's latest coefficients, each layer's (with per-layer coefficients), and its
    /// path.
    pub alpha: Option<Vec<f64>>,
    pub alpha_per_layer: Vec<(String, Vec<f64>)>,
    pub trajectory: Vec<Vec<f64>>,
    pub samples: usize,
    in_twa: bool,
    subspace_ready: bool,
    pub shown: Option<Shown>,
    pub plane: PlaneKind,
    pub metric: Metric,
    pub grid: usize,
    requested: u64,
    pub marks: Vec<Mark>,
    /// Recent frame times (seconds) and whether a landscape was being computed.
    pub frames: Vec<(f32, bool)>,
    /// Landscape progress: (generation, points evaluated, seconds since the request).
    pub timings: Vec<(u64, usize, f64)>,
    pub out_dir: PathBuf,
    ctx: egui::Context,
}

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
