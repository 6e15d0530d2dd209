// Optimiser kernels over the flat parameter store (length `len`).
//
// sgd_step  PyTorch's SGD with momentum μ and weight decay wd (dampening 0, no Nesterov):
//           v ← μ·v + (g + wd·w);  w ← w − lr·v.  lr comes from the per-step state.
// adamw_step AdamW (Loshchilov & Hutter; PyTorch's defaults β₂ = 0.999, ε = 1e-8) with
//           β₁ = momentum: m ← β₁m + (1 − β₁)g; v ← β₂v + (1 − β₂)g²;
//           w ← w − lr·wd·w − lr·m̂/(√v̂ + ε) with m̂, v̂ bias-corrected at step
//           t = step − first_step + 1; m in `velocity`, v in `second`.
// zero      dst[i] = 0 (gradient and optimiser-state resets).
// Gradient-norm clipping (PyTorch's clip_grad_norm_), three passes:
// clip_partial  dst[wg] = Σ g[i]² over workgroup wg's range of `grads`
// clip_factor   dst[0] = min(1, max_norm / (√Σ partials + 1e-6)) over the `len` partials
// clip_scale    dst[i] *= factor, the factor bound as `grads` (len = the gradient's)

struct OptimParams {
    len: u32, momentum: f32, weight_decay: f32, first_step: u32,
    max_norm: f32, _pad0: u32, _pad1: u32, _pad2: u32,
}

struct StepState {
    start: u32, step: u32, lr: f32, _pad: u32,
}

@group(0) @binding(0) var<storage, read> grads: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<storage, read_write> velocity: array<f32>;
@group(0) @binding(3) var<storage, read_write> second: array<f32>;
@group(0) @binding(4) var<uniform> p: OptimParams;
@group(0) @binding(5) var<uniform> step: StepState;

@compute @workgroup_size(LANES)
fn sgd_step(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = grid_range(wg.x, lid.x, nwg.x, p.len);
    for (var i = r.x; i < r.y; i += LANES) {
        let w = dst[i];
        let v = p.momentum * velocity[i] + grads[i] + p.weight_decay * w;
        velocity[i] = v;
        dst[i] = w - step.lr * v;
    }
}

@compute @workgroup_size(LANES)
fn adamw_step(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let t = f32(step.step - p.first_step + 1u);
    let beta2 = 0.999;
    let correct1 = 1.0 - pow(p.momentum, t);
    let correct2 = 1.0 - pow(beta2, t);
    let r = grid_range(wg.x, lid.x, nwg.x, p.len);
    for (var i = r.x; i < r.y; i += LANES) {
        let g = grads[i];
        let m = p.momentum * velocity[i] + (1.0 - p.momentum) * g;
        let v = beta2 * second[i] + (1.0 - beta2) * g * g;
        velocity[i] = m;
        second[i] = v;
        let w = dst[i] * (1.0 - step.lr * p.weight_decay);
        dst[i] = w - step.lr * (m / correct1) / (sqrt(v / correct2) + 1e-8);
    }
}

@compute @workgroup_size(LANES)
fn zero(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = grid_range(wg.x, lid.x, nwg.x, p.len);
    for (var i = r.x; i < r.y; i += LANES) {
        dst[i] = 0.0;
    }
}

var<workgroup> squares: array<f32, LANES>;

// The sum of `value` over the workgroup's invocations (LANES a power of two), in lane 0.
fn workgroup_sum(lane: u32, value: f32) -> f32 {
    squares[lane] = value;
    workgroupBarrier();
    for (var width = LANES / 2u; width > 0u; width /= 2u) {
        if (lane < width) {
            squares[lane] += squares[lane + width];
        }
        workgroupBarrier();
    }
    return squares[0];
}

@compute @workgroup_size(LANES)
fn clip_partial(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = grid_range(wg.x, lid.x, nwg.x, p.len);
    var sum = 0.0;
    for (var i = r.x; i < r.y; i += LANES) {
        sum += grads[i] * grads[i];
    }
    let total = workgroup_sum(lid.x, sum);
    if (lid.x == 0u) {
        dst[wg.x] = total;
    }
}

// One workgroup.
@compute @workgroup_size(LANES)
fn clip_factor(@builtin(local_invocation_id) lid: vec3<u32>) {
    var sum = 0.0;
    for (var i = lid.x; i < p.len; i += LANES) {
        sum += grads[i];
    }
    let total = workgroup_sum(lid.x, sum);
    if (lid.x == 0u) {
        dst[0] = min(1.0, p.max_norm / (sqrt(total) + 1e-6));
    }
}

@compute @workgroup_size(LANES)
fn clip_scale(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let factor = grads[0];
    let r = grid_range(wg.x, lid.x, nwg.x, p.len);
    for (var i = r.x; i < r.y; i += LANES) {
        dst[i] = dst[i] * factor;
    }
}
