//! Recording a layer's kernels: for each layer kind, the dispatches of its forward
//! pass (train or eval) and of its backward pass, bound to the buffers they use.
//! Called once when a batch plan is built; the dispatches are then replayed every step.

use super::model::{Layer, LayerKind, BN_EPS, BN_MOMENTUM};
use crate::gpu::kernels::groups_1d;
use crate::gpu::{Dispatch, Gpu, Kernels};

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
}

/// (rows, columns) a workgroup of `matmul` covers (`ROWS`, 8·`WG` in the shader).
pub const MATMUL_TILE: (usize, usize) = (8, 256);
/// (rows, columns) a workgroup of `matmul_tiled` covers.
pub const MATMUL_TILED_TILE: (usize, usize) = (64, 64);
/// (rows, columns) a workgroup of `matmul_vec4` covers (`VEC_ROWS`, 8·`VEC_WG`).
pub const MATMUL_VEC4_TILE: (usize, usize) = (16, 256);

/// (rows, columns) a workgroup of `matmul_subgroup` covers.
pub const MATMUL_SUBGROUP_TILE: (usize, usize) = (24, 256);

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
    batch: u32,
    features: u32,
    g_off: u32,
    s_off: u32,
    momentum: f32,
    eps: f32,
    pad: [u32; 2],
}

/// The buffers a layer binds besides its input and output activations.
pub struct LayerBuffers<'a> {
    pub params: &'a wgpu::Buffer,
    pub grads: &'a wgpu::Buffer,
    pub state: &'a wgpu::Buffer,
    /// The per-step uniform (batch index for BatchNorm recalibration).
    pub step: &'a wgpu::Buffer,
    /// Bound where a kernel's layout has a slot the entry point does not use.
    pub unused: &'a wgpu::Buffer,
}

/// `c = a·b (+ bias)` as described in `linear.wgsl`, with the variant that suits the
/// adapter (tiled on GPUs) and the operands' alignment (vec4 loads of B).
pub fn matmul(
    gpu: &Gpu,
    k: &Kernels,
    p: LinearParams,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    c: &wgpu::Buffer,
) -> Dispatch {
    let (kernel, tile) = match &k.matmul_subgroup {
        _ if k.prefer_tiled => (&k.matmul_tiled, MATMUL_TILED_TILE),
        Some(sg) if vec4_aligned(&p) => (sg, MATMUL_SUBGROUP_TILE),
        None if vec4_aligned(&p) => (&k.matmul_vec4, MATMUL_VEC4_TILE),
        _ => (&k.matmul, MATMUL_TILE),
    };
    matmul_with(gpu, kernel, tile, p, a, b, bias, c)
}

/// `c = a·b (+ bias)` with a given variant and its workgroup tile (rows, columns).
pub fn matmul_with(
    gpu: &Gpu,
    kernel: &crate::gpu::Kernel,
    tile: (usize, usize),
    p: LinearParams,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    c: &wgpu::Buffer,
) -> Dispatch {
    let groups = [
        (p.n as usize).div_ceil(tile.1) as u32,
        (p.m as usize).div_ceil(tile.0) as u32,
        1,
    ];
    let u = gpu.uniform(&p, kernel.name);
    Dispatch::new(gpu, kernel, &[a, b, bias, c, &u], groups)
}

/// Row stride of a transposed weight: whole vec4s, so `matmul_vec4` can read it.
pub fn padded(width: usize) -> usize {
    width.next_multiple_of(4)
}

/// `c[c_off..] = transpose(a[a_off..])` for an m × n row-major matrix; the n × m result
/// has row stride `padded(m)`.
pub fn transpose(
    gpu: &Gpu,
    k: &Kernels,
    m: usize,
    n: usize,
    a: (&wgpu::Buffer, usize),
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
    let groups = [n.div_ceil(16) as u32, m.div_ceil(16) as u32, 1];
    Dispatch::new(gpu, &k.transpose, &[a.0, unused, unused, c.0, &u], groups)
}

fn activation(
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
        groups_1d(len, 256),
    )
}

fn batchnorm_uniform(gpu: &Gpu, layer: &Layer, batch: usize, features: usize) -> wgpu::Buffer {
    let p = BatchNormParams {
        batch: batch as u32,
        features: features as u32,
        g_off: layer.param_off as u32,
        s_off: layer.state_off as u32,
        momentum: BN_MOMENTUM,
        eps: BN_EPS,
        pad: [0; 2],
    };
    gpu.uniform(&p, "batchnorm")
}

/// How a forward pass treats BatchNorm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics, running statistics updated with momentum (training).
    Train,
    /// Running statistics (evaluation).
    Eval,
    /// Batch statistics, running statistics averaged over the pass (re-estimation).
    Recalibrate,
}

