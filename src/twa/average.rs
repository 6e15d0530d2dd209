//! Averaging a sampled trajectory: SWA (the mean), EMA, and TWA (projected SGD in the
//! samples' span, from the SWA point or a sample), each followed by BatchNorm
//! re-estimation and an evaluation on the test split.

use super::subspace::{self, Dropped, Subspace};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::nn::Totals;
use crate::train::trainer::Watch;
use crate::train::{Event, Schedule, TrainConfig, Trainer};
use serde::Serialize;

/// Where TWA starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// TWA's own optimisation settings.
#[derive(Clone, Debug, PartialEq)]
pub struct TwaConfig {
    pub epochs: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    pub schedule: Schedule,
    pub start: Start,
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
        }
    }
}

/// What one averaging method produced.
#[derive(Clone, Debug, Serialize)]
pub struct Averaged {
    pub method: String,
    pub test_acc: f64,
    pub test_loss: f64,
    pub seconds: f64,
    /// Averaging coefficients over the selected samples (w = Σ αᵢ wᵢ).
    pub alpha: Vec<f64>,
    #[serde(skip)]
    pub params: Vec<f32>,
    #[serde(skip)]
    pub state: Vec<f32>,
}

/// Mean of the rows of `samples` (n × dim).
pub fn mean(samples: &[f32], dim: usize) -> Vec<f32> {
    let n = samples.len() / dim;
    let mut acc = vec![0.0f64; dim];
    for row in samples.chunks(dim) {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += v as f64;
        }
    }
    acc.into_iter().map(|a| (a / n as f64) as f32).collect()
}

/// Exponential moving average over the rows in order: e ← d·e + (1 − d)·wᵢ from e = w₀;
/// also returns the weight of each row.
pub fn ema(samples: &[f32], dim: usize, decay: f64) -> (Vec<f32>, Vec<f64>) {
    let n = samples.len() / dim;
    let mut weights = vec![0.0f64; n];
    weights[0] = 1.0;
    for i in 1..n {
        weights.iter_mut().for_each(|w| *w *= decay);
        weights[i] = 1.0 - decay;
    }
    let mut acc = vec![0.0f64; dim];
    for (row, w) in samples.chunks(dim).zip(&weights) {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += w * v as f64;
        }
    }
    (acc.into_iter().map(|a| a as f32).collect(), weights)
}

/// Load `params`, re-estimate BatchNorm, evaluate.
pub fn evaluate_at(trainer: &mut Trainer, params: &[f32]) -> Result<Totals> {
    trainer.net.set_params(trainer.gpu, params);
    trainer.recalibrate_bn()?;
    trainer.evaluate()
}

/// Coefficients selecting sample `i` of `n`.
fn unit(n: usize, i: usize) -> Vec<f64> {
    let mut a = vec![0.0; n];
    a[i] = 1.0;
    a
}

/// Result of [`train_twa`]: the outcome and the samples Gram–Schmidt left out.
pub struct TwaRun {
    pub outcome: Averaged,
    pub dropped: Vec<Dropped>,
    pub rank: usize,
}

/// Train the averaging: projected SGD in span(samples) on `trainer` (whose config holds
/// TWA's settings), then BatchNorm re-estimation and evaluation.
pub fn train_twa(
    gpu: &Gpu,
    trainer: &mut Trainer,
    samples: &[f32],
    twa: &TwaConfig,
    observer: &mut dyn FnMut(Event),
) -> Result<TwaRun> {
    let started = std::time::Instant::now();
    let dim = trainer.net.model.num_params();
    let n = samples.len() / dim;
    if n < 2 {
        return Err(Error::Config(format!(
            "TWA needs at least 2 samples, got {n}"
        )));
    }
    let (start, start_alpha) = match twa.start {
        Start::Swa => (mean(samples, dim), vec![1.0 / n as f64; n]),
        Start::Last => (samples[(n - 1) * dim..].to_vec(), unit(n, n - 1)),
        Start::Sample(i) if i < n => (samples[i * dim..(i + 1) * dim].to_vec(), unit(n, i)),
        Start::Sample(i) => {
            return Err(Error::Config(format!(
                "--start {i}: only {n} samples are selected"
            )))
        }
    };
    let space = Subspace::build(
        gpu,
        &trainer.net.kernels,
        samples,
        dim,
        Subspace::rows_per_chunk(gpu, dim)?,
    )?;
    trainer.transform = space.projection(gpu, &trainer.net.kernels, &trainer.net.grads);
    let coordinates = gpu.storage(space.rank, "twa coordinates");
    let (transform, samples) = (space.transform.clone(), space.samples);
    trainer.watch = Some(Watch {
        dispatches: space.coordinate_dispatches(
            gpu,
            &trainer.net.kernels,
            &trainer.net.params,
            &coordinates,
        ),
        source: coordinates,
        words: space.rank,
        to_event: Box::new(move |beta: &[f32]| {
            let beta: Vec<f64> = beta.iter().map(|&b| b as f64).collect();
            Event::Coefficients {
                alpha: subspace::averaging_coefficients(&transform, samples, &beta),
            }
        }),
    });
    trainer.net.set_params(gpu, &start);
    observer(Event::Coefficients { alpha: start_alpha });
    let trained = trainer.run(observer);
    trainer.watch = None;
    trained?;
    trainer.recalibrate_bn()?;
    let totals = trainer.evaluate()?;
    let beta = space.coordinates(gpu, &trainer.net.kernels, &trainer.net.params)?;
    let outcome = Averaged {
        method: "twa".into(),
        test_acc: totals.accuracy(),
        test_loss: totals.mean_loss(),
        seconds: started.elapsed().as_secs_f64(),
        alpha: space.averaging_coefficients(&beta),
        params: trainer.net.read_params(gpu)?,
        state: trainer.net.read_state(gpu)?,
    };
    Ok(TwaRun {
        outcome,
        dropped: space.dropped.clone(),
        rank: space.rank,
    })
}

/// The trainer settings for TWA's phase, from the run's SGD settings.
pub fn twa_train_config(base: &TrainConfig, twa: &TwaConfig) -> TrainConfig {
    TrainConfig {
        epochs: twa.epochs,
        lr: twa.lr,
        momentum: twa.momentum,
        weight_decay: twa.weight_decay,
        schedule: twa.schedule,
        ..base.clone()
    }
}
