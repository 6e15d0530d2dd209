//! Optimiser dispatches over the flat parameter store (`optim.wgsl`).

use crate::gpu::kernels::grid;
use crate::gpu::{Dispatch, Gpu, Kernels};

/// An optimiser's hyper-parameters fixed for a run (the LR comes per step): SGD's
/// momentum, or AdamW's β₁, and the weight decay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    pub momentum: f32,
    pub weight_decay: f32,
}

/// Which update rule trains the parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    /// SGD with momentum and weight decay (PyTorch's, no dampening or Nesterov).
    #[default]
    Sgd,
    /// AdamW: β₁ = the momentum, β₂ = 0.999, ε = 1e-8, decoupled weight decay.
    Adamw,
}

impl Optimizer {
    /// Words of optimiser state per parameter: SGD's velocity, AdamW's two moments.
    pub fn state_words(self) -> usize {
        match self {
            Optimizer::Sgd => 1,
            Optimizer::Adamw => 2,
        }
    }
}

/// How a training step updates the parameters from the gradient: the optimiser, its
/// hyper-parameters, and the bound on the gradient's norm (0: none).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UpdateRule {
    pub optimizer: Optimizer,
    pub hyper: SgdConfig,
    pub clip_norm: f32,
}

impl From<SgdConfig> for UpdateRule {
    /// SGD, unclipped.
    fn from(hyper: SgdConfig) -> UpdateRule {
        UpdateRule {
            optimizer: Optimizer::Sgd,
            hyper,
            clip_norm: 0.0,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct OptimParams {
    len: u32,
    momentum: f32,
    weight_decay: f32,
    first_step: u32,
    max_norm: f32,
    pad: [u32; 3],
}

fn uniform(gpu: &Gpu, len: usize, sgd: SgdConfig, first_step: u32) -> wgpu::Buffer {
    let p = OptimParams {
        len: len as u32,
        momentum: sgd.momentum,
        weight_decay: sgd.weight_decay,
        first_step,
        max_norm: 0.0,
        pad: [0; 3],
    };
    gpu.uniform(&p, "optim")
}

/// Scratch of gradient-norm clipping: a partial sum per workgroup, then the factor.
pub struct ClipScratch {
    partials: wgpu::Buffer,
    factor: wgpu::Buffer,
}

impl ClipScratch {
    pub fn new(gpu: &Gpu, len: usize) -> ClipScratch {
        ClipScratch {
            partials: gpu.storage(grid(gpu, len)[0] as usize, "clip partial sums"),
            factor: gpu.storage(1, "clip factor"),
        }
    }
}

/// Scale the `len` values of `grads` so that their norm is at most `max_norm`
/// (PyTorch's `clip_grad_norm_`: by min(1, max_norm / (‖g‖ + 1e-6))): the sum of
/// squares per workgroup, the factor, the scaling. `step` fills the layout's slot.
pub fn clip_norm(
    gpu: &Gpu,
    k: &Kernels,
    len: usize,
    max_norm: f32,
    grads: &wgpu::Buffer,
    scratch: &ClipScratch,
    step: &wgpu::Buffer,
) -> [Dispatch; 3] {
    let params = |len: usize| {
        gpu.uniform(
            &OptimParams {
                len: len as u32,
                momentum: 0.0,
                weight_decay: 0.0,
                first_step: 0,
                max_norm,
                pad: [0; 3],
            },
            "clip",
        )
    };
    let groups = grid(gpu, len);
    let (partials, factor) = (&scratch.partials, &scratch.factor);
    [
        Dispatch::new(
            gpu,
            &k.clip_partial,
            &[grads, partials, factor, &params(len), step],
            groups,
        ),
        Dispatch::new(
            gpu,
            &k.clip_factor,
            &[partials, factor, grads, &params(groups[0] as usize), step],
            [1, 1, 1],
        ),
        Dispatch::new(
            gpu,
            &k.clip_scale,
            &[factor, grads, partials, &params(len), step],
            groups,
        ),
    ]
}

/// One SGD step over `len` parameters: v ← μv + (g + wd·w); w ← w − lr·v, with lr
/// read from the per-step uniform `step`.
pub fn sgd_step(
    gpu: &Gpu,
    k: &Kernels,
    len: usize,
    sgd: SgdConfig,
    grads: &wgpu::Buffer,
    params: &wgpu::Buffer,
    velocity: &wgpu::Buffer,
    step: &wgpu::Buffer,
) -> Dispatch {
    let u = uniform(gpu, len, sgd, 0);
    Dispatch::new(
        gpu,
        &k.sgd_step,
        &[grads, params, velocity, &u, step],
        grid(gpu, len),
    )
}

/// One AdamW step over `len` parameters (β₁ = `adam.momentum`, decoupled weight
/// decay); `moments` holds m then v (2·len words, zero at the start) and the bias
/// correction counts steps from global step `first_step`.
pub fn adamw_step(
    gpu: &Gpu,
    k: &Kernels,
    len: usize,
    adam: SgdConfig,
    first_step: u64,
    grads: &wgpu::Buffer,
    params: &wgpu::Buffer,
    moments: &wgpu::Buffer,
    step: &wgpu::Buffer,
) -> Dispatch {
    let u = uniform(gpu, len, adam, first_step as u32);
    Dispatch::new(
        gpu,
        &k.adamw_step,
        &[grads, params, moments, &u, step],
        grid(gpu, len),
    )
}

/// Zero the first `len` words of `target`. `unused_read`, `unused_rw` and `step` fill
/// the layout's other slots (`unused_rw` must not be `target`).
pub fn zero(
    gpu: &Gpu,
    k: &Kernels,
    len: usize,
    target: &wgpu::Buffer,
    unused_read: &wgpu::Buffer,
    unused_rw: &wgpu::Buffer,
    step: &wgpu::Buffer,
) -> Dispatch {
    let u = uniform(
        gpu,
        len,
        SgdConfig {
            momentum: 0.0,
            weight_decay: 0.0,
        },
        0,
    );
    Dispatch::new(
        gpu,
        &k.zero,
        &[unused_read, target, unused_rw, &u, step],
        grid(gpu, len),
    )
}
