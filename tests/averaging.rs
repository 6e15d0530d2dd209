//! Averaging on the device: BatchNorm re-estimation against a CPU computation of the
//! cumulative statistics, sampling positions, and projected SGD staying in the span.

mod common;

use common::*;
use twa::nn::ModelConfig;
use twa::reference as cpu;
use twa::train::{SamplePlan, SampleStore};
use twa::train::{Schedule, TrainConfig, Trainer};
use twa::twa::average;
use twa::twa::config::{Start, TwaConfig};
use twa::twa::{Samples, Subspace};

fn config(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch: 32,
        lr: 0.05,
        eval_batch: 50,
        ..TrainConfig::default()
    }
}

#[test]
fn batchnorm_recalibration_is_the_cumulative_average_of_batch_statistics() {
    let data = toy_data();
    let model = ModelConfig {
        hidden: vec![6],
        batchnorm: true,
        ..Default::default()
    };
    let mut trainer = Trainer::new(gpu(), &data, &model, config(1)).unwrap();
    let mut rng = rng("recalibrate");
    let params = random(&mut rng, trainer.net.model.num_params());
    block_on(average::evaluate_at(&mut trainer, &params)).unwrap();
    let state = block_on(trainer.net.read_state(gpu())).unwrap();
    // CPU: the BatchNorm input is the first Linear's output; batches in data order.
    let (inputs, hidden) = (64, 6);
    let w = f64s(&params[..hidden * inputs]);
    let b = f64s(&params[hidden * inputs..hidden * inputs + hidden]);
    let x: Vec<f64> = data
        .train
        .pixels
        .iter()
        .map(|&p| (p as f64 / 255.0 - data.mean[0] as f64) / data.std[0] as f64)
        .collect();
    let (mut mean, mut var) = (vec![0.0; hidden], vec![0.0; hidden]);
    for (t, rows) in x.chunks(32 * inputs).enumerate() {
        let batch = rows.len() / inputs;
        let h = cpu::linear_forward(rows, &w, &b, batch, inputs, hidden);
        let (m, _, v) = cpu::batch_stats(&h, batch, hidden);
        let momentum = 1.0 / (t as f64 + 1.0);
        for f in 0..hidden {
            mean[f] += momentum * (m[f] - mean[f]);
            var[f] += momentum * (v[f] - var[f]);
        }
    }
    assert_close(
        "re-estimated running mean",
        &state[..hidden],
        &mean,
        1e-5,
        1e-4,
    );
    assert_close(
        "re-estimated running var",
        &state[hidden..2 * hidden],
        &var,
        1e-5,
        1e-4,
    );
}

#[test]
fn sampling_takes_w0_and_k_evenly_spaced_samples_per_epoch() {
    let plan = SamplePlan {
        per_epoch: 5,
        first_epoch: 2,
        last_epoch: 3,
    };
    assert_eq!(plan.count(), 11);
    let steps = 469;
    let taken: Vec<usize> = (0..steps).filter(|&s| plan.takes(1, s, steps)).collect();
    assert_eq!(taken, vec![93, 187, 281, 375, 468]);
    assert!((0..steps).all(|s| !plan.takes(0, s, steps) && !plan.takes(3, s, steps)));
    assert_eq!(SamplePlan::parse_epochs("2..3", 3).unwrap(), (2, 3));
    for bad in ["3..2", "0..2", "1..4", "x"] {
        assert!(SamplePlan::parse_epochs(bad, 3).is_err(), "{bad}");
    }
}

#[test]
fn projected_sgd_stays_in_the_span_and_alpha_rebuilds_the_iterate() {
    let gpu = gpu();
    let data = toy_data();
    let model = ModelConfig {
        hidden: vec![32],
        batchnorm: true,
        ..Default::default()
    };
    // Sample a short SGD run: w_0 plus 4 per epoch over 2 epochs (13 steps each).
    let mut sgd = Trainer::new(gpu, &data, &model, config(2)).unwrap();
    let dim = sgd.net.model.num_params();
    let plan = SamplePlan {
        per_epoch: 4,
        first_epoch: 1,
        last_epoch: 2,
    };
    sgd.sampler = Some((
        plan.clone(),
        SampleStore::new(gpu, dim, plan.count()).unwrap(),
    ));
    block_on(sgd.train_all(&mut |_| {})).unwrap();
    let (_, store) = sgd.sampler.take().unwrap();
    assert_eq!(store.infos.len(), 9);
    let samples = block_on(store.read(gpu)).unwrap();
    assert_eq!(
        &samples[..dim],
        &sgd.net.model.init_params(sgd.config.seed)[..],
        "sample 0 is w_0"
    );
    // 8 epochs of 13 steps: 104 projected steps from the last sample.
    let twa = TwaConfig {
        epochs: 8,
        lr: 0.5,
        schedule: Schedule::Constant,
        start: Start::Last,
        ..TwaConfig::default()
    };
    let mut trainer = Trainer::new(
        gpu,
        &data,
        &model,
        twa::twa::config::twa_train_config(&config(8), &twa),
    )
    .unwrap();
    let run = block_on(average::train_twa(
        gpu,
        &mut trainer,
        Samples::host(&samples),
        &twa,
        &mut |_| {},
    ))
    .unwrap();
    let w = f64s(&run.outcome.params);
    let last = &samples[8 * dim..];
    assert!(
        w.iter()
            .zip(last)
            .any(|(a, &b)| (a - b as f64).abs() > 1e-4),
        "TWA moved"
    );
    let space = block_on(Subspace::build(gpu, &trainer.net.kernels, &samples, dim, 9)).unwrap();
    let p = block_on(space.read_basis(gpu)).unwrap();
    let mut in_span = vec![0.0f64; dim];
    for row in p.chunks(dim) {
        let c: f64 = row.iter().zip(&w).map(|(a, b)| *a as f64 * b).sum();
        for (s, &r) in in_span.iter_mut().zip(row) {
            *s += c * r as f64;
        }
    }
    let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
    let off = norm(&mut w.iter().zip(&in_span).map(|(a, b)| a - b)) / norm(&mut w.iter().copied());
    assert!(off <= 1e-5, "‖w − PᵀPw‖/‖w‖ = {off:e} after 104 steps");
    let rebuilt: Vec<f64> = (0..dim)
        .map(|d| {
            (0..9)
                .map(|i| run.outcome.alpha[i] * samples[i * dim + d] as f64)
                .sum()
        })
        .collect();
    let err = norm(&mut rebuilt.iter().zip(&w).map(|(a, b)| a - b)) / norm(&mut w.iter().copied());
    assert!(err <= 1e-4, "‖Σ αᵢwᵢ − w‖/‖w‖ = {err:e}");
    assert!(
        run.outcome.test_acc > 0.9,
        "TWA on the toy set: {}",
        run.outcome.test_acc
    );
}
