// Subspace kernels of Trainable Weight Averaging, over one chunk of the basis and
// one segment of D (rows.rs): P [rows, dim] row-major (rows orthonormal), vectors
// of length dim (windows of the whole vectors). Vectors and basis
// rows are read four values at a time: a row is `dim4` = ⌈dim/4⌉ vec4s, and the
// padding past dim holds zeros (buffers are allocated in whole vec4s).
//
// dots     out[out_off + i] = Σ_d P[i, d]·x[d] for i < rows, in two dispatches:
//          `dots` has a workgroup per (4 rows, span of `span4` vec4s of D) — x read
//          once for the four rows, D split so that a large GPU gets many workgroups —
//          each invocation summing its strided part of the span, then a tree
//          reduction in workgroup memory into scratch[(span_off + s)·rows + i] (the
//          segments' spans one after another); `dots_finish` sums the spans of row i
//          in order. Short per-lane sums, the tree and the sum over
//          spans are a blocked summation: as accurate as the compensated one it
//          replaced, at a quarter of the arithmetic.
// combine  y[d] = scale·y[d] + coef_scale·Σ_i coef[coef_off + i]·P[i, d]
//          (scale = 0 overwrites y, so a stale NaN in y cannot leak through); with
//          rows = 0, y = scale·y.
//
// The projection of a gradient is g ← Pᵀ(P g): `dots` over every chunk, then
// `combine` over every chunk (scale 0 for the first, 1 after). Gram–Schmidt uses the
// same two kernels: c = P r, r ← r − Pᵀc, twice (CGS2).

struct TwaParams {
    rows: u32, dim4: u32, out_off: u32, coef_off: u32,
    scale: f32, coef_scale: f32,
    // vec4s of D per workgroup of `dots`, and the number of such spans (in this
    // segment; in `dots_finish`, of all segments); spans of the segments before.
    span4: u32, spans: u32, span_off: u32,
    pad0: u32, pad1: u32, pad2: u32,
}

@group(0) @binding(0) var<storage, read> basis: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> input: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> output: array<vec4<f32>>;
@group(0) @binding(3) var<uniform> p: TwaParams;
@group(0) @binding(4) var<storage, read_write> scratch: array<f32>;

// LANES (grid.wgsl): invocations per workgroup of the passes over the basis. 256 on a
// GPU; 8 on a CPU adapter, where a workgroup then reads its span as one stream (the
// projection on lavapipe: twice as fast as at 256).
// Rows of P per workgroup of `dots`: x is read once for all of them.
const DOT_ROWS: u32 = 4u;
var<workgroup> partial: array<vec4<f32>, LANES>;

fn hsum(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

// Here `input` is x; the dot products of span wg.y go to scratch.
@compute @workgroup_size(LANES)
fn dots(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row0 = wg.x * DOT_ROWS;
    let last = p.rows - 1u;
    let base0 = min(row0, last) * p.dim4;
    let base1 = min(row0 + 1u, last) * p.dim4;
    let base2 = min(row0 + 2u, last) * p.dim4;
    let base3 = min(row0 + 3u, last) * p.dim4;
    let start = wg.y * p.span4;
    let end = min(start + p.span4, p.dim4);
    var s0 = vec4<f32>(0.0);
    var s1 = vec4<f32>(0.0);
    var s2 = vec4<f32>(0.0);
    var s3 = vec4<f32>(0.0);
    for (var d = start + lid.x; d < end; d += LANES) {
        let xv = input[d];
        s0 = fma(basis[base0 + d], xv, s0);
        s1 = fma(basis[base1 + d], xv, s1);
        s2 = fma(basis[base2 + d], xv, s2);
        s3 = fma(basis[base3 + d], xv, s3);
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
        scratch[(p.span_off + wg.y) * p.rows + row0 + lid.x] = partial[0][lid.x];
    }
}

// out[out_off + i] = Σ_s scratch[s·rows + i]: `output` receives the dot products.
@compute @workgroup_size(64)
fn dots_finish(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.rows) {
        return;
    }
    var sum = 0.0;
    for (var s = 0u; s < p.spans; s++) {
        sum += scratch[s * p.rows + i];
    }
    let k = p.out_off + i;
    output[k >> 2u][k & 3u] = sum;
}

// Coefficient i of `input` read as a flat f32 array.
fn coef(i: u32) -> f32 {
    return input[i >> 2u][i & 3u];
}

// Here `input` holds the coefficients and `output` is y. A workgroup per span of
// `span4` vec4s of D, going over the rows four at a time: each pass reads four rows
// along the span (long runs of memory, which a CPU's prefetcher follows) and adds
// into y; the first pass sets y.
@compute @workgroup_size(LANES)
fn combine(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let start = wg.x * p.span4;
    let end = min(start + p.span4, p.dim4);
    if (p.rows == 0u) {
        for (var d = start + lid.x; d < end; d += LANES) {
            output[d] = select(vec4<f32>(0.0), p.scale * output[d], p.scale != 0.0);
        }
        return;
    }
    let last = p.rows - 1u;
    for (var i = 0u; i < p.rows; i += 4u) {
        // Coefficients of rows i..i+3 (0 past the last row, whose reads are clamped).
        let c = vec4<f32>(
            select(0.0, coef(p.coef_off + i), i < p.rows),
            select(0.0, coef(p.coef_off + i + 1u), i + 1u < p.rows),
            select(0.0, coef(p.coef_off + i + 2u), i + 2u < p.rows),
            select(0.0, coef(p.coef_off + i + 3u), i + 3u < p.rows),
        ) * p.coef_scale;
        let b0 = min(i, last) * p.dim4;
        let b1 = min(i + 1u, last) * p.dim4;
        let b2 = min(i + 2u, last) * p.dim4;
        let b3 = min(i + 3u, last) * p.dim4;
        for (var d = start + lid.x; d < end; d += LANES) {
            var acc = c.x * basis[b0 + d];
            acc = fma(vec4<f32>(c.y), basis[b1 + d], acc);
            acc = fma(vec4<f32>(c.z), basis[b2 + d], acc);
            acc = fma(vec4<f32>(c.w), basis[b3 + d], acc);
            if (i > 0u) {
                acc += output[d];
            } else if (p.scale != 0.0) {
                acc += p.scale * output[d];
            }
            output[d] = acc;
        }
    }
}
