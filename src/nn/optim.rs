//! Optimiser dispatches over the flat parameter store (`optim.wgsl`).

use crate::gpu::kernels::grid;
use crate::gpu::{Bind, Dispatch, Gpu, Kernels};

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

/// Word ranges (start, length) covering `len` words, each at most `most` long and
/// starting on a multiple of `align`: how a kernel walks a store larger than one
/// storage binding, a window at a time.
pub fn chunks(len: usize, most: usize, align: usize) -> Vec<(usize, usize)> {
    let most = (most / align * align).max(align);
    if len == 0 {
        return vec![(0, 0)];
    }
    (0..len)
        .step_by(most)
        .map(|s| (s, most.min(len - s)))
        .collect()
}

/// [`chunks`] of one storage binding on `gpu`.
fn binding_chunks(gpu: &Gpu, len: usize) -> Vec<(usize, usize)> {
    chunks(len, gpu.max_binding() as usize / 4, gpu.window_align())
}

/// Scratch of gradient-norm clipping: a partial sum per workgroup of each window of
/// the gradient (each window's run of partials from a multiple of the alignment), then
/// the factor.
pub struct ClipScratch {
    partials: wgpu::Buffer,
    /// Words between the first partials of consecutive windows.
    stride: usize,
    factor: wgpu::Buffer,
    /// Fill the layout's unused read-write slots (two: writable bindings must not alias).
    spare: [wgpu::Buffer; 2],
}

impl ClipScratch {
    pub fn new(gpu: &Gpu, len: usize) -> ClipScratch {
        let windows = binding_chunks(gpu, len);
        let groups = windows
            .iter()
            .map(|&(_, n)| grid(gpu, n)[0] as usize)
            .max()
            .unwrap_or(1);
        let stride = groups.next_multiple_of(gpu.window_align());
        ClipScratch {
            partials: gpu.storage(stride * windows.len(), "clip partial sums"),
            stride,
            factor: gpu.storage(1, "clip factor"),
            spare: [gpu.storage(1, "clip spare"), gpu.storage(1, "clip spare")],
        }
    }
}

/// Scale the `len` values of `grads` so that their norm is at most `max_norm`
/// (PyTorch's `clip_grad_norm_`: by min(1, max_norm / (‖g‖ + 1e-6))): the sums of
/// squares per workgroup of each window, the factor, the scaling. `step` fills the
/// layout's slot.
pub fn clip_norm(
    gpu: &Gpu,
    k: &Kernels,
    len: usize,
    max_norm: f32,
    grads: &wgpu::Buffer,
    scratch: &ClipScratch,
    step: &wgpu::Buffer,
) -> Vec<Dispatch> {
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
    let windows = binding_chunks(gpu, len);
    let (partials, factor) = (&scratch.partials, &scratch.factor);
    let [spare, spare2] = &scratch.spare;
    let mut out = Vec::new();
    for (i, &(start, n)) in windows.iter().enumerate() {
        let own = Bind::window(partials, i * scratch.stride, scratch.stride);
        let u = params(n);
        let resources = [
            Bind::window(grads, start, n),
            own,
            factor.into(),
            spare.into(),
            (&u).into(),
            step.into(),
        ];
        out.push(Dispatch::new(
            gpu,
            &k.clip_partial,
            &resources,
            grid(gpu, n),
        ));
    }
    let total = scratch.stride * windows.len();
    let u = params(total);
    let resources = [partials, factor, spare2, spare, &u, step];
    out.push(Dispatch::new(gpu, &k.clip_factor, &resources, [1, 1, 1]));
    for &(start, n) in &windows {
        let u = params(n);
        let resources = [
            factor.into(),
            Bind::window(grads, start, n),
            partials.into(),
            spare.into(),
            (&u).into(),
            step.into(),
        ];
        out.push(Dispatch::new(gpu, &k.clip_scale, &resources, grid(gpu, n)));
    }
    out
}

/// One SGD step over `len` parameters: v ← μv + (g + wd·w); w ← w − lr·v, with lr
/// read from the per-step uniform `step`; a dispatch per binding-sized window.
pub fn sgd_step(
    gpu: &Gpu,
    k: &Kernels,
    len: usize,
    sgd: SgdConfig,
    grads: &wgpu::Buffer,
    params: &wgpu::Buffer,
    velocity: &wgpu::Buffer,
    step: &wgpu::Buffer,
) -> Vec<Dispatch> {
    let spare = gpu.storage(1, "sgd spare");
    binding_chunks(gpu, len)
        .into_iter()
        .map(|(start, n)| {
            let u = uniform(gpu, n, sgd, 0);
            let resources = [
                Bind::window(grads, start, n),
                Bind::window(params, start, n),
                Bind::window(velocity, start, n),
                (&spare).into(),
                (&u).into(),
                step.into(),
            ];
            Dispatch::new(gpu, &k.sgd_step, &resources, grid(gpu, n))
        })
        .collect()
}

/// One AdamW step over `len` parameters (β₁ = `adam.momentum`, decoupled weight
/// decay); `moments` are m and v (len words each, zero at the start) and the bias
/// correction counts steps from global step `first_step`; a dispatch per
/// binding-sized window.
#[allow(clippy::too_many_arguments)]
pub fn adamw_step(
    gpu: &Gpu,
    k: &Kernels,
    len: usize,
    adam: SgdConfig,
    first_step: u64,
    grads: &wgpu::Buffer,
    params: &wgpu::Buffer,
    moments: [&wgpu::Buffer; 2],
    step: &wgpu::Buffer,
) -> Vec<Dispatch> {
    binding_chunks(gpu, len)
        .into_iter()
        .map(|(start, n)| {
            let u = uniform(gpu, n, adam, first_step as u32);
            let resources = [
                Bind::window(grads, start, n),
                Bind::window(params, start, n),
                Bind::window(moments[0], start, n),
                Bind::window(moments[1], start, n),
                (&u).into(),
                step.into(),
            ];
            Dispatch::new(gpu, &k.adamw_step, &resources, grid(gpu, n))
        })
        .collect()
}

/// Zero the first `len` words of `target`, a dispatch per binding-sized window.
/// `unused_read`, `unused_rw` and `step` fill the layout's other slots (`unused_rw`
/// must not be `target`).
pub fn zero(
    gpu: &Gpu,
    k: &Kernels,
    len: usize,
    target: &wgpu::Buffer,
    unused_read: &wgpu::Buffer,
    unused_rw: &wgpu::Buffer,
    step: &wgpu::Buffer,
) -> Vec<Dispatch> {
    let spare = gpu.storage(1, "zero spare");
    let none = SgdConfig {
        momentum: 0.0,
        weight_decay: 0.0,
    };
    binding_chunks(gpu, len)
        .into_iter()
        .map(|(start, n)| {
            let u = uniform(gpu, n, none, 0);
            let resources = [
                unused_read.into(),
                Bind::window(target, start, n),
                unused_rw.into(),
                (&spare).into(),
                (&u).into(),
                step.into(),
            ];
            Dispatch::new(gpu, &k.zero, &resources, grid(gpu, n))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::chunks;

    #[test]
    fn chunks_cover_the_store_in_aligned_windows_of_at_most_one_binding() {
        assert_eq!(chunks(10, 4, 4), [(0, 4), (4, 4), (8, 2)]);
        assert_eq!(chunks(10, 6, 4), [(0, 4), (4, 4), (8, 2)]);
        assert_eq!(chunks(8, 100, 4), [(0, 8)]);
        assert_eq!(chunks(0, 100, 4), [(0, 0)]);
    }
}
