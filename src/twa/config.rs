//! TWA's settings: where it starts, its optimiser, its epochs and rates, and what
//! they ask of the samples and of the trainer.

use super::directions::{self, Coefficients};
use crate::error::{Error, Result};
use crate::nn::Optimizer;
use crate::train::{Schedule, TrainConfig};

/// Where TWA starts; in a config file `swa`, `last` or a sample index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Start {
    /// The SWA point, the mean of the samples (the reference code's default).
    Swa,
    /// The last selected sample.
    Last,
    /// Selected sample i (0-based within the selection).
    Sample(usize),
}

impl std::str::FromStr for Start {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Start, String> {
        match s {
            "swa" => Ok(Start::Swa),
            "last" => Ok(Start::Last),
            _ => s
                .parse()
                .map(Start::Sample)
                .map_err(|_| format!("`{s}` is not swa, last or a sample index")),
        }
    }
}

impl TryFrom<String> for Start {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Start, String> {
        s.parse()
    }
}

impl From<Start> for String {
    fn from(start: Start) -> String {
        match start {
            Start::Swa => "swa".into(),
            Start::Last => "last".into(),
            Start::Sample(i) => i.to_string(),
        }
    }
}

/// TWA's own optimisation settings (the `[twa]` section of a config file).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwaConfig {
    pub epochs: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    pub schedule: Schedule,
    /// `swa`, `last` or a sample index.
    pub start: Start,
    /// `orthonormal` (projected SGD in P), `global` or `layer` (explicit coefficients
    /// per direction, and per layer).
    pub coefficients: Coefficients,
    /// Bits per stored direction value: 1, 2, 4, 8 or 32 (explicit coefficients only).
    pub bits: u32,
    /// `sgd` or `adamw` (AdamW: explicit coefficients only).
    pub optimizer: Optimizer,
}

impl TwaConfig {
    /// Refuse low-bit directions or AdamW with orthonormal P-SGD, and bit widths
    /// other than 1, 2, 4, 8 and 32.
    pub fn validate(&self) -> Result<()> {
        if self.epochs > crate::train::MAX_EPOCHS {
            return Err(Error::Config(format!(
                "TWA epochs must be at most {}, got {}",
                crate::train::MAX_EPOCHS,
                self.epochs
            )));
        }
        if !directions::BITS.contains(&self.bits) {
            return Err(Error::Config(format!(
                "TWA bits {}: the directions are stored at 1, 2, 4, 8 or 32 bits",
                self.bits
            )));
        }
        if self.coefficients == Coefficients::Orthonormal
            && (self.bits != 32 || self.optimizer != Optimizer::Sgd)
        {
            return Err(Error::Config(
                "low-bit directions and AdamW need explicit coefficients \
                 (--coefficients global or layer); orthonormal TWA is 32-bit P-SGD"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl Default for TwaConfig {
    /// TWA.md's head-stage reference: 2 epochs, lr 2, wd 1e-5, momentum 0.9, step.
    fn default() -> Self {
        TwaConfig {
            epochs: 2,
            lr: 2.0,
            weight_decay: 1e-5,
            momentum: 0.9,
            schedule: Schedule::Step,
            start: Start::Swa,
            coefficients: Coefficients::Orthonormal,
            bits: 32,
            optimizer: Optimizer::Sgd,
        }
    }
}

/// The sample TWA starts from (`None`: the SWA point), among `n`.
pub(crate) fn start_sample(start: Start, n: usize) -> Result<Option<usize>> {
    match start {
        Start::Swa => Ok(None),
        Start::Last => Ok(Some(n - 1)),
        Start::Sample(i) if i < n => Ok(Some(i)),
        Start::Sample(i) => Err(Error::Config(format!(
            "--start {i}: only {n} samples are selected"
        ))),
    }
}

/// Rows of `samples` (n × dim); TWA needs two.
pub(crate) fn sample_count(samples: &[f32], dim: usize) -> Result<usize> {
    let n = samples.len() / dim;
    if n < 2 {
        return Err(Error::Config(format!(
            "TWA needs at least 2 samples, got {n}"
        )));
    }
    Ok(n)
}

/// The trainer settings for TWA's phase, from the run's SGD settings.
pub fn twa_train_config(base: &TrainConfig, twa: &TwaConfig) -> TrainConfig {
    TrainConfig {
        epochs: twa.epochs,
        lr: twa.lr,
        momentum: twa.momentum,
        weight_decay: twa.weight_decay,
        schedule: twa.schedule,
        warmup_epochs: 0,
        // P-SGD is SGD on the projected gradient, unclipped.
        optimizer: Optimizer::Sgd,
        clip_grad_norm: 0.0,
        ..base.clone()
    }
}
