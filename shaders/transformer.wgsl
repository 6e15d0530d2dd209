// The layers of a vision transformer, over token sequences [batch, tokens, features]
// (token-major, features fastest).
//
// layernorm_forward        y = (x − μ)/√(σ² + ε)·γ + β per row (μ, σ² over the row's
//                          `features`); one invocation per row
// layernorm_backward       dx = (g − mean(g) − x̂·mean(g·x̂))/√(σ² + ε), g = dy·γ, per
//                          row; also writes the row's (μ, 1/√(σ² + ε)) to `aux`
// layernorm_param_grads    dγ = Σ_rows dy·x̂, dβ = Σ_rows dy per feature, x̂ from the
//                          row statistics `layernorm_backward` left in `aux`
// class_token_forward      y = [cls; x]: the class token before each sample's tokens
// class_token_backward     dx = dy without its first token
// class_token_grad         dcls = Σ_batch dy[:, 0, :]
// position_forward         y = x + pos (pos [tokens, features] shared by the batch)
// position_grad            dpos = Σ_batch dy
// take_class_token         y = x[:, 0, :]
// take_class_token_back    dx = dy on the first token, 0 elsewhere
// attention_forward        o_i = Σ_j softmax_j(s_ij)·v_j, s_ij = scale·q_i·k_j, per
//                          (sample, head, query i); the softmax is taken online
//                          (running maximum and sum), so it never overflows
// attention_backward       per (sample, head), one workgroup: with P_ij =
//                          exp(s_ij − lse_i) recomputed from q and k and δ_i = dO_i·O_i,
//                          dS_ij = P_ij·(dO_i·v_j − δ_i), dq_i = scale·Σ_j dS_ij k_j,
//                          dk_j = scale·Σ_i dS_ij q_i, dv_j = Σ_i P_ij dO_i
//
// Attention's input is q, k, v side by side per token (3·features: q at 0, k at
// `features`, v at 2·`features`; head h at h·head_dim within each), as timm's `qkv`
// Linear writes them; its output the heads side by side.

struct TokenParams {
    batch: u32,
    tokens: u32,
    features: u32,
    heads: u32,
    // Offset of the layer's parameters (in `w`) and of their gradients (in `out`).
    off: u32,
    // Items of the grid loop.
    len: u32,
    scale: f32,
    eps: f32,
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> aux: array<f32>;
@group(0) @binding(5) var<uniform> p: TokenParams;

// Longest head (values per head) and sequence the attention kernels take.
const MAX_HEAD_DIM: u32 = 128u;
const MAX_TOKENS: u32 = 1024u;
// Invocations of an `attention_backward` workgroup.
const ATTENTION_WG: u32 = 64u;
const LOWEST: f32 = -3.0e38;

// ---- LayerNorm: a = x, b = dy, w = params (γ at off, β after), aux = row statistics.

// (μ, 1/√(σ² + ε)) of the row of `features` values of a from `base`, σ² biased and
// taken around μ (two passes).
fn row_stats(base: u32) -> vec2<f32> {
    let n = p.features;
    var sum = 0.0;
    for (var f = 0u; f < n; f++) {
        sum += a[base + f];
    }
    let mean = sum / f32(n);
    var sq = 0.0;
    for (var f = 0u; f < n; f++) {
        let c = a[base + f] - mean;
        sq += c * c;
    }
    return vec2<f32>(mean, inverseSqrt(sq / f32(n) + p.eps));
}

@compute @workgroup_size(LANES)
fn layernorm_forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n = p.features;
    let r = grid_range(wg.x, lid.x, nwg.x, p.len);
    for (var row = r.x; row < r.y; row += LANES) {
        let base = row * n;
        let stats = row_stats(base);
        let mean = stats.x;
        let rstd = stats.y;
        for (var f = 0u; f < n; f++) {
            out[base + f] = (a[base + f] - mean) * rstd * w[p.off + f] + w[p.off + n + f];
        }
    }
}

@compute @workgroup_size(LANES)
fn layernorm_backward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n = p.features;
    let r = grid_range(wg.x, lid.x, nwg.x, p.len);
    for (var row = r.x; row < r.y; row += LANES) {
        let base = row * n;
        let stats = row_stats(base);
        let mean = stats.x;
        let rstd = stats.y;
        var g_sum = 0.0;
        var gx_sum = 0.0;
        for (var f = 0u; f < n; f++) {
            let g = b[base + f] * w[p.off + f];
            g_sum += g;
            gx_sum += g * (a[base + f] - mean) * rstd;
        }
        let g_mean = g_sum / f32(n);
        let gx_mean = gx_sum / f32(n);
        for (var f = 0u; f < n; f++) {
            let x_hat = (a[base + f] - mean) * rstd;
            out[base + f] = rstd * (b[base + f] * w[p.off + f] - g_mean - x_hat * gx_mean);
        }
        aux[2u * row] = mean;
        aux[2u * row + 1u] = rstd;
    }
}

