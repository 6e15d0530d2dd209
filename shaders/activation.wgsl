// Element-wise ops over a flat range of `len` values: ReLU, GELU, and the residual
// addition with the copy/accumulate pair that sums gradients where an activation has
// several readers.
//
// relu_forward   y = max(x, 0)
// relu_inplace   out = max(out, 0) (PyTorch's inplace=True: the input's buffer)
// relu_backward  dx = dy · [y > 0]        (d max(x,0)/dx = 1 where x > 0, else 0;
//                                          y > 0 exactly where x > 0, so y is all we keep)
// gelu_forward   y = x·Φ(x), Φ(x) = (1 + erf(x/√2))/2   (PyTorch's exact GELU)
// gelu_backward  dx = dy · (Φ(x) + x·φ(x)), φ(x) = exp(−x²/2)/√(2π)   (from the input x)

struct ActivationParams {
    len: u32, _pad0: u32, _pad1: u32, _pad2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: ActivationParams;

@compute @workgroup_size(LANES)
fn relu_forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = grid_range(wg.x, lid.x, nwg.x, p.len);
    for (var i = r.x; i < r.y; i += LANES) {
        out[i] = max(x[i], 0.0);
    }
}

@compute @workgroup_size(LANES)
fn relu_inplace(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = grid_range(wg.x, lid.x, nwg.x, p.len);
    for (var i = r.x; i < r.y; i += LANES) {
        out[i] = max(out[i], 0.0);
    }
}

// Here `x` holds the forward output y.
@compute @workgroup_size(LANES)
fn relu_backward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = grid_range(wg.x, lid.x, nwg.x, p.len);
    for (var i = r.x; i < r.y; i += LANES) {
        out[i] = select(0.0, dy[i], x[i] > 0.0);
    }
}

// erf by Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7, below f32's spacing
// near 1), odd in x.
fn erf(x: f32) -> f32 {
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741
        + t * (-1.453152027 + t * 1.061405429))));
    return sign(x) * (1.0 - poly * exp(-a * a));
}

fn normal_cdf(x: f32) -> f32 {
    return 0.5 * (1.0 + erf(x * 0.70710678118654752));
}

@compute @workgroup_size(LANES)
fn gelu_forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = grid_range(wg.x, lid.x, nwg.x, p.len);
    for (var i = r.x; i < r.y; i += LANES) {
        out[i] = x[i] * normal_cdf(x[i]);
    }
}

// Here `x` holds the forward input.
@compute @workgroup_size(LANES)
fn gelu_backward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = grid_range(wg.x, lid.x, nwg.x, p.len);
    for (var i = r.x; i < r.y; i += LANES) {
        let v = x[i];
        let density = 0.39894228040143268 * exp(-0.5 * v * v);
        out[i] = dy[i] * (normal_cdf(v) + v * density);
    }
}

// Residual addition: out = x + dy (here `dy` is the second summand).
@compute @workgroup_size(LANES)
fn add(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = grid_range(wg.x, lid.x, nwg.x, p.len);
    for (var i = r.x; i < r.y; i += LANES) {
        out[i] = x[i] + dy[i];
    }
}

// out = x: the first gradient to reach an activation.
@compute @workgroup_size(LANES)
fn copy(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = grid_range(wg.x, lid.x, nwg.x, p.len);
    for (var i = r.x; i < r.y; i += LANES) {
        out[i] = x[i];
    }
}

// out += x: a further gradient reaching an activation that has several readers.
@compute @workgroup_size(LANES)
fn accumulate(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = grid_range(wg.x, lid.x, nwg.x, p.len);
    for (var i = r.x; i < r.y; i += LANES) {
        out[i] = out[i] + x[i];
    }
}
