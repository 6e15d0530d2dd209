// Linear layers: the matrix multiply C = A·B (+ bias), the transpose that feeds it,
// and the bias gradient. Activations are batch-major [batch, features]; a weight is
// stored as PyTorch's nn.Linear stores it, W[out, in].
//
// Forward        Y[B, out] = X[B, in] · Wᵀ + b      (Wᵀ made by `transpose`, then `matmul`)
// Grad input     dX[B, in] = dY[B, out] · W         (`matmul`, B operand = W itself)
// Grad weight    dW[out, in] = dYᵀ · X              (`matmul`, A operand read transposed)
// Grad bias      db[out] = Σ_b dY[b, out]           (`bias_grad`)
// Split-K sum    C = Σ_z C_z                          (`split_k_sum`)
//
// matmul: C[m, n] = Σ_k A(m, k)·B[k, n] (+ bias[n]), with
//   A(m, k) = a[a_off + m·a_rs + k·a_cs]   (any strides: every invocation of a workgroup
//                                           reads the same A element, a broadcast)
//   B[k, n] = b[b_off + k·ldb + n],  C[m, n] = c[c_off + m·ldc + n].
// Three variants, all tested against the same CPU reference; the host picks
// matmul_tiled on GPUs and matmul_vec4 / matmul on CPU rasterisers:
// matmul_tiled (any alignment) the classic GPU kernel: 64 × 64 outputs per workgroup of
//              16 × 16 invocations (4 × 4 each), A and B staged through workgroup
//              memory in 64 × 16 and 16 × 64 tiles. Split-K (k_split > 0): workgroup
//              layer z sums its own range of k into C slice z (c_slice elements
//              apart), and `split_k_sum` adds the slices: a dW product with a long K
//              (batch·H·W) and few outputs then fills a large GPU.
// matmul_vec4  (B aligned: ldb and b_off multiples of 4) a workgroup owns VEC_ROWS rows
//              and 8·VEC_WG columns; invocation `lid` owns 8 consecutive columns, read
//              from B as two vec4 per k, and keeps VEC_ROWS × 8 sums in vec4
//              registers, the row loop written out. The A element of a row is the same
//              for every invocation (a uniform load), so each B load feeds 2·VEC_ROWS
//              FMAs. This is the layout that CPU rasterisers (lavapipe) run fastest.
// matmul       (any alignment) ROWS rows × 8·WG columns per workgroup; invocation
//              `lid` owns the columns n0 + lid + j·WG, j = 0..7.
// Row and column indices are clamped for the loads and checked once for the stores,
// so the inner loops have no branches.

