//! A model instantiated on a device: the flat parameter, gradient, velocity and state
//! buffers, activation buffers sized for the largest batch, and per-batch-size plans
//! (forward, loss, backward, optimiser) recorded once and replayed every step.

use super::layers::{self, BnSync, Cols, LayerBuffers, Mode};
use super::loss;
use super::model::{Layer, LayerKind, Model};
use super::optim::{self, Optimizer, UpdateRule};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Kernels};
use std::collections::HashMap;

/// Per-step values written by the host before each submit (one 16-byte uniform).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepState {
    /// First position of this batch in the epoch's order.
    pub start: u32,
    /// Global step number (0-based), for divergence reports.
    pub step: u32,
    /// Learning rate of this step.
    pub lr: f32,
    /// The run's seed, for dropout's masks.
    pub seed: u32,
}

/// What a training step does with the gradient after backward.
pub enum GradientStep {
    /// SGD on the parameters, after these dispatches (TWA's projection of the
    /// gradient; none for plain SGD).
    Sgd(Vec<Dispatch>),
    /// SGD after these dispatches, whose results are partial sums to be summed
    /// across ranks first (the projection on a rank's share of a sharded subspace).
    SgdSummed(Vec<Dispatch>),
    /// These dispatches instead (explicit-coefficient TWA: they update the
    /// coefficients and rewrite the parameters from them).
    Replace(Vec<Dispatch>),
    /// These dispatches instead, whose parameters are partial sums to be summed
    /// across ranks (explicit-coefficient TWA on a rank's share of the directions).
    ReplaceSummed(Vec<Dispatch>),
}

/// Sums over a run of batches, as accumulated on the device.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Totals {
    pub loss_sum: f64,
    pub correct: f64,
    pub count: f64,
    /// 1-based global step of the first non-finite batch loss, 0 if none.
    pub first_bad_step: u64,
}

impl Totals {
    /// Mean loss per sample.
    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.count.max(1.0)
    }

    /// Fraction of correct predictions.
    pub fn accuracy(&self) -> f64 {
        self.correct / self.count.max(1.0)
    }

    fn from_words(w: &[f32]) -> Totals {
        Totals {
            loss_sum: w[0] as f64,
            correct: w[1] as f64,
            count: w[2] as f64,
            first_bad_step: w[3] as u64,
        }
    }
}

/// Dispatches up to a point where the ranks synchronise, and that point.
#[derive(Default)]
pub struct Segment {
    pub dispatches: Vec<Dispatch>,
    pub sync: Option<BnSync>,
}

/// Bytes a rank holds on its device, by what for.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeviceMemory {
    /// Parameters, gradients, momentum and BatchNorm state.
    pub parameters: u64,
    /// Activations and their gradients at the largest batch, and scratch.
    pub activations: u64,
    /// Sampled solutions kept for averaging.
    pub samples: u64,
    /// TWA's directions (this rank's share).
    pub subspace: u64,
}

/// The dispatches for one batch size.
struct BatchPlan {
    /// Forward (train mode), loss with gradient, backward.
    train: Vec<Dispatch>,
    /// The same cut at every BatchNorm's sync point (`--sync-bn`; empty otherwise).
    synced_train: Vec<Segment>,
    /// Forward (eval mode) and loss without gradient.
    eval: Vec<Dispatch>,
    /// Forward re-estimating BatchNorm statistics (no loss).
    recalibrate: Vec<Dispatch>,
    /// Forward with the batch's own BatchNorm statistics and loss, no gradient: the
    /// first layer, then the rest and the loss.
    probe_first: Vec<Dispatch>,
    probe_rest: Vec<Dispatch>,
}

