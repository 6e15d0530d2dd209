//! Optimiser dispatches over the flat parameter store (`optim.wgsl`).

use crate::gpu::kernels::grid;
use crate::gpu::{Dispatch, Gpu, Kernels};

/// SGD hyper-parameters fixed for a run (the LR comes per step).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    pub momentum: f32,
    pub weight_decay: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct OptimParams {
    len: u32,
    momentum: f32,
    weight_decay: f32,
    first_step: u32,
}

fn uniform(gpu: &Gpu, len: usize, sgd: SgdConfig, first_step: u32) -> wgpu::Buffer {
    let p = OptimParams {
        len: len as u32,
        momentum: sgd.momentum,
        weight_decay: sgd.weight_decay,
        first_step,
    };
    gpu.uniform(&p, "optim")
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
