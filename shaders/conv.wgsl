// Window ops on channels-last images x[batch, h, w, c]: the im2col / col2im pair that
// turns a 2-D convolution into the Linear matrix product, max and average pooling,
// and the flatten to PyTorch's channel-major order. Every kernel is a grid loop
// (grid.wgsl) in which an invocation owns each of its output elements, so gradients
// are gathers (no atomics).
//
// Geometry: an output pixel (oy, ox) sees input pixels (oy·stride + ky − pad,
// ox·stride + kx − pad) for ky < kh, kx < kw; outside the image reads as 0.
//
// im2col        cols[(b, oy, ox), k] = x[b, iy, ix, ci] with k = (ci·kh + ky)·kw + kx,
//               the column order of a PyTorch weight [out, c, kh, kw] flattened to
//               [out, c·kh·kw]; so y = cols·Wᵀ. Rows are `ldc` apart (c·kh·kw rounded
//               up to whole vec4s, so the matrix products can load them as vec4).
// col2im        dx[b, iy, ix, ci] = Σ over (ky, kx) whose output pixel exists of
//               dcols[(b, oy, ox), k]  (the adjoint of im2col).
// max_forward   y = max over the window's pixels inside the image (padding never
//               wins, as PyTorch's −∞); ties go to the first element.
// max_backward  dx[i] = Σ over windows whose first maximum is i of dy[window]
//               (max_backward_tiled: the same where the windows tile the image).
// avg_forward   y = sum over the window / (kh·kw), padding counted as zeros (PyTorch's
//               count_include_pad).
// avg_backward  dx[i] = Σ over windows containing i of dy[window]/(kh·kw).
// flatten       y[b, ci·h·w + pixel] = x[b, pixel·c + ci];  unflatten is its inverse
//               (used for the gradient).
//
// Element indices are split into coordinates (channel, column, row, sample) by a
// mixed-radix counter: each invocation divides once for its first element and for the
// loop's step (LANES), then adds the step's digits with carries. A CPU rasteriser
// divides lane by lane, which cost these kernels about half their time.

