//! Softmax cross-entropy (`loss.wgsl`): loss summed on the device with the gradient
//! and the accuracy count in the same pass.

use crate::gpu::{Dispatch, Gpu, Kernels};

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct LossParams {
    batch: u32,
    classes: u32,
    smoothing: f32,
    pad: u32,
}

/// The loss over `logits` [batch, classes] and `labels` [batch] (u32), accumulated into
/// `totals` (4 words: Σ loss, Σ correct, Σ count, first non-finite step). With
/// `grad = Some(buffer)` the gradient of the mean loss is written there (training),
/// the targets smoothed by `smoothing` (PyTorch's `label_smoothing`); with `None` only
/// the totals of the plain loss are accumulated (evaluation); `scratch` is any
/// read-write buffer the layout's gradient slot then binds.
pub fn cross_entropy(
    gpu: &Gpu,
    k: &Kernels,
    batch: usize,
    classes: usize,
    logits: &wgpu::Buffer,
    labels: &wgpu::Buffer,
    grad: Option<&wgpu::Buffer>,
    smoothing: f32,
    scratch: &wgpu::Buffer,
    totals: &wgpu::Buffer,
    step: &wgpu::Buffer,
) -> Dispatch {
    let p = LossParams {
        batch: batch as u32,
        classes: classes as u32,
        smoothing: if grad.is_some() { smoothing } else { 0.0 },
        pad: 0,
    };
    let u = gpu.uniform(&p, "loss");
    let (kernel, grad) = match grad {
        Some(g) => (&k.cross_entropy, g),
        None => (&k.evaluate, scratch),
    };
    Dispatch::new(
        gpu,
        kernel,
        &[logits, labels, grad, totals, &u, step],
        [1, 1, 1],
    )
}
