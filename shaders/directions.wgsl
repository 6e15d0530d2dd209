// Explicit-coefficient TWA over stored directions: n directions d_i of length dim,
// cut into blocks (a whole model, or one layer's tensors), each (direction, block)
// quantised to `bits` bits with its own affine map x = min + scale·q (bits = 32:
// plain f32 words, min/scale unused) and bit-packed into u32 words, per = 32/bits
// values a word. Each block starts on a word: element e of block b (e counted from
// the block's start) is at bits (e mod per)·bits of word
// i·words_per_row + word_off(b) + e / per.
//
// The work is cut into tiles, each inside one block, at most TILE elements long and
// starting a multiple of TILE (a multiple of 32) into its block, so a tile covers
// whole words: tiles[4t..4t+3] = (first element, length, block, first word within a
// row); after the 4·tile_count tile words, blocks[b] = (first tile, tile count).
//
// block_dots     partials[t·rows + i] = Σ_{d in tile t} dequant(i, d)·input[d]
//                (input = the gradient g); a workgroup per (tile, 4 rows), each
//                invocation a word at a time, g read once for the four rows.
// block_sum      output[i·blocks + b] = Σ_{tiles t of b} input[t·rows + i]
//                (input = the partials): ∂L/∂β_{i,b} = ⟨d_i|_b, g|_b⟩.
// block_combine  output[d] = centre[d] + Σ_i input[i·blocks + b(d)]·dequant(i, d)
//                (input = β): w = c + Σ_i β_i ⊙ d_i; a workgroup per tile, each
//                invocation a word's values at a time. With the affine maps this
//                is c + Σ_i β_i·min_i + Σ_i (β_i·scale_i)·q_i.

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
// Rows per workgroup of block_dots.
const DOT_ROWS: u32 = 4u;
var<workgroup> partial: array<vec4<f32>, LANES>;

// Value k of a packed word: the level q (bits < 32) or the f32 itself (bits = 32).
fn level(word: u32, k: u32) -> f32 {
    if (p.bits == 32u) {
        return bitcast<f32>(word);
    }
    return f32((word >> (k * p.bits)) & p.mask);
}

@compute @workgroup_size(256)
fn block_dots(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = wg.x;
    let row0 = wg.y * DOT_ROWS;
    let first = tiles[4u * t];
    let len = tiles[4u * t + 1u];
    let b = tiles[4u * t + 2u];
    let word0 = tiles[4u * t + 3u];
    let per = 32u / p.bits;
    var base: array<u32, 4>;
    // Σ q·g and Σ g for each row: x·g summed is min·Σg + scale·Σq·g.
    var sq = vec4<f32>(0.0);
    var sg = 0.0;
    for (var r = 0u; r < DOT_ROWS; r++) {
        base[r] = min(row0 + r, p.rows - 1u) * p.words_per_row + word0;
    }
    let words = (len + per - 1u) / per;
    for (var j = lid.x; j < words; j += LANES) {
        let w0 = dirs[base[0] + j];
        let w1 = dirs[base[1] + j];
        let w2 = dirs[base[2] + j];
        let w3 = dirs[base[3] + j];
        let e0 = j * per;
        let count = min(per, len - e0);
        for (var k = 0u; k < count; k++) {
            let g = input[first + e0 + k];
            sq = fma(vec4<f32>(level(w0, k), level(w1, k), level(w2, k), level(w3, k)), vec4<f32>(g), sq);
            sg += g;
        }
    }
    // Per row: min·Σg + scale·Σq·g (bits = 32: Σx·g directly).
    var dot = sq;
    if (p.bits != 32u) {
        for (var r = 0u; r < DOT_ROWS; r++) {
            let q = quant[min(row0 + r, p.rows - 1u) * p.blocks + b];
            dot[r] = fma(q.x, sg, q.y * sq[r]);
        }
    }
    partial[lid.x] = dot;
    workgroupBarrier();
    for (var width = LANES / 2u; width > 0u; width /= 2u) {
        if (lid.x < width) {
            partial[lid.x] += partial[lid.x + width];
        }
        workgroupBarrier();
    }
    if (lid.x < DOT_ROWS && row0 + lid.x < p.rows) {
        output[t * p.rows + row0 + lid.x] = partial[0][lid.x];
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
    let word0 = tiles[4u * t + 3u];
    let per = 32u / p.bits;
    // Σ_i β_i·min_i: the same for every element of the block.
    var offset = 0.0;
    if (p.bits != 32u) {
        for (var i = 0u; i < p.rows; i++) {
            let c = i * p.blocks + b;
            offset = fma(input[c], quant[c].x, offset);
        }
    }
    let words = (len + per - 1u) / per;
    for (var j = lid.x; j < words; j += LANES) {
        var acc: array<f32, 32>;
        for (var k = 0u; k < per; k++) {
            acc[k] = 0.0;
        }
        for (var i = 0u; i < p.rows; i++) {
            let c = i * p.blocks + b;
            var coef = input[c];
            if (p.bits != 32u) {
                coef *= quant[c].y;
            }
            let word = dirs[i * p.words_per_row + word0 + j];
            for (var k = 0u; k < per; k++) {
                acc[k] = fma(coef, level(word, k), acc[k]);
            }
        }
        let e0 = j * per;
        for (var k = 0u; k < min(per, len - e0); k++) {
            let d = first + e0 + k;
            output[d] = centre[d] + offset + acc[k];
        }
    }
}
