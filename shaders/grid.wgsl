// Prepended by the host to every shader with streaming kernels.
//
// LANES: invocations per workgroup of the streaming kernels, set by the host
// (`kernels::lanes`): 256 on a GPU, 8 on a CPU adapter, one SIMD vector of a CPU
// rasteriser.
//
// grid_range: the items of one invocation of a grid loop over `total` items. Workgroup
// `group` owns one contiguous chunk (a whole number of LANES long) and its invocations
// go through it LANES apart:
//     let r = grid_range(wg.x, lid.x, nwg.x, total);
//     for (var t = r.x; t < r.y; t += LANES) { ... }
// With a workgroup per LANES items (a GPU) that is one item per invocation. A CPU
// runs a workgroup as one thread: with a few hundred workgroups each thread then
// reads its chunks as a stream (at 256 lanes with a grid stride, the cnn's col2im took
// 19–21 ms on lavapipe, at 8 lanes in chunks 15).

override LANES: u32 = 256u;

fn grid_range(group: u32, lane: u32, groups: u32, total: u32) -> vec2<u32> {
    let lanes = groups * LANES;
    let chunk = (total / lanes + select(0u, 1u, total % lanes != 0u)) * LANES;
    let start = min(group * chunk, total);
    return vec2<u32>(start + lane, min(start + chunk, total));
}
