//! The greedy model soup (Wortsman et al., 2022): ingredients ranked by validation
//! accuracy, each added to the running average only if the average's validation
//! accuracy does not drop.

use super::average::evaluate_at;
use crate::error::Result;
use crate::train::Trainer;
use serde::Serialize;

/// One ingredient's fate in the greedy soup.
#[derive(Clone, Debug, Serialize)]
pub struct Ingredient {
    /// Index among the samples given.
    pub sample: usize,
    /// Its own validation accuracy.
    pub val_acc: f64,
    /// The soup's validation accuracy with it (when it was tried).
    pub soup_val_acc: f64,
    pub kept: bool,
}

/// The greedy soup of the rows of `samples` (n × dim): `validator` re-estimates
/// BatchNorm on its training split and evaluates on its test split, which must be
/// the held-out validation samples (never the test set). Returns the soup's weights,
/// its averaging coefficients and the ingredients in the order tried.
pub async fn greedy_soup(
    validator: &mut Trainer<'_>,
    samples: &[f32],
    dim: usize,
) -> Result<(Vec<f32>, Vec<f64>, Vec<Ingredient>)> {
    let n = samples.len() / dim;
    let row = |i: usize| &samples[i * dim..(i + 1) * dim];
    let mut ranked = Vec::with_capacity(n);
    for i in 0..n {
        ranked.push((i, evaluate_at(validator, row(i)).await?.accuracy()));
    }
    // Best first; equal accuracies keep the given order.
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut sum: Vec<f64> = row(ranked[0].0).iter().map(|&w| w as f64).collect();
    let mut chosen = vec![ranked[0].0];
    let mut best = ranked[0].1;
    let mut log = vec![Ingredient {
        sample: ranked[0].0,
        val_acc: best,
        soup_val_acc: best,
        kept: true,
    }];
    let mean = |sum: &[f64], count: usize| -> Vec<f32> {
        sum.iter().map(|s| (s / count as f64) as f32).collect()
    };
    for &(i, val_acc) in &ranked[1..] {
        let candidate: Vec<f64> = sum.iter().zip(row(i)).map(|(s, &w)| s + w as f64).collect();
        let acc = evaluate_at(validator, &mean(&candidate, chosen.len() + 1))
            .await?
            .accuracy();
        let kept = acc >= best;
        if kept {
            sum = candidate;
            chosen.push(i);
            best = acc;
        }
        log.push(Ingredient {
            sample: i,
            val_acc,
            soup_val_acc: acc,
            kept,
        });
    }
    let mut alpha = vec![0.0; n];
    chosen
        .iter()
        .for_each(|&i| alpha[i] = 1.0 / chosen.len() as f64);
    Ok((mean(&sum, chosen.len()), alpha, log))
}
