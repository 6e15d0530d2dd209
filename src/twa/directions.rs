//! Explicit-coefficient TWA (the journal's form): a centre c (the SWA point) and
//! directions d_i = w_i − c normalised per block (the whole model, or one layer),
//! stored at b bits per value (affine per direction and block, bit-packed into u32
//! words), with w = c + Σ_i β_i ⊙ d_i and one trainable β per (direction, block).
//! The gradient of β is the per-block dot products of the directions with g.

use super::rows::row_stride;
use crate::error::{Error, Result};
use crate::gpu::kernels::groups_1d;
use crate::gpu::{Dispatch, Gpu, Kernels};
use crate::nn::params::ParamTable;
use std::ops::Range;

/// How TWA parametrises the averaging.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Coefficients {
    /// Projected SGD in the orthonormal basis P of the samples (the conference paper).
    #[default]
    Orthonormal,
    /// One coefficient per direction w_i − c.
    Global,
    /// One coefficient per direction and layer (a layer's weight and bias share one).
    Layer,
}

/// Bits per stored direction value: 1, 2, 4, 8 (quantised) or 32 (f32).
pub const BITS: [u32; 5] = [1, 2, 4, 8, 32];

/// A range of the flat parameters that shares one coefficient per direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub name: String,
    pub range: Range<usize>,
}

/// The blocks of `table`: one per layer (consecutive tensors whose names share the
/// part before the last dot, e.g. `0.weight`, `0.bias`), or one for the whole model.
pub fn blocks(table: &ParamTable, per_layer: bool) -> Vec<Block> {
    if !per_layer {
        return vec![Block {
            name: "all".into(),
            range: 0..table.len,
        }];
    }
    let mut blocks: Vec<Block> = Vec::new();
    for entry in table.entries.iter().filter(|e| !e.is_empty()) {
        let layer = entry.name.rsplit_once('.').map_or(&*entry.name, |(l, _)| l);
        match blocks.last_mut() {
            Some(b) if b.name == layer && b.range.end == entry.offset => {
                b.range.end = entry.range().end
            }
            _ => blocks.push(Block {
                name: layer.to_string(),
                range: entry.range(),
            }),
        }
    }
    blocks
}

/// The centre (mean of the samples), the directions (w_i − c)|_b / ‖(w_i − c)|_b‖
/// (n × dim; a block where w_i equals c stays zero) and the norms ‖(w_i − c)|_b‖
/// (n × blocks).
pub fn normalised_directions(
    samples: &[f32],
    dim: usize,
    blocks: &[Block],
) -> (Vec<f32>, Vec<f32>, Vec<f64>) {
    let centre = super::mean::mean(samples, dim);
    let mut dirs = Vec::with_capacity(samples.len());
    let mut norms = Vec::with_capacity(samples.len() / dim * blocks.len());
    for row in samples.chunks(dim) {
        let start = dirs.len();
        dirs.extend(row.iter().zip(&centre).map(|(&w, &c)| w - c));
        for b in blocks {
            let part = &mut dirs[start + b.range.start..start + b.range.end];
            let norm = part
                .iter()
                .map(|&v| v as f64 * v as f64)
                .sum::<f64>()
                .sqrt();
            if norm > 0.0 {
                part.iter_mut().for_each(|v| *v = (*v as f64 / norm) as f32);
            }
            norms.push(norm);
        }
    }
    (centre, dirs, norms)
}

/// Directions quantised and packed as `directions.wgsl` reads them: each block of a
/// row starts on a word, and value e of block b (counted from the block's start) lies
/// at bits (e mod per)·b of word i·words_per_row + word_offsets[b] + e / per,
/// per = 32 / b; for each (row, block) the affine map x = min + scale·q.
#[derive(Clone, Debug, PartialEq)]
pub struct Packed {
    pub bits: u32,
    pub rows: usize,
    pub dim: usize,
    /// The blocks' ranges and the first word of each within a row.
    pub ranges: Vec<Range<usize>>,
    pub word_offsets: Vec<usize>,
    pub words_per_row: usize,
    pub words: Vec<u32>,
    /// (min, scale) per (row, block), row-major.
    pub quant: Vec<[f32; 2]>,
}

