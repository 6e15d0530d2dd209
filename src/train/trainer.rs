//! The epoch loop: shuffle, one command encoder and one submit per step (batch gather,
//! forward, loss, backward, SGD), the loss read back asynchronously every few steps,
//! evaluation on the test split after every epoch. Progress goes to an observer.

use super::sampler::{SampleInfo, SamplePlan, SampleStore};
use super::schedule::Schedule;
use crate::collective::{shard, Collective, DeviceSum, Single};
use crate::data::{Dataset, DeviceSplit};
use crate::error::{Error, Result};
use crate::gpu::readback::AsyncReadback;
use crate::gpu::{Dispatch, Gpu};
use crate::nn::{
    GradientStep, Model, ModelConfig, Network, Optimizer, SgdConfig, StepState, Totals, UpdateRule,
};
use crate::rng::Rng;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use web_time::Instant;

/// Optimisation settings of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub batch: usize,
    pub schedule: Schedule,
    pub seed: u64,
    /// Batch size for evaluation (any size gives the same result).
    pub eval_batch: usize,
    /// Random crop (4-pixel padding) and horizontal flip of training images.
    pub augment: bool,
    /// With several ranks: BatchNorm's batch statistics (and their gradients) summed
    /// over the ranks, so that R ranks compute what one process does (else each rank
    /// normalises with its own share of the batch, as PyTorch's DDP).
    pub sync_bn: bool,
    /// Epochs of linear warm-up before the schedule: lr·(s + 1)/W over the first W
    /// steps (the TWA code's); the step schedule's drops stay where they were, the
    /// cosine and linear ones span the epochs after the warm-up. A run shorter than
    /// its warm-up (`--epochs` cutting a recipe short) warms up throughout.
    pub warmup_epochs: usize,
    /// The training loss's label smoothing ε (targets (1 − ε)·onehot + ε/C, as
    /// PyTorch's); test losses are plain cross-entropy.
    pub label_smoothing: f64,
    /// SGD, or AdamW with `momentum` as β₁.
    pub optimizer: Optimizer,
    /// Scale each step's gradient to this norm when it is larger (PyTorch's
    /// `clip_grad_norm_`); 0: never.
    pub clip_grad_norm: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 20,
            lr: 0.1,
            momentum: 0.9,
            weight_decay: 1e-4,
            batch: 128,
            schedule: Schedule::Step,
            seed: 1,
            eval_batch: 1000,
            augment: false,
            sync_bn: false,
            warmup_epochs: 0,
            label_smoothing: 0.0,
            optimizer: Optimizer::Sgd,
            clip_grad_norm: 0.0,
        }
    }
}

/// Most epochs a run may have: far beyond any schedule, and small enough that every
/// count derived from it (steps, samples, metrics lines) stays in range.
pub const MAX_EPOCHS: usize = 1_000_000;

/// Largest batch: the step's sample offsets are 32-bit on the device.
pub const MAX_BATCH: usize = 1 << 24;

impl TrainConfig {
    /// Check the values a user may have mistyped.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if !(1..=MAX_EPOCHS).contains(&self.epochs) {
            return bad(format!(
                "epochs must be in 1..={MAX_EPOCHS}, got {}",
                self.epochs
            ));
        }
        if !(1..=MAX_BATCH).contains(&self.batch) || !(1..=MAX_BATCH).contains(&self.eval_batch) {
            return bad(format!(
                "batch sizes must be in 1..={MAX_BATCH}, got {} and {} (eval)",
                self.batch, self.eval_batch
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("lr must be a positive number, got {}", self.lr));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad(format!("momentum must be in [0, 1), got {}", self.momentum));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "weight decay must be ≥ 0, got {}",
                self.weight_decay
            ));
        }
        if self.warmup_epochs > MAX_EPOCHS {
            return bad(format!(
                "warmup_epochs must be in 0..={MAX_EPOCHS}, got {}",
                self.warmup_epochs
            ));
        }
        if !(self.clip_grad_norm.is_finite() && self.clip_grad_norm >= 0.0) {
            return bad(format!(
                "clip_grad_norm must be ≥ 0 (0: no clipping), got {}",
                self.clip_grad_norm
            ));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(format!(
                "label_smoothing must be in [0, 1), got {}",
                self.label_smoothing
            ));
        }
        Ok(())
    }

    /// The LR of `step` (0-based) of `epoch` (0-based) with `steps` steps per epoch:
    /// the warm-up, then the schedule.
    pub fn lr_at(&self, epoch: usize, step: usize, steps: usize) -> f64 {
        let (warm, at) = (self.warmup_epochs, epoch * steps + step);
        if at < warm * steps {
            return self.lr * (at + 1) as f64 / (warm * steps) as f64;
        }
        match self.schedule {
            Schedule::Step | Schedule::Constant => {
                self.schedule.lr(self.lr, epoch, self.epochs, step, steps)
            }
            _ => self
                .schedule
                .lr(self.lr, epoch - warm, self.epochs - warm, step, steps),
        }
    }
}

