// BatchNorm over features (channels) for channels-last x[R, F]: R = batch rows for
// nn.BatchNorm1d, R = batch·H·W for nn.BatchNorm2d (each channel is normalised over
// the batch and every pixel). Reductions run in two stages so that every core works:
// the R rows are cut into `chunks` of `chunk_rows`; one invocation reduces one
// (chunk, feature) pair into `partials`, then one invocation per feature combines the
// chunks. The element-wise passes are grid-stride loops over R·F whose stride is a
// multiple of F, so each invocation loads its feature's constants once.
//
// Parameters (flat store, at g_off):  γ[F] then β[F].
// State buffer (at s_off):  running_mean[F], running_var[F], saved_mean[F], saved_invstd[F].
//
// partial_stats       chunk mean and sum of squared deviations M2 (two passes over the
//                     chunk, so no cancellation).
// finish_train        chunks combined (Chan et al.: δ = μ_b − μ_a, n = n_a + n_b,
//                     μ = μ_a + δ·n_b/n, M2 = M2_a + M2_b + δ²·n_a·n_b/n), μ and
//                     r = 1/√(σ² + eps) saved (σ² = M2/R, biased, used to normalise);
//                     running_mean ← (1 − m)·running_mean + m·μ,
//                     running_var  ← (1 − m)·running_var  + m·M2/(R − 1)  (unbiased).
// finish_recalibrate  as finish_train with m = 1/(t + 1) for the t-th batch (t = the
//                     step number in the per-step state): after a pass over the data the
//                     running statistics are the plain average of the batch statistics,
//                     as torch.optim.swa_utils.update_bn computes them.
// normalise           y = γ·(x − μ)·r + β with the saved batch statistics.
// normalise_running   y = γ·(x − running_mean)/√(running_var + eps) + β (evaluation).
// partial_grads       per chunk, with g = dy and x̂ = (x − μ)·r:  Σ g,  Σ g·x̂.
// finish_grads        dβ = Σ g,  dγ = Σ g·x̂  into the gradient store.
// backward_dx         dx = γ·r/R · (R·g − dβ − x̂·dγ).
//   Derivation: y depends on x_i directly and through μ and σ². dx̂ = γ·g;
//   dσ² = Σ dx̂·(x − μ)·(−½)r³;  dμ = −r·Σ dx̂ (the σ² term sums to zero);
//   dx = dx̂·r + dσ²·2(x − μ)/R + dμ/R, which collects to the line above.
//
// A BatchNorm followed by a ReLU runs as one layer (the `_relu` entry points):
// normalise_relu and normalise_running_relu write z = max(y, 0) instead of y, and
// partial_grads_relu and backward_dx_relu take g = dz·[z > 0] (the ReLU's backward)
// with z in `relu_out` and dz in `dy`. y and dy themselves are never stored.

struct BatchNormParams {
    rows: u32, features: u32, g_off: u32, s_off: u32,
    momentum: f32, eps: f32, chunk_rows: u32, chunks: u32,
}

struct StepState {
    start: u32, step: u32, lr: f32, _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> params: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> state: array<f32>;
@group(0) @binding(5) var<storage, read_write> grads: array<f32>;
@group(0) @binding(6) var<storage, read_write> partials: array<f32>;
@group(0) @binding(7) var<uniform> p: BatchNormParams;
@group(0) @binding(8) var<uniform> step: StepState;
@group(0) @binding(9) var<storage, read> relu_out: array<f32>;

// Rows [first, end) of chunk k.
fn chunk_rows(k: u32) -> vec2<u32> {
    let first = k * p.chunk_rows;
    return vec2<u32>(first, min(first + p.chunk_rows, p.rows));
}

@compute @workgroup_size(64)
fn partial_stats(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    let nf = p.features;
    if (t >= p.chunks * nf) {
        return;
    }
    let f = t % nf;
    let r = chunk_rows(t / nf);
    var sum = 0.0;
    for (var i = r.x; i < r.y; i++) {
        sum += x[i * nf + f];
    }
    let mean = sum / f32(r.y - r.x);
    var m2 = 0.0;
    for (var i = r.x; i < r.y; i++) {
        let d = x[i * nf + f] - mean;
        m2 += d * d;
    }
    partials[2u * t] = mean;
    partials[2u * t + 1u] = m2;
}

@compute @workgroup_size(64)
fn finish_train(@builtin(global_invocation_id) gid: vec3<u32>) {
    finish_stats(gid.x, p.momentum);
}

@compute @workgroup_size(64)
fn finish_recalibrate(@builtin(global_invocation_id) gid: vec3<u32>) {
    finish_stats(gid.x, 1.0 / f32(step.step + 1u));
}

// Combine the chunks of feature f; save μ, r; update the running statistics.
fn finish_stats(f: u32, momentum: f32) {
    let nf = p.features;
    if (f >= nf) {
        return;
    }
    var n = 0.0;
    var mean = 0.0;
    var m2 = 0.0;
    for (var k = 0u; k < p.chunks; k++) {
        let r = chunk_rows(k);
        let nb = f32(r.y - r.x);
        let mb = partials[2u * (k * nf + f)];
        let delta = mb - mean;
        let total = n + nb;
        mean += delta * nb / total;
        m2 += partials[2u * (k * nf + f) + 1u] + delta * delta * n * nb / total;
        n = total;
    }
    let var_biased = m2 / n;
    let var_unbiased = select(var_biased, m2 / (n - 1.0), p.rows > 1u);
    let s = p.s_off;
    state[s + f] = (1.0 - momentum) * state[s + f] + momentum * mean;
    state[s + nf + f] = (1.0 - momentum) * state[s + nf + f] + momentum * var_unbiased;
    state[s + 2u * nf + f] = mean;
    state[s + 3u * nf + f] = inverseSqrt(var_biased + p.eps);
}

// Grid stride of the element-wise passes: the largest multiple of F not above the
// number of invocations, so an invocation keeps one feature (loaded once) throughout.
fn feature_stride(lanes: u32) -> u32 {
    return lanes - lanes % p.features;
}

// y = γ·(x − μ)·r + β over the grid-stride pass (z = max(y, 0) with `relu`), with the
// batch's saved statistics or, with `running`, the running ones.
fn normalise_pass(lane: u32, lanes: u32, running: bool, relu: bool) {
    let nf = p.features;
    let stride = feature_stride(lanes);
    if (lane >= stride) {
        return;
    }
    let f = lane % nf;
    var mean: f32;
    var invstd: f32;
    if (running) {
        mean = state[p.s_off + f];
        invstd = inverseSqrt(state[p.s_off + nf + f] + p.eps);
    } else {
        mean = state[p.s_off + 2u * nf + f];
        invstd = state[p.s_off + 3u * nf + f];
    }
    let scale = params[p.g_off + f] * invstd;
    let beta = params[p.g_off + nf + f];
    for (var t = lane; t < p.rows * nf; t += stride) {
        let y = (x[t] - mean) * scale + beta;
        out[t] = select(y, max(y, 0.0), relu);
    }
}

@compute @workgroup_size(LANES)
fn normalise(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    normalise_pass(gid.x, nwg.x * LANES, false, false);
}

@compute @workgroup_size(LANES)
fn normalise_relu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    normalise_pass(gid.x, nwg.x * LANES, false, true);
}

