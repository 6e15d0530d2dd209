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
//                (input = the gradient g); a workgroup per (tile, 4 rows), g read
//                once for the four rows; as min·Σg + scale·Σq·g per row.
// block_sum      output[i·blocks + b] = Σ_{tiles t of b} input[t·rows + i]
//                (input = the partials): ∂L/∂β_{i,b} = ⟨d_i|_b, g|_b⟩.
// block_combine  output[d] = centre[d] + Σ_i input[i·blocks + b(d)]·dequant(i, d)
//                (input = β): w = c + Σ_i β_i ⊙ d_i; a workgroup per tile. With the
//                affine maps this is c + Σ_i β_i·min_i + Σ_i (β_i·scale_i)·q_i.
// Each invocation takes four consecutive elements at a time (one word at 1–8 bits,
// unpacked with vector shifts); at 1–8 bits whole quads skip the checks of a tile's
// end, which only its last quads need.

struct DirParams {
    rows: u32, blocks: u32, tile_count: u32, bits: u32,
    words_per_row: u32, mask: u32,
    // log2(per): value e of a block is in word e >> per_shift, at slot e & (per − 1).
    per_shift: u32, _pad: u32,
}

@group(0) @binding(0) var<storage, read> dirs: array<u32>;
@group(0) @binding(1) var<storage, read> quant: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> tiles: array<u32>;
@group(0) @binding(3) var<storage, read> input: array<f32>;
@group(0) @binding(4) var<storage, read> centre: array<f32>;
@group(0) @binding(5) var<storage, read_write> output: array<f32>;
@group(0) @binding(6) var<uniform> p: DirParams;

// LANES (grid.wgsl): invocations per workgroup of block_dots and block_combine.
// Rows per workgroup of block_dots.
const DOT_ROWS: u32 = 4u;
var<workgroup> partial: array<vec4<f32>, LANES>;

// Bit offsets of values e..e+3 within their word. An invocation's steps (4·LANES
// values) are whole words, so the offsets stay the same along its loop.
fn slot_shifts(e: u32) -> vec4<u32> {
    let slot = e & ((1u << p.per_shift) - 1u);
    return (vec4<u32>(slot) + vec4<u32>(0u, 1u, 2u, 3u)) * p.bits;
}

// The levels q at `shifts` of `word`.
fn unpack4(word: u32, shifts: vec4<u32>) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(word) >> shifts) & vec4<u32>(p.mask));
}

// Values e..e+3 of a block (counted from its start; e a multiple of 4) whose words
// begin at `base`, those at or past `len` read as 0: the levels q (bits < 32; the
// four share a word) or the f32s themselves (bits = 32).
fn levels4(base: u32, e: u32, len: u32) -> vec4<f32> {
    let valid = vec4<u32>(e, e + 1u, e + 2u, e + 3u) < vec4<u32>(len);
    if (p.bits == 32u) {
        let last = base + len - 1u;
        let v = vec4<f32>(
            bitcast<f32>(dirs[base + e]),
            bitcast<f32>(dirs[min(base + e + 1u, last)]),
            bitcast<f32>(dirs[min(base + e + 2u, last)]),
            bitcast<f32>(dirs[min(base + e + 3u, last)]),
        );
        return select(vec4<f32>(0.0), v, valid);
    }
    let q = unpack4(dirs[base + (e >> p.per_shift)], slot_shifts(e));
    return select(vec4<f32>(0.0), q, valid);
}

// input[first + e..e+3], those at or past `len` read as 0.
fn input4(first: u32, e: u32, len: u32) -> vec4<f32> {
    let last = first + len - 1u;
    let v = vec4<f32>(
        input[first + e],
        input[min(first + e + 1u, last)],
        input[min(first + e + 2u, last)],
        input[min(first + e + 3u, last)],
    );
    return select(vec4<f32>(0.0), v, vec4<u32>(e, e + 1u, e + 2u, e + 3u) < vec4<u32>(len));
}