struct LinearParams {
    m: u32, n: u32, k: u32, has_bias: u32,
    a_off: u32, a_rs: u32, a_cs: u32, b_off: u32,
    ldb: u32, c_off: u32, ldc: u32, bias_off: u32,
    k_split: u32, c_slice: u32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<uniform> p: LinearParams;

// Element i of B viewed as a flat f32 array.
fn b_at(i: u32) -> f32 {
    return b4[i >> 2u][i & 3u];
}

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
        let b0 = vec4<f32>(b_at(bk + c0.x), b_at(bk + c0.y), b_at(bk + c0.z), b_at(bk + c0.w));
        let b1 = vec4<f32>(b_at(bk + c1.x), b_at(bk + c1.y), b_at(bk + c1.z), b_at(bk + c1.w));
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


// Store columns col..col+3 of row `row` (plus bias), skipping what lies outside C.
fn store4(row: u32, col: u32, v: vec4<f32>) {
    store4_at(0u, row, col, v);
}

// store4 into C shifted by `slice` elements.
fn store4_at(slice: u32, row: u32, col: u32, v: vec4<f32>) {
    if (row >= p.m) {
        return;
    }
    let base = p.c_off + slice + row * p.ldc;
    for (var j = 0u; j < 4u; j++) {
        let n = col + j;
        if (n < p.n) {
            var out = v[j];
            if (p.has_bias != 0u) {
                out += bias[p.bias_off + n];
            }
            c[base + n] = out;
        }
    }
}

// Store columns col..col+7 of row `row`.
fn store_row(row: u32, col: u32, lo: vec4<f32>, hi: vec4<f32>) {
    store4(row, col, lo);
    store4(row, col + 4u, hi);
}

@compute @workgroup_size(32)
fn matmul_vec4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m0 = wg.y * 16u;
    let col = (wg.x * 32u + lid.x) * 8u;
    let row_vec4s = p.ldb / 4u;
    let q0 = p.b_off / 4u + min(col / 4u, row_vec4s - 1u);
    let q1 = p.b_off / 4u + min(col / 4u + 1u, row_vec4s - 1u);
    let last_m = p.m - 1u;
    let r0 = p.a_off + min(m0 + 0u, last_m) * p.a_rs;
    let r1 = p.a_off + min(m0 + 1u, last_m) * p.a_rs;
    let r2 = p.a_off + min(m0 + 2u, last_m) * p.a_rs;
    let r3 = p.a_off + min(m0 + 3u, last_m) * p.a_rs;
    let r4 = p.a_off + min(m0 + 4u, last_m) * p.a_rs;
    let r5 = p.a_off + min(m0 + 5u, last_m) * p.a_rs;
    let r6 = p.a_off + min(m0 + 6u, last_m) * p.a_rs;
    let r7 = p.a_off + min(m0 + 7u, last_m) * p.a_rs;
    let r8 = p.a_off + min(m0 + 8u, last_m) * p.a_rs;
    let r9 = p.a_off + min(m0 + 9u, last_m) * p.a_rs;
    let r10 = p.a_off + min(m0 + 10u, last_m) * p.a_rs;
    let r11 = p.a_off + min(m0 + 11u, last_m) * p.a_rs;
    let r12 = p.a_off + min(m0 + 12u, last_m) * p.a_rs;
    let r13 = p.a_off + min(m0 + 13u, last_m) * p.a_rs;
    let r14 = p.a_off + min(m0 + 14u, last_m) * p.a_rs;
    let r15 = p.a_off + min(m0 + 15u, last_m) * p.a_rs;
    var c0a = vec4<f32>(0.0);
    var c0b = vec4<f32>(0.0);
    var c1a = vec4<f32>(0.0);
    var c1b = vec4<f32>(0.0);
    var c2a = vec4<f32>(0.0);
    var c2b = vec4<f32>(0.0);
    var c3a = vec4<f32>(0.0);
    var c3b = vec4<f32>(0.0);
    var c4a = vec4<f32>(0.0);
    var c4b = vec4<f32>(0.0);
    var c5a = vec4<f32>(0.0);
    var c5b = vec4<f32>(0.0);
    var c6a = vec4<f32>(0.0);
    var c6b = vec4<f32>(0.0);
    var c7a = vec4<f32>(0.0);
    var c7b = vec4<f32>(0.0);
    var c8a = vec4<f32>(0.0);
    var c8b = vec4<f32>(0.0);
    var c9a = vec4<f32>(0.0);
    var c9b = vec4<f32>(0.0);
    var c10a = vec4<f32>(0.0);
    var c10b = vec4<f32>(0.0);
    var c11a = vec4<f32>(0.0);
    var c11b = vec4<f32>(0.0);
    var c12a = vec4<f32>(0.0);
    var c12b = vec4<f32>(0.0);
    var c13a = vec4<f32>(0.0);
    var c13b = vec4<f32>(0.0);
    var c14a = vec4<f32>(0.0);
    var c14b = vec4<f32>(0.0);
    var c15a = vec4<f32>(0.0);
    var c15b = vec4<f32>(0.0);
    for (var k = 0u; k < p.k; k++) {
        let bq = k * row_vec4s;
        let b0 = b4[q0 + bq];
        let b1 = b4[q1 + bq];
        let ak = k * p.a_cs;
        let a0 = vec4<f32>(a[r0 + ak]);
        c0a = fma(a0, b0, c0a);
        c0b = fma(a0, b1, c0b);
        let a1 = vec4<f32>(a[r1 + ak]);
        c1a = fma(a1, b0, c1a);
        c1b = fma(a1, b1, c1b);
        let a2 = vec4<f32>(a[r2 + ak]);
        c2a = fma(a2, b0, c2a);
        c2b = fma(a2, b1, c2b);
        let a3 = vec4<f32>(a[r3 + ak]);
        c3a = fma(a3, b0, c3a);
        c3b = fma(a3, b1, c3b);
        let a4 = vec4<f32>(a[r4 + ak]);
        c4a = fma(a4, b0, c4a);
        c4b = fma(a4, b1, c4b);
        let a5 = vec4<f32>(a[r5 + ak]);
        c5a = fma(a5, b0, c5a);
        c5b = fma(a5, b1, c5b);
        let a6 = vec4<f32>(a[r6 + ak]);
        c6a = fma(a6, b0, c6a);
        c6b = fma(a6, b1, c6b);
        let a7 = vec4<f32>(a[r7 + ak]);
        c7a = fma(a7, b0, c7a);
        c7b = fma(a7, b1, c7b);
        let a8 = vec4<f32>(a[r8 + ak]);
        c8a = fma(a8, b0, c8a);
        c8b = fma(a8, b1, c8b);
        let a9 = vec4<f32>(a[r9 + ak]);
        c9a = fma(a9, b0, c9a);
        c9b = fma(a9, b1, c9b);
        let a10 = vec4<f32>(a[r10 + ak]);
        c10a = fma(a10, b0, c10a);
        c10b = fma(a10, b1, c10b);
        let a11 = vec4<f32>(a[r11 + ak]);
        c11a = fma(a11, b0, c11a);
        c11b = fma(a11, b1, c11b);
        let a12 = vec4<f32>(a[r12 + ak]);
        c12a = fma(a12, b0, c12a);
        c12b = fma(a12, b1, c12b);
        let a13 = vec4<f32>(a[r13 + ak]);
        c13a = fma(a13, b0, c13a);
        c13b = fma(a13, b1, c13b);
        let a14 = vec4<f32>(a[r14 + ak]);
        c14a = fma(a14, b0, c14a);
        c14b = fma(a14, b1, c14b);
        let a15 = vec4<f32>(a[r15 + ak]);
        c15a = fma(a15, b0, c15a);
        c15b = fma(a15, b1, c15b);
    }
    store_row(m0 + 0u, col, c0a, c0b);
    store_row(m0 + 1u, col, c1a, c1b);
    store_row(m0 + 2u, col, c2a, c2b);
    store_row(m0 + 3u, col, c3a, c3b);
    store_row(m0 + 4u, col, c4a, c4b);
    store_row(m0 + 5u, col, c5a, c5b);
    store_row(m0 + 6u, col, c6a, c6b);
    store_row(m0 + 7u, col, c7a, c7b);
    store_row(m0 + 8u, col, c8a, c8b);
    store_row(m0 + 9u, col, c9a, c9b);
    store_row(m0 + 10u, col, c10a, c10b);
    store_row(m0 + 11u, col, c11a, c11b);
    store_row(m0 + 12u, col, c12a, c12b);
    store_row(m0 + 13u, col, c13a, c13b);
    store_row(m0 + 14u, col, c14a, c14b);
    store_row(m0 + 15u, col, c15a, c15b);
}