// `first`: the sample that sample 0 of this launch is in x (im2col) or dx (col2im):
// a convolution whose im2col matrix exceeds a storage binding takes its batch a slice
// of samples at a time.
struct WindowParams {
    batch: u32, h: u32, w: u32, c: u32,
    oh: u32, ow: u32, kh: u32, kw: u32,
    stride: u32, pad: u32, ldc: u32, first: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: WindowParams;

// The digits of t in the mixed radix (radix.x, radix.y, radix.z, unbounded), fastest
// first.
fn digits(t: u32, radix: vec3<u32>) -> vec4<u32> {
    let q1 = t / radix.x;
    let q2 = q1 / radix.y;
    return vec4<u32>(t - q1 * radix.x, q1 - q2 * radix.y, q2 % radix.z, q2 / radix.z);
}

// pos + step digit by digit with carries (both in range: one subtraction each).
fn advance(pos: vec4<u32>, step: vec4<u32>, radix: vec3<u32>) -> vec4<u32> {
    var r = pos + step;
    if (r.x >= radix.x) {
        r.x -= radix.x;
        r.y += 1u;
    }
    if (r.y >= radix.y) {
        r.y -= radix.y;
        r.z += 1u;
    }
    if (r.z >= radix.z) {
        r.z -= radix.z;
        r.w += 1u;
    }
    return r;
}

// Input pixel coordinate of output coordinate o at window offset k (may be outside).
fn source(o: u32, k: u32) -> i32 {
    return i32(o * p.stride + k) - i32(p.pad);
}

fn inside(iy: i32, ix: i32) -> bool {
    return iy >= 0 && ix >= 0 && iy < i32(p.h) && ix < i32(p.w);
}

// x[b, iy, ix, ci], 0 outside the image.
fn pixel(b: u32, iy: i32, ix: i32, ci: u32) -> f32 {
    if (!inside(iy, ix)) {
        return 0.0;
    }
    return x[((b * p.h + u32(iy)) * p.w + u32(ix)) * p.c + ci];
}

// Output coordinate that reads input coordinate i at window offset k, or −1.
fn reader_of(i: u32, k: u32, extent: u32) -> i32 {
    let num = i32(i + p.pad) - i32(k);
    if (num < 0) {
        return -1;
    }
    var o = u32(num);
    if (p.stride != 1u) {
        if (o % p.stride != 0u) {
            return -1;
        }
        o /= p.stride;
    }
    return select(-1, i32(o), o < extent);
}

// One invocation per (row, ci): its kh·kw columns, so the index arithmetic is paid once
// per window rather than per element. Columns run to `ldc` (≥ c·kh·kw; the padding
// columns are never written and stay 0).
@compute @workgroup_size(LANES)
fn im2col(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let total = p.batch * p.oh * p.ow * p.c;
    let radix = vec3<u32>(p.c, p.ow, p.oh);
    let r = grid_range(wg.x, lid.x, nwg.x, total);
    let step = digits(LANES, radix);
    var o = digits(r.x, radix);
    for (var t = r.x; t < r.y; t += LANES) {
        // o = (ci, ox, oy, b).
        let row = (o.w * p.oh + o.z) * p.ow + o.y;
        var at = row * p.ldc + o.x * p.kh * p.kw;
        for (var ky = 0u; ky < p.kh; ky++) {
            let iy = source(o.z, ky);
            for (var kx = 0u; kx < p.kw; kx++) {
                out[at] = pixel(p.first + o.w, iy, source(o.y, kx), o.x);
                at++;
            }
        }
        o = advance(o, step, radix);
    }
}

// Here `dy` holds dcols [batch·oh·ow, c·kh·kw], rows `ldc` apart.
@compute @workgroup_size(LANES)
fn col2im(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let total = p.batch * p.h * p.w * p.c;
    let radix = vec3<u32>(p.c, p.w, p.h);
    let r = grid_range(wg.x, lid.x, nwg.x, total);
    let step = digits(LANES, radix);
    var i = digits(r.x, radix);
    for (var t = r.x; t < r.y; t += LANES) {
        // i = (ci, ix, iy, b).
        var sum = 0.0;
        for (var ky = 0u; ky < p.kh; ky++) {
            let oy = reader_of(i.z, ky, p.oh);
            if (oy < 0) {
                continue;
            }
            for (var kx = 0u; kx < p.kw; kx++) {
                let ox = reader_of(i.y, kx, p.ow);
                if (ox < 0) {
                    continue;
                }
                let row = (i.w * p.oh + u32(oy)) * p.ow + u32(ox);
                sum += dy[row * p.ldc + (i.x * p.kh + ky) * p.kw + kx];
            }
        }
        out[p.first * p.h * p.w * p.c + t] = sum;
        i = advance(i, step, radix);
    }
}

// Window offset (ky, kx) of the first maximum of output element o = (ci, ox, oy, b)
// among the window's pixels inside the image (every window holds one: pad < kernel).
fn argmax(o: vec4<u32>) -> vec2<u32> {
    var best = 0.0;
    var at = vec2<u32>(0u);
    var found = false;
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = source(o.z, ky);
        for (var kx = 0u; kx < p.kw; kx++) {
            let ix = source(o.y, kx);
            if (!inside(iy, ix)) {
                continue;
            }
            let v = pixel(o.w, iy, ix, o.x);
            if (!found || v > best) {
                best = v;
                at = vec2<u32>(ky, kx);
                found = true;
            }
        }
    }
    return at;
}

// Radix of output elements (ci, ox, oy, b) and of input elements (ci, ix, iy, b).
fn output_radix() -> vec3<u32> {
    return vec3<u32>(p.c, p.ow, p.oh);
}

fn input_radix() -> vec3<u32> {
    return vec3<u32>(p.c, p.w, p.h);
}

@compute @workgroup_size(LANES)
fn max_forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let total = p.batch * p.oh * p.ow * p.c;
    let r = grid_range(wg.x, lid.x, nwg.x, total);
    let step = digits(LANES, output_radix());
    var o = digits(r.x, output_radix());
    for (var t = r.x; t < r.y; t += LANES) {
        let at = argmax(o);
        out[t] = pixel(o.w, source(o.z, at.x), source(o.y, at.y), o.x);
        o = advance(o, step, output_radix());
    }
}

@compute @workgroup_size(LANES)
fn avg_forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let total = p.batch * p.oh * p.ow * p.c;
    let scale = 1.0 / f32(p.kh * p.kw);
    let r = grid_range(wg.x, lid.x, nwg.x, total);
    let step = digits(LANES, output_radix());
    var o = digits(r.x, output_radix());
    for (var t = r.x; t < r.y; t += LANES) {
        var sum = 0.0;
        for (var ky = 0u; ky < p.kh; ky++) {
            for (var kx = 0u; kx < p.kw; kx++) {
                sum += pixel(o.w, source(o.z, ky), source(o.y, kx), o.x);
            }
        }
        out[t] = sum * scale;
        o = advance(o, step, output_radix());
    }
}

