// Window ops on channels-last images x[batch, h, w, c]: the im2col / col2im pair that
// turns a 2-D convolution into the Linear matrix product, max and average pooling,
// and the flatten to PyTorch's channel-major order. Every kernel is a grid-stride loop
// in which one invocation owns one output element, so gradients are gathers (no
// atomics).
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
// max_forward   y = max over the window (no padding); ties go to the first element.
// max_backward  dx[i] = Σ over windows whose first maximum is i of dy[window]
//               (max_backward_tiled: the same where the windows tile the image).
// avg_forward   y = mean over the window (no padding).
// avg_backward  dx[i] = Σ over windows containing i of dy[window]/(kh·kw).
// flatten       y[b, ci·h·w + pixel] = x[b, pixel·c + ci];  unflatten is its inverse
//               (used for the gradient).

struct WindowParams {
    batch: u32, h: u32, w: u32, c: u32,
    oh: u32, ow: u32, kh: u32, kw: u32,
    stride: u32, pad: u32, ldc: u32, _pad0: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: WindowParams;

// Input pixel coordinate of output coordinate o at window offset k (may be outside).
fn source(o: u32, k: u32) -> i32 {
    return i32(o * p.stride + k) - i32(p.pad);
}

// x[b, iy, ix, ci], 0 outside the image.
fn pixel(b: u32, iy: i32, ix: i32, ci: u32) -> f32 {
    if (iy < 0 || ix < 0 || iy >= i32(p.h) || ix >= i32(p.w)) {
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
@compute @workgroup_size(256)
fn im2col(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = p.batch * p.oh * p.ow * p.c;
    for (var t = gid.x; t < total; t += nwg.x * 256u) {
        let ci = t % p.c;
        let row = t / p.c;
        let b = row / (p.oh * p.ow);
        let pix = row - b * p.oh * p.ow;
        let oy = pix / p.ow;
        let ox = pix - oy * p.ow;
        var at = row * p.ldc + ci * p.kh * p.kw;
        for (var ky = 0u; ky < p.kh; ky++) {
            let iy = source(oy, ky);
            for (var kx = 0u; kx < p.kw; kx++) {
                out[at] = pixel(b, iy, source(ox, kx), ci);
                at++;
            }
        }
    }
}

// Here `dy` holds dcols [batch·oh·ow, c·kh·kw], rows `ldc` apart.
@compute @workgroup_size(256)
fn col2im(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = p.batch * p.h * p.w * p.c;
    for (var t = gid.x; t < total; t += nwg.x * 256u) {
        let ci = t % p.c;
        let pix = t / p.c;
        let ix = pix % p.w;
        let iy = (pix / p.w) % p.h;
        let b = pix / (p.w * p.h);
        var sum = 0.0;
        for (var ky = 0u; ky < p.kh; ky++) {
            let oy = reader_of(iy, ky, p.oh);
            if (oy < 0) {
                continue;
            }
            for (var kx = 0u; kx < p.kw; kx++) {
                let ox = reader_of(ix, kx, p.ow);
                if (ox < 0) {
                    continue;
                }
                let row = (b * p.oh + u32(oy)) * p.ow + u32(ox);
                sum += dy[row * p.ldc + (ci * p.kh + ky) * p.kw + kx];
            }
        }
        out[t] = sum;
    }
}

// Offset (ky·kw + kx) of the first maximum of output pixel (b, oy, ox, ci)'s window.
fn argmax(b: u32, oy: u32, ox: u32, ci: u32) -> u32 {
    var best = pixel(b, source(oy, 0u), source(ox, 0u), ci);
    var at = 0u;
    for (var ky = 0u; ky < p.kh; ky++) {
        for (var kx = 0u; kx < p.kw; kx++) {
            let v = pixel(b, source(oy, ky), source(ox, kx), ci);
            if (v > best) {
                best = v;
                at = ky * p.kw + kx;
            }
        }
    }
    return at;
}

// (b, oy, ox, ci) of output element t.
fn output_index(t: u32) -> vec4<u32> {
    let ci = t % p.c;
    let pix = t / p.c;
    let ox = pix % p.ow;
    let oy = (pix / p.ow) % p.oh;
    return vec4<u32>(pix / (p.ow * p.oh), oy, ox, ci);
}

@compute @workgroup_size(256)
fn max_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = p.batch * p.oh * p.ow * p.c;
    for (var t = gid.x; t < total; t += nwg.x * 256u) {
        let o = output_index(t);
        let at = argmax(o.x, o.y, o.z, o.w);
        out[t] = pixel(o.x, source(o.y, at / p.kw), source(o.z, at % p.kw), o.w);
    }
}

@compute @workgroup_size(256)
fn avg_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = p.batch * p.oh * p.ow * p.c;
    let scale = 1.0 / f32(p.kh * p.kw);
    for (var t = gid.x; t < total; t += nwg.x * 256u) {
        let o = output_index(t);
        var sum = 0.0;
        for (var ky = 0u; ky < p.kh; ky++) {
            for (var kx = 0u; kx < p.kw; kx++) {
                sum += pixel(o.x, source(o.y, ky), source(o.z, kx), o.w);
            }
        }
        out[t] = sum * scale;
    }
}

// Pool gradients: for input element t, the windows (oy, ox) that contain it.
fn pool_backward(t: u32, max: bool) -> f32 {
    let ci = t % p.c;
    let pix = t / p.c;
    let ix = pix % p.w;
    let iy = (pix / p.w) % p.h;
    let b = pix / (p.w * p.h);
    let scale = 1.0 / f32(p.kh * p.kw);
    var sum = 0.0;
    for (var ky = 0u; ky < p.kh; ky++) {
        let oy = reader_of(iy, ky, p.oh);
        if (oy < 0) {
            continue;
        }
        for (var kx = 0u; kx < p.kw; kx++) {
            let ox = reader_of(ix, kx, p.ow);
            if (ox < 0) {
                continue;
            }
            let g = dy[((b * p.oh + u32(oy)) * p.ow + u32(ox)) * p.c + ci];
            if (!max) {
                sum += g * scale;
            } else if (argmax(b, u32(oy), u32(ox), ci) == ky * p.kw + kx) {
                sum += g;
            }
        }
    }
    return sum;
}

@compute @workgroup_size(256)
fn max_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var t = gid.x; t < p.batch * p.h * p.w * p.c; t += nwg.x * 256u) {
        out[t] = pool_backward(t, true);
    }
}

