// Dropout over [batch, features]: each value kept with probability 1 − p and scaled by
// 1/(1 − p), or zeroed. The mask is a hash of (run seed, layer, global step, the
// sample's position in the epoch's order, feature), so it needs no storage: backward
// recomputes it, a resumed run draws the same masks, and ranks sharing a batch draw
// what one process would.
//
// dropout   out = x · keep · scale: the forward on x, the backward on dy (bound as
//           `x`), since the same mask scales both.

struct DropoutParams {
    len: u32, features: u32, layer: u32, threshold: u32,
    scale: f32, _pad0: u32, _pad1: u32, _pad2: u32,
}

struct StepState {
    start: u32, step: u32, lr: f32, seed: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: DropoutParams;
@group(0) @binding(3) var<uniform> step: StepState;

// Chris Wellons' lowbias32 integer hash.
fn hash(v: u32) -> u32 {
    var h = v;
    h ^= h >> 16u;
    h *= 0x7feb352du;
    h ^= h >> 15u;
    h *= 0x846ca68bu;
    h ^= h >> 16u;
    return h;
}

// Scale of element t: `scale` where kept (hash ≥ threshold), 0 where dropped.
fn mask(t: u32) -> f32 {
    let sample = t / p.features;
    let feature = t - sample * p.features;
    var h = hash(step.seed);
    h = hash(h ^ p.layer);
    h = hash(h ^ step.step);
    h = hash(h ^ (step.start + sample));
    h = hash(h ^ feature);
    return select(0.0, p.scale, h >= p.threshold);
}

@compute @workgroup_size(LANES)
fn dropout(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = grid_range(wg.x, lid.x, nwg.x, p.len);
    for (var i = r.x; i < r.y; i += LANES) {
        out[i] = x[i] * mask(i);
    }
}
