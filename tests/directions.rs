//! Explicit-coefficient TWA over stored directions: quantise → dequantise within the
//! b-bit bound, the per-block dots and combine kernels against an f64 CPU twin at
//! every b, on random directions cut into blocks of several tiles and of one element.

mod common;

use common::*;
use twa::gpu::kernels::submit;
use twa::gpu::Kernels;
use twa::twa::directions::{self, Block, Directions, Packed, BITS};

fn kernels() -> &'static Kernels {
    static K: std::sync::OnceLock<Kernels> = std::sync::OnceLock::new();
    K.get_or_init(|| Kernels::new(gpu()))
}

/// Blocks of 4103 (three tiles), 1, 700 and 2048 (exactly one tile) elements.
fn blocks() -> Vec<Block> {
    let mut start = 0;
    [4103, 1, 700, 2048]
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            start += len;
            Block {
                name: i.to_string(),
                range: start - len..start,
            }
        })
        .collect()
}

const ROWS: usize = 5;

fn block_of(blocks: &[Block], d: usize) -> usize {
    blocks.iter().position(|b| b.range.contains(&d)).unwrap()
}

#[test]
fn quantised_values_are_within_half_a_step_and_32_bits_are_exact() {
    let mut rng = rng("quantise");
    let blocks = blocks();
    let dim = blocks.last().unwrap().range.end;
    let dirs = random(&mut rng, ROWS * dim);
    for bits in BITS {
        let packed = Packed::pack(&dirs, dim, &blocks, bits).unwrap();
        let per = 32 / bits as usize;
        let words: usize = blocks.iter().map(|b| b.range.len().div_ceil(per)).sum();
        assert_eq!(
            packed.words.len(),
            ROWS * words,
            "b = {bits}: packed, not a byte a value"
        );
        for i in 0..ROWS {
            for d in 0..dim {
                let b = block_of(&blocks, d);
                let x = dirs[i * dim + d];
                let got = packed.value(i, d, b);
                if bits == 32 {
                    assert_eq!(got, x);
                    continue;
                }
                let [min, scale] = packed.quant[i * blocks.len() + b];
                // scale/2 from rounding, plus f32 rounding of min + scale·q.
                let bound =
                    scale as f64 / 2.0 + 4.0 * f32::EPSILON as f64 * (min.abs() + 1.0) as f64;
                assert!(
                    (got as f64 - x as f64).abs() <= bound,
                    "b = {bits}, row {i}, element {d}: {x} came back as {got} (bound {bound})"
                );
            }
        }
    }
    assert!(Packed::pack(&dirs, dim, &blocks, 3).is_err());
}

#[test]
fn block_dots_and_combine_match_the_cpu_twin_at_every_bit_width() {
    let gpu = gpu();
    let k = kernels();
    let mut rng = rng("block kernels");
    let blocks = blocks();
    let nb = blocks.len();
    let dim = blocks.last().unwrap().range.end;
    let dirs = random(&mut rng, ROWS * dim);
    let centre = random(&mut rng, dim);
    let g = random(&mut rng, dim);
    let beta = random(&mut rng, ROWS * nb);
    for bits in BITS {
        let mut packed = Packed::pack(&dirs, dim, &blocks, bits).unwrap();
        packed.renormalise();
        let space = Directions::upload(gpu, &centre, &packed, &blocks).unwrap();
        let g_buf = gpu.storage_init(&g, "g");
        let grad = gpu.storage(ROWS * nb, "grad beta");
        let beta_buf = gpu.storage_init(&beta, "beta");
        let w = gpu.storage(dim, "w");
        let [dots, sum] = space.gradient(gpu, k, &g_buf, &grad);
        let combine = space.combine(gpu, k, &beta_buf, &w);
        submit(gpu, &[&dots, &sum, &combine]);

        let mut want_grad = vec![0.0f64; ROWS * nb];
        let mut want_w: Vec<f64> = f64s(&centre);
        let mut magnitude = vec![0.0f64; ROWS * nb];
        for i in 0..ROWS {
            for d in 0..dim {
                let b = block_of(&blocks, d);
                let v = packed.value(i, d, b) as f64;
                want_grad[i * nb + b] += v * g[d] as f64;
                magnitude[i * nb + b] += (v * g[d] as f64).abs();
                want_w[d] += beta[i * nb + b] as f64 * v;
            }
        }
        // f32 sums of up to 4103 terms: relative to the sum of magnitudes.
        let got_grad: Vec<f32> = gpu.read(&grad, 0, ROWS * nb).unwrap();
        for (j, (&got, &want)) in got_grad.iter().zip(&want_grad).enumerate() {
            let tol = 1e-5 * magnitude[j] + 1e-6;
            assert!(
                (got as f64 - want).abs() <= tol,
                "b = {bits}: ∂L/∂β[{j}] gpu {got} vs reference {want} (tolerance {tol})"
            );
        }
        let got_w: Vec<f32> = gpu.read(&w, 0, dim).unwrap();
        assert_close(&format!("b = {bits}: combine"), &got_w, &want_w, 1e-5, 1e-5);
    }
}

#[test]
fn normalised_directions_have_unit_norm_per_block_and_rebuild_the_samples() {
    let mut rng = rng("normalise");
    let blocks = blocks();
    let dim = blocks.last().unwrap().range.end;
    let samples = random(&mut rng, ROWS * dim);
    let (centre, dirs, norms) = directions::normalised_directions(&samples, dim, &blocks);
    for i in 0..ROWS {
        for (b, block) in blocks.iter().enumerate() {
            let part = &dirs[i * dim + block.range.start..i * dim + block.range.end];
            let norm: f64 = part
                .iter()
                .map(|&v| v as f64 * v as f64)
                .sum::<f64>()
                .sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "row {i} block {b}: norm {norm}");
            // c + ‖·‖·d̂ gives the sample back.
            for d in block.range.clone() {
                let rebuilt =
                    centre[d] as f64 + norms[i * blocks.len() + b] * dirs[i * dim + d] as f64;
                assert!((rebuilt - samples[i * dim + d] as f64).abs() < 1e-5);
            }
        }
    }
}

#[test]
fn renormalised_low_bit_directions_have_unit_norm_per_block() {
    let mut rng = rng("renormalise");
    let blocks = blocks();
    let dim = blocks.last().unwrap().range.end;
    let samples = random(&mut rng, ROWS * dim);
    let (_, dirs, _) = directions::normalised_directions(&samples, dim, &blocks);
    for bits in BITS {
        let mut packed = Packed::pack(&dirs, dim, &blocks, bits).unwrap();
        packed.renormalise();
        for i in 0..ROWS {
            for (b, block) in blocks.iter().enumerate() {
                let norm = block
                    .range
                    .clone()
                    .map(|d| (packed.value(i, d, b) as f64).powi(2))
                    .sum::<f64>()
                    .sqrt();
                // A one-element block at 1–8 bits is its min: the level 0 of a
                // zero-width map, norm 1 as well.
                assert!(
                    (norm - 1.0).abs() < 1e-5,
                    "b = {bits}, row {i}, block {b}: {norm}"
                );
            }
        }
    }
}
