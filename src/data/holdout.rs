//! A validation split held out of the training data (TWA-v trains the averaging
//! coefficients on it): seeded, stratified by class, and the same for the same seed.

use super::{Dataset, Split};
use crate::error::{Error, Result};
use crate::rng::Rng;

/// Mixed into the run's seed so that the held-out draw does not share a stream with
/// the shuffle or the initialisation.
const SALT: u64 = 0x7641_4c49_4441_5445;

/// Indices (sorted) of `n` of the samples labelled `labels` to hold out: each class
/// gives a share proportional to its size (largest remainders break the rounding,
/// then the lower class), drawn by a generator seeded with `seed`.
pub fn holdout_indices(labels: &[u32], classes: usize, n: usize, seed: u64) -> Result<Vec<usize>> {
    if n == 0 || n >= labels.len() {
        return Err(Error::Config(format!(
            "a validation split of {n} samples: choose 1 to {} of the {} training samples",
            labels.len().saturating_sub(1),
            labels.len()
        )));
    }
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &label) in labels.iter().enumerate() {
        members[label as usize].push(i);
    }
    let total = labels.len();
    let mut quota: Vec<usize> = members.iter().map(|m| m.len() * n / total).collect();
    let mut order: Vec<usize> = (0..classes).collect();
    // Largest remainder first; stable, so ties keep the lower class first.
    order.sort_by_key(|&c| std::cmp::Reverse(members[c].len() * n % total));
    let missing = n - quota.iter().sum::<usize>();
    for &c in order.iter().take(missing) {
        quota[c] += 1;
    }
    let mut rng = Rng::new(seed ^ SALT);
    let mut chosen = Vec::with_capacity(n);
    for (class, want) in members.iter_mut().zip(quota) {
        rng.shuffle(class);
        chosen.extend_from_slice(&class[..want]);
    }
    chosen.sort_unstable();
    Ok(chosen)
}

fn subset(split: &Split, keep: &[usize]) -> Split {
    let f = split.sample_bytes();
    Split {
        pixels: keep
            .iter()
            .flat_map(|&i| &split.pixels[i * f..(i + 1) * f])
            .copied()
            .collect(),
        labels: keep.iter().map(|&i| split.labels[i]).collect(),
        count: keep.len(),
        shape: split.shape,
        labels_file: split.labels_file.clone(),
        encoding: split.encoding,
    }
}

/// `data` with `n` training samples held out: (the rest, the held-out samples), each
/// as a data set whose training split is that part, with `data`'s test split and its
/// normalisation (the statistics of the whole training split, as the model was
/// trained with them).
pub fn hold_out(data: &Dataset, n: usize, seed: u64) -> Result<(Dataset, Dataset)> {
    let held = holdout_indices(&data.train.labels, data.classes, n, seed)?;
    let mut is_held = vec![false; data.train.count];
    held.iter().for_each(|&i| is_held[i] = true);
    let rest: Vec<usize> = (0..data.train.count).filter(|&i| !is_held[i]).collect();
    let with_train = |train: Split| Dataset {
        train,
        test: data.test.clone(),
        classes: data.classes,
        mean: data.mean.clone(),
        std: data.std.clone(),
        source: data.source.clone(),
        skipped: Vec::new(),
    };
    Ok((
        with_train(subset(&data.train, &rest)),
        with_train(subset(&data.train, &held)),
    ))
}

#[cfg(test)]
mod tests {
    use super::holdout_indices;

    #[test]
    fn shares_follow_the_class_sizes_and_the_seed_fixes_the_draw() {
        // 60 of class 0, 30 of class 1, 10 of class 2.
        let labels: Vec<u32> = (0..100)
            .map(|i| {
                if i < 60 {
                    0
                } else if i < 90 {
                    1
                } else {
                    2
                }
            })
            .collect();
        let held = holdout_indices(&labels, 3, 15, 4).unwrap();
        let count = |c: u32| held.iter().filter(|&&i| labels[i] == c).count();
        // 9, 4.5, 1.5: the remainders (tied) go to the lower classes first → 9, 5, 1.
        assert_eq!((count(0), count(1), count(2)), (9, 5, 1));
        assert_eq!(held, holdout_indices(&labels, 3, 15, 4).unwrap());
        assert_ne!(held, holdout_indices(&labels, 3, 15, 5).unwrap());
        assert!(held.windows(2).all(|w| w[0] < w[1]));
        assert!(holdout_indices(&labels, 3, 0, 4).is_err());
        assert!(holdout_indices(&labels, 3, 100, 4).is_err());
    }
}
