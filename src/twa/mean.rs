//! The plain averages of samples: SWA (the mean) and EMA.

/// Mean of the rows of `samples` (n × dim).
pub fn mean(samples: &[f32], dim: usize) -> Vec<f32> {
    let n = samples.len() / dim;
    let mut acc = vec![0.0f64; dim];
    for row in samples.chunks(dim) {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += v as f64;
        }
    }
    acc.into_iter().map(|a| (a / n as f64) as f32).collect()
}

/// Exponential moving average over the rows in order: e ← d·e + (1 − d)·wᵢ from e = w₀;
/// also returns the weight of each row.
pub fn ema(samples: &[f32], dim: usize, decay: f64) -> (Vec<f32>, Vec<f64>) {
    let n = samples.len() / dim;
    let mut weights = vec![0.0f64; n];
    weights[0] = 1.0;
    for i in 1..n {
        weights.iter_mut().for_each(|w| *w *= decay);
        weights[i] = 1.0 - decay;
    }
    let mut acc = vec![0.0f64; dim];
    for (row, w) in samples.chunks(dim).zip(&weights) {
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += w * v as f64;
        }
    }
    (acc.into_iter().map(|a| a as f32).collect(), weights)
}