impl Packed {
    /// Quantise `dirs` (n × dim) per (row, block) to `bits` bits:
    /// q = round((x − min)/scale), scale = (max − min)/(2^b − 1).
    pub fn pack(dirs: &[f32], dim: usize, blocks: &[Block], bits: u32) -> Result<Packed> {
        if !BITS.contains(&bits) {
            return Err(Error::Config(format!(
                "--bits {bits}: the directions are stored at 1, 2, 4, 8 or 32 bits"
            )));
        }
        let per = (32 / bits) as usize;
        let rows = dirs.len() / dim;
        let mut word_offsets = Vec::with_capacity(blocks.len());
        let mut words_per_row = 0;
        for b in blocks {
            word_offsets.push(words_per_row);
            words_per_row += b.range.len().div_ceil(per);
        }
        let mut words = vec![0u32; rows * words_per_row];
        let mut quant = Vec::with_capacity(rows * blocks.len());
        let levels = if bits == 32 { 0 } else { (1u32 << bits) - 1 };
        for (i, row) in dirs.chunks(dim).enumerate() {
            for (b, &offset) in blocks.iter().zip(&word_offsets) {
                let part = &row[b.range.clone()];
                let out = &mut words[i * words_per_row + offset..];
                if bits == 32 {
                    quant.push([0.0, 1.0]);
                    for (word, &x) in out.iter_mut().zip(part) {
                        *word = x.to_bits();
                    }
                    continue;
                }
                let min = part.iter().copied().fold(f32::INFINITY, f32::min);
                let max = part.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let scale = (max - min) / levels as f32;
                quant.push([min, scale]);
                for (e, &x) in part.iter().enumerate() {
                    let q = if scale > 0.0 {
                        ((x - min) / scale).round().clamp(0.0, levels as f32) as u32
                    } else {
                        0
                    };
                    out[e / per] |= q << ((e % per) as u32 * bits);
                }
            }
        }
        Ok(Packed {
            bits,
            rows,
            dim,
            ranges: blocks.iter().map(|b| b.range.clone()).collect(),
            word_offsets,
            words_per_row,
            words,
            quant,
        })
    }

    /// Value d of row i, dequantised (the CPU twin of the shaders' reading);
    /// `block` is the index of the block holding d.
    pub fn value(&self, i: usize, d: usize, block: usize) -> f32 {
        let per = (32 / self.bits) as usize;
        let e = d - self.ranges[block].start;
        let word = self.words[i * self.words_per_row + self.word_offsets[block] + e / per];
        if self.bits == 32 {
            return f32::from_bits(word);
        }
        let q = (word >> ((e % per) as u32 * self.bits)) & ((1u32 << self.bits) - 1);
        let [min, scale] = self.quant[i * self.ranges.len() + block];
        min + scale * q as f32
    }

    /// Rescale each (row, block) map so that the dequantised direction has unit norm
    /// again, as the exact one has: at few bits the levels' norm drifts (at 1 bit a
    /// block of mostly small values becomes ± its extremes), and the coefficients'
    /// learning rate would drift with it. 32-bit directions are left as they are.
    pub fn renormalise(&mut self) {
        if self.bits == 32 {
            return;
        }
        let blocks = self.ranges.len();
        for i in 0..self.rows {
            for b in 0..blocks {
                let norm = self.ranges[b]
                    .clone()
                    .map(|d| (self.value(i, d, b) as f64).powi(2))
                    .sum::<f64>()
                    .sqrt();
                if norm > 0.0 {
                    let map = &mut self.quant[i * blocks + b];
                    *map = [(map[0] as f64 / norm) as f32, (map[1] as f64 / norm) as f32];
                }
            }
        }
    }

    /// Bytes on the device: the packed words and the per-(row, block) maps.
    pub fn bytes(&self) -> usize {
        4 * self.words.len() + 8 * self.quant.len()
    }
}

/// Elements per tile (a multiple of 32, so that tiles start on words) for `bits`-bit
/// directions: long tiles on a CPU adapter for packed values (fewer workgroups, each
/// with its reduction: the 8-bit step on lavapipe went from 18–22 to 11–12 ms on Mesa
/// 25 and from 33–36 to 23–24 ms on Mesa 22.3; 32-bit values lost on Mesa 22.3, 65–69
/// → 85–91 ms, and keep short ones), short ones on a GPU (many workgroups).
pub fn tile_len(gpu: &Gpu, bits: u32) -> usize {
    if gpu.tuning == crate::gpu::Tuning::Cpu && bits < 32 {
        16384
    } else {
        2048
    }
}