/// What one epoch measured; one line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_acc: f64,
    pub test_loss: f64,
    pub test_acc: f64,
    pub seconds: f64,
}

/// Progress reported while training.
#[derive(Clone, Debug)]
pub enum Event {
    /// A phase of a pipeline begins (e.g. "SGD head", "TWA").
    Phase(String),
    /// An epoch (1-based) begins with `steps` steps.
    EpochStart { epoch: usize, steps: usize },
    /// A step of the current epoch was submitted.
    Step { step: usize },
    /// Running mean loss and accuracy of the epoch so far, read back asynchronously.
    Running { loss: f64, acc: f64 },
    /// An epoch finished and was evaluated.
    Epoch(EpochMetrics),
    /// TWA's current point as averaging coefficients α over the samples (read back
    /// with the running loss while TWA trains); with per-layer coefficients also each
    /// layer's own α (its name, n values), else empty.
    Coefficients {
        alpha: Vec<f64>,
        per_layer: Vec<(String, Vec<f64>)>,
    },
    /// A result of the pipeline (SGD at some epoch, SWA, TWA), as soon as it is known.
    Result {
        method: String,
        test_acc: f64,
        test_loss: f64,
        /// Averaging coefficients over the samples (SWA, TWA).
        alpha: Option<Vec<f64>>,
    },
    /// The sampled solutions are ready (shared, not copied).
    Samples(SharedSamples),
}

/// Sampled solutions handed to observers: `n × dim` floats, row-major.
#[derive(Clone)]
pub struct SharedSamples {
    pub samples: Arc<Vec<f32>>,
    pub dim: usize,
}

impl std::fmt::Debug for SharedSamples {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.samples.len() / self.dim.max(1);
        write!(f, "{n} samples × {}", self.dim)
    }
}

/// Turns watched values into an event.
pub type ToEvent<'a> = Box<dyn Fn(&[f32]) -> Event + 'a>;

/// Device values read back every few steps together with the running loss and turned
/// into an event (TWA's coordinates): dispatches that fill `source`, and the mapping.
pub struct Watch<'a> {
    pub dispatches: Vec<Dispatch>,
    pub source: wgpu::Buffer,
    pub words: usize,
    pub to_event: ToEvent<'a>,
}

/// A split of the data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Train,
    Test,
}

/// Steps between asynchronous loss readbacks.
const READBACK_EVERY: usize = 25;
/// Submissions allowed in flight before the host waits for the oldest.
const MAX_IN_FLIGHT: usize = 8;

/// A model, its data on the device, and the loop that trains it.
pub struct Trainer<'a> {
    pub gpu: &'a Gpu,
    pub net: Network,
    pub config: TrainConfig,
    train: DeviceSplit,
    test: DeviceSplit,
    /// Gather dispatches of the train split for the full and the last batch size.
    train_gathers: Vec<(usize, Dispatch)>,
    test_gathers: Vec<(usize, Dispatch)>,
    rng: Rng,
    /// The generator as it was before the current (or next) epoch's shuffle.
    epoch_rng: Rng,
    /// The next step to run: (epoch, step within it), both 0-based.
    position: (usize, usize),
    /// Steps of the next epoch already done (set when a saved state is restored).
    resume_step: usize,
    global_step: u64,
    /// What each step does with the gradient: SGD (after TWA's projection, if any)
    /// or explicit-coefficient TWA's own update.
    pub gradient_step: GradientStep,
    /// Trajectory sampling, if asked for.
    pub sampler: Option<(SamplePlan, SampleStore)>,
    /// Values to report while training, if any.
    pub watch: Option<Watch<'a>>,
    /// Set from another thread to stop training at the next step ([`Error::Stopped`]).
    pub stop: Arc<AtomicBool>,
    /// The processes training this model together ([`Trainer::distribute`]).
    collective: &'a dyn Collective,
    /// Staging for the gradient's sum across ranks (with more than one).
    exchange: Option<DeviceSum>,
    /// Whether the kernels have run once ([`Trainer::warm_up`]).
    warmed_up: bool,
    /// Staging for the running totals, and for the watched values.
    totals_readback: AsyncReadback,
    watch_readback: Option<AsyncReadback>,
}

/// (start, size) of the batches of `batch` samples that cover `range`.
fn batches(range: std::ops::Range<usize>, batch: usize) -> std::vec::IntoIter<(usize, usize)> {
    let end = range.end;
    range
        .step_by(batch.max(1))
        .map(|start| (start, batch.min(end - start)))
        .collect::<Vec<_>>()
        .into_iter()
}

/// Batch sizes a split of `count` samples is cut into: the full size and, if the split
/// does not divide evenly, the last partial one.
fn batch_sizes(count: usize, batch: usize) -> Vec<usize> {
    let mut sizes = vec![batch.min(count)];
    if !count.is_multiple_of(batch) && count > batch {
        sizes.push(count % batch);
    }
    sizes
}