/// A model on a device. See the module doc.
pub struct Network {
    pub model: Model,
    /// The training loss's label smoothing ([`Network::with_label_smoothing`]).
    label_smoothing: f32,
    pub kernels: Kernels,
    pub params: wgpu::Buffer,
    pub grads: wgpu::Buffer,
    /// The optimiser's state, D words each: SGD's velocity, or AdamW's two moments.
    pub velocity: Vec<wgpu::Buffer>,
    /// Words of all of `velocity`.
    pub velocity_len: usize,
    pub state: wgpu::Buffer,
    /// `acts[0]` is the input batch, `acts[i + 1]` the output of layer i; where a
    /// BatchNorm runs fused with its ReLU its own output is never written, and (but
    /// for the first layer's, which the landscape reads) holds one word
    /// ([`Network::keeps_activation`]).
    pub acts: Vec<wgpu::Buffer>,
    /// The buffers that hold activations' loss gradients during backward, shared by
    /// gradients whose lifetimes do not overlap; `grad_slot[i]`: the one of `acts[i]`'s
    /// (the input batch's is never needed).
    grad_pool: Vec<wgpu::Buffer>,
    grad_slot: Vec<Option<usize>>,
    /// Labels of the current batch (u32).
    pub labels: wgpu::Buffer,
    /// The per-step uniform ([`StepState`]).
    pub step: wgpu::Buffer,
    train_totals: wgpu::Buffer,
    eval_totals: wgpu::Buffer,
    transposed: Vec<Option<wgpu::Buffer>>,
    /// `fused[i]`: layer i is a BatchNorm that runs with the ReLU after it as one layer
    /// (except where `--sync-bn` cuts the step at the BatchNorm).
    fused: Vec<bool>,
    /// `in_place[i]`: layer i is a ReLU that overwrites its input (see
    /// [`in_place_relus`]); `acts[i + 1]` is then `acts[input]`'s buffer.
    in_place: Vec<bool>,
    unused: wgpu::Buffer,
    scratch_rw: wgpu::Buffer,
    partials: wgpu::Buffer,
    cols: wgpu::Buffer,
    dcols: wgpu::Buffer,
    /// Words of `cols` and `dcols`.
    cols_len: usize,
    /// Split-K slices of a weight gradient (on GPUs).
    split: wgpu::Buffer,
    row_stats: wgpu::Buffer,
    /// A layer's input gradient when another reader already wrote that activation's.
    dscratch: wgpu::Buffer,
    /// The optimiser step: gradient-norm clipping, if asked for, then the update.
    update: Vec<Dispatch>,
    zero_velocity: Vec<Dispatch>,
    max_batch: usize,
    /// Words a storage window starts on ([`Gpu::window_align`]).
    window_align: usize,
    plans: HashMap<usize, BatchPlan>,
    /// Whether plans also hold the training step cut at BatchNorm's sync points.
    sync_bn: bool,
}

