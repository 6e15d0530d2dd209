//! Window ops (`conv.wgsl`): a convolution's im2col and col2im around its matrix
//! product (the batch in slices of samples where the matrix exceeds a binding),
//! pooling and flattening.

use super::*;

/// Uniform of `conv.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct WindowParams {
    batch: u32,
    h: u32,
    w: u32,
    c: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    ldc: u32,
    first: u32,
}

impl WindowParams {
    pub(super) fn new(batch: usize, window: &Window) -> WindowParams {
        let (oh, ow) = window.out_hw();
        let i = window.input;
        WindowParams {
            batch: batch as u32,
            h: i.height as u32,
            w: i.width as u32,
            c: i.channels as u32,
            oh: oh as u32,
            ow: ow as u32,
            kh: window.kernel.0 as u32,
            kw: window.kernel.1 as u32,
            stride: window.stride as u32,
            pad: window.padding as u32,
            ldc: padded(im2col_shape(1, window).1) as u32,
            first: 0,
        }
    }
}

/// A `conv.wgsl` kernel over `window` for `batch` samples, writing `len` values.
pub(super) fn window_op(
    gpu: &Gpu,
    kernel: &crate::gpu::Kernel,
    batch: usize,
    window: &Window,
    len: usize,
    bufs: [&wgpu::Buffer; 3],
) -> Dispatch {
    window_op_from(gpu, kernel, (0, batch), window, len, bufs)
}

/// [`window_op`] on the slice of samples (first, count) of im2col's input or col2im's
/// output.
pub(super) fn window_op_from(
    gpu: &Gpu,
    kernel: &crate::gpu::Kernel,
    (first, batch): (usize, usize),
    window: &Window,
    len: usize,
    bufs: [&wgpu::Buffer; 3],
) -> Dispatch {
    let params = WindowParams {
        first: first as u32,
        ..WindowParams::new(batch, window)
    };
    let u = gpu.uniform(&params, kernel.name);
    Dispatch::new(
        gpu,
        kernel,
        &[bufs[0], bufs[1], bufs[2], &u],
        grid(gpu, len),
    )
}

/// Rows of the im2col matrix of a convolution and its columns (c·kh·kw); rows are
/// `padded(columns)` apart.
pub fn im2col_shape(batch: usize, window: &Window) -> (usize, usize) {
    let (oh, ow) = window.out_hw();
    (
        batch * oh * ow,
        window.input.channels * window.kernel.0 * window.kernel.1,
    )
}

/// Whether `window`'s windows tile its input exactly (stride = kernel, no remainder).
pub(super) fn tiles(window: &Window) -> bool {
    let (kh, kw) = window.kernel;
    window.stride == kh
        && kh == kw
        && window.padding == 0
        && window.input.height.is_multiple_of(kh)
        && window.input.width.is_multiple_of(kw)
}

/// Where a convolution's backward gets the im2col matrix of its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cols {
    /// im2col again into `LayerBuffers::cols`.
    Rebuild,
    /// `cols` still holds this layer's forward matrix: no convolution ran since (the
    /// network's last convolution, whose backward comes first).
    Kept,
}

/// Backward of a Conv layer: dW (and the bias gradient) from the im2col matrix, and,
/// when `dx` is given, dcols = dY·W scattered back onto the input by col2im.
pub fn conv_backward(
    gpu: &Gpu,
    k: &Kernels,
    layer: &Layer,
    batch: usize,
    x: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dx: Option<&wgpu::Buffer>,
    bufs: &LayerBuffers,
    cols: Cols,
) -> Vec<Dispatch> {
    let LayerKind::Conv { window, .. } = layer.kind else {
        panic!("conv_backward of {}", layer.kind.describe());
    };
    let slices = conv_slices(&window, batch, bufs.cols_len);
    if slices.len() > 1 {
        return sliced_conv_backward(gpu, k, layer, batch, &slices, x, dy, dx, bufs);
    }
    let gemm = gemm_of(layer, batch).expect("Conv is a GEMM");
    let mut out = Vec::new();
    if cols == Cols::Rebuild {
        out.push(im2col(gpu, k, &window, (0, batch), x, bufs));
    }
    out.extend(gemm.backward(gpu, k, bufs.cols, dy, dx.map(|_| bufs.dcols), bufs));
    if let Some(dx) = dx {
        out.push(col2im(gpu, k, layer, (0, batch), dx, bufs));
    }
    out
}

