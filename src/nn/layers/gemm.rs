//! Matrix products: the uniform of `linear.wgsl`, its variants and their tiles,
//! split-K, the transpose, and the product of a Linear or Conv layer (`Gemm`).

use super::*;

/// Uniform of `linear.wgsl` (see the shader for the meaning of each field).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LinearParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub has_bias: u32,
    pub a_off: u32,
    pub a_rs: u32,
    pub a_cs: u32,
    pub b_off: u32,
    pub ldb: u32,
    pub c_off: u32,
    pub ldc: u32,
    pub bias_off: u32,
    /// Split-K (`matmul_tiled` only): k per workgroup layer, 0 for none.
    pub k_split: u32,
    /// Split-K: elements between the slices of C.
    pub c_slice: u32,
    pub pad: [u32; 2],
}

/// (rows, columns) a workgroup of `matmul` covers (`ROWS`, 8·`WG` in the shader).
pub const MATMUL_TILE: (usize, usize) = (8, 256);

/// (rows, columns) a workgroup of `matmul_tiled` covers.
pub const MATMUL_TILED_TILE: (usize, usize) = (64, 64);

/// (rows, columns) a workgroup of `matmul_vec4` covers (`VEC_ROWS`, 8·`VEC_WG`).
pub const MATMUL_VEC4_TILE: (usize, usize) = (16, 256);

/// (rows, columns) a workgroup of `matmul_subgroup` covers: 24 rows, 8 columns per
/// invocation of a subgroup.
pub fn matmul_subgroup_tile(gpu: &Gpu) -> (usize, usize) {
    (24, 8 * crate::gpu::kernels::subgroup_width(gpu))
}

/// Whether `p` can use `matmul_vec4` (B rows start on 16-byte boundaries).
pub fn vec4_aligned(p: &LinearParams) -> bool {
    p.ldb.is_multiple_of(4) && p.b_off.is_multiple_of(4)
}

/// `c = a·b (+ bias)` as described in `linear.wgsl`, with the variant that suits the
/// adapter (tiled on GPUs) and the operands' alignment (vec4 loads of B).
pub fn matmul<'b>(
    gpu: &Gpu,
    k: &Kernels,
    p: LinearParams,
    a: impl Into<Bind<'b>>,
    b: impl Into<Bind<'b>>,
    bias: impl Into<Bind<'b>>,
    c: impl Into<Bind<'b>>,
) -> Dispatch {
    let (kernel, tile) = match &k.matmul_subgroup {
        _ if k.prefer_tiled => (&k.matmul_tiled, MATMUL_TILED_TILE),
        Some(sg) if vec4_aligned(&p) => (sg, matmul_subgroup_tile(gpu)),
        None if vec4_aligned(&p) => (&k.matmul_vec4, MATMUL_VEC4_TILE),
        _ => (&k.matmul, MATMUL_TILE),
    };
    matmul_with(gpu, kernel, tile, p, a, b, bias, c)
}

/// `c = a·b (+ bias)` with a given variant and its workgroup tile (rows, columns).
pub fn matmul_with<'b>(
    gpu: &Gpu,
    kernel: &crate::gpu::Kernel,
    tile: (usize, usize),
    p: LinearParams,
    a: impl Into<Bind<'b>>,
    b: impl Into<Bind<'b>>,
    bias: impl Into<Bind<'b>>,
    c: impl Into<Bind<'b>>,
) -> Dispatch {
    let groups = [
        (p.n as usize).div_ceil(tile.1) as u32,
        (p.m as usize).div_ceil(tile.0) as u32,
        1,
    ];
    let u = gpu.uniform(&p, kernel.name);
    let resources = [a.into(), b.into(), bias.into(), c.into(), (&u).into()];
    Dispatch::new(gpu, kernel, &resources, groups)
}

/// Workgroup layers of a split-K `matmul_tiled` product of m × n outputs over k: enough
/// that a GPU gets about 256 workgroups, each layer summing at least 256 values of k;
/// 1 (no split) where the 64 × 64 tiles alone are enough or k is short.
pub fn split_k(m: usize, n: usize, k: usize) -> usize {
    let tiles = m.div_ceil(64) * n.div_ceil(64);
    k.div_ceil(256).min(256usize.div_ceil(tiles)).max(1)
}

/// `c = a·b` (no bias) by `matmul_tiled` with k cut into `split` ranges: slice z of
/// the product into `scratch` (z·m·n), then `split_k_sum` adds the slices into c at
/// `p.c_off` (whose rows must be `p.n` apart).
#[allow(clippy::too_many_arguments)]
pub fn matmul_split_k<'b>(
    gpu: &Gpu,
    k: &Kernels,
    p: LinearParams,
    split: usize,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    scratch: &wgpu::Buffer,
    c: impl Into<Bind<'b>>,
    unused: &wgpu::Buffer,
) -> [Dispatch; 2] {
    assert_eq!(p.ldc, p.n, "split-K sums contiguous rows");
    let (m, n) = (p.m as usize, p.n as usize);
    let k_split = (p.k as usize).div_ceil(split).next_multiple_of(16);
    let layers = (p.k as usize).div_ceil(k_split);
    let sliced = LinearParams {
        c_off: 0,
        k_split: k_split as u32,
        c_slice: (m * n) as u32,
        has_bias: 0,
        ..p
    };
    let (rows, columns) = MATMUL_TILED_TILE;
    let groups = [
        n.div_ceil(columns) as u32,
        m.div_ceil(rows) as u32,
        layers as u32,
    ];
    let u = gpu.uniform(&sliced, "matmul_tiled");
    let product = Dispatch::new(gpu, &k.matmul_tiled, &[a, b, unused, scratch, &u], groups);
    let total = sum_slices(
        gpu,
        k,
        (m, n),
        layers,
        scratch,
        (c, p.c_off as usize),
        unused,
    );
    [product, total]
}

