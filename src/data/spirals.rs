//! A teaching data set generated in code: interleaved 2-D spirals, one arm per class,
//! with the coordinates stored as bytes like image pixels (0..=255 across [−1, 1]), so
//! the same device path batches them.

use super::dataset::{Classes, Dataset, Split};
use super::Shape;
use crate::error::Result;
use crate::rng::Rng;

fn split(count: usize, classes: usize, noise: f64, rng: &mut Rng) -> Split {
    let mut pixels = Vec::with_capacity(2 * count);
    let mut labels = Vec::with_capacity(count);
    let byte = |v: f64| ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
    for _ in 0..count {
        let class = rng.below(classes);
        let r = 0.08 + 0.92 * rng.next_f64();
        let angle = class as f64 * std::f64::consts::TAU / classes as f64
            + 2.5 * std::f64::consts::PI * r
            + noise * (rng.next_f64() - 0.5);
        pixels.push(byte(r * angle.cos()));
        pixels.push(byte(r * angle.sin()));
        labels.push(class as u32);
    }
    Split {
        pixels,
        labels,
        count,
        shape: Shape::flat(2),
        labels_file: "spirals (generated)".into(),
        encoding: super::Encoding::U8,
    }
}

/// `classes` spiral arms: `train` and `test` points, seeded.
pub fn spirals(train: usize, test: usize, classes: usize, seed: u64) -> Result<Dataset> {
    let mut rng = Rng::new(seed);
    let train = split(train, classes, 1.0, &mut rng);
    let test = split(test, classes, 1.0, &mut rng);
    Dataset::from_splits(
        train,
        test,
        "spirals (generated)".into(),
        Classes::Format(classes),
    )
}
