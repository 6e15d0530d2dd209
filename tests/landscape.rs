//! The loss landscape on the device: grid points against models built directly from
//! their weights on the CPU, and TWA's coefficients reported while it trains.

mod common;

use common::*;
use twa::data::Dataset;
use twa::landscape::{GridSpec, Landscape, Plane, PlaneKind};
use twa::nn::{Model, ModelConfig};
use twa::reference as cpu;
use twa::train::{Event, Part, TrainConfig, Trainer};
use twa::twa::average;
use twa::twa::config::{Start, TwaConfig};
use twa::twa::directions::Coefficients;
use twa::twa::Samples;

fn model_config() -> ModelConfig {
    ModelConfig {
        hidden: vec![12, 8],
        batchnorm: true,
        ..Default::default()
    }
}

/// The test split normalised as the device does, and its labels.
fn test_inputs(data: &Dataset) -> (Vec<f64>, Vec<u32>) {
    let (mean, std) = (data.mean[0] as f64, data.std[0] as f64);
    let x = data
        .test
        .pixels
        .iter()
        .map(|&p| (p as f64 / 255.0 - mean) / std)
        .collect();
    (x, data.test.labels.clone())
}

/// `n` samples scattered around the model's initialisation (seed `seed`).
fn samples_around_init(
    model: &Model,
    seed: u64,
    n: usize,
    spread: f32,
    rng: &mut twa::rng::Rng,
) -> Vec<Vec<f32>> {
    let base = model.init_params(seed);
    (0..n)
        .map(|_| {
            let noise = random(rng, base.len());
            base.iter()
                .zip(noise)
                .map(|(&b, e)| b + spread * e)
                .collect()
        })
        .collect()
}

/// Σ_i α_i w_i in f64.
fn combination(samples: &[Vec<f64>], alpha: &[f64]) -> Vec<f64> {
    let mut w = vec![0.0; samples[0].len()];
    for (a, s) in alpha.iter().zip(samples) {
        w.iter_mut().zip(s).for_each(|(w, v)| *w += a * v);
    }
    w
}

/// Over P (32 bits) the device's weights are the CPU's up to f32 rounding; over 8-bit
/// directions they are off by the rounding of the levels (at most scale/2 a value), and
/// the loss with them. Accuracy is compared at 32 bits only: it is a step function of
/// the weights, and the levels' rounding moves test points that lie near a class
/// boundary across it (up to 5 of the 100 at some grid point, in about one run in 20).
#[test]
fn grid_points_match_models_built_from_their_weights_on_the_cpu() {
    grid_points_match_the_cpu(32, 1e-4, Some(0.011));
}

#[test]
fn grid_points_over_8_bit_directions_match_models_built_from_their_weights_on_the_cpu() {
    grid_points_match_the_cpu(8, 2e-2, None);
}

