// Subspace kernels of Trainable Weight Averaging, over one chunk of the basis:
// P [rows, dim] row-major (rows orthonormal), vectors of length dim. Vectors and basis
// rows are read four values at a time: a row is `dim4` = ⌈dim/4⌉ vec4s, and the
// padding past dim holds zeros (buffers are allocated in whole vec4s).
//
// dots     out[out_off + i] = Σ_d P[i, d]·x[d] for i < rows.
//          One workgroup per row; each invocation sums a strided slice of vec4s with
//          Kahan compensation, then a tree reduction in workgroup memory.
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
var<workgroup> partial: array<f32, LANES>;

// Here `input` is x and `output` receives the dot products.
@compute @workgroup_size(256)
fn dots(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wg.x;
    let base = row * p.dim4;
    var sum = vec4<f32>(0.0);
    var carry = vec4<f32>(0.0);
    for (var d = lid.x; d < p.dim4; d += LANES) {
        let term = basis[base + d] * input[d] - carry;
        let next = sum + term;
        carry = (next - sum) - term;
        sum = next;
    }
    partial[lid.x] = (sum.x + sum.y) + (sum.z + sum.w);
    workgroupBarrier();
    for (var width = LANES / 2u; width > 0u; width /= 2u) {
        if (lid.x < width) {
            partial[lid.x] += partial[lid.x + width];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u && row < p.rows) {
        let i = p.out_off + row;
        output[i >> 2u][i & 3u] = partial[0];
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