/// c[c_off..] = Σ_z scratch[z·m·n..] over `slices` contiguous m × n slices.
pub(super) fn sum_slices<'b>(
    gpu: &Gpu,
    k: &Kernels,
    (m, n): (usize, usize),
    slices: usize,
    scratch: &wgpu::Buffer,
    (c, c_off): (impl Into<Bind<'b>>, usize),
    unused: &wgpu::Buffer,
) -> Dispatch {
    let sum = LinearParams {
        m: m as u32,
        n: n as u32,
        k: slices as u32,
        c_off: c_off as u32,
        c_slice: (m * n) as u32,
        ..Default::default()
    };
    let u = gpu.uniform(&sum, "split_k_sum");
    let resources = [
        scratch.into(),
        unused.into(),
        unused.into(),
        c.into(),
        (&u).into(),
    ];
    Dispatch::new(gpu, &k.split_k_sum, &resources, grid(gpu, m * n))
}

/// Split-K scratch (elements) `layer`'s weight gradient needs at `batch` on a GPU.
pub fn split_k_len(layer: &Layer, batch: usize) -> usize {
    gemm_of(layer, batch).map_or(0, |g| {
        let split = split_k(g.outputs, g.inputs, g.rows);
        if split > 1 {
            split * g.outputs * g.inputs
        } else {
            0
        }
    })
}

/// Row stride of a transposed weight: whole vec4s, so `matmul_vec4` can read it.
pub fn padded(width: usize) -> usize {
    width.next_multiple_of(4)
}

/// `c[c_off..] = transpose(a[a_off..])` for an m × n row-major matrix; the n × m result
/// has row stride `padded(m)`.
pub fn transpose<'b>(
    gpu: &Gpu,
    k: &Kernels,
    m: usize,
    n: usize,
    a: (impl Into<Bind<'b>>, usize),
    c: (&wgpu::Buffer, usize),
    unused: &wgpu::Buffer,
) -> Dispatch {
    let p = LinearParams {
        m: m as u32,
        n: n as u32,
        a_off: a.1 as u32,
        c_off: c.1 as u32,
        ldc: padded(m) as u32,
        ..Default::default()
    };
    let u = gpu.uniform(&p, "transpose");
    Dispatch::new(
        gpu,
        &k.transpose,
        &[
            a.0.into(),
            unused.into(),
            unused.into(),
            c.0.into(),
            (&u).into(),
        ],
        grid(gpu, m * n),
    )
}

/// A matrix product layer on `rows` rows: y[rows, outputs] = x[rows, inputs]·Wᵀ (+ b),
/// W [outputs, inputs] at `param_off` (bias after it), via `wt` (W transposed).
pub(super) struct Gemm {
    pub(super) rows: usize,
    pub(super) inputs: usize,
    /// Row stride of x (and dx): `inputs`, or the im2col matrix's padded width.
    pub(super) x_stride: usize,
    pub(super) outputs: usize,
    pub(super) param_off: usize,
    pub(super) bias: bool,
}

impl Gemm {
    pub(super) fn forward(
        &self,
        gpu: &Gpu,
        k: &Kernels,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        wt: &wgpu::Buffer,
        bufs: &LayerBuffers,
    ) -> Vec<Dispatch> {
        vec![
            self.transpose_weight(gpu, k, wt, bufs),
            self.product(gpu, k, x, y, wt, bufs, 0),
        ]
    }

    /// W transposed into `wt` (the layout the products read).
    pub(super) fn transpose_weight(
        &self,
        gpu: &Gpu,
        k: &Kernels,
        wt: &wgpu::Buffer,
        bufs: &LayerBuffers,
    ) -> Dispatch {
        let (params, off) = (bufs.params, self.param_off - bufs.base);
        transpose(
            gpu,
            k,
            self.outputs,
            self.inputs,
            (params, off),
            (wt, 0),
            bufs.unused,
        )
    }

