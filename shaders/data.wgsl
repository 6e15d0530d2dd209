// Batch assembly on the device: the whole data set stays on the GPU as bytes, and a
// step gathers its batch through the epoch's shuffled order.
//
// gather  for b < batch and each value (y, x, c) of a channels-last h × w × ch image,
//         with i = order[start + b]:
//           x[b, y, x, c] = (pixel(i, sy, sx, c)/255 − mean[c]) · inv_std[c]
//         (mean and inv_std per channel, any number of channels, in `stats`),
//           labels[b] = labels[i];
//         without augmentation (sy, sx) = (y, x). With it, per sample a hash of
//         (seed, step, b) draws offsets oy, ox ∈ [0, 8] and a flip bit: the image is
//         cropped from its 4-pixel zero padding and then flipped horizontally,
//           sy = y + oy − 4,  sx = (flip ? w − 1 − x : x) + ox − 4,
//         as torchvision's RandomCrop(padding = 4) + RandomHorizontalFlip; pixels
//         outside the image are 0 (before normalisation).
//         Pixel bytes are packed four to a u32, little-endian, and read as byte/255;
//         with `floats` the values are f32 words, read as they are.

struct GatherParams {
    batch: u32, h: u32, w: u32, ch: u32,
    augment: u32, seed: u32, floats: u32, _pad1: u32,
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
// mean[0..ch], then inv_std[0..ch].
@group(0) @binding(7) var<storage, read> stats: array<f32>;

// PCG hash (Jarzynski & Olano 2020).
fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

@compute @workgroup_size(LANES)
fn gather(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let features = p.h * p.w * p.ch;
    let total = p.batch * features;
    let r = grid_range(wg.x, lid.x, nwg.x, total);
    for (var t = r.x; t < r.y; t += LANES) {
        let b = t / features;
        let j = t - b * features;
        let c = j % p.ch;
        let pix = j / p.ch;
        var sx = i32(pix % p.w);
        var sy = i32(pix / p.w);
        if (p.augment != 0u) {
            let r = pcg(pcg(p.seed ^ pcg(step.step)) + b);
            if ((r / 81u) % 2u == 1u) {
                sx = i32(p.w) - 1 - sx;
            }
            sx += i32(r % 9u) - 4;
            sy += i32((r / 9u) % 9u) - 4;
        }
        let i = order[step.start + b];
        var value = 0.0;
        if (sx >= 0 && sy >= 0 && sx < i32(p.w) && sy < i32(p.h)) {
            let index = i * features + (u32(sy) * p.w + u32(sx)) * p.ch + c;
            if (p.floats != 0u) {
                value = bitcast<f32>(pixels[index]);
            } else {
                let word = pixels[index / 4u];
                value = f32((word >> ((index % 4u) * 8u)) & 0xffu) / 255.0;
            }
        }
        x[t] = (value - stats[c]) * stats[p.ch + c];
        if (j == 0u) {
            y[b] = labels[i];
        }
    }
}