/// Output pixels per sample of a convolution: its im2col rows per sample.
pub(super) fn pixels(window: &Window) -> usize {
    im2col_shape(1, window).0
}

/// The slices of samples (first, count) in which a convolution over `window` takes a
/// batch so that each slice's im2col matrix fits `cols_len` words: the whole batch
/// where it fits.
pub fn conv_slices(window: &Window, batch: usize, cols_len: usize) -> Vec<(usize, usize)> {
    let (rows, cols) = im2col_shape(1, window);
    let per = (cols_len / (rows * padded(cols))).clamp(1, batch.max(1));
    (0..batch)
        .step_by(per)
        .map(|first| (first, per.min(batch - first)))
        .collect()
}

/// The im2col matrix of the samples `slice` of x into `bufs.cols`.
pub(super) fn im2col(
    gpu: &Gpu,
    k: &Kernels,
    window: &Window,
    slice: (usize, usize),
    x: &wgpu::Buffer,
    bufs: &LayerBuffers,
) -> Dispatch {
    let len = slice.1 * pixels(window) * window.input.channels;
    window_op_from(
        gpu,
        &k.im2col,
        slice,
        window,
        len,
        [x, bufs.unused, bufs.cols],
    )
}

/// The gradient of the samples `slice` of x from `bufs.dcols` (col2im).
pub(super) fn col2im(
    gpu: &Gpu,
    k: &Kernels,
    layer: &Layer,
    slice: (usize, usize),
    dx: &wgpu::Buffer,
    bufs: &LayerBuffers,
) -> Dispatch {
    let LayerKind::Conv { window, .. } = layer.kind else {
        panic!("col2im of {}", layer.kind.describe());
    };
    let len = slice.1 * layer.kind.input_len();
    window_op_from(
        gpu,
        &k.col2im,
        slice,
        &window,
        len,
        [bufs.unused, bufs.dcols, dx],
    )
}

/// [`conv_backward`] a slice of samples at a time: per slice the im2col matrix, its
/// share of dW into slice z of the split-K scratch and its samples' dx; then the
/// slices' dW summed into the gradient store, and db over the whole batch.
#[allow(clippy::too_many_arguments)]
pub(super) fn sliced_conv_backward(
    gpu: &Gpu,
    k: &Kernels,
    layer: &Layer,
    batch: usize,
    slices: &[(usize, usize)],
    x: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dx: Option<&wgpu::Buffer>,
    bufs: &LayerBuffers,
) -> Vec<Dispatch> {
    let LayerKind::Conv { window, .. } = layer.kind else {
        panic!("conv_backward of {}", layer.kind.describe());
    };
    let whole = gemm_of(layer, batch).expect("Conv is a GEMM");
    let weights = whole.outputs * whole.inputs;
    let mut out = Vec::new();
    for (z, &slice) in slices.iter().enumerate() {
        let gemm = gemm_of(layer, slice.1).expect("Conv is a GEMM");
        let out_row = slice.0 * pixels(&window);
        out.push(im2col(gpu, k, &window, slice, x, bufs));
        let p = gemm.weight_grad_params(out_row, z * weights);
        out.push(matmul(gpu, k, p, dy, bufs.cols, bufs.unused, bufs.split));
        if let Some(dx) = dx {
            out.push(gemm.input_grad(gpu, k, dy, bufs.dcols, bufs, out_row));
            out.push(col2im(gpu, k, layer, slice, dx, bufs));
        }
    }
    let w_off = whole.param_off - bufs.base;
    let target = (bufs.grads, w_off);
    let (m, n) = (whole.outputs, whole.inputs);
    out.push(sum_slices(
        gpu,
        k,
        (m, n),
        slices.len(),
        bufs.split,
        target,
        bufs.unused,
    ));
    if whole.bias {
        out.push(whole.bias_grad(gpu, k, dy, whole.rows, bufs));
    }
    out
}

/// A window covering the whole of `input` (for the flatten kernels' geometry).
pub(super) fn whole_image(input: crate::nn::model::Shape) -> Window {
    Window {
        input,
        kernel: (input.height, input.width),
        stride: 1,
        padding: 0,
    }
}
