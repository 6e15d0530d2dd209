// BatchNorm over features (nn.BatchNorm1d) for batch-major x[B, F].
// One invocation owns one feature f and loops over the batch.
//
// Parameters (flat store, at g_off):  γ[F] then β[F].
// State buffer (at s_off):  running_mean[F], running_var[F], saved_mean[F], saved_invstd[F].
//
// forward_train  μ = Σ_b x / B,  σ² = Σ_b (x − μ)² / B  (biased, used to normalise),
//                x̂ = (x − μ)·r with r = 1/√(σ² + eps),  y = γ·x̂ + β;
//                running_mean ← (1 − m)·running_mean + m·μ,
//                running_var  ← (1 − m)·running_var  + m·σ²·B/(B − 1)  (unbiased);
//                μ and r are saved for the backward pass.
// forward_eval   y = γ·(x − running_mean)/√(running_var + eps) + β.
// recalibrate    as forward_train, with momentum 1/(t + 1) for the t-th batch (t = the
//                step number in the per-step state): after a pass over the data the
//                running statistics are the plain average of the batch statistics, as
//                torch.optim.swa_utils.update_bn computes them.
// backward       with g = dy:  dβ = Σ_b g,  dγ = Σ_b g·x̂,
//                dx = γ·r/B · (B·g − dβ − x̂·dγ).
//   Derivation: y depends on x_b directly and through μ and σ². dx̂ = γ·g;
//   dσ² = Σ dx̂·(x − μ)·(−½)r³;  dμ = −r·Σ dx̂ (the σ² term sums to zero);
//   dx = dx̂·r + dσ²·2(x − μ)/B + dμ/B, which collects to the line above.

struct BatchNormParams {
    batch: u32, features: u32, g_off: u32, s_off: u32,
    momentum: f32, eps: f32, _pad0: u32, _pad1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> params: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> state: array<f32>;
@group(0) @binding(5) var<storage, read_write> grads: array<f32>;
@group(0) @binding(6) var<uniform> p: BatchNormParams;
@group(0) @binding(7) var<uniform> step: StepState;

struct StepState {
    start: u32, step: u32, lr: f32, _pad: u32,
}

@compute @workgroup_size(64)
fn forward_train(@builtin(global_invocation_id) gid: vec3<u32>) {
    normalise_batch(gid.x, p.momentum);
}

@compute @workgroup_size(64)
fn recalibrate(@builtin(global_invocation_id) gid: vec3<u32>) {
    normalise_batch(gid.x, 1.0 / f32(step.step + 1u));
}

// Train-mode forward of feature f, running statistics updated with `momentum`.
fn normalise_batch(f: u32, momentum: f32) {
    let nf = p.features;
    if (f >= nf) {
        return;
    }
    let nb = f32(p.batch);
    var sum = 0.0;
    for (var i = 0u; i < p.batch; i++) {
        sum += x[i * nf + f];
    }
    let mean = sum / nb;
    var sq = 0.0;
    for (var i = 0u; i < p.batch; i++) {
        let d = x[i * nf + f] - mean;
        sq += d * d;
    }
    let var_biased = sq / nb;
    let invstd = inverseSqrt(var_biased + p.eps);
    let gamma = params[p.g_off + f];
    let beta = params[p.g_off + nf + f];
    for (var i = 0u; i < p.batch; i++) {
        out[i * nf + f] = gamma * (x[i * nf + f] - mean) * invstd + beta;
    }
    let var_unbiased = select(var_biased, sq / (nb - 1.0), p.batch > 1u);
    let s = p.s_off;
    state[s + f] = (1.0 - momentum) * state[s + f] + momentum * mean;
    state[s + nf + f] = (1.0 - momentum) * state[s + nf + f] + momentum * var_unbiased;
    state[s + 2u * nf + f] = mean;
    state[s + 3u * nf + f] = invstd;
}

@compute @workgroup_size(64)
fn forward_eval(@builtin(global_invocation_id) gid: vec3<u32>) {
    let f = gid.x;
    let nf = p.features;
    if (f >= nf) {
        return;
    }
    let mean = state[p.s_off + f];
    let invstd = inverseSqrt(state[p.s_off + nf + f] + p.eps);
    let gamma = params[p.g_off + f];
    let beta = params[p.g_off + nf + f];
    for (var i = 0u; i < p.batch; i++) {
        out[i * nf + f] = gamma * (x[i * nf + f] - mean) * invstd + beta;
    }
}

@compute @workgroup_size(64)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let f = gid.x;
    let nf = p.features;
    if (f >= nf) {
        return;
    }
    let nb = f32(p.batch);
    let mean = state[p.s_off + 2u * nf + f];
    let invstd = state[p.s_off + 3u * nf + f];
    var dbeta = 0.0;
    var dgamma = 0.0;
    for (var i = 0u; i < p.batch; i++) {
        let g = dy[i * nf + f];
        dbeta += g;
        dgamma += g * (x[i * nf + f] - mean) * invstd;
    }
    let scale = params[p.g_off + f] * invstd / nb;
    for (var i = 0u; i < p.batch; i++) {
        let xhat = (x[i * nf + f] - mean) * invstd;
        out[i * nf + f] = scale * (nb * dy[i * nf + f] - dbeta - xhat * dgamma);
    }
    grads[p.g_off + f] = dgamma;
    grads[p.g_off + nf + f] = dbeta;
}