// Here `out` is the gradient store and `len` the feature count; rows = batch·tokens.
@compute @workgroup_size(LANES)
fn layernorm_param_grads(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n = p.features;
    let rows = p.batch * p.tokens;
    let r = grid_range(wg.x, lid.x, nwg.x, p.len);
    for (var f = r.x; f < r.y; f += LANES) {
        var dg = 0.0;
        var db = 0.0;
        for (var row = 0u; row < rows; row++) {
            let dy = b[row * n + f];
            dg += dy * (a[row * n + f] - aux[2u * row]) * aux[2u * row + 1u];
            db += dy;
        }
        out[p.off + f] = dg;
        out[p.off + n + f] = db;
    }
}

// ---- Class token and position embedding: `tokens` counts the input's tokens.

@compute @workgroup_size(LANES)
fn class_token_forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n = p.features;
    let r = grid_range(wg.x, lid.x, nwg.x, p.len);
    for (var t = r.x; t < r.y; t += LANES) {
        let f = t % n;
        let token = (t / n) % (p.tokens + 1u);
        let sample = t / (n * (p.tokens + 1u));
        if (token == 0u) {
            out[t] = w[p.off + f];
        } else {
            out[t] = a[(sample * p.tokens + token - 1u) * n + f];
        }
    }
}

@compute @workgroup_size(LANES)
fn class_token_backward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n = p.features;
    let r = grid_range(wg.x, lid.x, nwg.x, p.len);
    for (var t = r.x; t < r.y; t += LANES) {
        let sample = t / (n * p.tokens);
        out[t] = b[t + (sample + 1u) * n];
    }
}

@compute @workgroup_size(LANES)
fn class_token_grad(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n = p.features;
    let r = grid_range(wg.x, lid.x, nwg.x, p.len);
    for (var f = r.x; f < r.y; f += LANES) {
        var sum = 0.0;
        for (var s = 0u; s < p.batch; s++) {
            sum += b[s * (p.tokens + 1u) * n + f];
        }
        out[p.off + f] = sum;
    }
}

@compute @workgroup_size(LANES)
fn position_forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let per_sample = p.tokens * p.features;
    let r = grid_range(wg.x, lid.x, nwg.x, p.len);
    for (var t = r.x; t < r.y; t += LANES) {
        out[t] = a[t] + w[p.off + t % per_sample];
    }
}

@compute @workgroup_size(LANES)
fn position_grad(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let per_sample = p.tokens * p.features;
    let r = grid_range(wg.x, lid.x, nwg.x, p.len);
    for (var k = r.x; k < r.y; k += LANES) {
        var sum = 0.0;
        for (var s = 0u; s < p.batch; s++) {
            sum += b[s * per_sample + k];
        }
        out[p.off + k] = sum;
    }
}

@compute @workgroup_size(LANES)
fn take_class_token(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n = p.features;
    let r = grid_range(wg.x, lid.x, nwg.x, p.len);
    for (var t = r.x; t < r.y; t += LANES) {
        let sample = t / n;
        out[t] = a[sample * p.tokens * n + t % n];
    }
}

@compute @workgroup_size(LANES)
fn take_class_token_back(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n = p.features;
    let r = grid_range(wg.x, lid.x, nwg.x, p.len);
    for (var t = r.x; t < r.y; t += LANES) {
        let token = (t / n) % p.tokens;
        let sample = t / (n * p.tokens);
        out[t] = select(0.0, b[sample * n + t % n], token == 0u);
    }
}

// ---- Attention: a = qkv [batch, tokens, 3·features]; forward out = o; backward
// b = dO, w = O (the forward output), out = dqkv.

// Where head h's q of token `token` of `sample` starts (k at + features, v at + 2·features).
fn qkv_at(sample: u32, token: u32, h: u32, head_dim: u32) -> u32 {
    return (sample * p.tokens + token) * 3u * p.features + h * head_dim;
}

// Where head h's output of token `token` of `sample` starts.
fn o_at(sample: u32, token: u32, h: u32, head_dim: u32) -> u32 {
    return (sample * p.tokens + token) * p.features + h * head_dim;
}

fn score(qi: u32, kj: u32, head_dim: u32) -> f32 {
    var s = 0.0;
    for (var d = 0u; d < head_dim; d++) {
        s += a[qi + d] * a[kj + d];
    }
    return s * p.scale;
}

