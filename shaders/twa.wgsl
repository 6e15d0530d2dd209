// Subspace kernels of Trainable Weight Averaging, over one chunk of the basis:
// P [rows, dim] row-major (rows orthonormal), vectors of length dim. Vectors and basis
// rows are read four values at a time: a row is `dim4` = ⌈dim/4⌉ vec4s, and the
// padding past dim holds zeros (buffers are allocated in whole vec4s).
//
// dots     out[out_off + i] = Σ_d P[i, d]·x[d] for i < rows.
//          One workgroup per 4 rows (x read once for the four); each invocation sums a
//          strided slice of vec4s with Kahan compensation, then a tree reduction in
//          workgroup memory.
// combine  y[d] = scale·y[d] + coef_scale·Σ_i coef[coef_off + i]·P[i, d]
//          (scale = 0 overwrites y, so a stale NaN in y cannot leak through).
//
// The projection of a gradient is g ← Pᵀ(P g): `dots` over every chunk, then
// `combine` over every chunk (scale 0 for the first, 1 after). Gram–Schmidt uses the
// same two kernels: c = P r, r ← r − Pᵀc, twice (CGS2).

struct TwaParams {
    rows: u32, dim4: u32, out_off: u32, coef_off: u32,
    scale: f32, coef_scale: f32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<storage, read> basis: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> input: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> output: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> p: TwaParams;

const LANES: u32 = 256u;
// Rows of P per workgroup of `dots`: x is read once for all of them.
const DOT_ROWS: u32 = 4u;
var<workgroup> partial: array<vec4<f32>, LANES>;

// One Kahan step: sum += term, with the running compensation in carry.
fn kahan(sum: ptr<function, vec4<f32>>, carry: ptr<function, vec4<f32>>, value: vec4<f32>) {
    let term = value - *carry;
    let next = *sum + term;
    *carry = (next - *sum) - term;
    *sum = next;
}

fn hsum(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

// Here `input` is x and `output` receives the dot products.
@compute @workgroup_size(256)
fn dots(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row0 = wg.x * DOT_ROWS;
    let last = p.rows - 1u;
    let base0 = min(row0, last) * p.dim4;
    let base1 = min(row0 + 1u, last) * p.dim4;
    let base2 = min(row0 + 2u, last) * p.dim4;
    let base3 = min(row0 + 3u, last) * p.dim4;
    var s0 = vec4<f32>(0.0);
    var s1 = vec4<f32>(0.0);
    var s2 = vec4<f32>(0.0);
    var s3 = vec4<f32>(0.0);
    var k0 = vec4<f32>(0.0);
    var k1 = vec4<f32>(0.0);
    var k2 = vec4<f32>(0.0);
    var k3 = vec4<f32>(0.0);
    for (var d = lid.x; d < p.dim4; d += LANES) {
        let xv = input[d];
        kahan(&s0, &k0, basis[base0 + d] * xv);
        kahan(&s1, &k1, basis[base1 + d] * xv);
        kahan(&s2, &k2, basis[base2 + d] * xv);
        kahan(&s3, &k3, basis[base3 + d] * xv);
    }
    partial[lid.x] = vec4<f32>(hsum(s0), hsum(s1), hsum(s2), hsum(s3));
    workgroupBarrier();
    for (var width = LANES / 2u; width > 0u; width /= 2u) {
        if (lid.x < width) {
            partial[lid.x] += partial[lid.x + width];
        }
        workgroupBarrier();
    }
    if (lid.x < DOT_ROWS && row0 + lid.x < p.rows) {
        let i = p.out_off + row0 + lid.x;
        output[i >> 2u][i & 3u] = partial[0][lid.x];
    }
}

// Coefficient i of `input` read as a flat f32 array.
fn coef(i: u32) -> f32 {
    return input[i >> 2u][i & 3u];
}

// Here `input` holds the coefficients and `output` is y.
@compute @workgroup_size(256)
fn combine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var d = gid.x; d < p.dim4; d += nwg.x * 256u) {
        var acc = vec4<f32>(0.0);
        for (var i = 0u; i < p.rows; i++) {
            acc = fma(vec4<f32>(coef(p.coef_off + i)), basis[i * p.dim4 + d], acc);
        }
        var y = p.coef_scale * acc;
        if (p.scale != 0.0) {
            y += p.scale * output[d];
        }
        output[d] = y;
    }
}
