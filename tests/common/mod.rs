//! Shared test helpers: one device for the whole test binary (lavapipe in CI), seeded
//! random data, and tolerance checks `|gpu − ref| ≤ atol + rtol·|ref|`.
#![allow(dead_code)]

pub mod cli;

#[allow(unused_imports)]
pub use pollster::block_on;
use std::sync::OnceLock;
use twa::gpu::Gpu;
use twa::rng::Rng;

/// The device every test in this binary shares.
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        // As the binaries do first thing (no other test touches the environment or
        // the GPU before this device exists: every GPU test waits for it here).
        twa::gpu::context::quiet_display_probe();
        Gpu::new(None)
            .expect("tests need a GPU adapter (lavapipe: apt-get install mesa-vulkan-drivers)")
    })
}

/// A generator seeded from the clock (printed, so a failure can be replayed with
/// TWA_TEST_SEED) — fresh inputs every run.
pub fn rng(test: &str) -> Rng {
    let seed = std::env::var("TWA_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("{test}: TWA_TEST_SEED={seed}");
    Rng::new(seed)
}

/// `len` values uniform in [−1, 1), none of them zero.
pub fn random(rng: &mut Rng, len: usize) -> Vec<f32> {
    (0..len)
        .map(|_| {
            let v = rng.uniform(-1.0, 1.0);
            if v.abs() < 1e-3 {
                0.5
            } else {
                v
            }
        })
        .collect()
}

/// Widen to f64.
pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Panic with the worst element if any `|got − want| > atol + rtol·|want|`.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst: Option<(usize, f64)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = g as f64;
        let excess = if g.is_finite() {
            (g - w).abs() - (atol + rtol * w.abs())
        } else {
            f64::INFINITY
        };
        if excess > 0.0 && worst.is_none_or(|(_, e)| excess > e) {
            worst = Some((i, excess));
        }
    }
    if let Some((i, _)) = worst {
        panic!(
            "{what}: element {i}: gpu {} vs reference {} (atol {atol}, rtol {rtol})",
            got[i], want[i]
        );
    }
}

/// Central-difference gradient of `f` at `x` for the coordinates `at`.
pub fn numeric_grad(f: &dyn Fn(&[f64]) -> f64, x: &[f64], at: &[usize], h: f64) -> Vec<f64> {
    at.iter()
        .map(|&i| {
            let mut p = x.to_vec();
            p[i] += h;
            let up = f(&p);
            p[i] -= 2.0 * h;
            (up - f(&p)) / (2.0 * h)
        })
        .collect()
}

/// `count` distinct-ish random indices below `n`.
pub fn sample_indices(rng: &mut Rng, n: usize, count: usize) -> Vec<usize> {
    (0..count.min(n)).map(|_| rng.below(n)).collect()
}

/// The toy data set: 400 training and 100 test images of [`toy_split`].
pub fn toy_data() -> twa::data::Dataset {
    twa::data::Dataset::from_splits(
        toy_split(400, 1),
        toy_split(100, 2),
        "toy".into(),
        twa::data::Classes::Infer,
    )
    .unwrap()
}

/// A learnable toy split: 8×8 images whose bright row (row 2·label) is the label,
/// 4 classes.
pub fn toy_split(n: usize, seed: u64) -> twa::data::Split {
    let mut rng = Rng::new(seed);
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for _ in 0..n {
        let label = rng.below(4);
        for r in 0..8 {
            for _ in 0..8 {
                let base = if r == 2 * label { 200 } else { 30 };
                pixels.push((base + rng.below(50)) as u8);
            }
        }
        labels.push(label as u32);
    }
    twa::data::Split {
        pixels,
        labels,
        count: n,
        shape: twa::nn::model::Shape::image(8, 8, 1),
        labels_file: "toy".into(),
        encoding: twa::data::Encoding::U8,
    }
}

/// `data` holds exactly `want`'s samples in the same order, and one epoch on each
/// ends at the same test loss and accuracy.
pub fn assert_same_samples_and_metrics(data: &twa::data::Dataset, want: &twa::data::Dataset) {
    for (got, want) in [(&data.train, &want.train), (&data.test, &want.test)] {
        assert_eq!((&got.pixels, &got.labels), (&want.pixels, &want.labels));
    }
    assert_eq!(one_epoch_metrics(data), one_epoch_metrics(want));
}

/// The test loss and accuracy after one epoch of the `quick` preset's model on `data`.
fn one_epoch_metrics(data: &twa::data::Dataset) -> (f64, f64) {
    let model = twa::run::config::RunConfig::preset("quick").unwrap().model;
    let config = twa::train::TrainConfig {
        epochs: 1,
        ..twa::train::TrainConfig::default()
    };
    let mut trainer = twa::train::Trainer::new(gpu(), data, &model, config).unwrap();
    block_on(trainer.train_all(&mut |_| {})).unwrap();
    let totals = block_on(trainer.evaluate()).unwrap();
    (totals.mean_loss(), totals.accuracy())
}