// Windows that tile the image exactly (stride = kernel, no remainder): one invocation
// per output element writes its whole window (dy at the first maximum, 0 elsewhere).
@compute @workgroup_size(256)
fn max_backward_tiled(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let total = p.batch * p.oh * p.ow * p.c;
    for (var t = gid.x; t < total; t += nwg.x * 256u) {
        let o = output_index(t);
        let at = argmax(o.x, o.y, o.z, o.w);
        for (var ky = 0u; ky < p.kh; ky++) {
            for (var kx = 0u; kx < p.kw; kx++) {
                let iy = o.y * p.stride + ky;
                let ix = o.z * p.stride + kx;
                let i = ((o.x * p.h + iy) * p.w + ix) * p.c + o.w;
                out[i] = select(0.0, dy[t], ky * p.kw + kx == at);
            }
        }
    }
}

@compute @workgroup_size(256)
fn avg_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var t = gid.x; t < p.batch * p.h * p.w * p.c; t += nwg.x * 256u) {
        out[t] = pool_backward(t, false);
    }
}

// Index in x[b, pixel, ci] (channels-last) of element t of the channel-major order.
fn channels_last(t: u32) -> u32 {
    let hw = p.h * p.w;
    let len = hw * p.c;
    let b = t / len;
    let j = t - b * len;
    let ci = j / hw;
    let pix = j - ci * hw;
    return b * len + pix * p.c + ci;
}

@compute @workgroup_size(256)
fn flatten(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var t = gid.x; t < p.batch * p.h * p.w * p.c; t += nwg.x * 256u) {
        out[t] = x[channels_last(t)];
    }
}

// Here `dy` is the gradient of the flattened output.
@compute @workgroup_size(256)
fn unflatten(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    for (var t = gid.x; t < p.batch * p.h * p.w * p.c; t += nwg.x * 256u) {
        out[channels_last(t)] = dy[t];
    }
}
