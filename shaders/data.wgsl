// Batch assembly on the device: the whole data set stays on the GPU as bytes, and a
// step gathers its batch through the epoch's shuffled order.
//
// gather  for b < batch, j < features, with i = order[start + b]:
//           x[b, j] = (pixel(i, j)/255 − mean) · inv_std,   y[b] = labels[i]
//         pixel bytes are packed four to a u32, little-endian.

struct GatherParams {
    batch: u32, features: u32, mean: f32, inv_std: f32,
}

struct StepState {
    start: u32, step: u32, lr: f32, _pad: u32,
}

@group(0) @binding(0) var<storage, read> pixels: array<u32>;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read> order: array<u32>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<u32>;
@group(0) @binding(5) var<uniform> p: GatherParams;
@group(0) @binding(6) var<uniform> step: StepState;

@compute @workgroup_size(256)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = p.batch * p.features;
    for (var t = gid.x; t < total; t += nwg.x * 256u) {
        let b = t / p.features;
        let j = t - b * p.features;
        let i = order[step.start + b];
        let byte_index = i * p.features + j;
        let word = pixels[byte_index / 4u];
        let value = f32((word >> ((byte_index % 4u) * 8u)) & 0xffu) / 255.0;
        x[t] = (value - p.mean) * p.inv_std;
        if (j == 0u) {
            y[b] = labels[i];
        }
    }
}