    /// y rows `out_row..out_row + rows` = x·Wᵀ (+ b), W read transposed from `wt`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn product(
        &self,
        gpu: &Gpu,
        k: &Kernels,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        wt: &wgpu::Buffer,
        bufs: &LayerBuffers,
        out_row: usize,
    ) -> Dispatch {
        let p = LinearParams {
            m: self.rows as u32,
            n: self.outputs as u32,
            k: self.inputs as u32,
            has_bias: self.bias as u32,
            a_rs: self.x_stride as u32,
            a_cs: 1,
            ldb: padded(self.outputs) as u32,
            c_off: (out_row * self.outputs) as u32,
            ldc: self.outputs as u32,
            bias_off: (self.param_off - bufs.base + self.inputs * self.outputs) as u32,
            ..Default::default()
        };
        matmul(gpu, k, p, x, wt, bufs.params, y)
    }

    /// dW[out, in] = dYᵀ·X for dY's rows from `out_row`, written at `target`'s word
    /// offset: A(m = o, k = r) = dY[(out_row + r)·out + o].
    pub(super) fn weight_grad_params(&self, out_row: usize, target: usize) -> LinearParams {
        LinearParams {
            m: self.outputs as u32,
            n: self.inputs as u32,
            k: self.rows as u32,
            a_off: (out_row * self.outputs) as u32,
            a_rs: 1,
            a_cs: self.outputs as u32,
            ldb: self.x_stride as u32,
            c_off: target as u32,
            ldc: self.inputs as u32,
            ..Default::default()
        }
    }

    /// db = Σ_rows dY over the first `rows` rows of dY.
    pub(super) fn bias_grad(
        &self,
        gpu: &Gpu,
        k: &Kernels,
        dy: &wgpu::Buffer,
        rows: usize,
        bufs: &LayerBuffers,
    ) -> Dispatch {
        let grad_b = LinearParams {
            m: rows as u32,
            n: self.outputs as u32,
            c_off: (self.param_off - bufs.base + self.inputs * self.outputs) as u32,
            ..Default::default()
        };
        let u = gpu.uniform(&grad_b, "bias_grad");
        let resources = [
            dy.into(),
            bufs.unused.into(),
            bufs.unused.into(),
            bufs.grads,
            (&u).into(),
        ];
        Dispatch::new(gpu, &k.bias_grad, &resources, groups_1d(self.outputs, 64))
    }

    /// dX[rows, in] = dY[rows, out]·W[out, in] for dY's rows from `out_row`.
    pub(super) fn input_grad(
        &self,
        gpu: &Gpu,
        k: &Kernels,
        dy: &wgpu::Buffer,
        dx: &wgpu::Buffer,
        bufs: &LayerBuffers,
        out_row: usize,
    ) -> Dispatch {
        let grad_x = LinearParams {
            m: self.rows as u32,
            n: self.inputs as u32,
            k: self.outputs as u32,
            a_off: (out_row * self.outputs) as u32,
            a_rs: self.outputs as u32,
            a_cs: 1,
            b_off: (self.param_off - bufs.base) as u32,
            ldb: self.inputs as u32,
            ldc: self.x_stride as u32,
            ..Default::default()
        };
        matmul(gpu, k, grad_x, dy, bufs.params, bufs.unused, dx)
    }

    /// dW (and db) into the gradient store; dx when given.
    pub(super) fn backward(
        &self,
        gpu: &Gpu,
        k: &Kernels,
        x: &wgpu::Buffer,
        dy: &wgpu::Buffer,
        dx: Option<&wgpu::Buffer>,
        bufs: &LayerBuffers,
    ) -> Vec<Dispatch> {
        let (rows, inputs, outputs) = (self.rows, self.inputs, self.outputs);
        let grad_w = self.weight_grad_params(0, self.param_off - bufs.base);
        let split = if k.prefer_tiled {
            split_k(outputs, inputs, rows)
        } else {
            1
        };
        let mut out = if split > 1 {
            let (scratch, unused) = (bufs.split, bufs.unused);
            matmul_split_k(gpu, k, grad_w, split, dy, x, scratch, bufs.grads, unused).to_vec()
        } else {
            vec![matmul(gpu, k, grad_w, dy, x, bufs.unused, bufs.grads)]
        };
        if self.bias {
            out.push(self.bias_grad(gpu, k, dy, rows, bufs));
        }
        if let Some(dx) = dx {
            out.push(self.input_grad(gpu, k, dy, dx, bufs, 0));
        }
        out
    }
}

/// The matrix product of a Linear or Conv layer (a convolution multiplies its im2col
/// matrix).
pub(super) fn gemm_of(layer: &Layer, batch: usize) -> Option<Gemm> {
    match layer.kind {
        LayerKind::Linear {
            inputs,
            outputs,
            tokens,
        } => Some(Gemm {
            rows: batch * tokens,
            inputs,
            x_stride: inputs,
            outputs,
            param_off: layer.param_off,
            bias: true,
        }),
        LayerKind::Conv {
            window,
            outputs,
            bias,
        } => {
            let (rows, inputs) = im2col_shape(batch, &window);
            Some(Gemm {
                rows,
                inputs,
                x_stride: padded(inputs),
                outputs,
                param_off: layer.param_off,
                bias,
            })
        }
        _ => None,
    }
}

/// Length of the transposed-weight scratch a Linear or Conv layer needs.
pub fn transposed_len(layer: &Layer) -> Option<usize> {
    gemm_of(layer, 1).map(|g| g.inputs * padded(g.outputs))
}