/// Forward dispatches of `layer` from `x` [batch, in] to `y` [batch, out]. A Linear
/// layer needs `wt`, scratch for its transposed weight.
pub fn forward(
    gpu: &Gpu,
    k: &Kernels,
    layer: &Layer,
    batch: usize,
    mode: Mode,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    wt: Option<&wgpu::Buffer>,
    bufs: &LayerBuffers,
) -> Vec<Dispatch> {
    match layer.kind {
        LayerKind::Linear { inputs, outputs } => {
            let wt =
                wt.expect("a Linear layer needs transpose scratch of inputs × padded(outputs)");
            let p = LinearParams {
                m: batch as u32,
                n: outputs as u32,
                k: inputs as u32,
                has_bias: 1,
                a_rs: inputs as u32,
                a_cs: 1,
                ldb: padded(outputs) as u32,
                ldc: outputs as u32,
                bias_off: (layer.param_off + inputs * outputs) as u32,
                ..Default::default()
            };
            vec![
                transpose(
                    gpu,
                    k,
                    outputs,
                    inputs,
                    (bufs.params, layer.param_off),
                    (wt, 0),
                    bufs.unused,
                ),
                matmul(gpu, k, p, x, wt, bufs.params, y),
            ]
        }
        LayerKind::BatchNorm { features } => {
            let u = batchnorm_uniform(gpu, layer, batch, features);
            let kernel = match mode {
                Mode::Train => &k.bn_forward_train,
                Mode::Eval => &k.bn_forward_eval,
                Mode::Recalibrate => &k.bn_recalibrate,
            };
            vec![Dispatch::new(
                gpu,
                kernel,
                &[
                    x,
                    bufs.params,
                    bufs.unused,
                    y,
                    bufs.state,
                    bufs.grads,
                    &u,
                    bufs.step,
                ],
                groups_1d(features, 64),
            )]
        }
        LayerKind::Relu { features } => {
            vec![activation(
                gpu,
                &k.relu_forward,
                batch * features,
                [x, bufs.unused, y],
            )]
        }
    }
}

/// Backward dispatches of `layer`: parameter gradients into `bufs.grads`, and the
/// input gradient into `dx` when given. `x` and `y` are the forward input and output.
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
    match layer.kind {
        LayerKind::Linear { inputs, outputs } => {
            let w_off = layer.param_off;
            // dW[out, in] = dYᵀ · X: A(m = o, k = b) = dY[b·out + o].
            let grad_w = LinearParams {
                m: outputs as u32,
                n: inputs as u32,
                k: batch as u32,
                a_rs: 1,
                a_cs: outputs as u32,
                ldb: inputs as u32,
                c_off: w_off as u32,
                ldc: inputs as u32,
                ..Default::default()
            };
            let grad_b = LinearParams {
                m: batch as u32,
                n: outputs as u32,
                c_off: (w_off + inputs * outputs) as u32,
                ..Default::default()
            };
            let u = gpu.uniform(&grad_b, "bias_grad");
            let mut out = vec![
                matmul(gpu, k, grad_w, dy, x, bufs.unused, bufs.grads),
                Dispatch::new(
                    gpu,
                    &k.bias_grad,
                    &[dy, bufs.unused, bufs.unused, bufs.grads, &u],
                    groups_1d(outputs, 64),
                ),
            ];
            if let Some(dx) = dx {
                // dX[B, in] = dY[B, out] · W[out, in].
                let grad_x = LinearParams {
                    m: batch as u32,
                    n: inputs as u32,
                    k: outputs as u32,
                    a_rs: outputs as u32,
                    a_cs: 1,
                    b_off: w_off as u32,
                    ldb: inputs as u32,
                    ldc: inputs as u32,
                    ..Default::default()
                };
                out.push(matmul(gpu, k, grad_x, dy, bufs.params, bufs.unused, dx));
            }
            out
        }
        LayerKind::BatchNorm { features } => {
            let u = batchnorm_uniform(gpu, layer, batch, features);
            let dx = dx.expect("BatchNorm backward needs an input-gradient buffer");
            vec![Dispatch::new(
                gpu,
                &k.bn_backward,
                &[
                    x,
                    bufs.params,
                    dy,
                    dx,
                    bufs.state,
                    bufs.grads,
                    &u,
                    bufs.step,
                ],
                groups_1d(features, 64),
            )]
        }
        LayerKind::Relu { features } => {
            let dx = dx.expect("ReLU backward needs an input-gradient buffer");
            vec![activation(
                gpu,
                &k.relu_backward,
                batch * features,
                [y, dy, dx],
            )]
        }
    }
}