impl Network {
    /// Where the data layer gathers a batch for this network.
    pub fn batch_target(&self) -> crate::data::BatchTarget<'_> {
        crate::data::BatchTarget {
            inputs: &self.acts[0],
            labels: &self.labels,
            step: &self.step,
        }
    }

    /// Allocate `model` on `gpu` for batches up to `max_batch`, parameters from `init`,
    /// trained by `rule` (an [`SgdConfig`] alone: plain SGD).
    pub fn new(
        gpu: &Gpu,
        model: Model,
        max_batch: usize,
        init: &[f32],
        rule: impl Into<UpdateRule>,
    ) -> Result<Network> {
        let rule = rule.into();
        assert_eq!(
            init.len(),
            model.num_params(),
            "initial parameters vs the model's D"
        );
        let mut widths = vec![model.input.len()];
        widths.extend(model.layers.iter().map(|l| l.outputs()));
        let scratch = Scratch::of(&model, max_batch, gpu.max_binding() as usize / 4);
        let optimiser_state = rule.optimizer.state_words() * model.num_params();
        check_sizes(gpu, &model, max_batch, optimiser_state, &scratch)?;
        let Scratch {
            widest,
            cols: cols_len,
            split: split_len,
            row_stats: row_stats_len,
        } = scratch;
        let bn_features = model
            .layers
            .iter()
            .filter_map(|l| match l.kind {
                LayerKind::BatchNorm { features, .. } => Some(features),
                _ => None,
            })
            .max()
            .unwrap_or(1);
        let kernels = Kernels::new(gpu);
        let d = model.num_params();
        let params = gpu.storage_init(init, "params");
        let grads = gpu.storage(d, "grads");
        let velocity: Vec<_> = (0..rule.optimizer.state_words())
            .map(|_| gpu.storage(d, "optimiser state"))
            .collect();
        let state = gpu.storage_init(&model.init_state(), "state");
        let fused = fused_relus(&model);
        let in_place = in_place_relus(&model, &fused);
        let mut acts: Vec<wgpu::Buffer> = Vec::with_capacity(widths.len());
        for (t, w) in widths.iter().enumerate() {
            let buffer = match t.checked_sub(1).filter(|&i| in_place[i]) {
                // An in-place ReLU's output is its input's buffer.
                Some(i) => acts[model.layers[i].input].clone(),
                None if kept(&fused, t) => gpu.storage(max_batch * w, "activation"),
                None => gpu.storage(1, "activation (fused, never stored)"),
            };
            acts.push(buffer);
        }
        let (grad_slot, slot_widths) = gradient_slots(&model, &fused);
        let grad_pool = slot_widths
            .iter()
            .map(|w| gpu.storage(max_batch * w, "activation grad"))
            .collect();
        let transposed = model
            .layers
            .iter()
            .map(|l| layers::transposed_len(l).map(|len| gpu.storage(len, "transposed weight")))
            .collect();
        let step = gpu.uniform(&StepState::default(), "step");
        let unused = gpu.storage(1, "unused");
        let scratch_rw = gpu.storage(1, "unused rw");
        let mut update = Vec::new();
        if rule.clip_norm > 0.0 {
            let scratch = optim::ClipScratch::new(gpu, d);
            update.extend(optim::clip_norm(
                gpu,
                &kernels,
                d,
                rule.clip_norm,
                &grads,
                &scratch,
                &step,
            ));
        }
        update.extend(match rule.optimizer {
            Optimizer::Sgd => optim::sgd_step(
                gpu,
                &kernels,
                d,
                rule.hyper,
                &grads,
                &params,
                &velocity[0],
                &step,
            ),
            Optimizer::Adamw => {
                let moments = [&velocity[0], &velocity[1]];
                optim::adamw_step(
                    gpu, &kernels, d, rule.hyper, 0, &grads, &params, moments, &step,
                )
            }
        });
        let zero_velocity = velocity
            .iter()
            .flat_map(|v| optim::zero(gpu, &kernels, d, v, &unused, &scratch_rw, &step))
            .collect();
        Ok(Network {
            label_smoothing: 0.0,
            labels: gpu.storage(max_batch, "labels"),
            train_totals: gpu.storage(4, "train totals"),
            eval_totals: gpu.storage(4, "eval totals"),
            model,
            kernels,
            params,
            grads,
            velocity,
            velocity_len: optimiser_state,
            state,
            acts,
            grad_pool,
            grad_slot,
            step,
            transposed,
            fused,
            in_place,
            unused,
            scratch_rw,
            partials: gpu.storage(
                2 * layers::BN_MAX_CHUNKS * bn_features,
                "batchnorm partials",
            ),
            cols_len,
            cols: gpu.storage(cols_len, "im2col"),
            dcols: gpu.storage(cols_len, "im2col grad"),
            split: gpu.storage(split_len.max(1), "split-K slices"),
            row_stats: gpu.storage(row_stats_len.max(1), "layernorm row statistics"),
            dscratch: gpu.storage(max_batch * widest, "activation grad scratch"),
            update,
            zero_velocity,
            max_batch,
            window_align: gpu.window_align(),
            plans: HashMap::new(),
            sync_bn: false,
        })
    }

    /// The buffers `layer` binds, the parameter and gradient stores narrowed to its
    /// parameters (stores larger than one binding are bound a layer at a time).
    fn buffers(&self, layer: &Layer) -> LayerBuffers<'_> {
        LayerBuffers {
            params: (&self.params).into(),
            grads: (&self.grads).into(),
            base: 0,
            state: &self.state,
            step: &self.step,
            unused: &self.unused,
            partials: &self.partials,
            cols: &self.cols,
            dcols: &self.dcols,
            cols_len: self.cols_len,
            split: &self.split,
            row_stats: &self.row_stats,
        }
        .window(layer, self.window_align)
    }

    fn forward_dispatches(&self, gpu: &Gpu, batch: usize, mode: Mode) -> Vec<Dispatch> {
        self.forward_layers(gpu, batch, mode, 0..self.model.layers.len())
    }

    /// Forward dispatches of the layers in `range`, a BatchNorm and its ReLU as one
    /// where both are in it.
    fn forward_layers(
        &self,
        gpu: &Gpu,
        batch: usize,
        mode: Mode,
        range: std::ops::Range<usize>,
    ) -> Vec<Dispatch> {
        let mut out = Vec::new();
        let mut i = range.start;
        while i < range.end {
            if self.fused[i] && i + 1 < range.end {
                let layer = &self.model.layers[i];
                let (x, z) = (&self.acts[layer.input], &self.acts[i + 2]);
                let bufs = self.buffers(layer);
                let k = &self.kernels;
                out.extend(layers::batchnorm_forward(
                    gpu, k, layer, batch, mode, x, z, true, &bufs,
                ));
                i += 2;
            } else {
                out.extend(self.forward_layer(gpu, i, batch, mode));
                i += 1;
            }
        }
        out
    }

    fn forward_layer(&self, gpu: &Gpu, i: usize, batch: usize, mode: Mode) -> Vec<Dispatch> {
        let layer = &self.model.layers[i];
        if self.in_place[i] {
            let (k, len) = (&self.kernels, batch * layer.outputs());
            let io = [&self.unused, &self.unused, &self.acts[i + 1]];
            return vec![layers::elementwise(gpu, &k.relu_inplace, len, io)];
        }
        let other = match layer.kind {
            LayerKind::Add { other, .. } => Some(&self.acts[other]),
            _ => None,
        };
        layers::forward(
            gpu,
            &self.kernels,
            layer,
            batch,
            mode,
            &self.acts[layer.input],
            other,
            &self.acts[i + 1],
            self.transposed[i].as_ref(),
            &self.buffers(layer),
        )
    }

    fn loss_dispatch(&self, gpu: &Gpu, batch: usize, train: bool) -> Dispatch {
        let last = self.model.layers.len();
        let (grad, totals) = if train {
            (Some(self.dact(last)), &self.train_totals)
        } else {
            (None, &self.eval_totals)
        };
        let classes = self.model.classes;
        loss::cross_entropy(
            gpu,
            &self.kernels,
            batch,
            classes,
            &self.acts[last],
            &self.labels,
            grad,
            self.label_smoothing,
            &self.scratch_rw,
            totals,
            &self.step,
        )
    }

    /// Forward (train mode), loss with gradient and backward on `batch`, cut after
    /// each BatchNorm's sync point when `sync_bn` (one segment otherwise).
    fn train_segments(&self, gpu: &Gpu, batch: usize, sync_bn: bool) -> Vec<Segment> {
        let mut segments = vec![Segment::default()];
        let cut = |segments: &mut Vec<Segment>, (before, sync, after)| {
            let last = segments.last_mut().expect("a segment");
            last.dispatches.extend(before);
            last.sync = Some(sync);
            segments.push(Segment {
                dispatches: after,
                sync: None,
            });
        };
        let synced = |layer: &Layer| sync_bn && matches!(layer.kind, LayerKind::BatchNorm { .. });
        let k = &self.kernels;
        let layer_count = self.model.layers.len();
        if sync_bn {
            for (i, layer) in self.model.layers.iter().enumerate() {
                if synced(layer) {
                    let (x, y) = (&self.acts[layer.input], &self.acts[i + 1]);
                    let parts = layers::batchnorm_synced(
                        gpu,
                        k,
                        layer,
                        batch,
                        x,
                        y,
                        x,
                        None,
                        &self.buffers(layer),
                    );
                    cut(&mut segments, parts);
                } else {
                    let d = self.forward_layer(gpu, i, batch, Mode::Train);
                    segments.last_mut().expect("a segment").dispatches.extend(d);
                }
            }
        } else {
            segments[0].dispatches = self.forward_layers(gpu, batch, Mode::Train, 0..layer_count);
        }
        // Unless the step is cut at BatchNorms, fused pairs run as one layer.
        let fused = |i: usize| !sync_bn && self.fused[i];
        let push = |segments: &mut Vec<Segment>, d: Dispatch| {
            segments.last_mut().expect("a segment").dispatches.push(d)
        };
        push(&mut segments, self.loss_dispatch(gpu, batch, true));
        // An activation read by several layers gets its gradient from the last reader
        // first (backward runs in reverse), then the others add theirs.
        let mut last_reader = vec![usize::MAX; self.acts.len()];
        for (i, layer) in self.model.layers.iter().enumerate() {
            last_reader[layer.input] = i;
            if let LayerKind::Add { other, .. } = layer.kind {
                last_reader[other] = i;
            }
        }
        // The last convolution's im2col matrix is still in `cols` when its backward runs.
        let last_conv =
            (self.model.layers.iter()).rposition(|l| matches!(l.kind, LayerKind::Conv { .. }));
        for (i, layer) in self.model.layers.iter().enumerate().rev() {
            if i > 0 && fused(i - 1) {
                // The ReLU's backward is its BatchNorm's.
                continue;
            }
            let t = layer.input;
            let dy = self.dact(i + 1);
            // The input batch's gradient is never needed: a layer without parameters
            // reading it has nothing to do, a normalisation's kernels write it to scratch.
            let norm = matches!(
                layer.kind,
                LayerKind::BatchNorm { .. } | LayerKind::LayerNorm { .. }
            );
            if t == 0 && !layer.kind.has_params() {
                continue;
            }
            let direct = last_reader[t] == i;
            let dx = match t {
                0 if norm => Some(&self.dscratch),
                0 => None,
                _ if direct => Some(self.dact(t)),
                _ => Some(&self.dscratch),
            };
            let (x, y) = (&self.acts[t], &self.acts[i + 1]);
            let bufs = self.buffers(layer);
            if synced(layer) && dx.is_some() {
                let parts = layers::batchnorm_synced(gpu, k, layer, batch, x, y, dy, dx, &bufs);
                cut(&mut segments, parts);
            } else if fused(i) {
                let (z, dz) = (&self.acts[i + 2], self.dact(i + 2));
                let dx = dx.expect("a BatchNorm fused with its ReLU is never the first layer");
                let d = layers::batchnorm_backward(gpu, k, layer, batch, x, dz, Some(z), dx, &bufs);
                segments.last_mut().expect("a segment").dispatches.extend(d);
            } else if Some(i) == last_conv {
                let d = layers::conv_backward(gpu, k, layer, batch, x, dy, dx, &bufs, Cols::Kept);
                segments.last_mut().expect("a segment").dispatches.extend(d);
            } else {
                let d = layers::backward(gpu, k, layer, batch, x, y, dy, dx, &bufs);
                segments.last_mut().expect("a segment").dispatches.extend(d);
            }
            let len = batch * layer.kind.input_len();
            if t > 0 && !direct {
                push(
                    &mut segments,
                    self.add_gradient(gpu, len, &self.dscratch, t, false),
                );
            }
            match layer.kind {
                // The input batch's gradient is never needed.
                LayerKind::Add { other, .. } if other > 0 => {
                    let first = last_reader[other] == i;
                    push(&mut segments, self.add_gradient(gpu, len, dy, other, first));
                }
                _ => {}
            }
        }
        segments
    }

    fn build_plan(&self, gpu: &Gpu, batch: usize) -> BatchPlan {
        let train = self
            .train_segments(gpu, batch, false)
            .into_iter()
            .flat_map(|s| s.dispatches)
            .collect();
        let synced_train = if self.sync_bn {
            self.train_segments(gpu, batch, true)
        } else {
            Vec::new()
        };
        let mut eval = self.forward_dispatches(gpu, batch, Mode::Eval);
        eval.push(self.loss_dispatch(gpu, batch, false));
        let recalibrate = self.forward_dispatches(gpu, batch, Mode::Recalibrate);
        let layers = self.model.layers.len();
        let probe_first = self.forward_layers(gpu, batch, Mode::Probe, 0..1);
        let mut probe_rest = self.forward_layers(gpu, batch, Mode::Probe, 1..layers);
        probe_rest.push(self.loss_dispatch(gpu, batch, false));
        BatchPlan {
            train,
            synced_train,
            eval,
            recalibrate,
            probe_first,
            probe_rest,
        }
    }

    /// The buffer holding the loss gradient of activation `t` during backward.
    fn dact(&self, t: usize) -> &wgpu::Buffer {
        let slot = self.grad_slot[t].expect("the input batch's gradient is never needed");
        &self.grad_pool[slot]
    }

    /// Copy (`first`) or add `len` values of `grad` into the gradient of activation `t`.
    fn add_gradient(
        &self,
        gpu: &Gpu,
        len: usize,
        grad: &wgpu::Buffer,
        t: usize,
        first: bool,
    ) -> Dispatch {
        let kernel = if first {
            &self.kernels.copy
        } else {
            &self.kernels.accumulate
        };
        layers::elementwise(gpu, kernel, len, [grad, &self.unused, self.dact(t)])
    }

    /// Train against targets smoothed by `eps` (PyTorch's `label_smoothing`); set
    /// before any batch is prepared.
    #[track_caller]
    pub fn with_label_smoothing(mut self, eps: f32) -> Network {
        assert!(self.plans.is_empty(), "label smoothing set after planning");
        self.label_smoothing = eps;
        self
    }

    /// Build (once) the plan for `batch`.
    #[track_caller]
    pub fn prepare(&mut self, gpu: &Gpu, batch: usize) {
        assert!(
            batch >= 1 && batch <= self.max_batch,
            "batch {batch} outside 1..={}",
            self.max_batch
        );
        if !self.plans.contains_key(&batch) {
            let plan = self.build_plan(gpu, batch);
            self.plans.insert(batch, plan);
        }
    }

    fn plan(&self, batch: usize) -> &BatchPlan {
        self.plans
            .get(&batch)
            .unwrap_or_else(|| panic!("no plan for batch {batch}: call prepare first"))
    }

    /// Record one training step on the batch in `acts[0]`/`labels` into `pass`:
    /// forward, loss, backward, then what `update` does with the gradient.
    pub fn record_train_step(
        &self,
        pass: &mut wgpu::ComputePass,
        batch: usize,
        update: &GradientStep,
    ) {
        self.record_gradient(pass, batch);
        self.record_update(pass, update);
    }

    /// What the network's buffers hold on the device (samples and subspace: 0).
    pub fn memory(&self) -> DeviceMemory {
        let size = |b: &wgpu::Buffer| b.size();
        let parameters = [&self.params, &self.grads, &self.state]
            .into_iter()
            .chain(&self.velocity)
            .map(size)
            .sum();
        // An in-place ReLU's output is its input's buffer: counted once.
        let own = (self.acts.iter().enumerate())
            .filter(|&(t, _)| t == 0 || !self.in_place[t - 1])
            .map(|(_, b)| b);
        let activations = own
            .chain(&self.grad_pool)
            .chain(self.transposed.iter().flatten())
            .chain([
                &self.cols,
                &self.dcols,
                &self.split,
                &self.row_stats,
                &self.dscratch,
                &self.partials,
                &self.labels,
            ])
            .map(size)
            .sum();
        DeviceMemory {
            parameters,
            activations,
            ..DeviceMemory::default()
        }
    }

    /// Build (from now on) the training step cut at every BatchNorm's sync point for
    /// the batch sizes prepared later ([`Network::synced_train`]).
    pub fn enable_sync_bn(&mut self, gpu: &Gpu) {
        self.sync_bn = true;
        self.plans.clear();
        // Cut at its sync point, a BatchNorm writes its own output for its ReLU.
        for t in 0..self.acts.len() {
            if !kept(&self.fused, t) {
                let words = self.max_batch * self.model.act_shape(t).len();
                self.acts[t] = gpu.storage(words, "activation");
            }
        }
    }

    /// Whether `acts[t]` holds activation t after a training step or an evaluation
    /// (not so for a BatchNorm's output where its ReLU runs fused with it, nor for the
    /// input of a ReLU that overwrites it).
    pub fn keeps_activation(&self, t: usize) -> bool {
        let overwritten = (self.model.layers.iter())
            .zip(&self.in_place)
            .any(|(l, &in_place)| in_place && l.input == t);
        !overwritten && (self.sync_bn || kept(&self.fused, t))
    }

    /// The training step on `batch` (forward, loss, backward) cut at BatchNorm's sync
    /// points; empty unless [`Network::enable_sync_bn`] came before the prepare.
    pub fn synced_train(&self, batch: usize) -> &[Segment] {
        &self.plan(batch).synced_train
    }

    /// BatchNorm's per-chunk partial sums (what a [`BnSync`] merges).
    pub fn partials(&self) -> &wgpu::Buffer {
        &self.partials
    }

    /// Forward, loss and backward: the batch's mean gradient in `grads`.
    pub fn record_gradient(&self, pass: &mut wgpu::ComputePass, batch: usize) {
        for d in &self.plan(batch).train {
            d.record(pass);
        }
    }

    /// What `update` does with the gradient in `grads`, in one process (a sharded
    /// transform's partial results are then the whole).
    pub fn record_update(&self, pass: &mut wgpu::ComputePass, update: &GradientStep) {
        match update {
            GradientStep::Sgd(transform) | GradientStep::SgdSummed(transform) => {
                for d in transform {
                    d.record(pass);
                }
                self.record_optimiser_step(pass);
            }
            GradientStep::Replace(dispatches) | GradientStep::ReplaceSummed(dispatches) => {
                for d in dispatches {
                    d.record(pass);
                }
            }
        }
    }

    /// The optimiser's update of the parameters from `grads` (clipped first if the
    /// rule says so).
    pub fn record_optimiser_step(&self, pass: &mut wgpu::ComputePass) {
        self.update.iter().for_each(|d| d.record(pass));
    }

    /// The dispatches of one training step on `batch` (forward, loss, backward), for
    /// profiling.
    pub fn train_dispatches(&self, batch: usize) -> &[Dispatch] {
        &self.plan(batch).train
    }

    /// Record an evaluation (eval-mode forward and loss, no gradient) into `pass`.
    pub fn record_eval(&self, pass: &mut wgpu::ComputePass, batch: usize) {
        for d in &self.plan(batch).eval {
            d.record(pass);
        }
    }

    /// Record a forward pass that folds this batch's statistics into the BatchNorm
    /// running averages (the batch index comes from the per-step state).
    pub fn record_recalibrate(&self, pass: &mut wgpu::ComputePass, batch: usize) {
        for d in &self.plan(batch).recalibrate {
            d.record(pass);
        }
    }

    /// Record a loss evaluation with BatchNorm normalising by the batch's own
    /// statistics (as in training), summed into the evaluation totals; no gradient.
    /// The running statistics are updated as a side effect.
    pub fn record_probe(&self, pass: &mut wgpu::ComputePass, batch: usize) {
        self.record_probe_first(pass, batch);
        self.record_probe_rest(pass, batch);
    }

    /// The first layer of [`Network::record_probe`] (its output lands in `acts[1]`).
    pub fn record_probe_first(&self, pass: &mut wgpu::ComputePass, batch: usize) {
        for d in &self.plan(batch).probe_first {
            d.record(pass);
        }
    }

    /// [`Network::record_probe`] after the first layer, from `acts[1]`.
    pub fn record_probe_rest(&self, pass: &mut wgpu::ComputePass, batch: usize) {
        for d in &self.plan(batch).probe_rest {
            d.record(pass);
        }
    }

    /// Replace the parameters.
    #[track_caller]
    pub fn set_params(&self, gpu: &Gpu, params: &[f32]) {
        assert_eq!(
            params.len(),
            self.model.num_params(),
            "parameters vs the model's D"
        );
        gpu.write(&self.params, 0, params);
    }

    /// Replace the state (running statistics).
    #[track_caller]
    pub fn set_state(&self, gpu: &Gpu, state: &[f32]) {
        assert_eq!(
            state.len(),
            self.model.state.len,
            "state vs the model's state length"
        );
        gpu.write(&self.state, 0, state);
    }

    /// Write the per-step uniform.
    pub fn set_step(&self, gpu: &Gpu, state: StepState) {
        gpu.queue
            .write_buffer(&self.step, 0, bytemuck::bytes_of(&state));
    }

    /// Reset the optimiser's state to zero (recorded into `pass`).
    /// The optimiser's state, its buffers one after the other (as checkpoints hold it).
    pub async fn read_optimiser_state(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        let d = self.model.num_params();
        let mut words = Vec::with_capacity(self.velocity_len);
        for v in &self.velocity {
            words.extend(gpu.read::<f32>(v, 0, d).await?);
        }
        Ok(words)
    }

    /// Set the optimiser's state from [`Network::read_optimiser_state`]'s layout.
    pub fn set_optimiser_state(&self, gpu: &Gpu, words: &[f32]) {
        assert_eq!(words.len(), self.velocity_len, "optimiser state length");
        let d = self.model.num_params();
        for (v, part) in self.velocity.iter().zip(words.chunks(d.max(1))) {
            gpu.write(v, 0, part);
        }
    }

    pub fn record_reset_velocity(&self, pass: &mut wgpu::ComputePass) {
        for d in &self.zero_velocity {
            d.record(pass);
        }
    }

    /// Zero the training or evaluation totals.
    pub fn reset_totals(&self, gpu: &Gpu, train: bool) {
        gpu.write(self.totals_buffer(train), 0, &[0.0f32; 4]);
    }

    /// The device buffer holding the training or evaluation totals (4 words).
    pub fn totals_buffer(&self, train: bool) -> &wgpu::Buffer {
        if train {
            &self.train_totals
        } else {
            &self.eval_totals
        }
    }

    /// Read the training or evaluation totals.
    pub async fn read_totals(&self, gpu: &Gpu, train: bool) -> Result<Totals> {
        Ok(Totals::from_words(
            &gpu.read::<f32>(self.totals_buffer(train), 0, 4).await?,
        ))
    }

    /// Decode totals read asynchronously.
    pub fn decode_totals(words: &[f32]) -> Totals {
        Totals::from_words(words)
    }

    /// Current parameters.
    pub async fn read_params(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        gpu.read(&self.params, 0, self.model.num_params()).await
    }

    /// Current gradients.
    pub async fn read_grads(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        gpu.read(&self.grads, 0, self.model.num_params()).await
    }

    /// Current state: running statistics and scratch.
    pub async fn read_state(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        gpu.read(&self.state, 0, self.model.state.len).await
    }
}