impl<'a> Trainer<'a> {
    /// Build the model for `data` on `gpu` and upload the data.
    pub fn new(
        gpu: &'a Gpu,
        data: &Dataset,
        model: &ModelConfig,
        config: TrainConfig,
    ) -> Result<Trainer<'a>> {
        config.validate()?;
        let model = Model::build(model, data.train.shape, data.classes)?;
        let init = model.init_params(config.seed);
        // Evaluation's results do not depend on its batch (but for rounding): lowered to what the
        // adapter's storage binding holds (training's batch is the user's).
        let mut config = config;
        config.eval_batch = crate::nn::network::largest_batch(gpu, &model, config.eval_batch);
        let max_batch = config.batch.max(config.eval_batch);
        let sgd = UpdateRule {
            optimizer: config.optimizer,
            hyper: SgdConfig {
                momentum: config.momentum as f32,
                weight_decay: config.weight_decay as f32,
            },
            clip_norm: config.clip_grad_norm as f32,
        };
        let mut net = Network::new(gpu, model, max_batch, &init, sgd)?
            .with_label_smoothing(config.label_smoothing as f32);
        let train = DeviceSplit::upload(gpu, &data.train, data)?;
        let test = DeviceSplit::upload(gpu, &data.test, data)?;
        let mut gathers = |split: &DeviceSplit, batch: usize, augment: Option<u64>| {
            batch_sizes(split.count, batch)
                .into_iter()
                .map(|b| {
                    net.prepare(gpu, b);
                    (b, gather_into(gpu, split, &net, b, augment))
                })
                .collect::<Vec<_>>()
        };
        let augment = config.augment.then_some(config.seed);
        let train_gathers = gathers(&train, config.batch, augment);
        let test_gathers = gathers(&test, config.eval_batch, None);
        Ok(Trainer {
            gpu,
            net,
            rng: Rng::new(config.seed),
            epoch_rng: Rng::new(config.seed),
            position: (0, 0),
            resume_step: 0,
            config,
            train,
            test,
            train_gathers,
            test_gathers,
            global_step: 0,
            gradient_step: GradientStep::Sgd(Vec::new()),
            sampler: None,
            watch: None,
            stop: Arc::new(AtomicBool::new(false)),
            collective: &Single,
            exchange: None,
            warmed_up: false,
            totals_readback: AsyncReadback::new(gpu, 4),
            watch_readback: None,
        })
    }

    /// Train data-parallel with the other ranks of `collective`: each global batch is
    /// cut into one contiguous shard per rank (the same global order as one process),
    /// the gradients are summed after backward and every rank applies the same update;
    /// evaluation and BatchNorm re-estimation are shared out and summed. BatchNorm
    /// uses each rank's own batch statistics while training (as PyTorch's DDP), or the
    /// global batch's with `sync_bn`.
    pub fn distribute(&mut self, collective: &'a dyn Collective) -> Result<()> {
        self.collective = collective;
        let ranks = collective.size();
        if ranks == 1 {
            self.exchange = None;
            return Ok(());
        }
        let smallest = *batch_sizes(self.train.count, self.config.batch)
            .iter()
            .min()
            .expect("one batch size at least");
        if smallest < ranks {
            return Err(Error::Config(format!(
                "a training batch of {smallest} samples cannot be shared by {ranks} ranks; use a batch (and a training split) of at least {ranks} per batch"
            )));
        }
        let (gpu, rank) = (self.gpu, collective.rank());
        let augment = self.config.augment.then_some(self.config.seed);
        for b in batch_sizes(self.train.count, self.config.batch) {
            let local = shard(b, rank, ranks).len();
            if !self.train_gathers.iter().any(|(s, _)| *s == local) {
                self.net.prepare(gpu, local);
                let gather = gather_into(gpu, &self.train, &self.net, local, augment);
                self.train_gathers.push((local, gather));
            }
        }
        let test_share = shard(self.test.count, rank, ranks).len();
        for b in batch_sizes(test_share, self.config.eval_batch) {
            if b > 0 && !self.test_gathers.iter().any(|(s, _)| *s == b) {
                self.net.prepare(gpu, b);
                let gather = gather_into(gpu, &self.test, &self.net, b, None);
                self.test_gathers.push((b, gather));
            }
        }
        if self.config.sync_bn {
            self.net.enable_sync_bn(gpu);
            let sizes: Vec<usize> = self
                .train_gathers
                .iter()
                .chain(&self.test_gathers)
                .map(|(b, _)| *b)
                .collect();
            sizes.into_iter().for_each(|b| self.net.prepare(gpu, b));
        }
        self.exchange = Some(DeviceSum::new(gpu, self.net.model.num_params()));
        Ok(())
    }

    /// Time the gradient exchange has spent so far: waiting for the device, and in
    /// the sums across ranks (zero in one process).
    pub fn exchange_time(&self) -> (std::time::Duration, std::time::Duration) {
        self.exchange
            .as_ref()
            .map_or(Default::default(), |e| (e.waited, e.summed))
    }

    /// The processes this trainer shares its work with.
    pub fn collective(&self) -> &'a dyn Collective {
        self.collective
    }

    /// Totals summed over the ranks (the first bad step: the earliest of any rank).
    fn summed(&self, totals: Totals) -> Totals {
        if self.collective.size() == 1 {
            return totals;
        }
        let mut sums = [totals.loss_sum, totals.correct, totals.count];
        self.collective.sum(&mut sums);
        let first_bad_step =
            self.collective
                .gather(&[totals.first_bad_step as f64])
                .into_iter()
                .filter(|&s| s > 0.0)
                .fold(0.0, |a: f64, s| if a == 0.0 { s } else { a.min(s) }) as u64;
        Totals {
            loss_sum: sums[0],
            correct: sums[1],
            count: sums[2],
            first_bad_step,
        }
    }

    /// BatchNorm statistics ← their mean over the ranks, weighted by `weight` (this
    /// rank's share); a no-op in one process or a model without BatchNorm.
    async fn merge_bn_state(&self, weight: f64) -> Result<()> {
        if self.collective.size() == 1 || self.net.model.state.len == 0 {
            return Ok(());
        }
        let state = self.net.read_state(self.gpu).await?;
        let mut merged: Vec<f64> = state.iter().map(|&v| v as f64 * weight).collect();
        self.collective.sum(&mut merged);
        let words: Vec<f32> = merged.into_iter().map(|v| v as f32).collect();
        self.net.set_state(self.gpu, &words);
        Ok(())
    }

    fn gather_for(gathers: &[(usize, Dispatch)], batch: usize) -> &Dispatch {
        &gathers
            .iter()
            .find(|(b, _)| *b == batch)
            .expect("gather prepared for every batch size")
            .1
    }

    fn diverged(&self, totals: &Totals, epoch: usize) -> Result<()> {
        if totals.first_bad_step > 0 || !totals.loss_sum.is_finite() {
            let step = if totals.first_bad_step > 0 {
                totals.first_bad_step
            } else {
                self.global_step
            };
            return Err(Error::Diverged {
                step,
                epoch,
                value: "NaN or infinite".into(),
            });
        }
        Ok(())
    }

    /// Train one epoch (`epoch` is 0-based); returns the epoch's training totals.
    pub async fn train_epoch(
        &mut self,
        epoch: usize,
        observer: &mut dyn FnMut(Event),
    ) -> Result<(Totals, f64)> {
        let gpu = self.gpu;
        let n = self.train.count;
        let batch = self.config.batch.min(n);
        let steps = self.steps_per_epoch();
        let mut order: Vec<u32> = (0..n as u32).collect();
        self.epoch_rng = self.rng.clone();
        self.rng.shuffle(&mut order);
        self.train.set_order(gpu, &order);
        let first_step = std::mem::take(&mut self.resume_step).min(steps);
        if first_step == 0 {
            self.net.reset_totals(gpu, true);
        }
        observer(Event::EpochStart {
            epoch: epoch + 1,
            steps,
        });
        // Copies from an earlier epoch (or an earlier watch) still on their way mean nothing now.
        self.totals_readback.discard();
        self.watch_readback = match (self.watch_readback.take(), &self.watch) {
            (Some(r), Some(w)) if r.words() == w.words => {
                r.discard();
                Some(r)
            }
            (_, Some(w)) => Some(AsyncReadback::new(gpu, w.words)),
            (_, None) => None,
        };
        let mut in_flight = VecDeque::new();
        let mut lr = 0.0;
        for step in first_step..steps {
            self.position = (epoch, step);
            if self.stop.load(Ordering::Relaxed) {
                return Err(Error::Stopped);
            }
            let size = batch.min(n - step * batch);
            let part = shard(size, self.collective.rank(), self.collective.size());
            lr = self.config.lr_at(epoch, step, steps);
            let state = StepState {
                start: (step * batch + part.start) as u32,
                step: self.global_step as u32,
                lr: lr as f32,
                seed: self.config.seed as u32,
            };
            self.net.set_step(gpu, state);
            let mut encoder = gpu.device.create_command_encoder(&Default::default());
            if let Some((_, store)) = self.sampler.as_mut().filter(|_| self.global_step == 0) {
                store.record(
                    &mut encoder,
                    &self.net.params,
                    SampleInfo {
                        epoch: 0.0,
                        step: 0,
                    },
                );
            }
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                if self.global_step == 0 {
                    self.net.record_reset_velocity(&mut pass);
                }
                Self::gather_for(&self.train_gathers, part.len()).record(&mut pass);
                if self.exchange.is_none() {
                    self.net
                        .record_train_step(&mut pass, size, &self.gradient_step);
                }
            }
            if self.exchange.is_some() {
                encoder = self.step_across_ranks(encoder, part.len(), size).await?;
            }
            if let Some((plan, store)) = self.sampler.as_mut() {
                if plan.takes(epoch, step, steps) {
                    let info = SampleInfo {
                        epoch: epoch as f64 + (step + 1) as f64 / steps as f64,
                        step: self.global_step + 1,
                    };
                    store.record(&mut encoder, &self.net.params, info);
                }
            }
            if step % READBACK_EVERY == READBACK_EVERY - 1 {
                self.totals_readback
                    .copy_if_idle(&mut encoder, self.net.totals_buffer(true));
                if let (Some(w), Some(r)) = (&self.watch, &self.watch_readback) {
                    {
                        let mut pass = encoder.begin_compute_pass(&Default::default());
                        w.dispatches.iter().for_each(|d| d.record(&mut pass));
                    }
                    r.copy_if_idle(&mut encoder, &w.source);
                }
            }
            in_flight.push_back(gpu.queue.submit([encoder.finish()]));
            self.totals_readback.after_submit();
            if let Some(r) = &self.watch_readback {
                r.after_submit();
            }
            self.global_step += 1;
            if in_flight.len() > MAX_IN_FLIGHT {
                let oldest = in_flight.pop_front().expect("non-empty");
                gpu.device
                    .poll(wgpu::PollType::Wait {
                        submission_index: Some(oldest),
                        timeout: None,
                    })
                    .map_err(|e| Error::Gpu(e.to_string()))?;
            }
            if let Some(words) = self.totals_readback.try_take(gpu) {
                let totals = Network::decode_totals(&words);
                self.diverged(&totals, epoch + 1)?;
                observer(Event::Running {
                    loss: totals.mean_loss(),
                    acc: totals.accuracy(),
                });
            }
            if let (Some(w), Some(words)) = (
                &self.watch,
                self.watch_readback.as_ref().and_then(|r| r.try_take(gpu)),
            ) {
                observer((w.to_event)(&words));
            }
            observer(Event::Step { step: step + 1 });
        }
        let totals = self.summed(self.net.read_totals(gpu, true).await?);
        self.diverged(&totals, epoch + 1)?;
        self.position = (epoch + 1, 0);
        self.epoch_rng = self.rng.clone();
        Ok((totals, lr))
    }

    /// A data-parallel step after `encoder`'s gather of this rank's `local` samples of
    /// the global batch's `size`: forward and backward (waiting for the other ranks at
    /// each BatchNorm with `sync_bn`), the gradients summed over the ranks, then
    /// `gradient_step` (a sharded transform's partial results summed before SGD, a
    /// sharded rebuild's parameters after it). Returns the encoder the rest of the step goes into.
    async fn step_across_ranks(
        &mut self,
        mut encoder: wgpu::CommandEncoder,
        local: usize,
        size: usize,
    ) -> Result<wgpu::CommandEncoder> {
        let (gpu, collective, d) = (self.gpu, self.collective, self.net.model.num_params());
        let share = local as f64 / size as f64;
        let segments = self.net.synced_train(local);
        if segments.is_empty() {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.net.record_gradient(&mut pass, local);
        }
        for segment in segments {
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                segment.dispatches.iter().for_each(|d| d.record(&mut pass));
            }
            if let Some(sync) = &segment.sync {
                gpu.queue.submit([encoder.finish()]);
                sync.apply(gpu, collective, self.net.partials(), &self.net.grads, share)
                    .await?;
                encoder = gpu.device.create_command_encoder(&Default::default());
            }
        }
        let exchange = self.exchange.as_mut().expect("distributed");
        exchange
            .sum_in_place(gpu, collective, encoder, &self.net.grads, d, share as f32)
            .await?;
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        if let GradientStep::SgdSummed(transform) = &self.gradient_step {
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                transform.iter().for_each(|t| t.record(&mut pass));
            }
            exchange
                .sum_in_place(gpu, collective, encoder, &self.net.grads, d, 1.0)
                .await?;
            encoder = gpu.device.create_command_encoder(&Default::default());
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.net.record_optimiser_step(&mut pass);
        } else if let GradientStep::ReplaceSummed(dispatches) = &self.gradient_step {
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                dispatches.iter().for_each(|t| t.record(&mut pass));
            }
            exchange
                .sum_in_place(gpu, collective, encoder, &self.net.params, d, 1.0)
                .await?;
            encoder = gpu.device.create_command_encoder(&Default::default());
        } else {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.net.record_update(&mut pass, &self.gradient_step);
        }
        Ok(encoder)
    }

    /// Submit batch number `t` of a pass ((start in the split's current order, size)):
    /// the batch's gather, then what `record` adds. The step state carries the batch's
    /// start and its index.
    fn submit_batch(
        &self,
        gathers: &[(usize, Dispatch)],
        t: usize,
        (start, size): (usize, usize),
        record: impl Fn(&Network, &mut wgpu::ComputePass, usize),
    ) {
        let gpu = self.gpu;
        let state = StepState {
            start: start as u32,
            step: t as u32,
            lr: 0.0,
            seed: self.config.seed as u32,
        };
        self.net.set_step(gpu, state);
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            Self::gather_for(gathers, size).record(&mut pass);
            record(&self.net, &mut pass, size);
        }
        gpu.queue.submit([encoder.finish()]);
    }

    /// Gather a fixed batch into the network's input: the first samples of `part` in
    /// the order shuffled by `seed`, as many as the part's batch size (the training
    /// batch or the evaluation batch). Returns the batch size.
    pub fn load_fixed_batch(&mut self, part: Part, seed: u64) -> usize {
        let (split, gathers, batch) = match part {
            Part::Train => (&self.train, &self.train_gathers, self.config.batch),
            Part::Test => (&self.test, &self.test_gathers, self.config.eval_batch),
        };
        let size = batch.min(split.count);
        let mut order: Vec<u32> = (0..split.count as u32).collect();
        Rng::new(seed).shuffle(&mut order);
        split.set_order(self.gpu, &order);
        self.net.set_step(self.gpu, StepState::default());
        let mut encoder = self.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            Self::gather_for(gathers, size).record(&mut pass);
        }
        self.gpu.queue.submit([encoder.finish()]);
        size
    }

    /// Evaluate the current parameters (BatchNorm in eval mode) on the test split;
    /// with several ranks each takes a contiguous share, the running statistics
    /// first averaged over the ranks.
    pub async fn evaluate(&mut self) -> Result<Totals> {
        let ranks = self.collective.size();
        self.merge_bn_state(1.0 / ranks as f64).await?;
        let part = shard(self.test.count, self.collective.rank(), ranks);
        self.net.reset_totals(self.gpu, false);
        for (t, batch) in batches(part, self.config.eval_batch).enumerate() {
            self.submit_batch(&self.test_gathers, t, batch, |net, pass, size| {
                net.record_eval(pass, size)
            });
        }
        let local = self.net.read_totals(self.gpu, false).await?;
        Ok(self.summed(local))
    }

    /// The predicted class (arg max of the logits, BatchNorm in eval mode) of every
    /// test sample, in the split's file order; one readback per batch.
    pub async fn predict(&mut self) -> Result<Vec<usize>> {
        let n = self.test.count;
        let classes = self.net.model.classes;
        self.test
            .set_order(self.gpu, &(0..n as u32).collect::<Vec<_>>());
        let logits = &self.net.acts[self.net.model.layers.len()];
        let mut predicted = Vec::with_capacity(n);
        for (t, (start, size)) in batches(0..n, self.config.eval_batch).enumerate() {
            self.submit_batch(&self.test_gathers, t, (start, size), |net, pass, size| {
                net.record_eval(pass, size)
            });
            let values = self.gpu.read::<f32>(logits, 0, size * classes).await?;
            predicted.extend(values.chunks_exact(classes).map(|row| {
                (0..classes)
                    .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
                    .expect("at least one class")
            }));
        }
        Ok(predicted)
    }

    /// Re-estimate the BatchNorm running statistics at the current parameters: reset,
    /// then one pass over the training split in train mode, each batch's statistics
    /// weighted equally (as `torch.optim.swa_utils.update_bn`). With several ranks,
    /// rank r takes batches r, r + R, … and the averages are merged by batch count:
    /// the same batches and weights as one process.
    pub async fn recalibrate_bn(&mut self) -> Result<()> {
        let n = self.train.count;
        self.train
            .set_order(self.gpu, &(0..n as u32).collect::<Vec<_>>());
        self.net.set_state(self.gpu, &self.net.model.init_state());
        let (rank, ranks) = (self.collective.rank(), self.collective.size());
        let all = batches(0..n, self.config.batch);
        let total = all.len();
        let mine: Vec<_> = all.into_iter().skip(rank).step_by(ranks).collect();
        let weight = mine.len() as f64 / total as f64;
        for (t, batch) in mine.into_iter().enumerate() {
            self.submit_batch(&self.train_gathers, t, batch, |net, pass, size| {
                net.record_recalibrate(pass, size)
            });
        }
        self.gpu.wait().await?;
        self.merge_bn_state(weight).await
    }

    /// Run the kernels of a training step (gather, forward, loss, backward, update)
    /// and of an evaluation once, leaving parameters, momentum, BatchNorm statistics
    /// and totals as they were: a driver that compiles a kernel on its first launch
    /// (llvmpipe: ≈ 8 s on a cold shader cache) does so here, not in epoch 1's time.
    pub async fn warm_up(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.warmed_up, true) {
            return Ok(());
        }
        let gpu = self.gpu;
        let mut kept: Vec<(&wgpu::Buffer, Vec<f32>)> = Vec::new();
        let stores = [
            &self.net.params,
            &self.net.state,
            self.net.totals_buffer(true),
            self.net.totals_buffer(false),
        ];
        for b in stores.into_iter().chain(&self.net.velocity) {
            kept.push((b, gpu.read::<f32>(b, 0, (b.size() / 4) as usize).await?));
        }
        self.net.set_step(gpu, StepState::default());
        let (train, test) = (self.train_gathers[0].0, self.test_gathers[0].0);
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            Self::gather_for(&self.train_gathers, train).record(&mut pass);
            self.net
                .record_train_step(&mut pass, train, &GradientStep::Sgd(Vec::new()));
            Self::gather_for(&self.test_gathers, test).record(&mut pass);
            self.net.record_eval(&mut pass, test);
        }
        gpu.queue.submit([encoder.finish()]);
        for (buffer, words) in kept {
            gpu.write(buffer, 0, &words);
        }
        gpu.wait().await
    }

    /// Train epochs `range` (0-based) of the schedule, evaluating after each and
    /// reporting it as [`Event::Epoch`]. Returns the last epoch's test totals (for an
    /// empty range, those of the current parameters: a run resumed at its end reports
    /// the same).
    pub async fn train_epochs(
        &mut self,
        range: std::ops::Range<usize>,
        observer: &mut dyn FnMut(Event),
    ) -> Result<Totals> {
        if range.is_empty() {
            return self.evaluate().await;
        }
        self.warm_up().await?;
        let mut last = Totals::default();
        for epoch in range {
            let started = Instant::now();
            let (train, lr) = self.train_epoch(epoch, observer).await?;
            last = self.evaluate().await?;
            let metrics = EpochMetrics {
                epoch: epoch + 1,
                lr,
                train_loss: train.mean_loss(),
                train_acc: train.accuracy(),
                test_loss: last.mean_loss(),
                test_acc: last.accuracy(),
                seconds: started.elapsed().as_secs_f64(),
            };
            observer(Event::Epoch(metrics));
        }
        Ok(last)
    }

    /// Train for the configured epochs, evaluating after each.
    pub async fn train_all(
        &mut self,
        observer: &mut dyn FnMut(Event),
    ) -> Result<Vec<EpochMetrics>> {
        let mut history = Vec::new();
        self.train_epochs(0..self.config.epochs, &mut |e| {
            if let Event::Epoch(m) = &e {
                history.push(m.clone());
            }
            observer(e)
        })
        .await?;
        Ok(history)
    }

    /// Steps in one epoch: the training split in batches, the last one partial.
    pub fn steps_per_epoch(&self) -> usize {
        let n = self.train.count;
        n.div_ceil(self.config.batch.min(n).max(1))
    }

    /// Sample the trajectory as `plan` says into a new store on the device. Refused
    /// if the plan asks for more samples an epoch than an epoch has steps, or for
    /// more memory than the machine has.
    pub fn attach_sampler(&mut self, plan: SamplePlan) -> Result<()> {
        let steps = self.steps_per_epoch();
        if plan.per_epoch > steps {
            return Err(Error::Config(format!(
                "{} samples per epoch, but an epoch has only {steps} steps (batch {}, {} training samples)",
                plan.per_epoch, self.config.batch, self.train.count
            )));
        }
        let store = SampleStore::new(self.gpu, self.net.model.num_params(), plan.count())?;
        self.sampler = Some((plan, store));
        Ok(())
    }

    /// Steps run so far (the per-step uniform's `step` of the next one).
    pub fn global_step(&self) -> u64 {
        self.global_step
    }

    /// The next step to run: (epoch, step within it), both 0-based. After an epoch,
    /// (that epoch + 1, 0); after a stop, the step that was not run.
    pub fn position(&self) -> (usize, usize) {
        self.position
    }

    /// Everything needed to continue this run bit for bit from [`Trainer::position`]
    /// (read back from the device).
    pub async fn save_state(&self) -> Result<TrainerState> {
        let gpu = self.gpu;
        let (samples, sample_infos) = match &self.sampler {
            Some((_, store)) => (store.read(gpu).await?, store.infos.clone()),
            None => (Vec::new(), Vec::new()),
        };
        let totals = gpu.read::<f32>(self.net.totals_buffer(true), 0, 4).await?;
        Ok(TrainerState {
            epoch: self.position.0,
            step: self.position.1,
            global_step: self.global_step,
            rng: self.epoch_rng.state(),
            params: self.net.read_params(gpu).await?,
            velocity: self.net.read_optimiser_state(gpu).await?,
            state: self.net.read_state(gpu).await?,
            train_totals: totals.try_into().expect("4 words"),
            samples,
            sample_infos,
        })
    }

    /// Continue from a saved state: the next [`Trainer::train_epoch`] call must be for
    /// `saved.epoch`. A sampler, if saved with samples, must be attached first.
    #[track_caller]
    pub fn restore_state(&mut self, saved: &TrainerState) {
        let gpu = self.gpu;
        self.net.set_params(gpu, &saved.params);
        self.net.set_optimiser_state(gpu, &saved.velocity);
        self.net.set_state(gpu, &saved.state);
        gpu.write(self.net.totals_buffer(true), 0, &saved.train_totals);
        self.rng = Rng::from_state(saved.rng);
        self.epoch_rng = self.rng.clone();
        self.global_step = saved.global_step;
        self.position = (saved.epoch, saved.step);
        self.resume_step = saved.step;
        if let Some((_, store)) = self.sampler.as_mut() {
            store.restore(gpu, &saved.samples, &saved.sample_infos);
        }
    }
}