// Pool gradients: for input element i = (ci, ix, iy, b), the windows (oy, ox) that
// contain it.
fn pool_backward(i: vec4<u32>, max: bool) -> f32 {
    let scale = 1.0 / f32(p.kh * p.kw);
    var sum = 0.0;
    for (var ky = 0u; ky < p.kh; ky++) {
        let oy = reader_of(i.z, ky, p.oh);
        if (oy < 0) {
            continue;
        }
        for (var kx = 0u; kx < p.kw; kx++) {
            let ox = reader_of(i.y, kx, p.ow);
            if (ox < 0) {
                continue;
            }
            let g = dy[((i.w * p.oh + u32(oy)) * p.ow + u32(ox)) * p.c + i.x];
            if (!max) {
                sum += g * scale;
            } else if (all(argmax(vec4<u32>(i.x, u32(ox), u32(oy), i.w)) == vec2<u32>(ky, kx))) {
                sum += g;
            }
        }
    }
    return sum;
}

@compute @workgroup_size(LANES)
fn max_backward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = grid_range(wg.x, lid.x, nwg.x, p.batch * p.h * p.w * p.c);
    let step = digits(LANES, input_radix());
    var i = digits(r.x, input_radix());
    for (var t = r.x; t < r.y; t += LANES) {
        out[t] = pool_backward(i, true);
        i = advance(i, step, input_radix());
    }
}

// Windows that tile the image exactly (stride = kernel, no remainder): one invocation
// per output element writes its whole window (dy at the first maximum, 0 elsewhere).
@compute @workgroup_size(LANES)
fn max_backward_tiled(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let total = p.batch * p.oh * p.ow * p.c;
    let r = grid_range(wg.x, lid.x, nwg.x, total);
    let step = digits(LANES, output_radix());
    var o = digits(r.x, output_radix());
    for (var t = r.x; t < r.y; t += LANES) {
        let at = argmax(o);
        for (var ky = 0u; ky < p.kh; ky++) {
            for (var kx = 0u; kx < p.kw; kx++) {
                let iy = o.z * p.stride + ky;
                let ix = o.y * p.stride + kx;
                let i = ((o.w * p.h + iy) * p.w + ix) * p.c + o.x;
                out[i] = select(0.0, dy[t], all(at == vec2<u32>(ky, kx)));
            }
        }
        o = advance(o, step, output_radix());
    }
}

@compute @workgroup_size(LANES)
fn avg_backward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = grid_range(wg.x, lid.x, nwg.x, p.batch * p.h * p.w * p.c);
    let step = digits(LANES, input_radix());
    var i = digits(r.x, input_radix());
    for (var t = r.x; t < r.y; t += LANES) {
        out[t] = pool_backward(i, false);
        i = advance(i, step, input_radix());
    }
}

// Element t of the channel-major order, as (pixel, ci, b) digits, sits at
// x[b, pixel, ci] (channels-last).
fn channels_last(f: vec4<u32>) -> u32 {
    return (f.z * p.h * p.w + f.x) * p.c + f.y;
}

fn flat_radix() -> vec3<u32> {
    return vec3<u32>(p.h * p.w, p.c, 0xffffffffu);
}

@compute @workgroup_size(LANES)
fn flatten(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = grid_range(wg.x, lid.x, nwg.x, p.batch * p.h * p.w * p.c);
    let step = digits(LANES, flat_radix());
    var f = digits(r.x, flat_radix());
    for (var t = r.x; t < r.y; t += LANES) {
        out[t] = x[channels_last(f)];
        f = advance(f, step, flat_radix());
    }
}

// Here `dy` is the gradient of the flattened output.
@compute @workgroup_size(LANES)
fn unflatten(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = grid_range(wg.x, lid.x, nwg.x, p.batch * p.h * p.w * p.c);
    let step = digits(LANES, flat_radix());
    var f = digits(r.x, flat_radix());
    for (var t = r.x; t < r.y; t += LANES) {
        out[channels_last(f)] = dy[t];
        f = advance(f, step, flat_radix());
    }
}