/// The per-batch buffers of a network (words): the widest activation per sample and
/// the largest of each scratch at a batch.
struct Scratch {
    widest: usize,
    /// A convolution's im2col matrix (and its gradient).
    cols: usize,
    /// Split-K slices of a weight gradient.
    split: usize,
    /// LayerNorm's row statistics.
    row_stats: usize,
}

impl Scratch {
    /// The buffers at `batch` where one storage binding holds `binding` words: a
    /// convolution whose im2col matrix is larger takes the batch in slices of samples
    /// (the matrix of one slice, each slice's dW in the split-K scratch).
    fn of(model: &Model, batch: usize, binding: usize) -> Scratch {
        let largest = |f: &dyn Fn(&Layer) -> usize| model.layers.iter().map(f).max().unwrap_or(0);
        let cols = largest(&|l| match l.kind {
            LayerKind::Conv { window, .. } => {
                let (rows, cols) = layers::im2col_shape(1, &window);
                let per_sample = rows * layers::padded(cols);
                let slices = layers::conv_slices(&window, batch, binding).len();
                per_sample * batch.div_ceil(slices)
            }
            _ => 0,
        });
        let sliced_dw = |l: &Layer| match l.kind {
            LayerKind::Conv { window, .. } => {
                let slices = layers::conv_slices(&window, batch, binding).len();
                if slices > 1 {
                    slices * l.kind.param_len()
                } else {
                    0
                }
            }
            _ => 0,
        };
        Scratch {
            widest: largest(&|l| l.outputs()).max(model.input.len()),
            cols: cols.max(1),
            split: largest(&|l| layers::split_k_len(l, batch).max(sliced_dw(l))),
            row_stats: largest(&|l| layers::row_stats_len(l, batch)),
        }
    }