fn grid_points_match_the_cpu(bits: u32, loss_tolerance: f64, acc_tolerance: Option<f64>) {
    let data = toy_data();
    let model = Model::mlp(&model_config(), data.train.features(), data.classes);
    let n = 6;
    let drawn = samples_around_init(&model, 3, n, 0.3, &mut rng("landscape"));
    let flat: Vec<f32> = drawn.concat();
    let samples: Vec<Vec<f64>> = drawn.iter().map(|s| f64s(s)).collect();
    // The whole test split is the fixed batch, so its order does not matter.
    let mut land = block_on(Landscape::new(
        gpu(),
        &data,
        &model_config(),
        &flat,
        bits,
        100,
        5,
    ))
    .unwrap();
    // P spans the samples; the directions around their mean one dimension fewer, or
    // as many when the levels' rounding keeps Σ_i ‖w_i − c‖ d̃_i away from zero.
    let rank = land.space.rank();
    assert!(rank == n || (bits < 32 && rank == n - 1), "rank {rank}");
    let alpha = [0.4, -0.2, 0.1, 0.3, 0.5, -0.1];
    let twa = land.anchors(None).combine(&alpha);
    let anchors = land.anchors(Some(twa.clone()));
    let plane = Plane::build(PlaneKind::SwaTwaLast, &anchors).unwrap();
    block_on(land.set_plane(&plane)).unwrap();
    let (x, labels) = test_inputs(&data);
    let check = |what: &str, got: (f32, f32), weights: &[f64]| {
        let (loss, acc) = cpu::model_probe(&model, weights, &x, &labels);
        let err = (got.0 as f64 - loss).abs();
        assert!(
            err <= loss_tolerance * loss + 1e-5,
            "{what} ({bits} bits): loss {} vs CPU {loss}",
            got.0
        );
        if let Some(tolerance) = acc_tolerance {
            assert!(
                (got.1 as f64 - acc).abs() <= tolerance,
                "{what}: acc {} vs CPU {acc}",
                got.1
            );
        }
    };
    // The three anchors, built from their definitions.
    let swa = combination(&samples, &[1.0 / n as f64; 6]);
    let anchor_weights = [
        ("SWA", &anchors.swa, swa),
        ("TWA", &twa, combination(&samples, &alpha)),
        (
            "last sample",
            &anchors.samples[n - 1],
            samples[n - 1].clone(),
        ),
    ];
    for (what, beta, weights) in &anchor_weights {
        let [px, py] = plane.project(beta);
        check(
            what,
            block_on(land.evaluate_point(Part::Test, px, py)).unwrap(),
            weights,
        );
    }
    // A whole grid, each point against Σ α_i(x, y) w_i with α = Tᵀβ(x, y).
    let side = 17;
    let spec = GridSpec::around(&[plane.project(&twa), [0.0, 0.0]], side, 0.5);
    let mut reports = 0;
    let grid = block_on(
        land.evaluate(&spec, Part::Test, &twa::collective::Single, &mut |_| {
            reports += 1;
            true
        }),
    )
    .unwrap();
    assert!(
        grid.complete() && reports >= 2,
        "coarse to fine: {reports} reports"
    );
    for j in 0..side {
        for i in 0..side {
            let [gx, gy] = spec.coord(i, j);
            let a = land.space.averaging_coefficients(&plane.point(gx, gy));
            let k = j * side + i;
            check(
                &format!("grid ({i}, {j})"),
                (grid.loss[k], grid.acc[k]),
                &combination(&samples, &a),
            );
        }
    }
}

/// Projected SGD and explicit coefficients (global, per layer) alike.
#[test]
fn twa_reports_its_coefficients_while_training() {
    let data = toy_data();
    let config = TrainConfig {
        epochs: 1,
        batch: 8,
        eval_batch: 50,
        ..TrainConfig::default()
    };
    let mut rng = rng("coefficients");
    for coefficients in [
        Coefficients::Orthonormal,
        Coefficients::Global,
        Coefficients::Layer,
    ] {
        // A learning rate so small that TWA stays at its start, the SWA point: α = 1/n.
        let twa = TwaConfig {
            epochs: 1,
            lr: 1e-7,
            start: Start::Swa,
            coefficients,
            ..TwaConfig::default()
        };
        let config = twa::twa::config::twa_train_config(&config, &twa);
        let mut trainer = Trainer::new(gpu(), &data, &model_config(), config).unwrap();
        let dim = trainer.net.model.num_params();
        let n = 5;
        let samples: Vec<f32> = (0..n).flat_map(|_| random(&mut rng, dim)).collect();
        let (mut reported, mut layers) = (Vec::new(), Vec::new());
        block_on(average::train_twa(
            gpu(),
            &mut trainer,
            Samples::host(&samples),
            &twa,
            &mut |e| {
                if let Event::Coefficients { alpha, per_layer } = e {
                    reported.push(alpha);
                    layers.push(per_layer);
                }
            },
        ))
        .unwrap();
        // The start, then 50 steps with a copy every 25 while no readback is pending
        // (explicit coefficients also report the end).
        let least = if coefficients == Coefficients::Orthonormal {
            2
        } else {
            3
        };
        assert!(
            reported.len() >= least,
            "{coefficients:?}: start and at least one step: {}",
            reported.len()
        );
        for alpha in &reported {
            assert_eq!(alpha.len(), n);
            for a in alpha {
                assert!((a - 0.2).abs() < 1e-4, "{coefficients:?}: {alpha:?}");
            }
        }
        // Per-layer α only with per-layer coefficients: the MLP's Linear and
        // BatchNorm layers by their PyTorch names, each at 1/n.
        for per_layer in &layers {
            if coefficients != Coefficients::Layer {
                assert!(per_layer.is_empty());
                continue;
            }
            let names: Vec<&str> = per_layer.iter().map(|(name, _)| name.as_str()).collect();
            assert_eq!(names, ["0", "1", "3", "4", "6"]);
            for (name, alpha) in per_layer {
                assert!(
                    alpha.len() == n && alpha.iter().all(|a| (a - 0.2).abs() < 1e-4),
                    "layer {name}: {alpha:?}"
                );
            }
        }
    }
}

