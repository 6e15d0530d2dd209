// matmul_subgroup: matmul_vec4's layout with A shared through the subgroup, appended to
// linear.wgsl (its bindings, LinearParams and store4) when the device supports
// subgroups of at least 8 invocations. A workgroup owns 24 rows and 256 columns; an
// invocation owns 8 consecutive columns (two vec4 of B per k). Instead of every
// invocation loading the 24 row values of A at each k (uniform loads, which CPU
// rasterisers execute as gathers), lane l of each group of 8 loads rows l, 8 + l and
// 16 + l and the values reach the other lanes by subgroupBroadcast. On lavapipe this
// doubles the throughput of matmul_vec4 (`twa bench`). Requires ldb and b_off to be
// multiples of 4, like matmul_vec4.

@compute @workgroup_size(32)
fn matmul_subgroup(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(subgroup_invocation_id) sid: u32) {
    let m0 = wg.y * 24u;
    let col = (wg.x * 32u + lid.x) * 8u;
    // Groups of 8 invocations whose columns all lie past n have nothing to do (narrow
    // products such as a convolution's 64 outputs); they leave together, so the group
    // that shares A through subgroupBroadcast stays whole.
    if ((wg.x * 32u + (lid.x & ~7u)) * 8u >= p.n) {
        return;
    }
    let row_vec4s = p.ldb / 4u;
    let q0 = p.b_off / 4u + min(col / 4u + 0u, row_vec4s - 1u);
    let q1 = p.b_off / 4u + min(col / 4u + 1u, row_vec4s - 1u);
    let last_m = p.m - 1u;
    let lane = sid % 8u;
    let ra0 = p.a_off + min(m0 + 0u + lane, last_m) * p.a_rs;
    let ra1 = p.a_off + min(m0 + 8u + lane, last_m) * p.a_rs;
    let ra2 = p.a_off + min(m0 + 16u + lane, last_m) * p.a_rs;
    var c0_0 = vec4<f32>(0.0);
    var c0_1 = vec4<f32>(0.0);
    var c1_0 = vec4<f32>(0.0);
    var c1_1 = vec4<f32>(0.0);
    var c2_0 = vec4<f32>(0.0);
    var c2_1 = vec4<f32>(0.0);
    var c3_0 = vec4<f32>(0.0);
    var c3_1 = vec4<f32>(0.0);
    var c4_0 = vec4<f32>(0.0);
    var c4_1 = vec4<f32>(0.0);
    var c5_0 = vec4<f32>(0.0);
    var c5_1 = vec4<f32>(0.0);
    var c6_0 = vec4<f32>(0.0);
    var c6_1 = vec4<f32>(0.0);
    var c7_0 = vec4<f32>(0.0);
    var c7_1 = vec4<f32>(0.0);
    var c8_0 = vec4<f32>(0.0);
    var c8_1 = vec4<f32>(0.0);
    var c9_0 = vec4<f32>(0.0);
    var c9_1 = vec4<f32>(0.0);
    var c10_0 = vec4<f32>(0.0);
    var c10_1 = vec4<f32>(0.0);
    var c11_0 = vec4<f32>(0.0);
    var c11_1 = vec4<f32>(0.0);
    var c12_0 = vec4<f32>(0.0);
    var c12_1 = vec4<f32>(0.0);
    var c13_0 = vec4<f32>(0.0);
    var c13_1 = vec4<f32>(0.0);
    var c14_0 = vec4<f32>(0.0);
    var c14_1 = vec4<f32>(0.0);
    var c15_0 = vec4<f32>(0.0);
    var c15_1 = vec4<f32>(0.0);
    var c16_0 = vec4<f32>(0.0);
    var c16_1 = vec4<f32>(0.0);
    var c17_0 = vec4<f32>(0.0);
    var c17_1 = vec4<f32>(0.0);
    var c18_0 = vec4<f32>(0.0);
    var c18_1 = vec4<f32>(0.0);
    var c19_0 = vec4<f32>(0.0);
    var c19_1 = vec4<f32>(0.0);
    var c20_0 = vec4<f32>(0.0);
    var c20_1 = vec4<f32>(0.0);
    var c21_0 = vec4<f32>(0.0);
    var c21_1 = vec4<f32>(0.0);
    var c22_0 = vec4<f32>(0.0);
    var c22_1 = vec4<f32>(0.0);
    var c23_0 = vec4<f32>(0.0);
    var c23_1 = vec4<f32>(0.0);
    for (var k = 0u; k < p.k; k++) {
        let bq = k * row_vec4s;
        let b0 = b4[q0 + bq];
        let b1 = b4[q1 + bq];
        let ak = k * p.a_cs;
        let v0 = a[ra0 + ak];
        let v1 = a[ra1 + ak];
        let v2 = a[ra2 + ak];
        let a0 = vec4<f32>(subgroupBroadcast(v0, 0u));
        c0_0 = fma(a0, b0, c0_0);
        c0_1 = fma(a0, b1, c0_1);
        let a1 = vec4<f32>(subgroupBroadcast(v0, 1u));
        c1_0 = fma(a1, b0, c1_0);
        c1_1 = fma(a1, b1, c1_1);
        let a2 = vec4<f32>(subgroupBroadcast(v0, 2u));
        c2_0 = fma(a2, b0, c2_0);
        c2_1 = fma(a2, b1, c2_1);
        let a3 = vec4<f32>(subgroupBroadcast(v0, 3u));
        c3_0 = fma(a3, b0, c3_0);
        c3_1 = fma(a3, b1, c3_1);
        let a4 = vec4<f32>(subgroupBroadcast(v0, 4u));
        c4_0 = fma(a4, b0, c4_0);
        c4_1 = fma(a4, b1, c4_1);
        let a5 = vec4<f32>(subgroupBroadcast(v0, 5u));
        c5_0 = fma(a5, b0, c5_0);
        c5_1 = fma(a5, b1, c5_1);
        let a6 = vec4<f32>(subgroupBroadcast(v0, 6u));
        c6_0 = fma(a6, b0, c6_0);
        c6_1 = fma(a6, b1, c6_1);
        let a7 = vec4<f32>(subgroupBroadcast(v0, 7u));
        c7_0 = fma(a7, b0, c7_0);
        c7_1 = fma(a7, b1, c7_1);
        let a8 = vec4<f32>(subgroupBroadcast(v1, 0u));
        c8_0 = fma(a8, b0, c8_0);
        c8_1 = fma(a8, b1, c8_1);
        let a9 = vec4<f32>(subgroupBroadcast(v1, 1u));
        c9_0 = fma(a9, b0, c9_0);
        c9_1 = fma(a9, b1, c9_1);
        let a10 = vec4<f32>(subgroupBroadcast(v1, 2u));
        c10_0 = fma(a10, b0, c10_0);
        c10_1 = fma(a10, b1, c10_1);
        let a11 = vec4<f32>(subgroupBroadcast(v1, 3u));
        c11_0 = fma(a11, b0, c11_0);
        c11_1 = fma(a11, b1, c11_1);
        let a12 = vec4<f32>(subgroupBroadcast(v1, 4u));
        c12_0 = fma(a12, b0, c12_0);
        c12_1 = fma(a12, b1, c12_1);
        let a13 = vec4<f32>(subgroupBroadcast(v1, 5u));
        c13_0 = fma(a13, b0, c13_0);
        c13_1 = fma(a13, b1, c13_1);
        let a14 = vec4<f32>(subgroupBroadcast(v1, 6u));
        c14_0 = fma(a14, b0, c14_0);
        c14_1 = fma(a14, b1, c14_1);
        let a15 = vec4<f32>(subgroupBroadcast(v1, 7u));
        c15_0 = fma(a15, b0, c15_0);
        c15_1 = fma(a15, b1, c15_1);
        let a16 = vec4<f32>(subgroupBroadcast(v2, 0u));
        c16_0 = fma(a16, b0, c16_0);
        c16_1 = fma(a16, b1, c16_1);
        let a17 = vec4<f32>(subgroupBroadcast(v2, 1u));
        c17_0 = fma(a17, b0, c17_0);
        c17_1 = fma(a17, b1, c17_1);
        let a18 = vec4<f32>(subgroupBroadcast(v2, 2u));
        c18_0 = fma(a18, b0, c18_0);
        c18_1 = fma(a18, b1, c18_1);
        let a19 = vec4<f32>(subgroupBroadcast(v2, 3u));
        c19_0 = fma(a19, b0, c19_0);
        c19_1 = fma(a19, b1, c19_1);
        let a20 = vec4<f32>(subgroupBroadcast(v2, 4u));
        c20_0 = fma(a20, b0, c20_0);
        c20_1 = fma(a20, b1, c20_1);
        let a21 = vec4<f32>(subgroupBroadcast(v2, 5u));
        c21_0 = fma(a21, b0, c21_0);
        c21_1 = fma(a21, b1, c21_1);
        let a22 = vec4<f32>(subgroupBroadcast(v2, 6u));
        c22_0 = fma(a22, b0, c22_0);
        c22_1 = fma(a22, b1, c22_1);
        let a23 = vec4<f32>(subgroupBroadcast(v2, 7u));
        c23_0 = fma(a23, b0, c23_0);
        c23_1 = fma(a23, b1, c23_1);
    }
    store4(m0 + 0u, col + 0u, c0_0);
    store4(m0 + 0u, col + 4u, c0_1);
    store4(m0 + 1u, col + 0u, c1_0);
    store4(m0 + 1u, col + 4u, c1_1);
    store4(m0 + 2u, col + 0u, c2_0);
    store4(m0 + 2u, col + 4u, c2_1);
    store4(m0 + 3u, col + 0u, c3_0);
    store4(m0 + 3u, col + 4u, c3_1);
    store4(m0 + 4u, col + 0u, c4_0);
    store4(m0 + 4u, col + 4u, c4_1);
    store4(m0 + 5u, col + 0u, c5_0);
    store4(m0 + 5u, col + 4u, c5_1);
    store4(m0 + 6u, col + 0u, c6_0);
    store4(m0 + 6u, col + 4u, c6_1);
    store4(m0 + 7u, col + 0u, c7_0);
    store4(m0 + 7u, col + 4u, c7_1);
    store4(m0 + 8u, col + 0u, c8_0);
    store4(m0 + 8u, col + 4u, c8_1);
    store4(m0 + 9u, col + 0u, c9_0);
    store4(m0 + 9u, col + 4u, c9_1);
    store4(m0 + 10u, col + 0u, c10_0);
    store4(m0 + 10u, col + 4u, c10_1);
    store4(m0 + 11u, col + 0u, c11_0);
    store4(m0 + 11u, col + 4u, c11_1);
    store4(m0 + 12u, col + 0u, c12_0);
    store4(m0 + 12u, col + 4u, c12_1);
    store4(m0 + 13u, col + 0u, c13_0);
    store4(m0 + 13u, col + 4u, c13_1);
    store4(m0 + 14u, col + 0u, c14_0);
    store4(m0 + 14u, col + 4u, c14_1);
    store4(m0 + 15u, col + 0u, c15_0);
    store4(m0 + 15u, col + 4u, c15_1);
    store4(m0 + 16u, col + 0u, c16_0);
    store4(m0 + 16u, col + 4u, c16_1);
    store4(m0 + 17u, col + 0u, c17_0);
    store4(m0 + 17u, col + 4u, c17_1);
    store4(m0 + 18u, col + 0u, c18_0);
    store4(m0 + 18u, col + 4u, c18_1);
    store4(m0 + 19u, col + 0u, c19_0);
    store4(m0 + 19u, col + 4u, c19_1);
    store4(m0 + 20u, col + 0u, c20_0);
    store4(m0 + 20u, col + 4u, c20_1);
    store4(m0 + 21u, col + 0u, c21_0);
    store4(m0 + 21u, col + 4u, c21_1);
    store4(m0 + 22u, col + 0u, c22_0);
    store4(m0 + 22u, col + 4u, c22_1);
    store4(m0 + 23u, col + 0u, c23_0);
    store4(m0 + 23u, col + 4u, c23_1);
}
