//! Plain-Rust twins of every kernel, in f64, for tests and for validating benchmarks.
//! Shapes follow the shaders: activations batch-major [batch, features], weights
//! [out, in] as nn.Linear.

/// C[m, n] = Σ_k A[m, k]·B[k, n], all row-major.
pub fn matmul(a: &[f64], b: &[f64], m: usize, n: usize, k: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for p in 0..k {
            let av = a[i * k + p];
            for j in 0..n {
                c[i * n + j] += av * b[p * n + j];
            }
        }
    }
    c
}

/// Transpose of a row-major m × n matrix.
pub fn transpose(a: &[f64], m: usize, n: usize) -> Vec<f64> {
    let mut t = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            t[j * m + i] = a[i * n + j];
        }
    }
    t
}

/// y = x·Wᵀ + b for x [batch, in], W [out, in].
pub fn linear_forward(
    x: &[f64],
    w: &[f64],
    b: &[f64],
    batch: usize,
    inputs: usize,
    outputs: usize,
) -> Vec<f64> {
    let mut y = matmul(x, &transpose(w, outputs, inputs), batch, outputs, inputs);
    for row in y.chunks_mut(outputs) {
        for (v, bias) in row.iter_mut().zip(b) {
            *v += bias;
        }
    }
    y
}

/// (dx, dW, db) of a linear layer given dy [batch, out].
pub fn linear_backward(
    x: &[f64],
    w: &[f64],
    dy: &[f64],
    batch: usize,
    inputs: usize,
    outputs: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let dx = matmul(dy, w, batch, inputs, outputs);
    let dw = matmul(&transpose(dy, batch, outputs), x, outputs, inputs, batch);
    let mut db = vec![0.0; outputs];
    for row in dy.chunks(outputs) {
        for (acc, v) in db.iter_mut().zip(row) {
            *acc += v;
        }
    }
    (dx, dw, db)
}

/// max(x, 0).
pub fn relu(x: &[f64]) -> Vec<f64> {
    x.iter().map(|v| v.max(0.0)).collect()
}

/// dy·[y > 0].
pub fn relu_backward(y: &[f64], dy: &[f64]) -> Vec<f64> {
    y.iter()
        .zip(dy)
        .map(|(y, d)| if *y > 0.0 { *d } else { 0.0 })
        .collect()
}

/// Batch statistics of x [batch, features]: (mean, biased variance, unbiased variance).
pub fn batch_stats(x: &[f64], batch: usize, features: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut mean = vec![0.0; features];
    let mut var = vec![0.0; features];
    for row in x.chunks(features) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v / batch as f64;
        }
    }
    for row in x.chunks(features) {
        for f in 0..features {
            var[f] += (row[f] - mean[f]).powi(2);
        }
    }
    let biased = var.iter().map(|s| s / batch as f64).collect();
    let unbiased = var
        .iter()
        .map(|s| s / (batch as f64 - 1.0).max(1.0))
        .collect();
    (mean, biased, unbiased)
}

/// γ·(x − mean)/√(var + eps) + β per feature.
pub fn batchnorm_apply(
    x: &[f64],
    mean: &[f64],
    var: &[f64],
    gamma: &[f64],
    beta: &[f64],
    eps: f64,
) -> Vec<f64> {
    let f = mean.len();
    x.iter()
        .enumerate()
        .map(|(i, v)| {
            let j = i % f;
            gamma[j] * (v - mean[j]) / (var[j] + eps).sqrt() + beta[j]
        })
        .collect()
}

/// Train-mode BatchNorm forward (batch statistics).
pub fn batchnorm_train(x: &[f64], gamma: &[f64], beta: &[f64], batch: usize, eps: f64) -> Vec<f64> {
    let (mean, var, _) = batch_stats(x, batch, gamma.len());
    batchnorm_apply(x, &mean, &var, gamma, beta, eps)
}

/// Train-mode BatchNorm backward: (dx, dγ, dβ).
pub fn batchnorm_backward(
    x: &[f64],
    gamma: &[f64],
    dy: &[f64],
    batch: usize,
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let f = gamma.len();
    let (mean, var, _) = batch_stats(x, batch, f);
    let r: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let mut dgamma = vec![0.0; f];
    let mut dbeta = vec![0.0; f];
    for (xr, dr) in x.chunks(f).zip(dy.chunks(f)) {
        for j in 0..f {
            dbeta[j] += dr[j];
            dgamma[j] += dr[j] * (xr[j] - mean[j]) * r[j];
        }
    }
    let nb = batch as f64;
    let mut dx = vec![0.0; x.len()];
    for (i, v) in dx.iter_mut().enumerate() {
        let j = i % f;
        let xhat = (x[i] - mean[j]) * r[j];
        *v = gamma[j] * r[j] / nb * (nb * dy[i] - dbeta[j] - xhat * dgamma[j]);
    }
    (dx, dgamma, dbeta)
}

/// Softmax cross-entropy: (Σ loss, number correct, gradient of the mean loss).
pub fn cross_entropy(logits: &[f64], labels: &[u32], classes: usize) -> (f64, f64, Vec<f64>) {
    let batch = labels.len();
    let mut loss = 0.0;
    let mut correct = 0.0;
    let mut grad = vec![0.0; logits.len()];
    for (b, row) in logits.chunks(classes).enumerate() {
        let mut arg = 0;
        for c in 1..classes {
            if row[c] > row[arg] {
                arg = c;
            }
        }
        let zmax = row[arg];
        let denom: f64 = row.iter().map(|z| (z - zmax).exp()).sum();
        let label = labels[b] as usize;
        loss += denom.ln() + zmax - row[label];
        correct += f64::from(arg == label);
        for c in 0..classes {
            let p = (row[c] - zmax).exp() / denom;
            grad[b * classes + c] = (p - f64::from(c == label)) / batch as f64;
        }
    }
    (loss, correct, grad)
}

/// One SGD step in place: v ← μv + (g + wd·w); w ← w − lr·v.
pub fn sgd_step(w: &mut [f64], v: &mut [f64], g: &[f64], lr: f64, momentum: f64, wd: f64) {
    for i in 0..w.len() {
        v[i] = momentum * v[i] + g[i] + wd * w[i];
        w[i] -= lr * v[i];
    }
}

/// A whole model's forward pass with BatchNorm normalising by the batch's own
/// statistics (as the landscape probe does): (mean loss, accuracy) on `x` [batch, in].
pub fn model_probe(
    model: &crate::nn::Model,
    params: &[f64],
    x: &[f64],
    labels: &[u32],
) -> (f64, f64) {
    use crate::nn::model::{LayerKind, BN_EPS};
    let batch = labels.len();
    let mut h = x.to_vec();
    for layer in &model.layers {
        let p = layer.param_off;
        h = match layer.kind {
            LayerKind::Linear { inputs, outputs } => {
                let w = &params[p..p + inputs * outputs];
                let b = &params[p + inputs * outputs..p + inputs * outputs + outputs];
                linear_forward(&h, w, b, batch, inputs, outputs)
            }
            LayerKind::BatchNorm { features } => batchnorm_train(
                &h,
                &params[p..p + features],
                &params[p + features..p + 2 * features],
                batch,
                BN_EPS as f64,
            ),
            LayerKind::Relu { .. } => relu(&h),
        };
    }
    let (loss, correct, _) = cross_entropy(&h, labels, model.classes);
    (loss / batch as f64, correct / batch as f64)
}