@compute @workgroup_size(LANES)
fn block_dots(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = wg.x;
    let row0 = wg.y * DOT_ROWS;
    let first = tiles[4u * t];
    let len = tiles[4u * t + 1u];
    let b = tiles[4u * t + 2u];
    let word0 = tiles[4u * t + 3u];
    let last = p.rows - 1u;
    let base = vec4<u32>(min(row0, last), min(row0 + 1u, last), min(row0 + 2u, last), min(row0 + 3u, last))
        * p.words_per_row + word0;
    // Σ q·g per row and Σ g: x·g summed is min·Σg + scale·Σq·g (bits = 32: Σx·g).
    var sq = vec4<f32>(0.0);
    var sg = vec4<f32>(0.0);
    var e = 4u * lid.x;
    if (p.bits != 32u) {
        // Whole quads without the end checks, then the tile's tail.
        let shifts = slot_shifts(e);
        for (; e + 4u <= len; e += 4u * LANES) {
            let at = first + e;
            let g = vec4<f32>(input[at], input[at + 1u], input[at + 2u], input[at + 3u]);
            let w = e >> p.per_shift;
            sq += vec4<f32>(
                dot(unpack4(dirs[base.x + w], shifts), g),
                dot(unpack4(dirs[base.y + w], shifts), g),
                dot(unpack4(dirs[base.z + w], shifts), g),
                dot(unpack4(dirs[base.w + w], shifts), g),
            );
            sg += g;
        }
    }
    for (; e < len; e += 4u * LANES) {
        let g = input4(first, e, len);
        sq += vec4<f32>(
            dot(levels4(base.x, e, len), g),
            dot(levels4(base.y, e, len), g),
            dot(levels4(base.z, e, len), g),
            dot(levels4(base.w, e, len), g),
        );
        sg += g;
    }
    var result = sq;
    if (p.bits != 32u) {
        let g_sum = (sg.x + sg.y) + (sg.z + sg.w);
        for (var r = 0u; r < DOT_ROWS; r++) {
            let q = quant[min(row0 + r, last) * p.blocks + b];
            result[r] = fma(q.x, g_sum, q.y * sq[r]);
        }
    }
    partial[lid.x] = result;
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

// β_i·scale_i of rows r..r+3 in block b, 0 past the last row.
fn scaled_betas(r: u32, b: u32) -> vec4<f32> {
    var out = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        if (r + k < p.rows) {
            let c = (r + k) * p.blocks + b;
            out[k] = input[c] * quant[c].y;
        }
    }
    return out;
}

// First words of rows r..r+3 at `word0` (rows past the last read the last one).
fn row_words(r: u32, word0: u32) -> vec4<u32> {
    let last = max(p.rows, 1u) - 1u;
    return min(vec4<u32>(r) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last)) * p.words_per_row + word0;
}

// Σ_k coef[k]·q_k over four rows whose words start at `words`, at word w and `shifts`
// (levels are finite, so a coefficient 0 drops its row).
fn rows4(words: vec4<u32>, w: u32, shifts: vec4<u32>, coef: vec4<f32>) -> vec4<f32> {
    var sum = coef.x * unpack4(dirs[words.x + w], shifts);
    sum = fma(vec4<f32>(coef.y), unpack4(dirs[words.y + w], shifts), sum);
    sum = fma(vec4<f32>(coef.z), unpack4(dirs[words.z + w], shifts), sum);
    return fma(vec4<f32>(coef.w), unpack4(dirs[words.w + w], shifts), sum);
}

@compute @workgroup_size(LANES)
fn block_combine(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = wg.x;
    let first = tiles[4u * t];
    let len = tiles[4u * t + 1u];
    let b = tiles[4u * t + 2u];
    let word0 = tiles[4u * t + 3u];
    // Σ_i β_i·min_i: the same for every element of the block.
    var offset = 0.0;
    if (p.bits != 32u) {
        for (var i = 0u; i < p.rows; i++) {
            let c = i * p.blocks + b;
            offset = fma(input[c], quant[c].x, offset);
        }
    }
    var e = 4u * lid.x;
    if (p.bits != 32u) {
        // Whole quads without the end checks, eight rows a pass adding into the output
        // (a tile's span stays in cache, and eight rows are few enough streams for a
        // CPU's prefetcher); then the tile's tail.
        let whole = len & ~3u;
        let shifts = slot_shifts(e);
        // At least one pass, so that c + offset is written even with no rows.
        for (var i = 0u; i < max(p.rows, 1u); i += 8u) {
            let coef_a = scaled_betas(i, b);
            let coef_b = scaled_betas(i + 4u, b);
            let words_a = row_words(i, word0);
            let words_b = row_words(i + 4u, word0);
            for (var f = e; f < whole; f += 4u * LANES) {
                let w = f >> p.per_shift;
                let at = first + f;
                var acc: vec4<f32>;
                if (i == 0u) {
                    acc = vec4<f32>(centre[at], centre[at + 1u], centre[at + 2u], centre[at + 3u]) + offset;
                } else {
                    acc = vec4<f32>(output[at], output[at + 1u], output[at + 2u], output[at + 3u]);
                }
                acc += rows4(words_a, w, shifts, coef_a) + rows4(words_b, w, shifts, coef_b);
                output[at] = acc.x;
                output[at + 1u] = acc.y;
                output[at + 2u] = acc.z;
                output[at + 3u] = acc.w;
            }
        }
        if (e < whole) {
            e += ((whole - e - 1u) / (4u * LANES) + 1u) * 4u * LANES;
        }
    }
    for (; e < len; e += 4u * LANES) {
        var w = vec4<f32>(0.0);
        for (var i = 0u; i < p.rows; i++) {
            let c = i * p.blocks + b;
            var coef = input[c];
            if (p.bits != 32u) {
                coef *= quant[c].y;
            }
            w = fma(vec4<f32>(coef), levels4(i * p.words_per_row + word0, e, len), w);
        }
        for (var k = 0u; k < min(4u, len - e); k++) {
            output[first + e + k] = centre[first + e + k] + offset + w[k];
        }
    }
}
