//! The state the app draws: the settings of the next run, the curves and results so
//! far, TWA's coefficients and path, the landscape on screen and the workers' handles.
//! The panels read and edit it; the app ([`crate::app`]) feeds it from the workers.

use crate::landscape_worker::{self, View};
use crate::worker::Run;
use eframe::egui;
use std::path::PathBuf;
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
    pub arch: twa::nn::architecture::Arch,
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

    /// Add what `event` says to the curves.
    pub(crate) fn take(&mut self, event: &Event) {
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

/// The application.
pub struct TwaApp {
    pub settings: Settings,
    pub run: Option<Run>,
    pub landscape: landscape_worker::Worker,
    pub(crate) data: Option<Arc<Dataset>>,
    pub(crate) model: twa::nn::ModelConfig,
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
    pub(crate) in_twa: bool,
    pub(crate) subspace_ready: bool,
    pub shown: Option<Shown>,
    pub plane: PlaneKind,
    pub metric: Metric,
    pub grid: usize,
    pub(crate) requested: u64,
    pub marks: Vec<Mark>,
    /// Recent frame times (seconds) and whether a landscape was being computed.
    pub frames: Vec<(f32, bool)>,
    /// Landscape progress: (generation, points evaluated, seconds since the request).
    pub timings: Vec<(u64, usize, f64)>,
    pub out_dir: PathBuf,
    pub(crate) ctx: egui::Context,
}
