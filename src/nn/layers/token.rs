//! Token layers (`transformer.wgsl`): LayerNorm, the class token, the position
//! embedding and multi-head self-attention.

use super::*;

/// The forward of a token layer (`transformer.wgsl`) over `batch` samples, x to y.
pub(super) fn token_forward(
    gpu: &Gpu,
    k: &Kernels,
    layer: &Layer,
    batch: usize,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    bufs: &LayerBuffers,
) -> Dispatch {
    let out = batch * layer.outputs();
    let (kernel, len) = match layer.kind {
        LayerKind::LayerNorm { .. } => (&k.layernorm_forward, rows(layer, batch)),
        LayerKind::ClassToken { .. } => (&k.class_token_forward, out),
        LayerKind::PositionEmbedding { .. } => (&k.position_forward, out),
        LayerKind::TakeClassToken { .. } => (&k.take_class_token, out),
        LayerKind::Attention { tokens, heads, .. } => {
            (&k.attention_forward, batch * heads * tokens)
        }
        _ => panic!("{} is not a token layer", layer.kind.describe()),
    };
    let p = TokenParams::of(layer, bufs, batch, len);
    let io = [
        x.into(),
        bufs.unused.into(),
        bufs.params,
        y.into(),
        bufs.row_stats.into(),
    ];
    token_op(gpu, kernel, p, io)
}

/// Uniform of `transformer.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct TokenParams {
    pub(super) batch: u32,
    pub(super) tokens: u32,
    pub(super) features: u32,
    pub(super) heads: u32,
    pub(super) off: u32,
    pub(super) len: u32,
    pub(super) scale: f32,
    pub(super) eps: f32,
}

impl TokenParams {
    /// The uniform of a token `layer` over `batch` samples, its grid loop `len` long.
    pub(super) fn of(layer: &Layer, bufs: &LayerBuffers, batch: usize, len: usize) -> TokenParams {
        let (features, tokens, heads) = match layer.kind {
            LayerKind::LayerNorm { features, tokens }
            | LayerKind::ClassToken { features, tokens }
            | LayerKind::PositionEmbedding { features, tokens }
            | LayerKind::TakeClassToken { features, tokens } => (features, tokens, 1),
            LayerKind::Attention {
                features,
                tokens,
                heads,
            } => (features, tokens, heads),
            _ => panic!("{} is not a token layer", layer.kind.describe()),
        };
        TokenParams {
            batch: batch as u32,
            tokens: tokens as u32,
            features: features as u32,
            heads: heads as u32,
            off: bufs.param_off(layer) as u32,
            len: len as u32,
            scale: 1.0 / ((features / heads) as f32).sqrt(),
            eps: LN_EPS,
        }
    }
}

/// Rows a LayerNorm normalises over `batch` samples (one per token).
pub(super) fn rows(layer: &Layer, batch: usize) -> usize {
    match layer.kind {
        LayerKind::LayerNorm { tokens, .. } => batch * tokens,
        _ => 0,
    }
}

/// Length of the row-statistics scratch `layer`'s backward needs at `batch`.
pub fn row_stats_len(layer: &Layer, batch: usize) -> usize {
    2 * rows(layer, batch)
}

/// A `transformer.wgsl` kernel, bufs = [a, b, w, out, aux]; a grid loop over `p.len`
/// items, or for `attention_backward` a workgroup per (sample, head).
pub(super) fn token_op(
    gpu: &Gpu,
    kernel: &crate::gpu::Kernel,
    p: TokenParams,
    bufs: [Bind; 5],
) -> Dispatch {
    let groups = if kernel.name == "attention_backward" {
        let pairs = (p.batch * p.heads) as usize;
        let x = pairs.min(65535);
        [x as u32, pairs.div_ceil(x) as u32, 1]
    } else {
        grid(gpu, p.len as usize)
    };
    let u = gpu.uniform(&p, kernel.name);
    let [a, b, w, out, aux] = bufs;
    Dispatch::new(gpu, kernel, &[a, b, w, out, aux, (&u).into()], groups)
}
