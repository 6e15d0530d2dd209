//! Recording a layer's kernels: for each layer kind, the dispatches of its forward
//! pass (train or eval) and of its backward pass, bound to the buffers they use.
//! Called once when a batch plan is built; the dispatches are then replayed every step.

use super::model::{Layer, LayerKind, Window, BN_EPS, BN_MOMENTUM, LN_EPS};
use crate::gpu::kernels::{grid, groups_1d, lanes};
use crate::gpu::{Bind, Dispatch, Gpu, Kernels};

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

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct ActivationParams {
    len: u32,
    pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct BatchNormParams {
    rows: u32,
    features: u32,
    g_off: u32,
    s_off: u32,
    momentum: f32,
    eps: f32,
    chunk_rows: u32,
    chunks: u32,
}

/// Most chunks a BatchNorm reduction cuts its rows into (see `batchnorm.wgsl`).
pub const BN_MAX_CHUNKS: usize = 256;

/// (rows per chunk, chunks) of a BatchNorm reduction over `rows` rows.
fn bn_chunks(rows: usize) -> (usize, usize) {
    let chunk_rows = rows.div_ceil(BN_MAX_CHUNKS).max(32);
    (chunk_rows, rows.div_ceil(chunk_rows))
}

/// Uniform of `conv.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct WindowParams {
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
    fn new(batch: usize, window: &Window) -> WindowParams {
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
fn window_op(
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
fn window_op_from(
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
fn sum_slices<'b>(
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

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct DropoutParams {
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
fn dropout(
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

/// The uniform of a BatchNorm pass over `rows` rows.
fn batchnorm_params(
    layer: &Layer,
    bufs: &LayerBuffers,
    rows: usize,
    features: usize,
) -> BatchNormParams {
    let (chunk_rows, chunks) = bn_chunks(rows);
    BatchNormParams {
        rows: rows as u32,
        features: features as u32,
        g_off: bufs.param_off(layer) as u32,
        s_off: layer.state_off as u32,
        momentum: BN_MOMENTUM,
        eps: BN_EPS,
        chunk_rows: chunk_rows as u32,
        chunks: chunks as u32,
    }
}

/// The dispatches of one BatchNorm pass: `entries` in order, each over (chunk,
/// feature) pairs, features or all values as its name says. `io` is (x, dy, out, the
/// ReLU output a fused backward reads).
fn batchnorm(
    gpu: &Gpu,
    layer: &Layer,
    rows: usize,
    features: usize,
    entries: &[&crate::gpu::Kernel],
    io: [&wgpu::Buffer; 4],
    bufs: &LayerBuffers,
) -> Vec<Dispatch> {
    let p = batchnorm_params(layer, bufs, rows, features);
    let u = gpu.uniform(&p, "batchnorm");
    batchnorm_with(gpu, &p, &u, entries, io, bufs)
}

/// [`batchnorm`]'s dispatches with the uniform `u` holding `p`.
fn batchnorm_with(
    gpu: &Gpu,
    p: &BatchNormParams,
    u: &wgpu::Buffer,
    entries: &[&crate::gpu::Kernel],
    io: [&wgpu::Buffer; 4],
    bufs: &LayerBuffers,
) -> Vec<Dispatch> {
    let (rows, features, chunks) = (p.rows as usize, p.features as usize, p.chunks as usize);
    let [x, dy, out, relu_out] = io;
    entries
        .iter()
        .map(|kernel| {
            let groups = if kernel.name.starts_with("partial") {
                groups_1d(chunks * features, 64)
            } else if kernel.name.starts_with("finish") {
                groups_1d(features, 64)
            } else {
                // An invocation keeps one feature: at least one lane per feature.
                let [groups, ..] = grid(gpu, rows * features);
                [groups.max(features.div_ceil(lanes(gpu)) as u32), 1, 1]
            };
            Dispatch::new(
                gpu,
                kernel,
                &[
                    x.into(),
                    bufs.params,
                    dy.into(),
                    out.into(),
                    bufs.state.into(),
                    bufs.grads,
                    bufs.partials.into(),
                    u.into(),
                    bufs.step.into(),
                    relu_out.into(),
                ],
                groups,
            )
        })
        .collect()
}

/// Where a BatchNorm layer's training step waits for the other ranks (`--sync-bn`),
/// so that R ranks normalise with, and differentiate through, the statistics of the
/// whole global batch as one process does.
pub struct BnSync {
    /// The layer's uniform (this rank's rows) and, for the statistics, the uniform of
    /// `finish_train` that is told the global rows.
    params: BatchNormParams,
    finish: Option<wgpu::Buffer>,
    /// Where the layer's (dγ, dβ) start in the whole gradient store.
    grad_off: usize,
    /// Where the values it sums are read back (made once, used every step).
    staging: wgpu::Buffer,
}

impl BnSync {
    fn new(
        gpu: &Gpu,
        params: BatchNormParams,
        finish: Option<wgpu::Buffer>,
        grad_off: usize,
    ) -> BnSync {
        // The chunks' (mean, M2) for the statistics, (dγ, dβ) for the gradients.
        let words = match finish {
            Some(_) => 2 * params.chunks * params.features,
            None => 2 * params.features,
        };
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("batchnorm sync staging"),
            size: 4 * words as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        BnSync {
            params,
            finish,
            grad_off,
            staging,
        }
    }

    /// `words` values of `buffer` from `offset` words, through the staging buffer.
    async fn read(
        &self,
        gpu: &Gpu,
        buffer: &wgpu::Buffer,
        offset: usize,
        words: usize,
    ) -> crate::error::Result<Vec<f32>> {
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(
            buffer,
            4 * offset as u64,
            &self.staging,
            0,
            4 * words as u64,
        );
        gpu.queue.submit([encoder.finish()]);
        let mut values = vec![0.0f32; words];
        gpu.read_staging(&self.staging, &mut values).await?;
        Ok(values)
    }

    /// After `partial_stats`: every rank's chunk (mean, M2) merged (Chan et al., in
    /// f64, ranks in order) into chunk 0 of `partials`; after `finish_grads`:
    /// (dγ, dβ) ← Σ_r share_r·(dγ_r, dβ_r) with share_r this rank's part of the global
    /// batch (each rank's dy is a mean over its own rows).
    pub async fn apply(
        &self,
        gpu: &Gpu,
        collective: &dyn crate::collective::Collective,
        partials: &wgpu::Buffer,
        grads: &wgpu::Buffer,
        share: f64,
    ) -> crate::error::Result<()> {
        let p = &self.params;
        let nf = p.features as usize;
        let Some(finish) = &self.finish else {
            let g_off = self.grad_off;
            let local = self.read(gpu, grads, g_off, 2 * nf).await?;
            let mut sums: Vec<f64> = local.iter().map(|&v| v as f64 * share).collect();
            collective.sum(&mut sums);
            let words: Vec<f32> = sums.into_iter().map(|v| v as f32).collect();
            gpu.write(grads, g_off, &words);
            return Ok(());
        };
        let chunks = p.chunks as usize;
        let values = self.read(gpu, partials, 0, 2 * chunks * nf).await?;
        // (count, mean, M2) per feature over this rank's chunks.
        let mut local = vec![0.0f64; 3 * nf];
        for k in 0..chunks {
            let first = k * p.chunk_rows as usize;
            let count = (first + p.chunk_rows as usize).min(p.rows as usize) - first;
            for f in 0..nf {
                let t = k * nf + f;
                let (mean, m2) = (values[2 * t] as f64, values[2 * t + 1] as f64);
                merge(&mut local[3 * f..3 * f + 3], [count as f64, mean, m2]);
            }
        }
        let every = collective.gather(&local);
        let mut global = vec![0.0f64; 3 * nf];
        for rank in every.chunks(3 * nf) {
            for f in 0..nf {
                let s = &rank[3 * f..3 * f + 3];
                merge(&mut global[3 * f..3 * f + 3], [s[0], s[1], s[2]]);
            }
        }
        let merged: Vec<f32> = (0..nf)
            .flat_map(|f| [global[3 * f + 1] as f32, global[3 * f + 2] as f32])
            .collect();
        gpu.write(partials, 0, &merged);
        let rows = global[0].round() as u32;
        let whole = BatchNormParams {
            rows,
            chunk_rows: rows,
            chunks: 1,
            ..*p
        };
        gpu.write(finish, 0, &[whole]);
        Ok(())
    }
}

/// Add the statistics `b` = (count, mean, M2) into `a` (Chan et al.).
fn merge(a: &mut [f64], b: [f64; 3]) {
    let n = a[0] + b[0];
    if b[0] == 0.0 {
        return;
    }
    let delta = b[1] - a[1];
    a[1] += delta * b[0] / n;
    a[2] += b[2] + delta * delta * a[0] * b[0] / n;
    a[0] = n;
}

/// A BatchNorm layer's training forward (`dx: None`) or backward cut at its
/// [`BnSync`]: the dispatches before, the sync, the dispatches after.
pub fn batchnorm_synced(
    gpu: &Gpu,
    k: &Kernels,
    layer: &Layer,
    batch: usize,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dx: Option<&wgpu::Buffer>,
    bufs: &LayerBuffers,
) -> (Vec<Dispatch>, BnSync, Vec<Dispatch>) {
    let LayerKind::BatchNorm { features, spatial } = layer.kind else {
        panic!("{} has no BatchNorm sync", layer.kind.describe())
    };
    let p = batchnorm_params(layer, bufs, batch * spatial, features);
    let u = gpu.uniform(&p, "batchnorm");
    match dx {
        None => {
            let finish = gpu.uniform(&p, "batchnorm finish (global rows)");
            let io = [x, bufs.unused, y, bufs.unused];
            let before = batchnorm_with(gpu, &p, &u, &[&k.bn_partial_stats], io, bufs);
            let mut after = batchnorm_with(gpu, &p, &finish, &[&k.bn_finish_train], io, bufs);
            after.extend(batchnorm_with(gpu, &p, &u, &[&k.bn_normalise], io, bufs));
            let sync = BnSync::new(gpu, p, Some(finish), layer.param_off);
            (before, sync, after)
        }
        Some(dx) => {
            let io = [x, dy, dx, bufs.unused];
            let entries: [&crate::gpu::Kernel; 2] = [&k.bn_partial_grads, &k.bn_finish_grads];
            let before = batchnorm_with(gpu, &p, &u, &entries, io, bufs);
            let after = batchnorm_with(gpu, &p, &u, &[&k.bn_backward_dx], io, bufs);
            let sync = BnSync::new(gpu, p, None, layer.param_off);
            (before, sync, after)
        }
    }
}

/// A BatchNorm layer's forward; with `relu` the ReLU after it too, `y` then getting
/// the ReLU's output (the BatchNorm's own is never stored).
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_forward(
    gpu: &Gpu,
    k: &Kernels,
    layer: &Layer,
    batch: usize,
    mode: Mode,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    relu: bool,
    bufs: &LayerBuffers,
) -> Vec<Dispatch> {
    let LayerKind::BatchNorm { features, spatial } = layer.kind else {
        panic!("{} is no BatchNorm", layer.kind.describe())
    };
    let normalise = if relu {
        &k.bn_normalise_relu
    } else {
        &k.bn_normalise
    };
    let entries: &[&crate::gpu::Kernel] = match mode {
        Mode::Train | Mode::Probe => &[&k.bn_partial_stats, &k.bn_finish_train, normalise],
        Mode::Recalibrate => &[&k.bn_partial_stats, &k.bn_finish_recalibrate, normalise],
        Mode::Eval if relu => &[&k.bn_normalise_running_relu],
        Mode::Eval => &[&k.bn_normalise_running],
    };
    let io = [x, bufs.unused, y, bufs.unused];
    batchnorm(gpu, layer, batch * spatial, features, entries, io, bufs)
}

/// A BatchNorm layer's backward from `dy`, or, with `relu_out` = z (the output of
/// [`batchnorm_forward`] with `relu`), from the ReLU's: `dy` is then dz.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_backward(
    gpu: &Gpu,
    k: &Kernels,
    layer: &Layer,
    batch: usize,
    x: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    relu_out: Option<&wgpu::Buffer>,
    dx: &wgpu::Buffer,
    bufs: &LayerBuffers,
) -> Vec<Dispatch> {
    let LayerKind::BatchNorm { features, spatial } = layer.kind else {
        panic!("{} is no BatchNorm", layer.kind.describe())
    };
    let entries: [&crate::gpu::Kernel; 3] = match relu_out {
        Some(_) => [
            &k.bn_partial_grads_relu,
            &k.bn_finish_grads,
            &k.bn_backward_dx_relu,
        ],
        None => [&k.bn_partial_grads, &k.bn_finish_grads, &k.bn_backward_dx],
    };
    let io = [x, dy, dx, relu_out.unwrap_or(bufs.unused)];
    batchnorm(gpu, layer, batch * spatial, features, &entries, io, bufs)
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

/// A matrix product layer on `rows` rows: y[rows, outputs] = x[rows, inputs]·Wᵀ (+ b),
/// W [outputs, inputs] at `param_off` (bias after it), via `wt` (W transposed).
struct Gemm {
    rows: usize,
    inputs: usize,
    /// Row stride of x (and dx): `inputs`, or the im2col matrix's padded width.
    x_stride: usize,
    outputs: usize,
    param_off: usize,
    bias: bool,
}

impl Gemm {
    fn forward(
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
    fn transpose_weight(
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
    fn product(
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
    fn weight_grad_params(&self, out_row: usize, target: usize) -> LinearParams {
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
    fn bias_grad(
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
    fn input_grad(
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
    fn backward(
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
fn gemm_of(layer: &Layer, batch: usize) -> Option<Gemm> {
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

/// The forward of a token layer (`transformer.wgsl`) over `batch` samples, x to y.
fn token_forward(
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
struct TokenParams {
    batch: u32,
    tokens: u32,
    features: u32,
    heads: u32,
    off: u32,
    len: u32,
    scale: f32,
    eps: f32,
}

impl TokenParams {
    /// The uniform of a token `layer` over `batch` samples, its grid loop `len` long.
    fn of(layer: &Layer, bufs: &LayerBuffers, batch: usize, len: usize) -> TokenParams {
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
fn rows(layer: &Layer, batch: usize) -> usize {
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
fn token_op(gpu: &Gpu, kernel: &crate::gpu::Kernel, p: TokenParams, bufs: [Bind; 5]) -> Dispatch {
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

/// Whether `window`'s windows tile its input exactly (stride = kernel, no remainder).
fn tiles(window: &Window) -> bool {
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
fn pixels(window: &Window) -> usize {
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
fn im2col(
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
fn col2im(
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
fn sliced_conv_backward(
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
fn whole_image(input: crate::nn::model::Shape) -> Window {
    Window {
        input,
        kernel: (input.height, input.width),
        stride: 1,
        padding: 0,
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
        LayerKind::Add { .. } | LayerKind::PositionEmbedding { .. } => {
            let mut out = Vec::new();
            if let LayerKind::PositionEmbedding { features, tokens } = layer.kind {
                let p = TokenParams::of(layer, bufs, batch, tokens * features);
                out.push(token_op(
                    gpu,
                    &k.position_grad,
                    p,
                    [
                        bufs.unused.into(),
                        dy.into(),
                        bufs.unused.into(),
                        bufs.grads,
                        bufs.row_stats.into(),
                    ],
                ));
            }
            if let Some(dx) = dx {
                out.push(elementwise(gpu, &k.copy, in_len, [dy, bufs.unused, dx]));
            }
            out
        }
        LayerKind::LayerNorm { features, .. } => {
            let p = TokenParams::of(layer, bufs, batch, rows(layer, batch));
            vec![
                token_op(
                    gpu,
                    &k.layernorm_backward,
                    p,
                    [
                        x.into(),
                        dy.into(),
                        bufs.params,
                        needs_dx().into(),
                        bufs.row_stats.into(),
                    ],
                ),
                token_op(
                    gpu,
                    &k.layernorm_param_grads,
                    TokenParams {
                        len: features as u32,
                        ..p
                    },
                    [
                        x.into(),
                        dy.into(),
                        bufs.unused.into(),
                        bufs.grads,
                        bufs.row_stats.into(),
                    ],
                ),
            ]
        }
        LayerKind::ClassToken { features, .. } => {
            let grad = TokenParams::of(layer, bufs, batch, features);
            let mut out = vec![token_op(
                gpu,
                &k.class_token_grad,
                grad,
                [
                    bufs.unused.into(),
                    dy.into(),
                    bufs.unused.into(),
                    bufs.grads,
                    bufs.row_stats.into(),
                ],
            )];
            if let Some(dx) = dx {
                let p = TokenParams::of(layer, bufs, batch, in_len);
                out.push(token_op(
                    gpu,
                    &k.class_token_backward,
                    p,
                    [
                        bufs.unused.into(),
                        dy.into(),
                        bufs.unused.into(),
                        dx.into(),
                        bufs.row_stats.into(),
                    ],
                ));
            }
            out
        }
        LayerKind::TakeClassToken { .. } => {
            let p = TokenParams::of(layer, bufs, batch, in_len);
            vec![token_op(
                gpu,
                &k.take_class_token_back,
                p,
                [
                    bufs.unused.into(),
                    dy.into(),
                    bufs.unused.into(),
                    needs_dx().into(),
                    bufs.row_stats.into(),
                ],
            )]
        }
        LayerKind::Attention { .. } => {
            let p = TokenParams::of(layer, bufs, batch, 0);
            vec![token_op(
                gpu,
                &k.attention_backward,
                p,
                [
                    x.into(),
                    dy.into(),
                    y.into(),
                    needs_dx().into(),
                    bufs.row_stats.into(),
                ],
            )]
        }
    }
}
