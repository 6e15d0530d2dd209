//! Plain-Rust twins of every kernel, in f64, for tests and for validating benchmarks.
//! Shapes follow the shaders: activations batch-major and channels-last
//! [batch, h, w, c] ([batch, features] for vectors), weights as PyTorch's
//! ([out, in] for nn.Linear, [out, c, kh, kw] for nn.Conv2d).

use crate::nn::model::{keep_scale, LayerKind, Model, Shape, Window, BN_EPS, LN_EPS};
use crate::nn::StepState;

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

/// Φ(x), the standard normal distribution function.
fn normal_cdf(x: f64) -> f64 {
    0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))
}

/// x·Φ(x) (PyTorch's exact GELU).
pub fn gelu(x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| v * normal_cdf(v)).collect()
}

/// dy·(Φ(x) + x·φ(x)).
pub fn gelu_backward(x: &[f64], dy: &[f64]) -> Vec<f64> {
    let density = |v: f64| (-0.5 * v * v).exp() / (2.0 * std::f64::consts::PI).sqrt();
    x.iter()
        .zip(dy)
        .map(|(&v, d)| d * (normal_cdf(v) + v * density(v)))
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

/// LayerNorm of each row of x [rows, features]: (x − μ)/√(σ² + ε)·γ + β.
pub fn layernorm(x: &[f64], gamma: &[f64], beta: &[f64], eps: f64) -> Vec<f64> {
    let f = gamma.len();
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks(f) {
        let (mean, rstd) = row_stats(row, eps);
        y.extend((0..f).map(|j| (row[j] - mean) * rstd * gamma[j] + beta[j]));
    }
    y
}

/// (μ, 1/√(σ² + ε)) of one row, σ² biased.
fn row_stats(row: &[f64], eps: f64) -> (f64, f64) {
    let n = row.len() as f64;
    let mean = row.iter().sum::<f64>() / n;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// LayerNorm backward: (dx, dγ, dβ).
pub fn layernorm_backward(
    x: &[f64],
    gamma: &[f64],
    dy: &[f64],
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let f = gamma.len();
    let (mut dgamma, mut dbeta) = (vec![0.0; f], vec![0.0; f]);
    let mut dx = Vec::with_capacity(x.len());
    for (row, drow) in x.chunks(f).zip(dy.chunks(f)) {
        let (mean, rstd) = row_stats(row, eps);
        let xhat: Vec<f64> = row.iter().map(|v| (v - mean) * rstd).collect();
        let g: Vec<f64> = (0..f).map(|j| drow[j] * gamma[j]).collect();
        let g_mean = g.iter().sum::<f64>() / f as f64;
        let gx_mean = g.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f64>() / f as f64;
        dx.extend((0..f).map(|j| rstd * (g[j] - g_mean - xhat[j] * gx_mean)));
        for j in 0..f {
            dgamma[j] += drow[j] * xhat[j];
            dbeta[j] += drow[j];
        }
    }
    (dx, dgamma, dbeta)
}

/// The class token `cls` [features] before each sample's `tokens` tokens.
pub fn class_token(x: &[f64], cls: &[f64], batch: usize, tokens: usize) -> Vec<f64> {
    let f = cls.len();
    let mut y = Vec::with_capacity(batch * (tokens + 1) * f);
    for sample in x.chunks(tokens * f).take(batch) {
        y.extend_from_slice(cls);
        y.extend_from_slice(sample);
    }
    y
}

/// Backward of [`class_token`]: (dx, dcls).
pub fn class_token_backward(
    dy: &[f64],
    batch: usize,
    tokens: usize,
    features: usize,
) -> (Vec<f64>, Vec<f64>) {
    let mut dx = Vec::with_capacity(batch * tokens * features);
    let mut dcls = vec![0.0; features];
    for sample in dy.chunks((tokens + 1) * features) {
        dcls.iter_mut()
            .zip(&sample[..features])
            .for_each(|(a, b)| *a += b);
        dx.extend_from_slice(&sample[features..]);
    }
    (dx, dcls)
}

/// Σ over the batch of per-sample blocks of `per_sample` values (a shared embedding's
/// gradient).
pub fn sum_over_batch(dy: &[f64], per_sample: usize) -> Vec<f64> {
    let mut sum = vec![0.0; per_sample];
    for sample in dy.chunks(per_sample) {
        sum.iter_mut().zip(sample).for_each(|(a, b)| *a += b);
    }
    sum
}

/// Multi-head self-attention: qkv [batch, tokens, 3·features] (q, k, v side by side,
/// heads side by side in each) to [batch, tokens, features]. Also returns the
/// attention probabilities [batch, heads, tokens, tokens].
pub fn attention(
    qkv: &[f64],
    batch: usize,
    tokens: usize,
    features: usize,
    heads: usize,
) -> (Vec<f64>, Vec<f64>) {
    let hd = features / heads;
    let scale = 1.0 / (hd as f64).sqrt();
    let at = |b: usize, t: usize, part: usize, h: usize| {
        (b * tokens + t) * 3 * features + part * features + h * hd
    };
    let mut out = vec![0.0; batch * tokens * features];
    let mut probs = vec![0.0; batch * heads * tokens * tokens];
    for b in 0..batch {
        for h in 0..heads {
            for i in 0..tokens {
                let q = at(b, i, 0, h);
                let scores: Vec<f64> = (0..tokens)
                    .map(|j| {
                        let k = at(b, j, 1, h);
                        (0..hd).map(|d| qkv[q + d] * qkv[k + d]).sum::<f64>() * scale
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                let o = (b * tokens + i) * features + h * hd;
                for j in 0..tokens {
                    let pij = e[j] / sum;
                    probs[((b * heads + h) * tokens + i) * tokens + j] = pij;
                    let v = at(b, j, 2, h);
                    for d in 0..hd {
                        out[o + d] += pij * qkv[v + d];
                    }
                }
            }
        }
    }
    (out, probs)
}

/// Backward of [`attention`]: dqkv from dO, through the softmax's Jacobian.
pub fn attention_backward(
    qkv: &[f64],
    dout: &[f64],
    batch: usize,
    tokens: usize,
    features: usize,
    heads: usize,
) -> Vec<f64> {
    let hd = features / heads;
    let scale = 1.0 / (hd as f64).sqrt();
    let (_, probs) = attention(qkv, batch, tokens, features, heads);
    let at = |b: usize, t: usize, part: usize, h: usize| {
        (b * tokens + t) * 3 * features + part * features + h * hd
    };
    let mut dqkv = vec![0.0; qkv.len()];
    for b in 0..batch {
        for h in 0..heads {
            let p = |i: usize, j: usize| probs[((b * heads + h) * tokens + i) * tokens + j];
            for i in 0..tokens {
                let o = (b * tokens + i) * features + h * hd;
                // dP_ij = dO_i·v_j; dS_ij = P_ij (dP_ij − Σ_k P_ik dP_ik).
                let dp: Vec<f64> = (0..tokens)
                    .map(|j| (0..hd).map(|d| dout[o + d] * qkv[at(b, j, 2, h) + d]).sum())
                    .collect();
                let mean: f64 = dp.iter().enumerate().map(|(j, d)| p(i, j) * d).sum();
                for (j, dp_j) in dp.iter().enumerate() {
                    let ds = p(i, j) * (dp_j - mean) * scale;
                    let (q, k, v) = (at(b, i, 0, h), at(b, j, 1, h), at(b, j, 2, h));
                    for d in 0..hd {
                        dqkv[q + d] += ds * qkv[k + d];
                        dqkv[k + d] += ds * qkv[q + d];
                        dqkv[v + d] += p(i, j) * dout[o + d];
                    }
                }
            }
        }
    }
    dqkv
}

/// The first token of each sample: [batch, features].
pub fn take_class_token(x: &[f64], tokens: usize, features: usize) -> Vec<f64> {
    x.chunks(tokens * features)
        .flat_map(|s| s[..features].to_vec())
        .collect()
}

/// Backward of [`take_class_token`]: dy on the first token, zeros elsewhere.
pub fn take_class_token_backward(dy: &[f64], tokens: usize, features: usize) -> Vec<f64> {
    let mut dx = Vec::with_capacity(dy.len() * tokens);
    for row in dy.chunks(features) {
        dx.extend_from_slice(row);
        dx.extend(std::iter::repeat_n(0.0, (tokens - 1) * features));
    }
    dx
}

/// Softmax cross-entropy: (Σ loss, number correct, gradient of the mean loss).
pub fn cross_entropy(logits: &[f64], labels: &[u32], classes: usize) -> (f64, f64, Vec<f64>) {
    smoothed_cross_entropy(logits, labels, classes, 0.0)
}

/// [`cross_entropy`] against targets smoothed by `eps`: (1 − ε)·onehot + ε/C.
pub fn smoothed_cross_entropy(
    logits: &[f64],
    labels: &[u32],
    classes: usize,
    eps: f64,
) -> (f64, f64, Vec<f64>) {
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
        let lse = denom.ln() + zmax;
        let mean = row.iter().sum::<f64>() / classes as f64;
        loss += (1.0 - eps) * (lse - row[label]) + eps * (lse - mean);
        correct += f64::from(arg == label);
        for c in 0..classes {
            let p = (row[c] - zmax).exp() / denom;
            let target = (1.0 - eps) * f64::from(c == label) + eps / classes as f64;
            grad[b * classes + c] = (p - target) / batch as f64;
        }
    }
    (loss, correct, grad)
}

/// Scale `g` to norm at most `max_norm` as PyTorch's `clip_grad_norm_`: by
/// min(1, max_norm / (‖g‖ + 1e-6)); returns the factor.
pub fn clip_grad_norm(g: &mut [f64], max_norm: f64) -> f64 {
    let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
    let factor = (max_norm / (norm + 1e-6)).min(1.0);
    g.iter_mut().for_each(|v| *v *= factor);
    factor
}

/// One SGD step in place: v ← μv + (g + wd·w); w ← w − lr·v.
pub fn sgd_step(w: &mut [f64], v: &mut [f64], g: &[f64], lr: f64, momentum: f64, wd: f64) {
    for i in 0..w.len() {
        v[i] = momentum * v[i] + g[i] + wd * w[i];
        w[i] -= lr * v[i];
    }
}

/// One AdamW step in place at step t (1-based): m ← β₁m + (1 − β₁)g;
/// v ← β₂v + (1 − β₂)g²; w ← w(1 − lr·wd) − lr·m̂/(√v̂ + ε), β₂ = 0.999, ε = 1e-8.
#[allow(clippy::too_many_arguments)]
pub fn adamw_step(
    w: &mut [f64],
    m: &mut [f64],
    v: &mut [f64],
    g: &[f64],
    lr: f64,
    beta1: f64,
    wd: f64,
    t: u32,
) {
    let (c1, c2) = (1.0 - beta1.powi(t as i32), 1.0 - 0.999f64.powi(t as i32));
    for i in 0..w.len() {
        m[i] = beta1 * m[i] + (1.0 - beta1) * g[i];
        v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
        w[i] = w[i] * (1.0 - lr * wd) - lr * (m[i] / c1) / ((v[i] / c2).sqrt() + 1e-8);
    }
}

/// Visit every (im2col entry, input index) pair of a convolution window whose input
/// pixel lies inside the image (padding taps read 0 and are skipped).
fn conv_taps(batch: usize, win: &Window, mut visit: impl FnMut(usize, usize)) {
    let Shape {
        height: h,
        width: w,
        channels: c,
    } = win.input;
    let (oh, ow) = win.out_hw();
    let (kh, kw) = win.kernel;
    let k = c * kh * kw;
    for b in 0..batch {
        for oy in 0..oh {
            for ox in 0..ow {
                let row = (b * oh + oy) * ow + ox;
                for ci in 0..c {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * win.stride + ky) as isize - win.padding as isize;
                            let ix = (ox * win.stride + kx) as isize - win.padding as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                visit(
                                    row * k + (ci * kh + ky) * kw + kx,
                                    ((b * h + iy as usize) * w + ix as usize) * c + ci,
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// im2col of x [batch, h, w, c] (channels-last): [batch·oh·ow, c·kh·kw], columns in
/// PyTorch's weight order (c, ky, kx); pixels outside the image are 0.
pub fn im2col(x: &[f64], batch: usize, win: &Window) -> Vec<f64> {
    let (oh, ow) = win.out_hw();
    let k = win.input.channels * win.kernel.0 * win.kernel.1;
    let mut cols = vec![0.0; batch * oh * ow * k];
    conv_taps(batch, win, |col, i| cols[col] = x[i]);
    cols
}

/// The adjoint of [`im2col`]: every column entry added back to the pixel it came from.
pub fn col2im(dcols: &[f64], batch: usize, win: &Window) -> Vec<f64> {
    let mut dx = vec![0.0; batch * win.input.len()];
    conv_taps(batch, win, |col, i| dx[i] += dcols[col]);
    dx
}

/// 2-D convolution of x [batch, h, w, c] with W [outputs, c, kh, kw] (+ b): y
/// [batch, oh, ow, outputs].
pub fn conv_forward(
    x: &[f64],
    w: &[f64],
    b: Option<&[f64]>,
    batch: usize,
    win: &Window,
    outputs: usize,
) -> Vec<f64> {
    let cols = im2col(x, batch, win);
    let zeros = vec![0.0; outputs];
    let rows = cols.len() / (w.len() / outputs);
    linear_forward(
        &cols,
        w,
        b.unwrap_or(&zeros),
        rows,
        w.len() / outputs,
        outputs,
    )
}

/// (dx, dW, db) of a convolution given dy [batch, oh, ow, outputs].
pub fn conv_backward(
    x: &[f64],
    w: &[f64],
    dy: &[f64],
    batch: usize,
    win: &Window,
    outputs: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let cols = im2col(x, batch, win);
    let k = w.len() / outputs;
    let (dcols, dw, db) = linear_backward(&cols, w, dy, cols.len() / k, k, outputs);
    (col2im(&dcols, batch, win), dw, db)
}

/// Visit every (output index, input indices of the window's elements inside the image)
/// of a pooling window.
fn pool_windows(batch: usize, win: &Window, mut visit: impl FnMut(usize, &[usize])) {
    let Shape {
        height: h,
        width: w,
        channels: c,
    } = win.input;
    let (oh, ow) = win.out_hw();
    let mut idx = Vec::new();
    for b in 0..batch {
        for oy in 0..oh {
            for ox in 0..ow {
                for ci in 0..c {
                    idx.clear();
                    for ky in 0..win.kernel.0 {
                        for kx in 0..win.kernel.1 {
                            let iy = (oy * win.stride + ky).checked_sub(win.padding);
                            let ix = (ox * win.stride + kx).checked_sub(win.padding);
                            if let (Some(iy), Some(ix)) = (iy, ix) {
                                if iy < h && ix < w {
                                    idx.push(((b * h + iy) * w + ix) * c + ci);
                                }
                            }
                        }
                    }
                    visit(((b * oh + oy) * ow + ox) * c + ci, &idx);
                }
            }
        }
    }
}

/// Index (into `idx`) of the first maximum of x over `idx`.
fn first_max(x: &[f64], idx: &[usize]) -> usize {
    let mut at = 0;
    for (j, &i) in idx.iter().enumerate() {
        if x[i] > x[idx[at]] {
            at = j;
        }
    }
    at
}

/// Max pooling of x [batch, h, w, c] (padding never wins: PyTorch pads with −∞).
pub fn max_pool(x: &[f64], batch: usize, win: &Window) -> Vec<f64> {
    let (oh, ow) = win.out_hw();
    let mut y = vec![0.0; batch * oh * ow * win.input.channels];
    pool_windows(batch, win, |o, idx| y[o] = x[idx[first_max(x, idx)]]);
    y
}

/// Gradient of [`max_pool`]: dy to each window's first maximum.
pub fn max_pool_backward(x: &[f64], dy: &[f64], batch: usize, win: &Window) -> Vec<f64> {
    let mut dx = vec![0.0; x.len()];
    pool_windows(batch, win, |o, idx| dx[idx[first_max(x, idx)]] += dy[o]);
    dx
}

/// Average pooling of x [batch, h, w, c], padding counted as zeros (PyTorch's
/// `count_include_pad`).
pub fn avg_pool(x: &[f64], batch: usize, win: &Window) -> Vec<f64> {
    let (oh, ow) = win.out_hw();
    let area = (win.kernel.0 * win.kernel.1) as f64;
    let mut y = vec![0.0; batch * oh * ow * win.input.channels];
    pool_windows(batch, win, |o, idx| {
        y[o] = idx.iter().map(|&i| x[i]).sum::<f64>() / area
    });
    y
}

/// Gradient of [`avg_pool`].
pub fn avg_pool_backward(dy: &[f64], batch: usize, win: &Window) -> Vec<f64> {
    let mut dx = vec![0.0; batch * win.input.len()];
    let area = (win.kernel.0 * win.kernel.1) as f64;
    pool_windows(batch, win, |o, idx| {
        for &i in idx {
            dx[i] += dy[o] / area;
        }
    });
    dx
}

/// Channels-last [batch, h, w, c] to PyTorch's flatten order [batch, c·h·w].
pub fn flatten(x: &[f64], batch: usize, shape: Shape) -> Vec<f64> {
    let (hw, c) = (shape.spatial(), shape.channels);
    let mut y = vec![0.0; x.len()];
    for b in 0..batch {
        for p in 0..hw {
            for ci in 0..c {
                y[b * hw * c + ci * hw + p] = x[b * hw * c + p * c + ci];
            }
        }
    }
    y
}

/// The inverse permutation of [`flatten`] (its gradient).
pub fn unflatten(dy: &[f64], batch: usize, shape: Shape) -> Vec<f64> {
    let (hw, c) = (shape.spatial(), shape.channels);
    let mut dx = vec![0.0; dy.len()];
    for b in 0..batch {
        for p in 0..hw {
            for ci in 0..c {
                dx[b * hw * c + p * c + ci] = dy[b * hw * c + ci * hw + p];
            }
        }
    }
    dx
}

/// Chris Wellons' lowbias32 integer hash (as `dropout.wgsl`).
fn lowbias32(v: u32) -> u32 {
    let mut h = v;
    h ^= h >> 16;
    h = h.wrapping_mul(0x7feb_352d);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846c_a68b);
    h ^ (h >> 16)
}

/// Dropout's factor for each value of [batch, features] at `step`: 1/(1 − p) where
/// kept, 0 where dropped, from the hash of (seed, salt, step, sample position, feature).
pub fn dropout_mask(
    features: usize,
    threshold: u32,
    salt: u32,
    batch: usize,
    step: &StepState,
) -> Vec<f64> {
    let scale = keep_scale(threshold) as f64;
    let mut mask = Vec::with_capacity(batch * features);
    for b in 0..batch as u32 {
        let mut h = lowbias32(step.seed);
        h = lowbias32(h ^ salt);
        h = lowbias32(h ^ step.step);
        h = lowbias32(h ^ (step.start + b));
        for f in 0..features as u32 {
            let kept = lowbias32(h ^ f) >= threshold;
            mask.push(if kept { scale } else { 0.0 });
        }
    }
    mask
}

/// x·mask element by element (dropout's forward and, on dy, its backward).
pub fn times(x: &[f64], mask: &[f64]) -> Vec<f64> {
    x.iter().zip(mask).map(|(a, m)| a * m).collect()
}

/// Every activation of a whole model's forward pass on `x` [batch, input], BatchNorm
/// normalising by the batch's own statistics (train mode), dropout drawing the masks
/// of `dropout`'s step (None: dropout off): `acts[0]` = x, `acts[i + 1]` = layer i's
/// output.
pub fn model_forward(
    model: &Model,
    params: &[f64],
    x: &[f64],
    batch: usize,
    dropout: Option<&StepState>,
) -> Vec<Vec<f64>> {
    let mut acts = vec![x.to_vec()];
    for layer in &model.layers {
        let p = layer.param_off;
        let h = &acts[layer.input];
        let y = match layer.kind {
            LayerKind::Linear {
                inputs,
                outputs,
                tokens,
            } => {
                let w = &params[p..p + inputs * outputs];
                let b = &params[p + inputs * outputs..p + inputs * outputs + outputs];
                linear_forward(h, w, b, batch * tokens, inputs, outputs)
            }
            LayerKind::Conv {
                window,
                outputs,
                bias,
            } => {
                let k = window.input.channels * window.kernel.0 * window.kernel.1;
                let w = &params[p..p + outputs * k];
                let b = bias.then(|| &params[p + outputs * k..p + outputs * k + outputs]);
                conv_forward(h, w, b, batch, &window, outputs)
            }
            LayerKind::BatchNorm { features, spatial } => batchnorm_train(
                h,
                &params[p..p + features],
                &params[p + features..p + 2 * features],
                batch * spatial,
                BN_EPS as f64,
            ),
            LayerKind::Relu { .. } => relu(h),
            LayerKind::Gelu { .. } => gelu(h),
            LayerKind::Dropout {
                features,
                threshold,
                salt,
            } => match dropout {
                Some(step) => times(h, &dropout_mask(features, threshold, salt, batch, step)),
                None => h.clone(),
            },
            LayerKind::MaxPool { window } => max_pool(h, batch, &window),
            LayerKind::AvgPool { window } => avg_pool(h, batch, &window),
            LayerKind::Flatten { input } => flatten(h, batch, input),
            LayerKind::Add { other, .. } => {
                h.iter().zip(&acts[other]).map(|(a, b)| a + b).collect()
            }
            LayerKind::LayerNorm { features, .. } => layernorm(
                h,
                &params[p..p + features],
                &params[p + features..p + 2 * features],
                LN_EPS as f64,
            ),
            LayerKind::ClassToken { features, tokens } => {
                class_token(h, &params[p..p + features], batch, tokens)
            }
            LayerKind::PositionEmbedding { features, tokens } => {
                let pos = &params[p..p + tokens * features];
                h.iter()
                    .enumerate()
                    .map(|(i, v)| v + pos[i % pos.len()])
                    .collect()
            }
            LayerKind::Attention {
                features,
                tokens,
                heads,
            } => attention(h, batch, tokens, features, heads).0,
            LayerKind::TakeClassToken { features, tokens } => take_class_token(h, tokens, features),
        };
        acts.push(y);
    }
    acts
}

/// Gradients of every parameter (length D) by backpropagating `dlogits` through the
/// activations of [`model_forward`] with dropout's masks at `step`; activations read
/// by several layers sum their gradients.
pub fn model_backward(
    model: &Model,
    params: &[f64],
    acts: &[Vec<f64>],
    dlogits: &[f64],
    batch: usize,
    step: &StepState,
) -> Vec<f64> {
    let mut grads = vec![0.0; params.len()];
    let mut dacts: Vec<Vec<f64>> = acts.iter().map(|a| vec![0.0; a.len()]).collect();
    *dacts.last_mut().expect("a model has layers") = dlogits.to_vec();
    let add_into = |d: &mut Vec<f64>, g: &[f64]| d.iter_mut().zip(g).for_each(|(a, b)| *a += b);
    for (i, layer) in model.layers.iter().enumerate().rev() {
        let p = layer.param_off;
        let (x, y) = (&acts[layer.input], &acts[i + 1]);
        let dy = dacts[i + 1].clone();
        let dx = match layer.kind {
            LayerKind::Linear {
                inputs,
                outputs,
                tokens,
            } => {
                let (dx, dw, db) = linear_backward(
                    x,
                    &params[p..p + inputs * outputs],
                    &dy,
                    batch * tokens,
                    inputs,
                    outputs,
                );
                grads[p..p + inputs * outputs].copy_from_slice(&dw);
                grads[p + inputs * outputs..p + inputs * outputs + outputs].copy_from_slice(&db);
                dx
            }
            LayerKind::Conv {
                window,
                outputs,
                bias,
            } => {
                let k = window.input.channels * window.kernel.0 * window.kernel.1;
                let (dx, dw, db) =
                    conv_backward(x, &params[p..p + outputs * k], &dy, batch, &window, outputs);
                grads[p..p + outputs * k].copy_from_slice(&dw);
                if bias {
                    grads[p + outputs * k..p + outputs * k + outputs].copy_from_slice(&db);
                }
                dx
            }
            LayerKind::BatchNorm { features, spatial } => {
                let (dx, dg, db) = batchnorm_backward(
                    x,
                    &params[p..p + features],
                    &dy,
                    batch * spatial,
                    BN_EPS as f64,
                );
                grads[p..p + features].copy_from_slice(&dg);
                grads[p + features..p + 2 * features].copy_from_slice(&db);
                dx
            }
            LayerKind::Relu { .. } => relu_backward(y, &dy),
            LayerKind::Gelu { .. } => gelu_backward(x, &dy),
            LayerKind::Dropout {
                features,
                threshold,
                salt,
            } => times(&dy, &dropout_mask(features, threshold, salt, batch, step)),
            LayerKind::MaxPool { window } => max_pool_backward(x, &dy, batch, &window),
            LayerKind::AvgPool { window } => avg_pool_backward(&dy, batch, &window),
            LayerKind::Flatten { input } => unflatten(&dy, batch, input),
            LayerKind::Add { other, .. } => {
                add_into(&mut dacts[other], &dy);
                dy
            }
            LayerKind::LayerNorm { features, .. } => {
                let (dx, dg, db) =
                    layernorm_backward(x, &params[p..p + features], &dy, LN_EPS as f64);
                grads[p..p + features].copy_from_slice(&dg);
                grads[p + features..p + 2 * features].copy_from_slice(&db);
                dx
            }
            LayerKind::ClassToken { features, tokens } => {
                let (dx, dcls) = class_token_backward(&dy, batch, tokens, features);
                grads[p..p + features].copy_from_slice(&dcls);
                dx
            }
            LayerKind::PositionEmbedding { features, tokens } => {
                grads[p..p + tokens * features]
                    .copy_from_slice(&sum_over_batch(&dy, tokens * features));
                dy
            }
            LayerKind::Attention {
                features,
                tokens,
                heads,
            } => attention_backward(x, &dy, batch, tokens, features, heads),
            LayerKind::TakeClassToken { features, tokens } => {
                take_class_token_backward(&dy, tokens, features)
            }
        };
        add_into(&mut dacts[layer.input], &dx);
    }
    grads
}

/// A whole model's forward pass with BatchNorm normalising by the batch's own
/// statistics and dropout off (as the landscape probe does): (mean loss, accuracy) on
/// `x` [batch, in].
pub fn model_probe(model: &Model, params: &[f64], x: &[f64], labels: &[u32]) -> (f64, f64) {
    let batch = labels.len();
    let acts = model_forward(model, params, x, batch, None);
    let (loss, correct, _) = cross_entropy(
        acts.last().expect("a model has layers"),
        labels,
        model.classes,
    );
    (loss / batch as f64, correct / batch as f64)
}
