// Explicit-coefficient TWA over stored directions: n directions d_i of length dim,
// cut into blocks (a whole model, or one layer's tensors), each (direction, block)
// quantised to `bits` bits with its own affine map x = min + scale·q (bits = 32:
// plain f32, min/scale unused) and bit-packed into u32 words, 32/bits values per
// word, element d of row i at bits (d mod per)·bits of word i·words_per_row + d / per.
//
// The work is cut into tiles, each inside one block and at most TILE elements long:
// tiles[4t..4t+3] = (first element, length, block, unused); after the 4·tile_count
// tile words, blocks[b] = (first tile, tile count) as two words each.
//
// block_dots     partials[t·rows + i] = Σ_{d in tile t} dequant(i, d)·input[d]
//                (input = the gradient g); one workgroup per (tile, row).
// block_sum      output[i·blocks + b] = Σ_{tiles t of b} input[t·rows + i]
//                (input = the partials): ∂L/∂β_{i,b} = ⟨d_i|_b, g|_b⟩.
// block_combine  output[d] = centre[d] + Σ_i input[i·blocks + b(d)]·dequant(i, d)
//                (input = β): w = c + Σ_i β_i ⊙ d_i; one workgroup per tile.

struct DirParams {
    rows: u32, blocks: u32, tile_count: u32, bits: u32,
    words_per_row: u32, mask: u32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<storage, read> dirs: array<u32>;
@group(0) @binding(1) var<storage, read> quant: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> tiles: array<u32>;
@group(0) @binding(3) var<storage, read> input: array<f32>;
@group(0) @binding(4) var<storage, read> centre: array<f32>;
@group(0) @binding(5) var<storage, read_write> output: array<f32>;
@group(0) @binding(6) var<uniform> p: DirParams;

const LANES: u32 = 256u;
var<workgroup> partial: array<f32, LANES>;

// Element d of direction i, whose (direction, block) map is q = (min, scale).
fn dequant(i: u32, d: u32, q: vec2<f32>) -> f32 {
    let per = 32u / p.bits;
    let word = dirs[i * p.words_per_row + d / per];
    if (p.bits == 32u) {
        return bitcast<f32>(word);
    }
    let level = (word >> ((d % per) * p.bits)) & p.mask;
    return q.x + q.y * f32(level);
}

@compute @workgroup_size(256)
fn block_dots(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = wg.x;
    let i = wg.y;
    let first = tiles[4u * t];
    let len = tiles[4u * t + 1u];
    let q = quant[i * p.blocks + tiles[4u * t + 2u]];
    var s = 0.0;
    for (var k = lid.x; k < len; k += LANES) {
        s = fma(dequant(i, first + k, q), input[first + k], s);
    }
    partial[lid.x] = s;
    workgroupBarrier();
    for (var width = LANES / 2u; width > 0u; width /= 2u) {
        if (lid.x < width) {
            partial[lid.x] += partial[lid.x + width];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        output[t * p.rows + i] = partial[0];
    }
}

@compute @workgroup_size(64)
fn block_sum(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k = gid.x;
    if (k >= p.rows * p.blocks) {
        return;
    }
    let i = k / p.blocks;
    let b = k % p.blocks;
    let first = tiles[4u * p.tile_count + 2u * b];
    let count = tiles[4u * p.tile_count + 2u * b + 1u];
    var s = 0.0;
    for (var t = first; t < first + count; t++) {
        s += input[t * p.rows + i];
    }
    output[k] = s;
}

@compute @workgroup_size(256)
fn block_combine(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = wg.x;
    let first = tiles[4u * t];
    let len = tiles[4u * t + 1u];
    let b = tiles[4u * t + 2u];
    for (var k = lid.x; k < len; k += LANES) {
        let d = first + k;
        var w = centre[d];
        for (var i = 0u; i < p.rows; i++) {
            let c = i * p.blocks + b;
            w = fma(input[c], dequant(i, d, quant[c]), w);
        }
        output[d] = w;
    }
}