    /// The largest buffer at `batch` (words).
    fn largest(&self, batch: usize) -> usize {
        (batch * self.widest)
            .max(self.cols)
            .max(self.split)
            .max(self.row_stats)
    }
}

/// Refuses a network whose buffers the adapter cannot hold: the parameter, gradient
/// and optimiser-state stores within its largest buffer (they are bound a window at a
/// time), and within its largest storage binding each layer's parameters (with the
/// window's alignment), each activation at `max_batch` and each scratch buffer.
fn check_sizes(
    gpu: &Gpu,
    model: &Model,
    max_batch: usize,
    optimiser_state: usize,
    scratch: &Scratch,
) -> Result<()> {
    let (binding, buffer) = (gpu.max_binding(), gpu.limits.max_buffer_size);
    let store = model.num_params().max(optimiser_state) as u64 * 4;
    if store > buffer {
        return Err(Error::Limits(format!(
            "the parameter store and optimiser state need a buffer of {store} bytes; the adapter's largest is {buffer} bytes"
        )));
    }
    let align = gpu.window_align();
    for (i, layer) in model.layers.iter().enumerate() {
        let bytes = (layer.kind.param_len() + align) as u64 * 4;
        if bytes > binding {
            return Err(Error::Limits(format!(
                "layer {i} ({}) has {bytes} bytes of parameters, more than the adapter's largest storage binding ({binding} bytes)",
                layer.kind.describe()
            )));
        }
    }
    let largest = scratch.largest(max_batch) as u64 * 4;
    if largest > binding {
        return Err(Error::Limits(format!(
            "a buffer of {largest} bytes (an activation at batch {max_batch}, a convolution's im2col matrix or split-K slices) exceeds the adapter's largest storage binding ({binding} bytes); use a smaller batch or model"
        )));
    }
    Ok(())
}

