//! Explicit-coefficient TWA over stored directions: quantise → dequantise within the
//! b-bit bound, the per-block dots and combine kernels against an f64 CPU twin at
//! every b, on random directions cut into blocks of several tiles and of one element.

mod common;

use common::*;
use twa::gpu::kernels::submit;
use twa::gpu::Kernels;
use twa::nn::{GradientStep, ModelConfig};
use twa::train::{Part, Schedule, TrainConfig, Trainer};
use twa::twa::config::TwaConfig;
use twa::twa::directions::{self, Block, Directions, Packed, BITS};
use twa::twa::Subspace;

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
    // Tiles of 2048 elements (a GPU's: the blocks above span several tiles, one
    // exactly, one partly) and of 16384 (a CPU adapter's for packed values: a block
    // in one partial tile).
    for (bits, tile) in BITS.into_iter().flat_map(|b| [(b, 2048), (b, 16384)]) {
        let mut packed = Packed::pack(&dirs, dim, &blocks, bits).unwrap();
        packed.renormalise();
        let space = Directions::upload_tiled(gpu, &centre, &packed, tile).unwrap();
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
        let got_grad: Vec<f32> = block_on(gpu.read(&grad, 0, ROWS * nb)).unwrap();
        for (j, (&got, &want)) in got_grad.iter().zip(&want_grad).enumerate() {
            let tol = 1e-5 * magnitude[j] + 1e-6;
            assert!(
                (got as f64 - want).abs() <= tol,
                "b = {bits}, tile {tile}: ∂L/∂β[{j}] gpu {got} vs reference {want} (tolerance {tol})"
            );
        }
        let got_w: Vec<f32> = block_on(gpu.read(&w, 0, dim)).unwrap();
        assert_close(
            &format!("b = {bits}, tile {tile}: combine"),
            &got_w,
            &want_w,
            1e-5,
            1e-5,
        );
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

/// `rows` orthonormal vectors of length `dim` (Gram–Schmidt in f64).
fn orthonormal(rng: &mut twa::rng::Rng, rows: usize, dim: usize) -> Vec<f32> {
    let mut basis: Vec<Vec<f64>> = Vec::new();
    while basis.len() < rows {
        let mut v = f64s(&random(rng, dim));
        for _ in 0..2 {
            for b in &basis {
                let dot: f64 = v.iter().zip(b).map(|(x, y)| x * y).sum();
                v.iter_mut().zip(b).for_each(|(x, y)| *x -= dot * y);
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        basis.push(v.iter().map(|x| x / norm).collect());
    }
    basis.concat().iter().map(|&x| x as f32).collect()
}

/// With orthonormal directions, one global coefficient each, 32 bits and no weight
/// decay, explicit TWA's iterate is projected SGD's: w = c + Pᵀβ with v ← μv + P g,
/// β ← β − lr·v, against V ← μV + PᵀP g, w ← w − lr·V from w = c.
#[test]
fn explicit_global_32_bit_mode_reproduces_projected_sgd_on_orthonormal_directions() {
    let gpu = gpu();
    let data = toy_data();
    let model = ModelConfig {
        hidden: vec![16],
        ..Default::default()
    };
    let config = TrainConfig {
        epochs: 2,
        batch: 32,
        lr: 0.5,
        momentum: 0.9,
        weight_decay: 0.0,
        eval_batch: 50,
        schedule: Schedule::Constant,
        ..TrainConfig::default()
    };
    let mut rng = rng("explicit = P-SGD");
    let mut psgd = Trainer::new(gpu, &data, &model, config.clone()).unwrap();
    let dim = psgd.net.model.num_params();
    let rows = orthonormal(&mut rng, 3, dim);
    let centre = psgd.net.model.init_params(7);

    let chunk = Subspace::rows_per_chunk(gpu, dim).unwrap();
    let space = block_on(Subspace::build(gpu, &psgd.net.kernels, &rows, dim, chunk)).unwrap();
    assert_eq!(space.rank, 3);
    psgd.gradient_step =
        GradientStep::Sgd(space.projection(gpu, &psgd.net.kernels, &psgd.net.grads));
    psgd.net.set_params(gpu, &centre);
    block_on(psgd.train_all(&mut |_| {})).unwrap();
    let want = block_on(psgd.net.read_params(gpu)).unwrap();

    let mut explicit = Trainer::new(gpu, &data, &model, config).unwrap();
    let blocks = directions::blocks(&explicit.net.model.params, false);
    let packed = Packed::pack(&rows, dim, &blocks, 32).unwrap();
    let dirs = Directions::upload(gpu, &centre, &packed).unwrap();
    let beta = gpu.storage(3, "beta");
    let twa = TwaConfig {
        momentum: 0.9,
        weight_decay: 0.0,
        ..TwaConfig::default()
    };
    block_on(twa::twa::explicit::explicit_steps(
        gpu,
        &mut explicit,
        &dirs,
        &beta,
        &twa,
    ))
    .unwrap();
    block_on(explicit.train_all(&mut |_| {})).unwrap();
    let got = block_on(explicit.net.read_params(gpu)).unwrap();

    // The iterate moved (26 steps at lr 0.5), and both forms agree to f32 rounding.
    let moved: f64 = want
        .iter()
        .zip(&centre)
        .map(|(w, c)| (w - c).abs() as f64)
        .sum();
    assert!(moved > 1e-2, "P-SGD moved the weights by only {moved}");
    assert_close("explicit vs P-SGD weights", &got, &f64s(&want), 1e-5, 1e-4);
}

/// ∂L/∂β from the kernels (per-layer blocks, BatchNorm in training mode, a fixed
/// batch) against central differences of the loss along each (direction, block).
#[test]
fn beta_gradient_matches_finite_differences_of_the_loss() {
    let gpu = gpu();
    let data = toy_data();
    let model = ModelConfig {
        hidden: vec![8],
        batchnorm: true,
        ..Default::default()
    };
    let config = TrainConfig {
        batch: 32,
        eval_batch: 50,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(gpu, &data, &model, config).unwrap();
    let k = Kernels::new(gpu);
    let dim = trainer.net.model.num_params();
    let mut rng = rng("beta gradient");
    let init = trainer.net.model.init_params(3);
    let samples: Vec<f32> = (0..3)
        .flat_map(|_| {
            let noise = random(&mut rng, dim);
            init.iter()
                .zip(noise)
                .map(|(w, e)| w + 0.2 * e)
                .collect::<Vec<_>>()
        })
        .collect();
    let blocks = directions::blocks(&trainer.net.model.params, true);
    let nb = blocks.len();
    assert_eq!(nb, 3, "Linear, BatchNorm, Linear");
    let (centre, dirs, _) = directions::normalised_directions(&samples, dim, &blocks);
    let packed = Packed::pack(&dirs, dim, &blocks, 32).unwrap();
    let space = Directions::upload(gpu, &centre, &packed).unwrap();
    let beta = gpu.storage(3 * nb, "beta");
    let grad = gpu.storage(3 * nb, "grad beta");
    let combine = space.combine(gpu, &k, &beta, &trainer.net.params);
    let [dots, sum] = space.gradient(gpu, &k, &trainer.net.grads, &grad);
    let batch = trainer.load_fixed_batch(Part::Train, 5);
    // Mean loss of the fixed batch at β (and, with `backward`, ∂L/∂β).
    let loss_at = |b: &[f32], backward: bool| -> f64 {
        gpu.queue.write_buffer(&beta, 0, bytemuck::cast_slice(b));
        trainer.net.reset_totals(gpu, true);
        let mut work = vec![&combine];
        work.extend(trainer.net.train_dispatches(batch));
        if backward {
            work.extend([&dots, &sum]);
        }
        submit(gpu, &work);
        block_on(trainer.net.read_totals(gpu, true))
            .unwrap()
            .mean_loss()
    };
    // A point whose gradient is worth checking (some |∂L/∂β| > 0.05, well above the
    // tolerance's absolute part): about one random β in thirty falls short, so draw
    // again, a few times at most.
    let mut draws = 0;
    let (beta0, analytic) = loop {
        let beta0: Vec<f32> = random(&mut rng, 3 * nb).iter().map(|b| 0.3 * b).collect();
        loss_at(&beta0, true);
        let analytic: Vec<f32> = block_on(gpu.read(&grad, 0, 3 * nb)).unwrap();
        let largest = analytic.iter().fold(0.0f32, |m, a| m.max(a.abs()));
        draws += 1;
        if largest > 0.05 {
            break (beta0, analytic);
        }
        assert!(
            draws < 5,
            "a gradient worth checking: largest |∂L/∂β| {largest} after {draws} draws of β"
        );
    };
    // Steps of 2e-3 down to 2.5e-4: at 1e-2 the weights' change crossed enough ReLU
    // kinks on about one seed in twelve to put the difference 10 % off, at 2e-3 still
    // on about one in sixty. A kink inside a step's interval is no error of the
    // kernels (on one seed a kink within 5e-4 of β put 2e-3 and 1e-3 15 % off while
    // 2.5e-4 agreed to 0.5 %), so one of the differences has to agree; a wrong
    // gradient misses all of them. The loss's f32 sum adds at most ~5e-4 of noise
    // (at the smallest step), inside the tolerance.
    let numeric = |j: usize, h: f32| {
        let (mut plus, mut minus) = (beta0.clone(), beta0.clone());
        plus[j] += h;
        minus[j] -= h;
        (loss_at(&plus, false) - loss_at(&minus, false)) / (2.0 * h as f64)
    };
    for (j, &a) in analytic.iter().enumerate() {
        let a = a as f64;
        let agrees = |n: f64| (n - a).abs() <= 2e-3 + 2e-2 * a.abs();
        let mut differences = Vec::new();
        let agreed = [2e-3, 1e-3, 5e-4, 2.5e-4].into_iter().any(|h| {
            differences.push(numeric(j, h));
            agrees(differences[differences.len() - 1])
        });
        assert!(
            agreed,
            "∂L/∂β[{j}] (direction {}, block {}): kernels {a}, finite differences (steps 2e-3 to 2.5e-4) {differences:?}",
            j / nb,
            j % nb
        );
    }
}
