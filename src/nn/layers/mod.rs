//! Recording a layer's kernels: for each layer kind, the dispatches of its forward
//! pass (train or eval) and of its backward pass, bound to the buffers they use.
//! Called once when a batch plan is built; the dispatches are then replayed every step.
//! One module per op family; this one holds what every layer binds and the dispatch
//! by layer kind.

use super::model::{Layer, LayerKind, Window, BN_EPS, BN_MOMENTUM, LN_EPS};
use crate::gpu::kernels::{grid, groups_1d, lanes};
use crate::gpu::{Bind, Dispatch, Gpu, Kernels};

mod batchnorm;
mod elementwise;
mod gemm;
mod token;
mod window;

pub use batchnorm::{
    batchnorm_backward, batchnorm_forward, batchnorm_synced, BnSync, BN_MAX_CHUNKS,
};
pub use elementwise::elementwise;
pub use gemm::{
    matmul, matmul_split_k, matmul_subgroup_tile, matmul_with, padded, split_k, split_k_len,
    transpose, transposed_len, vec4_aligned, LinearParams, MATMUL_TILE, MATMUL_TILED_TILE,
    MATMUL_VEC4_TILE,
};
pub use token::row_stats_len;
pub use window::{conv_backward, conv_slices, im2col_shape, Cols};

use elementwise::*;
use gemm::*;
use token::*;
use window::*;

/// The buffers a layer binds besides its input and output activations.
#[derive(Clone, Copy)]
pub struct LayerBuffers<'a> {
    /// The parameter and gradient stores as the layer binds them: whole, or the window
    /// holding its parameters (see [`LayerBuffers::window`]), which starts at word
    /// `base` of the store.
    pub params: Bind<'a>,
    pub grads: Bind<'a>,
    pub base: usize,
    pub state: &'a wgpu::Buffer,
    /// The per-step uniform (batch index for BatchNorm recalibration).
    pub step: &'a wgpu::Buffer,
    /// Bound where a kernel's layout has a slot the entry point does not use.
    pub unused: &'a wgpu::Buffer,
    /// BatchNorm's per-chunk partial sums (2 × `BN_MAX_CHUNKS` × widest feature count).
    pub partials: &'a wgpu::Buffer,
    /// Convolution scratch: the im2col matrix and its gradient, `cols_len` words each
    /// (the largest convolution's, or at most one storage binding: a convolution then
    /// takes its batch a slice of samples at a time).
    pub cols: &'a wgpu::Buffer,
    pub dcols: &'a wgpu::Buffer,
    pub cols_len: usize,
    /// The slices of a split-K weight gradient ([`split_k_len`] of the largest).
    pub split: &'a wgpu::Buffer,
    /// LayerNorm's per-row statistics between its two backward kernels
    /// ([`row_stats_len`] of the largest).
    pub row_stats: &'a wgpu::Buffer,
}

impl<'a> LayerBuffers<'a> {
    /// These buffers with the parameter and gradient stores narrowed to the words of
    /// `layer`'s parameters (from a multiple of `align`), so that a store larger than
    /// one storage binding is bound a layer at a time.
    pub fn window(&self, layer: &Layer, align: usize) -> LayerBuffers<'a> {
        let start = layer.param_off / align * align;
        let len = (layer.param_off + layer.kind.param_len() - start).max(1);
        LayerBuffers {
            params: Bind::window(self.params.buffer, start, len),
            grads: Bind::window(self.grads.buffer, start, len),
            base: start,
            ..*self
        }
    }

    /// Where `layer`'s parameters start in the bound window.
    fn param_off(&self, layer: &Layer) -> usize {
        layer.param_off - self.base
    }
}

/// How a forward pass treats BatchNorm and dropout (on in train and recalibrate, as
/// PyTorch's train mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics, running statistics updated with momentum (training).
    Train,
    /// As `Train`, dropout off: a deterministic loss (the landscape's probe).
    Probe,
    /// Running statistics (evaluation).
    Eval,
    /// Batch statistics, running statistics averaged over the pass (re-estimation).
    Recalibrate,
}

