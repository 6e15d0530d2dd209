// Softmax + cross-entropy over logits[B, C] with integer labels[B], fused with its
// gradient and the accuracy count; one workgroup, sums reduced in workgroup memory.
//
// loss_b = logsumexp(z_b) − z_b[y_b];  the batch loss is the mean over b.
// dz_b[c] = (softmax(z_b)[c] − [c = y_b]) / B        (gradient of the mean loss)
// Training with label smoothing ε (PyTorch's `label_smoothing`): the target is
// q = (1 − ε)·onehot + ε/C, so loss_b = (1 − ε)(lse − z_y) + ε(lse − mean_c z_c) and
// dz_b[c] = (softmax(z_b)[c] − q_c) / B. Evaluation ignores ε.
// correct_b = [argmax_c z_b[c] = y_b]  (first maximum wins, as torch.argmax)
//
// accum (accumulated over calls until the host zeroes it):
//   [0] Σ loss_b   [1] Σ correct_b   [2] Σ B   [3] first step (1-based) whose batch
//   loss was not finite, 0 while all were.

struct LossParams {
    batch: u32, classes: u32, smoothing: f32, _pad1: u32,
}

struct StepState {
    start: u32, step: u32, lr: f32, _pad: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(3) var<storage, read_write> accum: array<f32>;
@group(0) @binding(4) var<uniform> p: LossParams;
@group(0) @binding(5) var<uniform> step: StepState;

const LANES: u32 = 64u;
var<workgroup> loss_part: array<f32, LANES>;
var<workgroup> correct_part: array<f32, LANES>;

fn is_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

// Loss and correctness of row b; writes the gradient when `write_grad`.
fn row(b: u32, write_grad: bool) -> vec2<f32> {
    let base = b * p.classes;
    let label = labels[b];
    var zmax = logits[base];
    var arg = 0u;
    for (var c = 1u; c < p.classes; c++) {
        let z = logits[base + c];
        if (z > zmax) {
            zmax = z;
            arg = c;
        }
    }
    var denom = 0.0;
    for (var c = 0u; c < p.classes; c++) {
        denom += exp(logits[base + c] - zmax);
    }
    let lse = log(denom) + zmax;
    var loss = lse - logits[base + label];
    if (write_grad) {
        let eps = p.smoothing;
        if (eps > 0.0) {
            var sum = 0.0;
            for (var c = 0u; c < p.classes; c++) {
                sum += logits[base + c];
            }
            loss = (1.0 - eps) * loss + eps * (lse - sum / f32(p.classes));
        }
        let inv_b = 1.0 / f32(p.batch);
        let spread = eps / f32(p.classes);
        for (var c = 0u; c < p.classes; c++) {
            let prob = exp(logits[base + c] - zmax) / denom;
            let wanted = (1.0 - eps) * select(0.0, 1.0, c == label) + spread;
            dlogits[base + c] = (prob - wanted) * inv_b;
        }
    }
    return vec2<f32>(loss, select(0.0, 1.0, arg == label));
}

fn reduce_into_accum(lid: u32, loss: f32, correct: f32) {
    loss_part[lid] = loss;
    correct_part[lid] = correct;
    workgroupBarrier();
    for (var width = LANES / 2u; width > 0u; width /= 2u) {
        if (lid < width) {
            loss_part[lid] += loss_part[lid + width];
            correct_part[lid] += correct_part[lid + width];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let total = loss_part[0];
        accum[0] += total;
        accum[1] += correct_part[0];
        accum[2] += f32(p.batch);
        if (!is_finite(total) && accum[3] == 0.0) {
            accum[3] = f32(step.step + 1u);
        }
    }
}

@compute @workgroup_size(64)
fn cross_entropy(@builtin(local_invocation_id) lid: vec3<u32>) {
    var loss = 0.0;
    var correct = 0.0;
    for (var b = lid.x; b < p.batch; b += LANES) {
        let r = row(b, true);
        loss += r.x;
        correct += r.y;
    }
    reduce_into_accum(lid.x, loss, correct);
}

@compute @workgroup_size(64)
fn evaluate(@builtin(local_invocation_id) lid: vec3<u32>) {
    var loss = 0.0;
    var correct = 0.0;
    for (var b = lid.x; b < p.batch; b += LANES) {
        let r = row(b, false);
        loss += r.x;
        correct += r.y;
    }
    reduce_into_accum(lid.x, loss, correct);
}
