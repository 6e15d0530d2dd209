//! Element-wise layers: ReLU, GELU, the residual sum and copies (`activation.wgsl`),
//! and dropout (`dropout.wgsl`).

use super::*;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct ActivationParams {
    len: u32,
    pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct DropoutParams {
    len: u32,
    features: u32,
    layer: u32,
    threshold: u32,
    scale: f32,
    pad: [u32; 3],
}

/// A dropout `layer`'s mask applied over `batch` samples, io = [input, output]: x to
/// y forward, dy to dx backward; the mask's step, seed and sample positions come from
/// the step uniform.
pub(super) fn dropout(
    gpu: &Gpu,
    k: &Kernels,
    layer: &Layer,
    batch: usize,
    io: [&wgpu::Buffer; 2],
    bufs: &LayerBuffers,
) -> Dispatch {
    let kernel = &k.dropout;
    let LayerKind::Dropout {
        features,
        threshold,
        salt,
    } = layer.kind
    else {
        panic!("dropout of {}", layer.kind.describe());
    };
    let len = batch * features;
    let u = gpu.uniform(
        &DropoutParams {
            len: len as u32,
            features: features as u32,
            layer: salt,
            threshold,
            scale: crate::nn::model::keep_scale(threshold),
            pad: [0; 3],
        },
        kernel.name,
    );
    Dispatch::new(gpu, kernel, &[io[0], io[1], &u, bufs.step], grid(gpu, len))
}

/// An `activation.wgsl` kernel over `len` values.
pub fn elementwise(
    gpu: &Gpu,
    kernel: &crate::gpu::Kernel,
    len: usize,
    bufs: [&wgpu::Buffer; 3],
) -> Dispatch {
    let u = gpu.uniform(
        &ActivationParams {
            len: len as u32,
            pad: [0; 3],
        },
        kernel.name,
    );
    Dispatch::new(
        gpu,
        kernel,
        &[bufs[0], bufs[1], bufs[2], &u],
        grid(gpu, len),
    )
}
