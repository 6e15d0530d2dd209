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

/// The backward of a token layer from dy, given its forward input x and output y:
/// parameter gradients into the store, and dx where given (LayerNorm, taking the class
/// token and attention always need it).
pub(super) fn token_backward(
    gpu: &Gpu,
    k: &Kernels,
    layer: &Layer,
    batch: usize,
    [x, y, dy]: [&wgpu::Buffer; 3],
    dx: Option<&wgpu::Buffer>,
    bufs: &LayerBuffers,
) -> Vec<Dispatch> {
    let what = layer.kind.describe();
    let needs_dx = || dx.unwrap_or_else(|| panic!("{what} backward needs dx"));
    let in_len = batch * layer.kind.input_len();
    let (unused, aux): (Bind, Bind) = (bufs.unused.into(), bufs.row_stats.into());
    let of = |len: usize| TokenParams::of(layer, bufs, batch, len);
    match layer.kind {
        LayerKind::PositionEmbedding { features, tokens } => {
            let io = [unused, dy.into(), unused, bufs.grads, aux];
            let mut out = vec![token_op(gpu, &k.position_grad, of(tokens * features), io)];
            if let Some(dx) = dx {
                out.push(elementwise(gpu, &k.copy, in_len, [dy, bufs.unused, dx]));
            }
            out
        }
        LayerKind::LayerNorm { features, .. } => {
            let p = of(rows(layer, batch));
            let io = [x.into(), dy.into(), bufs.params, needs_dx().into(), aux];
            let grads = [x.into(), dy.into(), unused, bufs.grads, aux];
            let per_feature = TokenParams {
                len: features as u32,
                ..p
            };
            vec![
                token_op(gpu, &k.layernorm_backward, p, io),
                token_op(gpu, &k.layernorm_param_grads, per_feature, grads),
            ]
        }
        LayerKind::ClassToken { features, .. } => {
            let io = [unused, dy.into(), unused, bufs.grads, aux];
            let mut out = vec![token_op(gpu, &k.class_token_grad, of(features), io)];
            if let Some(dx) = dx {
                let io = [unused, dy.into(), unused, dx.into(), aux];
                out.push(token_op(gpu, &k.class_token_backward, of(in_len), io));
            }
            out
        }
        LayerKind::TakeClassToken { .. } => {
            let io = [unused, dy.into(), unused, needs_dx().into(), aux];
            vec![token_op(gpu, &k.take_class_token_back, of(in_len), io)]
        }
        LayerKind::Attention { heads, .. } => {
            // A workgroup per (sample, head).
            let pairs = batch * heads;
            let x_groups = pairs.clamp(1, 65535);
            let groups = [x_groups as u32, pairs.div_ceil(x_groups) as u32, 1];
            let io = [x.into(), dy.into(), y.into(), needs_dx().into(), aux];
            vec![token_dispatch(
                gpu,
                &k.attention_backward,
                of(0),
                io,
                groups,
            )]
        }
        _ => panic!("{what} is not a token layer"),
    }
}

/// A `transformer.wgsl` grid-loop kernel over `p.len` items, bufs = [a, b, w, out, aux].
pub(super) fn token_op(
    gpu: &Gpu,
    kernel: &crate::gpu::Kernel,
    p: TokenParams,
    bufs: [Bind; 5],
) -> Dispatch {
    token_dispatch(gpu, kernel, p, bufs, grid(gpu, p.len as usize))
}

/// A `transformer.wgsl` kernel launched as `groups` workgroups.
fn token_dispatch(
    gpu: &Gpu,
    kernel: &crate::gpu::Kernel,
    p: TokenParams,
    bufs: [Bind; 5],
    groups: [u32; 3],
) -> Dispatch {
    let u = gpu.uniform(&p, kernel.name);
    let [a, b, w, out, aux] = bufs;
    Dispatch::new(gpu, kernel, &[a, b, w, out, aux, (&u).into()], groups)
}