/// The largest batch, at most `cap`, whose activations and scratch buffers fit one
/// storage binding of `gpu` (at least 1).
pub fn largest_batch(gpu: &Gpu, model: &Model, cap: usize) -> usize {
    let words = gpu.max_binding() as usize / 4;
    let fits = |b: usize| Scratch::of(model, b, words).largest(b) <= words;
    let (mut lo, mut hi) = (1, cap.max(1));
    if fits(hi) {
        return hi;
    }
    // fits(lo) or lo = 1; !fits(hi).
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Whether activation `t` is stored: all but the outputs of BatchNorms fused with
/// their ReLU (`fused`), except the first layer's (the landscape's probe reads it).
fn kept(fused: &[bool], t: usize) -> bool {
    t < 2 || !fused[t - 1]
}

/// Values per sample of the activations `model` stores ([`Network::acts`]).
pub fn stored_activations_len(model: &Model) -> usize {
    let fused = fused_relus(model);
    let in_place = in_place_relus(model, &fused);
    (0..=model.layers.len())
        .filter(|&t| kept(&fused, t) && !(t > 0 && in_place[t - 1]))
        .map(|t| model.act_shape(t).len())
        .sum()
}

/// Which layers are ReLUs that overwrite their input (PyTorch's `inplace=True`): where
/// only the ReLU reads that input, and the layer that produced it does not read its own
/// output in backward (not a ReLU or an attention, not a BatchNorm that runs fused with
/// this ReLU); never the network's input or the first layer's output (the landscape's
/// probe reads it).
fn in_place_relus(model: &Model, fused: &[bool]) -> Vec<bool> {
    let layers = &model.layers;
    let mut readers = vec![0usize; layers.len() + 1];
    for layer in layers {
        readers[layer.input] += 1;
        if let LayerKind::Add { other, .. } = layer.kind {
            readers[other] += 1;
        }
    }
    (layers.iter())
        .map(|layer| {
            let t = layer.input;
            matches!(layer.kind, LayerKind::Relu { .. })
                && t >= 2
                && readers[t] == 1
                && !fused[t - 1]
                && !matches!(
                    layers[t - 1].kind,
                    LayerKind::Relu { .. } | LayerKind::Attention { .. }
                )
        })
        .collect()
}

/// Values per sample of the buffers that hold `model`'s activation gradients during
/// backward (see [`gradient_slots`]).
pub fn gradient_pool_len(model: &Model) -> usize {
    gradient_slots(model, &fused_relus(model)).1.iter().sum()
}

/// Which buffer of a pool holds each activation's gradient, and each buffer's values
/// per sample: gradients share a buffer where their lifetimes in the backward pass do
/// not overlap. Activation t's gradient lives from the backward of its last reader
/// (the loss, for the network's output), which writes it first, to the backward of
/// the layer that produced it (of the BatchNorm before, where that produces t with a
/// ReLU fused in), which reads it; intervals sharing an end point overlap.
fn gradient_slots(model: &Model, fused: &[bool]) -> (Vec<Option<usize>>, Vec<usize>) {
    let layers = &model.layers;
    let count = layers.len();
    // Backward time of layer i's backward: the loss is at 0, the last layer at 1.
    let time = |i: usize| count - i;
    let mut last_reader = vec![None; count + 1];
    for (i, layer) in layers.iter().enumerate() {
        last_reader[layer.input] = Some(i);
        if let LayerKind::Add { other, .. } = layer.kind {
            last_reader[other] = Some(i);
        }
    }
    let mut spans: Vec<(usize, usize, usize)> = (1..=count)
        .map(|t| {
            let end = if t >= 2 && fused[t - 2] {
                time(t - 2)
            } else {
                time(t - 1)
            };
            let start = if t == count {
                0
            } else {
                last_reader[t].map_or(end, time)
            };
            (start, end, t)
        })
        .collect();
    spans.sort();
    let mut slot = vec![None; count + 1];
    let mut widths: Vec<usize> = Vec::new();
    // (slot, the time its gradient is last read).
    let mut busy: Vec<(usize, usize)> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    for (start, end, t) in spans {
        busy.retain(|&(s, until)| {
            let done = until < start;
            if done {
                free.push(s);
            }
            !done
        });
        let width = model.act_shape(t).len();
        // The smallest free buffer that holds it, else the largest (the least growth).
        free.sort_by_key(|&s| {
            if widths[s] >= width {
                (0, widths[s])
            } else {
                (1, usize::MAX - widths[s])
            }
        });
        let s = match free.first() {
            Some(&s) => {
                free.remove(0);
                widths[s] = widths[s].max(width);
                s
            }
            None => {
                widths.push(width);
                widths.len() - 1
            }
        };
        slot[t] = Some(s);
        busy.push((s, end));
    }
    (slot, widths)
}

/// Which layers are a BatchNorm whose output only the ReLU right after it reads: each
/// such pair runs as one layer (`batchnorm.wgsl`'s `_relu` kernels).
fn fused_relus(model: &Model) -> Vec<bool> {
    let layers = &model.layers;
    // Activation i + 1 (layer i's output) read by a layer other than layer i + 1.
    let read_beyond_next = |i: usize| {
        layers.iter().enumerate().any(|(j, l)| {
            j != i + 1
                && (l.input == i + 1
                    || matches!(l.kind, LayerKind::Add { other, .. } if other == i + 1))
        })
    };
    (0..layers.len())
        .map(|i| {
            matches!(layers[i].kind, LayerKind::BatchNorm { .. })
                && layers.get(i + 1).is_some_and(|relu| {
                    matches!(relu.kind, LayerKind::Relu { .. }) && relu.input == i + 1
                })
                && !read_beyond_next(i)
        })
        .collect()
}