impl TrainerState {
    /// Check that this state fits `trainer`'s model and sampler (a clear error if the
    /// data or the model changed since it was saved).
    pub fn check_fits(&self, trainer: &Trainer) -> Result<()> {
        let (epochs, steps) = (trainer.config.epochs, trainer.steps_per_epoch());
        if self.epoch > epochs || self.step >= steps || (self.epoch == epochs && self.step > 0) {
            return Err(Error::Config(format!(
                "the checkpoint continues at epoch {}, step {} of a run of {epochs} epochs of {steps} steps",
                self.epoch + 1,
                self.step
            )));
        }
        if let Some((plan, _)) = &trainer.sampler {
            let expected = plan.taken_before(self.epoch, self.step, steps);
            let w0 = self.sample_infos.first().is_some_and(|i| i.step == 0);
            let taken = self.sample_infos.len() - usize::from(w0);
            if taken != expected {
                return Err(Error::Config(format!(
                    "the checkpoint holds {taken} samples after w_0, but the sampling plan takes {expected} before epoch {}, step {}",
                    self.epoch + 1,
                    self.step
                )));
            }
        }
        let model = &trainer.net.model;
        let capacity = trainer.sampler.as_ref().map_or(0, |(plan, _)| plan.count());
        if self.params.len() != model.num_params()
            || self.velocity.len() != trainer.net.velocity_len
            || self.state.len() != model.state.len
            || self.sample_infos.len() > capacity
        {
            return Err(Error::Config(format!(
                "the checkpoint holds a model of {} parameters, {} state values and {} samples; this run has {}, {} and room for {capacity}",
                self.params.len(),
                self.state.len(),
                self.sample_infos.len(),
                model.num_params(),
                model.state.len,
            )));
        }
        Ok(())
    }
}