/// The tile table of `directions.wgsl` for tiles of `tile` elements: (first, length,
/// block, first word in a row) per tile, then (first tile, tile count) per block.
/// Also returns the number of tiles.
fn tile_table(packed: &Packed, tile: usize) -> (Vec<u32>, usize) {
    let per = (32 / packed.bits) as usize;
    let mut tiles = Vec::new();
    let mut spans = Vec::new();
    for (b, (range, &offset)) in packed.ranges.iter().zip(&packed.word_offsets).enumerate() {
        let first = tiles.len() / 4;
        for start in range.clone().step_by(tile) {
            let len = tile.min(range.end - start);
            let word = offset + (start - range.start) / per;
            tiles.extend([start as u32, len as u32, b as u32, word as u32]);
        }
        spans.extend([first as u32, (tiles.len() / 4 - first) as u32]);
    }
    let count = tiles.len() / 4;
    tiles.extend(spans);
    (tiles, count)
}

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct DirParams {
    rows: u32,
    blocks: u32,
    tile_count: u32,
    bits: u32,
    words_per_row: u32,
    mask: u32,
    per_shift: u32,
    pad: u32,
}

/// Rows per workgroup of `block_dots` (`DOT_ROWS` in the shader).
const DOT_ROWS: usize = 4;

/// The directions on the device, with what the kernels need to read them.
pub struct Directions {
    pub rows: usize,
    pub blocks: usize,
    /// Bytes of the stored directions (packed words and maps).
    pub bytes: usize,
    words: wgpu::Buffer,
    quant: wgpu::Buffer,
    tiles: wgpu::Buffer,
    centre: wgpu::Buffer,
    partials: wgpu::Buffer,
    params: wgpu::Buffer,
    tile_count: usize,
}

impl Directions {
    /// Upload the centre and the packed directions; refuses what one storage binding
    /// of this adapter cannot hold.
    pub fn upload(gpu: &Gpu, centre: &[f32], packed: &Packed) -> Result<Directions> {
        Self::upload_tiled(gpu, centre, packed, tile_len(gpu, packed.bits))
    }

    /// [`Directions::upload`] with tiles of `tile` elements (a multiple of 32).
    pub fn upload_tiled(
        gpu: &Gpu,
        centre: &[f32],
        packed: &Packed,
        tile: usize,
    ) -> Result<Directions> {
        assert!(
            tile > 0 && tile.is_multiple_of(32),
            "tile of {tile} elements"
        );
        let limit = gpu.max_binding() as usize;
        if 4 * row_stride(packed.dim) > limit {
            return Err(Error::Config(format!(
                "explicit coefficients (and b-bit directions) bind the whole model, and its {} \
                 parameters take {} MiB, more than the {} MiB one binding of this adapter \
                 holds: use coefficients = \"orthonormal\" at 32 bits, whose basis is cut \
                 into bindable segments",
                packed.dim,
                (4 * packed.dim) >> 20,
                limit >> 20
            )));
        }
        if 4 * packed.words.len() > limit {
            return Err(Error::Config(format!(
                "{} directions of {} values at {} bits take {} MiB, more than the {} MiB one \
                 binding of this adapter holds: use fewer samples or fewer bits",
                packed.rows,
                packed.dim,
                packed.bits,
                (4 * packed.words.len()) >> 20,
                limit >> 20
            )));
        }
        let (table, tile_count) = tile_table(packed, tile);
        if tile_count > 65535 || packed.rows > 65535 {
            return Err(Error::Config(format!(
                "{} tiles × {} directions exceed one dispatch (65535 each)",
                tile_count, packed.rows
            )));
        }
        let params = DirParams {
            rows: packed.rows as u32,
            blocks: packed.ranges.len() as u32,
            tile_count: tile_count as u32,
            bits: packed.bits,
            words_per_row: packed.words_per_row as u32,
            mask: if packed.bits == 32 {
                u32::MAX
            } else {
                (1 << packed.bits) - 1
            },
            per_shift: (32 / packed.bits).trailing_zeros(),
            pad: 0,
        };
        Ok(Directions {
            rows: packed.rows,
            blocks: packed.ranges.len(),
            bytes: packed.bytes(),
            words: gpu.storage_init(&packed.words, "directions"),
            quant: gpu.storage_init(&packed.quant, "direction maps"),
            tiles: gpu.storage_init(&table, "direction tiles"),
            centre: gpu.storage_init(centre, "centre"),
            partials: gpu.storage(tile_count * packed.rows, "direction partials"),
            params: gpu.uniform(&params, "directions"),
            tile_count,
        })
    }

    /// Coefficients: rows × blocks.
    pub fn coefficients(&self) -> usize {
        self.rows * self.blocks
    }

