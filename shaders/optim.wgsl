// Optimiser kernels over the flat parameter store (length `len`).
//
// sgd_step  PyTorch's SGD with momentum μ and weight decay wd (dampening 0, no Nesterov):
//           v ← μ·v + (g + wd·w);  w ← w − lr·v.  lr comes from the per-step state.
// zero      dst[i] = 0 (gradient and optimiser-state resets).

struct OptimParams {
    len: u32, momentum: f32, weight_decay: f32, _pad: u32,
}

struct StepState {
    start: u32, step: u32, lr: f32, _pad: u32,
}

@group(0) @binding(0) var<storage, read> grads: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<storage, read_write> velocity: array<f32>;
@group(0) @binding(3) var<uniform> p: OptimParams;
@group(0) @binding(4) var<uniform> step: StepState;

@compute @workgroup_size(256)
fn sgd_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var i = gid.x; i < p.len; i += nwg.x * 256u) {
        let w = dst[i];
        let v = p.momentum * velocity[i] + grads[i] + p.weight_decay * w;
        velocity[i] = v;
        dst[i] = w - step.lr * v;
    }
}

@compute @workgroup_size(256)
fn zero(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var i = gid.x; i < p.len; i += nwg.x * 256u) {
        dst[i] = 0.0;
    }
}