/// The dispatch that gathers `batch` samples of `split` into `net`'s input.
fn gather_into(
    gpu: &Gpu,
    split: &DeviceSplit,
    net: &Network,
    batch: usize,
    augment: Option<u64>,
) -> Dispatch {
    split.gather(gpu, &net.kernels.gather, net.batch_target(), batch, augment)
}

/// A trainer's whole state at a step boundary (see [`Trainer::save_state`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainerState {
    /// The next step to run: epoch (0-based) and steps of it already done.
    pub epoch: usize,
    pub step: usize,
    pub global_step: u64,
    /// The shuffling generator before that epoch's shuffle.
    pub rng: u64,
    pub params: Vec<f32>,
    pub velocity: Vec<f32>,
    /// BatchNorm running statistics (and scratch).
    pub state: Vec<f32>,
    /// The epoch's training totals so far (loss sum, correct, count, first bad step).
    pub train_totals: [f32; 4],
    /// Samples taken so far, n × D, and where.
    pub samples: Vec<f32>,
    pub sample_infos: Vec<SampleInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_rises_linearly_then_the_schedule_runs() {
        let config = |schedule| TrainConfig {
            epochs: 10,
            lr: 0.1,
            schedule,
            warmup_epochs: 2,
            ..TrainConfig::default()
        };
        let lrs = |schedule| -> Vec<f64> {
            let c = config(schedule);
            (0..10)
                .flat_map(|e| (0..4).map(move |s| (e, s)))
                .map(|(e, s)| c.lr_at(e, s, 4))
                .collect()
        };
        // The TWA code's warm-up: base·(s + 1)/W over the first W = 8 steps.
        let step = lrs(Schedule::Step);
        for (s, lr) in step[..8].iter().enumerate() {
            assert!((lr - 0.1 * (s + 1) as f64 / 8.0).abs() < 1e-15, "{s}: {lr}");
        }
        // The step schedule's drops stay at epochs 5 and 7.5 (of all ten).
        assert_eq!(step[8], 0.1);
        assert!((step[20] - 0.01).abs() < 1e-15 && (step[19] - 0.1).abs() < 1e-15);
        assert!((step[32] - 0.001).abs() < 1e-15);
        // The cosine starts at the base after the warm-up and spans the rest.
        let cosine = lrs(Schedule::Cosine);
        assert_eq!(cosine[8], 0.1);
        let middle = cosine[8 + 16];
        assert!((middle - 0.05).abs() < 1e-12, "{middle}");
        // No warm-up: the schedule alone.
        let plain = TrainConfig {
            warmup_epochs: 0,
            ..config(Schedule::Cosine)
        };
        assert_eq!(plain.lr_at(0, 0, 4), 0.1);
        // A run cut shorter than its warm-up (a recipe's 8 epochs, `--epochs 1`) warms
        // up throughout.
        let short = TrainConfig {
            epochs: 1,
            warmup_epochs: 8,
            ..config(Schedule::Cosine)
        };
        assert!(short.validate().is_ok());
        assert!((short.lr_at(0, 3, 4) - 0.1 * 4.0 / 32.0).abs() < 1e-15);
    }
}