    fn dispatch(
        &self,
        gpu: &Gpu,
        kernel: &crate::gpu::Kernel,
        input: &wgpu::Buffer,
        output: &wgpu::Buffer,
        groups: [u32; 3],
    ) -> Dispatch {
        let resources = [
            &self.words,
            &self.quant,
            &self.tiles,
            input,
            &self.centre,
            output,
            &self.params,
        ];
        Dispatch::new(gpu, kernel, &resources, groups)
    }

    /// grad_beta[i·blocks + b] = ⟨d_i|_b, g|_b⟩: per-tile dots, then their sum.
    pub fn gradient(
        &self,
        gpu: &Gpu,
        k: &Kernels,
        g: &wgpu::Buffer,
        grad_beta: &wgpu::Buffer,
    ) -> [Dispatch; 2] {
        [
            self.dispatch(
                gpu,
                &k.block_dots,
                g,
                &self.partials,
                [
                    self.tile_count as u32,
                    self.rows.div_ceil(DOT_ROWS) as u32,
                    1,
                ],
            ),
            self.dispatch(
                gpu,
                &k.block_sum,
                &self.partials,
                grad_beta,
                groups_1d(self.coefficients(), 64),
            ),
        ]
    }

    /// params = c + Σ_i β_i ⊙ d_i.
    pub fn combine(
        &self,
        gpu: &Gpu,
        k: &Kernels,
        beta: &wgpu::Buffer,
        params: &wgpu::Buffer,
    ) -> Dispatch {
        self.dispatch(
            gpu,
            &k.block_combine,
            beta,
            params,
            [self.tile_count as u32, 1, 1],
        )
    }
}

/// Averaging coefficients over the samples, per block: with γ = β / ‖(w_j − c)|_b‖,
/// w|_b = Σ_j α_{j,b} w_j|_b where α_{j,b} = 1/n + γ_{j,b} − mean_i γ_{i,b}
/// (exact for 32-bit directions). Returned as `blocks` vectors of n.
pub fn averaging_coefficients(beta: &[f64], norms: &[f64], blocks: usize) -> Vec<Vec<f64>> {
    let n = beta.len() / blocks;
    (0..blocks)
        .map(|b| {
            let gamma: Vec<f64> = (0..n)
                .map(|j| {
                    let norm = norms[j * blocks + b];
                    if norm > 0.0 {
                        beta[j * blocks + b] / norm
                    } else {
                        0.0
                    }
                })
                .collect();
            let mean = gamma.iter().sum::<f64>() / n as f64;
            gamma.iter().map(|g| 1.0 / n as f64 + g - mean).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> ParamTable {
        let mut t = ParamTable::default();
        t.push("0.weight".into(), vec![3, 2]);
        t.push("0.bias".into(), vec![3]);
        t.push("1.weight".into(), vec![3]);
        t.push("1.bias".into(), vec![3]);
        t.push("3.weight".into(), vec![2, 3]);
        t
    }

    #[test]
    fn layers_join_their_weight_and_bias() {
        let b = blocks(&table(), true);
        let got: Vec<_> = b
            .iter()
            .map(|b| (b.name.as_str(), b.range.clone()))
            .collect();
        assert_eq!(got, [("0", 0..9), ("1", 9..15), ("3", 15..21)]);
        assert_eq!(blocks(&table(), false)[0].range, 0..21);
    }

    #[test]
    fn tiles_cover_every_block_once_and_start_on_words() {
        let blocks = vec![
            Block {
                name: "a".into(),
                range: 0..5000,
            },
            Block {
                name: "b".into(),
                range: 5000..5001,
            },
        ];
        let packed = Packed::pack(&vec![0.5; 5001], 5001, &blocks, 4).unwrap();
        // 8 values a word: block a takes 625 words, b one.
        assert_eq!(packed.word_offsets, [0, 625]);
        assert_eq!(packed.words_per_row, 626);
        let (table, count) = tile_table(&packed, 2048);
        assert_eq!(count, 4);
        assert_eq!(
            &table[..16],
            &[0, 2048, 0, 0, 2048, 2048, 0, 256, 4096, 904, 0, 512, 5000, 1, 1, 625]
        );
        assert_eq!(&table[16..], &[0, 3, 3, 1]);
    }

    #[test]
    fn alpha_of_the_centre_is_uniform_and_alpha_sums_to_one() {
        let norms = [2.0, 1.0, 4.0, 0.0];
        let alpha = averaging_coefficients(&[0.0; 4], &norms, 2);
        assert_eq!(alpha, vec![vec![0.5, 0.5], vec![0.5, 0.5]]);
        let alpha = averaging_coefficients(&[1.0, 3.0, -2.0, 5.0], &norms, 2);
        for a in alpha {
            assert!((a.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
    }
}
