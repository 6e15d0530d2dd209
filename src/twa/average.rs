//! Averaging a sampled trajectory: SWA (the mean), EMA, and TWA (projected SGD in the
//! samples' span, from the SWA point or a sample), each followed by BatchNorm
//! re-estimation and an evaluation on the test split.

use super::directions::{self, Coefficients};
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

/// The optimiser of explicit coefficients.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    /// SGD with momentum and weight decay (the only one for orthonormal P-SGD).
    #[default]
    Sgd,
    /// AdamW: β₁ = the momentum, decoupled weight decay.
    Adamw,
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
    /// Projected SGD in P, or explicit coefficients per direction (and layer).
    pub coefficients: Coefficients,
    /// Bits per stored direction value (explicit coefficients only; 32 = f32).
    pub bits: u32,
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

/// Averaging coefficients of one block of explicit per-layer TWA.
#[derive(Clone, Debug, Serialize)]
pub struct BlockAlpha {
    pub block: String,
    pub alpha: Vec<f64>,
}

/// What one averaging method produced.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Averaged {
    pub method: String,
    pub test_acc: f64,
    pub test_loss: f64,
    pub seconds: f64,
    /// Averaging coefficients over the selected samples (w = Σ αᵢ wᵢ); with
    /// per-layer coefficients, their mean over the parameters.
    pub alpha: Vec<f64>,
    /// Per-layer coefficients: α of each block.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alpha_per_block: Vec<BlockAlpha>,
    /// Bytes the subspace held on the device (P, or the stored directions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subspace_bytes: Option<usize>,
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
pub async fn evaluate_at(trainer: &mut Trainer<'_>, params: &[f32]) -> Result<Totals> {
    trainer.net.set_params(trainer.gpu, params);
    trainer.recalibrate_bn().await?;
    trainer.evaluate().await
}

/// Re-estimate BatchNorm for `outcome`'s weights on `trainer`'s training split and
/// evaluate them: test accuracy, loss and the BatchNorm state filled in.
pub async fn re_evaluate(trainer: &mut Trainer<'_>, outcome: &mut Averaged) -> Result<()> {
    let totals = evaluate_at(trainer, &outcome.params).await?;
    outcome.test_acc = totals.accuracy();
    outcome.test_loss = totals.mean_loss();
    outcome.state = trainer.net.read_state(trainer.gpu).await?;
    Ok(())
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
pub async fn train_twa(
    gpu: &Gpu,
    trainer: &mut Trainer<'_>,
    samples: &[f32],
    twa: &TwaConfig,
    observer: &mut dyn FnMut(Event),
) -> Result<TwaRun> {
    twa.validate()?;
    if twa.coefficients != Coefficients::Orthonormal {
        return super::explicit::train_explicit(gpu, trainer, samples, twa, observer).await;
    }
    let started = web_time::Instant::now();
    let dim = trainer.net.model.num_params();
    let n = sample_count(samples, dim)?;
    let (start, start_alpha) = match start_sample(twa.start, n)? {
        None => (mean(samples, dim), vec![1.0 / n as f64; n]),
        Some(i) => (samples[i * dim..(i + 1) * dim].to_vec(), unit(n, i)),
    };
    let collective = trainer.collective();
    let space = Subspace::build_sharded(
        gpu,
        &trainer.net.kernels,
        collective,
        samples,
        dim,
        Subspace::rows_per_chunk(gpu, dim)?,
    )
    .await?;
    trainer.gradient_step = space.projected_sgd(gpu, &trainer.net.kernels, &trainer.net.grads);
    let coordinates = gpu.storage(space.rank, "twa coordinates");
    let (transform, samples) = (space.transform.clone(), space.samples);
    // α is watched while training in one process (a rank sees only its rows of P).
    trainer.watch = (!space.is_sharded()).then(|| Watch {
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
                per_layer: Vec::new(),
            }
        }),
    });
    trainer.net.set_params(gpu, &start);
    observer(Event::Coefficients {
        alpha: start_alpha,
        per_layer: Vec::new(),
    });
    let trained = trainer.run(observer).await;
    trainer.watch = None;
    trained?;
    trainer.recalibrate_bn().await?;
    let totals = trainer.evaluate().await?;
    let beta = space
        .coordinates(gpu, &trainer.net.kernels, collective, &trainer.net.params)
        .await?;
    let outcome = Averaged {
        method: "twa".into(),
        test_acc: totals.accuracy(),
        test_loss: totals.mean_loss(),
        seconds: started.elapsed().as_secs_f64(),
        alpha: space.averaging_coefficients(&beta),
        params: trainer.net.read_params(gpu).await?,
        state: trainer.net.read_state(gpu).await?,
        subspace_bytes: Some(space.local_bytes()),
        ..Averaged::default()
    };
    Ok(TwaRun {
        outcome,
        dropped: space.dropped.clone(),
        rank: space.rank,
    })
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
        ..base.clone()
    }
}