var<workgroup> tile_a: array<f32, 1024>; // 64 rows × 16 k
var<workgroup> tile_b: array<f32, 1024>; // 16 k × 64 columns

@compute @workgroup_size(16, 16)
fn matmul_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m0 = wg.y * 64u;
    let n0 = wg.x * 64u;
    let t = lid.y * 16u + lid.x;
    // Split-K: workgroup layer z sums k in [z·k_split, (z + 1)·k_split) into C slice z.
    let k_begin = wg.z * p.k_split;
    let k_end = select(p.k, min(k_begin + p.k_split, p.k), p.k_split > 0u);
    let slice = wg.z * p.c_slice;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = k_begin; k0 < k_end; k0 += 16u) {
        for (var i = 0u; i < 4u; i++) {
            let e = t + i * 256u;
            // A tile element (row e / 16, k e % 16); B tile element (k e / 64, column e % 64).
            let am = m0 + e / 16u;
            let ak = k0 + e % 16u;
            let a_val = a[p.a_off + min(am, p.m - 1u) * p.a_rs + min(ak, p.k - 1u) * p.a_cs];
            tile_a[e] = select(0.0, a_val, am < p.m && ak < k_end);
            let bk = k0 + e / 64u;
            let bn = n0 + e % 64u;
            let b_val = b_at(p.b_off + min(bk, p.k - 1u) * p.ldb + min(bn, p.n - 1u));
            tile_b[e] = select(0.0, b_val, bk < k_end && bn < p.n);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < 16u; kk++) {
            let bv = vec4<f32>(
                tile_b[kk * 64u + lid.x * 4u],
                tile_b[kk * 64u + lid.x * 4u + 1u],
                tile_b[kk * 64u + lid.x * 4u + 2u],
                tile_b[kk * 64u + lid.x * 4u + 3u],
            );
            for (var i = 0u; i < 4u; i++) {
                acc[i] = fma(vec4<f32>(tile_a[(lid.y * 4u + i) * 16u + kk]), bv, acc[i]);
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        store4_at(slice, m0 + lid.y * 4u + i, n0 + lid.x * 4u, acc[i]);
    }
}

// split_k_sum: c[c_off + i] = Σ_z a[a_off + z·c_slice + i] for i < m·n, z < k (the
// slices of a split-K product, summed in order).
@compute @workgroup_size(LANES)
fn split_k_sum(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = grid_range(wg.x, lid.x, nwg.x, p.m * p.n);
    for (var i = r.x; i < r.y; i += LANES) {
        var sum = 0.0;
        for (var z = 0u; z < p.k; z++) {
            sum += a[p.a_off + z * p.c_slice + i];
        }
        c[p.c_off + i] = sum;
    }
}

// transpose: c[c_off + j·ldc + i] = a[a_off + i·n + j] for an m × n row-major matrix
// (ldc ≥ m: the transposed rows may be padded, e.g. to whole vec4s). A grid loop over
// the result: its writes are contiguous, its reads gathers.
@compute @workgroup_size(LANES)
fn transpose(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = grid_range(wg.x, lid.x, nwg.x, p.m * p.n);
    for (var t = r.x; t < r.y; t += LANES) {
        let j = t / p.m;
        let i = t - j * p.m;
        c[p.c_off + j * p.ldc + i] = a[p.a_off + i * p.n + j];
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