/// Forward dispatches of `layer` for `batch` samples from `x` (and, for `Add`, `other`)
/// to `y`. Linear and Conv layers need `wt`, scratch for their transposed weight.
pub fn forward(
    gpu: &Gpu,
    k: &Kernels,
    layer: &Layer,
    batch: usize,
    mode: Mode,
    x: &wgpu::Buffer,
    other: Option<&wgpu::Buffer>,
    y: &wgpu::Buffer,
    wt: Option<&wgpu::Buffer>,
    bufs: &LayerBuffers,
) -> Vec<Dispatch> {
    let len = batch * layer.outputs();
    match layer.kind {
        LayerKind::Linear { .. } => {
            let wt = wt.expect("a Linear layer needs transposed-weight scratch");
            gemm_of(layer, batch)
                .expect("Linear is a GEMM")
                .forward(gpu, k, x, y, wt, bufs)
        }
        LayerKind::Conv { window, .. } => {
            let wt = wt.expect("a Conv layer needs transposed-weight scratch");
            let whole = gemm_of(layer, batch).expect("Conv is a GEMM");
            let mut out = vec![whole.transpose_weight(gpu, k, wt, bufs)];
            for slice in conv_slices(&window, batch, bufs.cols_len) {
                let gemm = gemm_of(layer, slice.1).expect("Conv is a GEMM");
                out.push(im2col(gpu, k, &window, slice, x, bufs));
                out.push(gemm.product(gpu, k, bufs.cols, y, wt, bufs, slice.0 * pixels(&window)));
            }
            out
        }
        LayerKind::BatchNorm { .. } => {
            batchnorm_forward(gpu, k, layer, batch, mode, x, y, false, bufs)
        }
        LayerKind::Relu { .. } => vec![elementwise(gpu, &k.relu_forward, len, [x, bufs.unused, y])],
        LayerKind::Gelu { .. } => vec![elementwise(gpu, &k.gelu_forward, len, [x, bufs.unused, y])],
        LayerKind::Dropout { .. } if matches!(mode, Mode::Eval | Mode::Probe) => {
            vec![elementwise(gpu, &k.copy, len, [x, bufs.unused, y])]
        }
        LayerKind::Dropout { .. } => vec![dropout(gpu, k, layer, batch, [x, y], bufs)],
        LayerKind::MaxPool { window } => {
            vec![window_op(
                gpu,
                &k.max_forward,
                batch,
                &window,
                len,
                [x, bufs.unused, y],
            )]
        }
        LayerKind::AvgPool { window } => {
            vec![window_op(
                gpu,
                &k.avg_forward,
                batch,
                &window,
                len,
                [x, bufs.unused, y],
            )]
        }
        LayerKind::Flatten { input } => {
            let window = whole_image(input);
            vec![window_op(
                gpu,
                &k.flatten,
                batch,
                &window,
                len,
                [x, bufs.unused, y],
            )]
        }
        LayerKind::Add { .. } => {
            let other = other.expect("Add needs its second summand");
            vec![elementwise(gpu, &k.add, len, [x, other, y])]
        }
        LayerKind::LayerNorm { .. }
        | LayerKind::ClassToken { .. }
        | LayerKind::PositionEmbedding { .. }
        | LayerKind::TakeClassToken { .. }
        | LayerKind::Attention { .. } => vec![token_forward(gpu, k, layer, batch, x, y, bufs)],
    }
}

/// Backward dispatches of `layer`: parameter gradients into `bufs.grads`, and the
/// input gradient into `dx` when given. `x` and `y` are the forward input and output.
/// An `Add` passes `dy` on unchanged (its second summand's gradient is the caller's).
pub fn backward(
    gpu: &Gpu,
    k: &Kernels,
    layer: &Layer,
    batch: usize,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dx: Option<&wgpu::Buffer>,
    bufs: &LayerBuffers,
) -> Vec<Dispatch> {
    let in_len = batch * layer.kind.input_len();
    let needs_dx = || dx.unwrap_or_else(|| panic!("{} backward needs dx", layer.kind.describe()));
    match layer.kind {
        LayerKind::Linear { .. } => gemm_of(layer, batch)
            .expect("Linear is a GEMM")
            .backward(gpu, k, x, dy, dx, bufs),
        LayerKind::Conv { .. } => {
            conv_backward(gpu, k, layer, batch, x, dy, dx, bufs, Cols::Rebuild)
        }
        LayerKind::BatchNorm { .. } => {
            batchnorm_backward(gpu, k, layer, batch, x, dy, None, needs_dx(), bufs)
        }
        LayerKind::Relu { .. } => vec![elementwise(
            gpu,
            &k.relu_backward,
            in_len,
            [y, dy, needs_dx()],
        )],
        LayerKind::Gelu { .. } => vec![elementwise(
            gpu,
            &k.gelu_backward,
            in_len,
            [x, dy, needs_dx()],
        )],
        LayerKind::Dropout { .. } => vec![dropout(gpu, k, layer, batch, [dy, needs_dx()], bufs)],
        LayerKind::MaxPool { window } if tiles(&window) => vec![window_op(
            gpu,
            &k.max_backward_tiled,
            batch,
            &window,
            batch * layer.outputs(),
            [x, dy, needs_dx()],
        )],
        LayerKind::MaxPool { window } => {
            vec![window_op(
                gpu,
                &k.max_backward,
                batch,
                &window,
                in_len,
                [x, dy, needs_dx()],
            )]
        }
        LayerKind::AvgPool { window } => {
            vec![window_op(
                gpu,
                &k.avg_backward,
                batch,
                &window,
                in_len,
                [x, dy, needs_dx()],
            )]
        }
        LayerKind::Flatten { input } => {
            let window = whole_image(input);
            vec![window_op(
                gpu,
                &k.unflatten,
                batch,
                &window,
                in_len,
                [bufs.unused, dy, needs_dx()],
            )]
        }
        LayerKind::Add { .. } => vec![elementwise(
            gpu,
            &k.copy,
            in_len,
            [dy, bufs.unused, needs_dx()],
        )],
        LayerKind::LayerNorm { .. }
        | LayerKind::ClassToken { .. }
        | LayerKind::PositionEmbedding { .. }
        | LayerKind::TakeClassToken { .. }
        | LayerKind::Attention { .. } => token_backward(gpu, k, layer, batch, [x, y, dy], dx, bufs),
    }
}