@compute @workgroup_size(LANES)
fn normalise_running(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    normalise_pass(gid.x, nwg.x * LANES, true, false);
}

@compute @workgroup_size(LANES)
fn normalise_running_relu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    normalise_pass(gid.x, nwg.x * LANES, true, true);
}

// The gradient reaching y at t: dy, or through the ReLU dz·[z > 0].
fn upstream(t: u32, relu: bool) -> f32 {
    if (relu) {
        return select(0.0, dy[t], relu_out[t] > 0.0);
    }
    return dy[t];
}

fn partial_grads_pass(t: u32, relu: bool) {
    let nf = p.features;
    if (t >= p.chunks * nf) {
        return;
    }
    let f = t % nf;
    let r = chunk_rows(t / nf);
    let mean = state[p.s_off + 2u * nf + f];
    let invstd = state[p.s_off + 3u * nf + f];
    var dbeta = 0.0;
    var dgamma = 0.0;
    for (var i = r.x; i < r.y; i++) {
        let g = upstream(i * nf + f, relu);
        dbeta += g;
        dgamma += g * (x[i * nf + f] - mean) * invstd;
    }
    partials[2u * t] = dbeta;
    partials[2u * t + 1u] = dgamma;
}

@compute @workgroup_size(64)
fn partial_grads(@builtin(global_invocation_id) gid: vec3<u32>) {
    partial_grads_pass(gid.x, false);
}

@compute @workgroup_size(64)
fn partial_grads_relu(@builtin(global_invocation_id) gid: vec3<u32>) {
    partial_grads_pass(gid.x, true);
}

@compute @workgroup_size(64)
fn finish_grads(@builtin(global_invocation_id) gid: vec3<u32>) {
    let f = gid.x;
    let nf = p.features;
    if (f >= nf) {
        return;
    }
    var dbeta = 0.0;
    var dgamma = 0.0;
    for (var k = 0u; k < p.chunks; k++) {
        dbeta += partials[2u * (k * nf + f)];
        dgamma += partials[2u * (k * nf + f) + 1u];
    }
    grads[p.g_off + f] = dgamma;
    grads[p.g_off + nf + f] = dbeta;
}

fn backward_dx_pass(lane: u32, lanes: u32, relu: bool) {
    let nf = p.features;
    let stride = feature_stride(lanes);
    if (lane >= stride) {
        return;
    }
    let f = lane % nf;
    let nr = f32(p.rows);
    let mean = state[p.s_off + 2u * nf + f];
    let invstd = state[p.s_off + 3u * nf + f];
    let scale = params[p.g_off + f] * invstd / nr;
    let dgamma = grads[p.g_off + f];
    let dbeta = grads[p.g_off + nf + f];
    for (var t = lane; t < p.rows * nf; t += stride) {
        let xhat = (x[t] - mean) * invstd;
        out[t] = scale * (nr * upstream(t, relu) - dbeta - xhat * dgamma);
    }
}

@compute @workgroup_size(LANES)
fn backward_dx(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    backward_dx_pass(gid.x, nwg.x * LANES, false);
}

@compute @workgroup_size(LANES)
fn backward_dx_relu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    backward_dx_pass(gid.x, nwg.x * LANES, true);
}