#[test]
fn a_clicked_point_is_evaluated_like_an_averaged_model() {
    let data = toy_data();
    let model = Model::mlp(&model_config(), data.train.features(), data.classes);
    let dim = model.num_params();
    let samples = samples_around_init(&model, 4, 4, 0.2, &mut rng("click")).concat();
    let mut land = block_on(Landscape::new(
        gpu(),
        &data,
        &model_config(),
        &samples,
        32,
        50,
        5,
    ))
    .unwrap();
    let anchors = land.anchors(None);
    let plane = Plane::build(PlaneKind::Pca, &anchors).unwrap();
    block_on(land.set_plane(&plane)).unwrap();
    let [x, y] = plane.project(&anchors.swa);
    let clicked = block_on(land.evaluate_model(x, y)).unwrap();
    // The same model through the averaging path: SWA weights, BN re-estimated, test split.
    let config = TrainConfig {
        batch: 50,
        eval_batch: 50,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(gpu(), &data, &model_config(), config).unwrap();
    let swa = block_on(average::evaluate_at(
        &mut trainer,
        &twa::twa::mean::mean(&samples, dim),
    ))
    .unwrap();
    let (a, b) = (clicked.mean_loss(), swa.mean_loss());
    assert!((a - b).abs() <= 1e-4 * b, "clicked {a} vs SWA {b}");
    assert_eq!(clicked.accuracy(), swa.accuracy());
}

/// Coordinates over b-bit directions are orthonormal ones: distances between the
/// samples' coordinates are the distances between their weights, and projecting a
/// sample's weights gives back its coordinates — up to the levels' rounding (at 2 bits
/// the projection of the exact weights leans on the other directions' rounding too,
/// so only distances are checked there).
#[test]
fn coordinates_over_quantised_directions_keep_weight_space_distances() {
    let data = toy_data();
    let model = Model::mlp(&model_config(), data.train.features(), data.classes);
    let n = 7;
    let drawn = samples_around_init(&model, 4, n, 0.3, &mut rng("quantised landscape"));
    let flat: Vec<f32> = drawn.concat();
    // Relative errors allowed at each b for distances and projections (measured over
    // seeds: distances 3e-4, 5e-3, 3e-2; projections 2.5e-3, 4e-2).
    for (bits, tolerance, projection) in [(8, 2e-3, 1e-2), (4, 2e-2, 0.1), (2, 0.1, f64::NAN)] {
        let projects = !projection.is_nan();
        let land = block_on(Landscape::new(
            gpu(),
            &data,
            &model_config(),
            &flat,
            bits,
            50,
            5,
        ))
        .unwrap();
        let coords = land.space.sample_coordinates();
        let (mut worst, mut worst_projection): (f64, f64) = (0.0, 0.0);
        for i in 0..n {
            for j in 0..i {
                let weights: f64 = drawn[i]
                    .iter()
                    .zip(&drawn[j])
                    .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                    .sum::<f64>()
                    .sqrt();
                let between: f64 = coords[i]
                    .iter()
                    .zip(&coords[j])
                    .map(|(a, b)| (a - b).powi(2))
                    .sum::<f64>()
                    .sqrt();
                worst = worst.max((between - weights).abs() / weights);
            }
            if !projects {
                continue;
            }
            let back = block_on(land.coordinates_of(&drawn[i])).unwrap();
            let scale = coords[i].iter().map(|c| c * c).sum::<f64>().sqrt();
            for (a, b) in back.iter().zip(&coords[i]) {
                assert!(
                    (a - b).abs() <= projection * scale,
                    "{bits} bits, sample {i}: projected {a} vs {b}"
                );
                worst_projection = worst_projection.max((a - b).abs() / scale);
            }
        }
        eprintln!("{bits} bits: worst relative distance error {worst:.2e}, projection {worst_projection:.2e}");
        assert!(worst <= tolerance, "{bits} bits: {worst} > {tolerance}");
    }
}