@compute @workgroup_size(LANES)
fn attention_forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let head_dim = p.features / p.heads;
    let r = grid_range(wg.x, lid.x, nwg.x, p.len);
    for (var t = r.x; t < r.y; t += LANES) {
        let i = t % p.tokens;
        let h = (t / p.tokens) % p.heads;
        let sample = t / (p.tokens * p.heads);
        let qi = qkv_at(sample, i, h, head_dim);
        var acc: array<f32, MAX_HEAD_DIM>;
        var m = LOWEST;
        var l = 0.0;
        for (var j = 0u; j < p.tokens; j++) {
            let kj = qkv_at(sample, j, h, head_dim) + p.features;
            let s = score(qi, kj, head_dim);
            let m_new = max(m, s);
            let rescale = exp(m - m_new);
            let e = exp(s - m_new);
            l = l * rescale + e;
            let vj = kj + p.features;
            for (var d = 0u; d < head_dim; d++) {
                acc[d] = acc[d] * rescale + e * a[vj + d];
            }
            m = m_new;
        }
        let oi = o_at(sample, i, h, head_dim);
        for (var d = 0u; d < head_dim; d++) {
            out[oi + d] = acc[d] / l;
        }
    }
}

var<workgroup> lse: array<f32, MAX_TOKENS>;
var<workgroup> delta: array<f32, MAX_TOKENS>;

@compute @workgroup_size(ATTENTION_WG)
fn attention_backward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let pair = wg.y * nwg.x + wg.x;
    if (pair >= p.batch * p.heads) {
        return;
    }
    let h = pair % p.heads;
    let sample = pair / p.heads;
    let head_dim = p.features / p.heads;
    // Each query's log-sum-exp of its scores and δ_i = dO_i·O_i.
    for (var i = lid.x; i < p.tokens; i += ATTENTION_WG) {
        let qi = qkv_at(sample, i, h, head_dim);
        var m = LOWEST;
        var l = 0.0;
        for (var j = 0u; j < p.tokens; j++) {
            let s = score(qi, qkv_at(sample, j, h, head_dim) + p.features, head_dim);
            let m_new = max(m, s);
            l = l * exp(m - m_new) + exp(s - m_new);
            m = m_new;
        }
        lse[i] = m + log(l);
        let oi = o_at(sample, i, h, head_dim);
        var dot = 0.0;
        for (var d = 0u; d < head_dim; d++) {
            dot += b[oi + d] * w[oi + d];
        }
        delta[i] = dot;
    }
    workgroupBarrier();
    // dq, by query.
    for (var i = lid.x; i < p.tokens; i += ATTENTION_WG) {
        let qi = qkv_at(sample, i, h, head_dim);
        let oi = o_at(sample, i, h, head_dim);
        var dq: array<f32, MAX_HEAD_DIM>;
        for (var j = 0u; j < p.tokens; j++) {
            let kj = qkv_at(sample, j, h, head_dim) + p.features;
            let vj = kj + p.features;
            let prob = exp(score(qi, kj, head_dim) - lse[i]);
            var dp = 0.0;
            for (var d = 0u; d < head_dim; d++) {
                dp += b[oi + d] * a[vj + d];
            }
            let ds = prob * (dp - delta[i]);
            for (var d = 0u; d < head_dim; d++) {
                dq[d] += ds * a[kj + d];
            }
        }
        for (var d = 0u; d < head_dim; d++) {
            out[qi + d] = dq[d] * p.scale;
        }
    }
    // dk and dv, by key.
    for (var j = lid.x; j < p.tokens; j += ATTENTION_WG) {
        let kj = qkv_at(sample, j, h, head_dim) + p.features;
        let vj = kj + p.features;
        var dk: array<f32, MAX_HEAD_DIM>;
        var dv: array<f32, MAX_HEAD_DIM>;
        for (var i = 0u; i < p.tokens; i++) {
            let qi = qkv_at(sample, i, h, head_dim);
            let oi = o_at(sample, i, h, head_dim);
            let prob = exp(score(qi, kj, head_dim) - lse[i]);
            var dp = 0.0;
            for (var d = 0u; d < head_dim; d++) {
                dp += b[oi + d] * a[vj + d];
                dv[d] += prob * b[oi + d];
            }
            let ds = prob * (dp - delta[i]);
            for (var d = 0u; d < head_dim; d++) {
                dk[d] += ds * a[qi + d];
            }
        }
        for (var d = 0u; d < head_dim; d++) {
            out[kj + d] = dk[d] * p.scale;
            out[vj + d] = dv[d];
        }
    }
}
