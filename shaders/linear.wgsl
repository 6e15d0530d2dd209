// Linear layers: the matrix multiply C = A·B (+ bias), the transpose that feeds it,
// and the bias gradient. Activations are batch-major [batch, features]; a weight is
// stored as PyTorch's nn.Linear stores it, W[out, in].
//
// Forward        Y[B, out] = X[B, in] · Wᵀ + b      (Wᵀ made by `transpose`, then `matmul`)
// Grad input     dX[B, in] = dY[B, out] · W         (`matmul`, B operand = W itself)
// Grad weight    dW[out, in] = dYᵀ · X              (`matmul`, A operand read transposed)
// Grad bias      db[out] = Σ_b dY[b, out]           (`bias_grad`)
//
// matmul: C[m, n] = Σ_k A(m, k)·B[k, n] (+ bias[n]), with
//   A(m, k) = a[a_off + m·a_rs + k·a_cs]   (any strides: every invocation of a workgroup
//                                           reads the same A element, a broadcast)
//   B[k, n] = b[b_off + k·ldb + n],  C[m, n] = c[c_off + m·ldc + n].
// A workgroup owns ROWS rows and 8·WG columns; invocation `lid` owns the columns
// n0 + lid + j·WG for j = 0..7, so consecutive invocations touch consecutive addresses
// (what software rasterisers vectorise and what real GPUs coalesce). Row and column
// indices are clamped for the loads and checked once for the stores, so the inner loop
// has no branches.

struct LinearParams {
    m: u32, n: u32, k: u32, has_bias: u32,
    a_off: u32, a_rs: u32, a_cs: u32, b_off: u32,
    ldb: u32, c_off: u32, ldc: u32, bias_off: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<uniform> p: LinearParams;

const WG: u32 = 32u;
const ROWS: u32 = 8u;

@compute @workgroup_size(32)
fn matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m0 = wg.y * ROWS;
    let n0 = wg.x * (8u * WG) + lid.x;
    let last_n = p.n - 1u;
    let last_m = p.m - 1u;
    // Columns owned by this invocation, clamped for loading.
    let c0 = vec4<u32>(min(n0, last_n), min(n0 + WG, last_n), min(n0 + 2u * WG, last_n), min(n0 + 3u * WG, last_n));
    let c1 = vec4<u32>(min(n0 + 4u * WG, last_n), min(n0 + 5u * WG, last_n), min(n0 + 6u * WG, last_n), min(n0 + 7u * WG, last_n));
    var row_base: array<u32, ROWS>;
    for (var r = 0u; r < ROWS; r++) {
        row_base[r] = p.a_off + min(m0 + r, last_m) * p.a_rs;
    }
    var acc0: array<vec4<f32>, ROWS>;
    var acc1: array<vec4<f32>, ROWS>;
    for (var k = 0u; k < p.k; k++) {
        let bk = p.b_off + k * p.ldb;
        let b0 = vec4<f32>(b[bk + c0.x], b[bk + c0.y], b[bk + c0.z], b[bk + c0.w]);
        let b1 = vec4<f32>(b[bk + c1.x], b[bk + c1.y], b[bk + c1.z], b[bk + c1.w]);
        let ak = k * p.a_cs;
        for (var r = 0u; r < ROWS; r++) {
            let av = a[row_base[r] + ak];
            acc0[r] = fma(vec4<f32>(av), b0, acc0[r]);
            acc1[r] = fma(vec4<f32>(av), b1, acc1[r]);
        }
    }
    var bias0 = vec4<f32>(0.0);
    var bias1 = vec4<f32>(0.0);
    if (p.has_bias != 0u) {
        bias0 = vec4<f32>(bias[p.bias_off + c0.x], bias[p.bias_off + c0.y], bias[p.bias_off + c0.z], bias[p.bias_off + c0.w]);
        bias1 = vec4<f32>(bias[p.bias_off + c1.x], bias[p.bias_off + c1.y], bias[p.bias_off + c1.z], bias[p.bias_off + c1.w]);
    }
    for (var r = 0u; r < ROWS; r++) {
        let row = m0 + r;
        if (row >= p.m) {
            break;
        }
        let out0 = acc0[r] + bias0;
        let out1 = acc1[r] + bias1;
        let base = p.c_off + row * p.ldc;
        for (var j = 0u; j < 4u; j++) {
            let col_a = n0 + j * WG;
            if (col_a < p.n) {
                c[base + col_a] = out0[j];
            }
            let col_b = n0 + (j + 4u) * WG;
            if (col_b < p.n) {
                c[base + col_b] = out1[j];
            }
        }
    }
}

// transpose: c[c_off + j·m + i] = a[a_off + i·n + j] for an m × n row-major matrix.
@compute @workgroup_size(16, 16)
fn transpose(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y;
    let j = gid.x;
    if (i < p.m && j < p.n) {
        c[p.c_off + j * p.m + i] = a[p.a_off + i * p.n + j];
    }
}

// bias_grad: c[c_off + j] = Σ_{i < m} a[a_off + i·n + j], column sums of an m × n matrix.
@compute @workgroup_size(64)
fn bias_grad(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    if (j >= p.n) {
        return;
    }
    var sum = 0.0;
    for (var i = 0u; i < p.m; i++) {
        sum += a[p.a_off + i * p.n + j];
    }
    c[p.c_off + j] = sum;
}
