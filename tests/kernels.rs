//! Every kernel against its CPU twin (`twa::reference`, f64) on fresh random inputs,
//! and every backward kernel against central differences of the reference forward.
//! Tolerances fit f32 arithmetic: sums of a few hundred products carry relative errors
//! around 1e-6; we allow 1e-4 relative plus a small absolute term.

mod common;

use common::*;
use twa::gpu::kernels::submit;
use twa::gpu::{Dispatch, Kernels};
use twa::nn::layers::{self, LayerBuffers, LinearParams};
use twa::nn::model::{Layer, LayerKind, Shape, Window, BN_EPS, BN_MOMENTUM};
use twa::reference as cpu;

const ATOL: f64 = 1e-5;
const RTOL: f64 = 1e-4;

fn kernels() -> &'static Kernels {
    static K: std::sync::OnceLock<Kernels> = std::sync::OnceLock::new();
    K.get_or_init(|| Kernels::new(gpu()))
}

fn run(dispatches: &[Dispatch]) {
    let refs: Vec<&Dispatch> = dispatches.iter().collect();
    submit(gpu(), &refs);
}

fn read(buffer: &wgpu::Buffer, len: usize) -> Vec<f32> {
    block_on(gpu().read(buffer, 0, len)).expect("readback")
}

#[test]
fn matmul_variants_match_reference_with_offsets_strides_and_bias() {
    let mut rng = rng("matmul");
    let k = kernels();
    // (kernel, workgroup tile, B offset, whether B's row stride is padded to vec4s)
    let mut variants = vec![
        (&k.matmul, layers::MATMUL_TILE, 5, false),
        (&k.matmul_vec4, layers::MATMUL_VEC4_TILE, 8, true),
        (&k.matmul, layers::MATMUL_TILE, 4, true),
        (&k.matmul_tiled, layers::MATMUL_TILED_TILE, 3, false),
    ];
    // lavapipe offers subgroups of 8, so CI runs this variant too.
    if let Some(sg) = &k.matmul_subgroup {
        variants.push((sg, layers::matmul_subgroup_tile(gpu()), 12, true));
    }
    // Odd sizes so that partial workgroups in both directions are exercised.
    for &(m, n, kk) in &[
        (37, 300, 129),
        (128, 10, 256),
        (5, 513, 7),
        (256, 784, 128),
        (1, 4, 1),
    ] {
        for &(kernel, tile, b_off, pad) in &variants {
            let g = gpu();
            let ldb = if pad { layers::padded(n) } else { n };
            let a = random(&mut rng, m * kk + 3);
            let b = random(&mut rng, kk * ldb + b_off);
            let bias = random(&mut rng, n + 2);
            let (ab, bb, biasb, cb) = (
                g.storage_init(&a, "a"),
                g.storage_init(&b, "b"),
                g.storage_init(&bias, "bias"),
                g.storage(m * n + 4, "c"),
            );
            // A read transposed from a k × m layout at offset 3: A(i, p) = a[3 + p·m + i].
            let p = LinearParams {
                m: m as u32,
                n: n as u32,
                k: kk as u32,
                has_bias: 1,
                a_off: 3,
                a_rs: 1,
                a_cs: m as u32,
                b_off: b_off as u32,
                ldb: ldb as u32,
                c_off: 4,
                ldc: n as u32,
                bias_off: 2,
                ..Default::default()
            };
            run(&[layers::matmul_with(
                g, kernel, tile, p, &ab, &bb, &biasb, &cb,
            )]);
            let a_mk = cpu::transpose(&f64s(&a[3..]), kk, m);
            let b_kn: Vec<f64> = f64s(&b[b_off..])
                .chunks(ldb)
                .flat_map(|row| row[..n].to_vec())
                .collect();
            let mut want = cpu::matmul(&a_mk, &b_kn, m, n, kk);
            for (i, v) in want.iter_mut().enumerate() {
                *v += bias[2 + i % n] as f64;
            }
            let what = format!("{} {m}x{n}x{kk} b_off {b_off} ldb {ldb}", kernel.name);
            assert_close(&what, &read(&cb, m * n + 4)[4..], &want, ATOL, RTOL);
        }
    }
}

/// Split-K on `matmul_tiled` (the weight gradients' product on GPUs): dW-shaped
/// products, A read transposed, K cut into slices summed by `split_k_sum`, against
/// the CPU product; the slice count from `layers::split_k` and forced ones (a last
/// slice shorter than the others, K not a multiple of 16).
#[test]
fn split_k_matmul_matches_reference() {
    let mut rng = rng("split-k");
    let k = kernels();
    assert_eq!(layers::split_k(256, 784, 128), 1, "MLP fc1: no split");
    assert_eq!(layers::split_k(64, 288, 128 * 196), 52, "cnn conv2 dW");
    for &(m, n, kk, split) in &[
        (20, 37, 1000, 7),
        (64, 36, 2501, layers::split_k(64, 36, 2501)),
        (3, 70, 33, 2),
        (70, 9, 4097, layers::split_k(70, 9, 4097)),
    ] {
        assert!(split > 1, "{m}×{n}×{kk} splits");
        let g = gpu();
        let a = random(&mut rng, m * kk);
        let b = random(&mut rng, kk * n);
        let (ab, bb, scratch, cb, unused) = (
            g.storage_init(&a, "a"),
            g.storage_init(&b, "b"),
            g.storage(split * m * n, "split"),
            g.storage(m * n + 5, "c"),
            g.storage(1, "unused"),
        );
        let p = LinearParams {
            m: m as u32,
            n: n as u32,
            k: kk as u32,
            a_rs: 1,
            a_cs: m as u32,
            ldb: n as u32,
            c_off: 5,
            ldc: n as u32,
            ..Default::default()
        };
        run(&layers::matmul_split_k(
            g, k, p, split, &ab, &bb, &scratch, &cb, &unused,
        ));
        let want = cpu::matmul(&cpu::transpose(&f64s(&a), kk, m), &f64s(&b), m, n, kk);
        let what = format!("split-K {m}×{n}×{kk} in {split}");
        // f32 sums of kk products: their rounding grows with kk.
        let atol = ATOL.max(kk as f64 * f32::EPSILON as f64);
        assert_close(&what, &read(&cb, m * n + 5)[5..], &want, atol, RTOL);
    }
}

#[test]
fn transpose_matches_reference() {
    let mut rng = rng("transpose");
    let (m, n) = (33, 70);
    let a = random(&mut rng, m * n + 1);
    let g = gpu();
    let (ab, unused) = (g.storage_init(&a, "a"), g.storage(1, "unused"));
    let ld = layers::padded(m);
    let cb = g.storage(n * ld, "c");
    run(&[layers::transpose(
        g,
        kernels(),
        m,
        n,
        (&ab, 1),
        (&cb, 0),
        &unused,
    )]);
    let got = read(&cb, n * ld);
    let rows: Vec<f32> = got.chunks(ld).flat_map(|row| row[..m].to_vec()).collect();
    assert_close(
        "transpose",
        &rows,
        &cpu::transpose(&f64s(&a[1..]), m, n),
        0.0,
        0.0,
    );
}

/// One layer on the device: forward (train or eval) and backward with upstream `dy`.
struct LayerRun {
    y: Vec<f32>,
    dx: Vec<f32>,
    grads: Vec<f32>,
    state: Vec<f32>,
}

/// Shape of `kind`'s output (as the model builder computes it).
fn output_shape(kind: LayerKind) -> Shape {
    match kind {
        LayerKind::Linear {
            outputs, tokens, ..
        } => Shape::image(tokens, 1, outputs),
        LayerKind::ClassToken { features, tokens } => Shape::image(tokens + 1, 1, features),
        LayerKind::Attention {
            features, tokens, ..
        } => Shape::image(tokens, 1, features),
        LayerKind::TakeClassToken { features, .. } => Shape::flat(features),
        LayerKind::Conv {
            window, outputs, ..
        } => {
            let (h, w) = window.out_hw();
            Shape::image(h, w, outputs)
        }
        LayerKind::MaxPool { window } | LayerKind::AvgPool { window } => {
            let (h, w) = window.out_hw();
            Shape::image(h, w, window.input.channels)
        }
        other => Shape::flat(other.input_len()),
    }
}

/// Run `kind`'s forward (train or eval mode) on `x` (and `other` for Add), then with
/// `train` its backward with upstream gradient `dy`.
#[allow(clippy::too_many_arguments)]
fn run_layer(
    kind: LayerKind,
    batch: usize,
    x: &[f32],
    other: Option<&[f32]>,
    params: &[f32],
    state: &[f32],
    dy: &[f32],
    train: bool,
) -> LayerRun {
    run_layer_fused(kind, false, batch, x, other, params, state, dy, train, None)
}

/// [`run_layer`] for a layer without parameters, state or second input, forward and
/// backward.
fn run_parameterless(kind: LayerKind, batch: usize, x: &[f32], dy: &[f32]) -> LayerRun {
    run_layer(kind, batch, x, None, &[0.0], &[0.0], dy, true)
}

/// [`run_layer`]; with `relu` a BatchNorm runs fused with a ReLU after it (`y` is the
/// ReLU's output, `dy` its gradient); with `slice` a convolution's im2col scratch holds
/// that many samples (it then takes the batch a slice at a time).
#[allow(clippy::too_many_arguments)]
fn run_layer_fused(
    kind: LayerKind,
    relu: bool,
    batch: usize,
    x: &[f32],
    other: Option<&[f32]>,
    params: &[f32],
    state: &[f32],
    dy: &[f32],
    train: bool,
    slice: Option<usize>,
) -> LayerRun {
    let g = gpu();
    let layer = Layer {
        kind,
        input: 0,
        output: output_shape(kind),
        param_off: 0,
        state_off: 0,
    };
    let (inputs, outputs) = (kind.input_len(), layer.outputs());
    let cols = match kind {
        LayerKind::Conv { window, .. } => {
            let (rows, k) = layers::im2col_shape(slice.unwrap_or(batch), &window);
            rows * layers::padded(k)
        }
        _ => 1,
    };
    let slices = match kind {
        LayerKind::Conv { window, .. } => layers::conv_slices(&window, batch, cols).len(),
        _ => 1,
    };
    let (xb, ob, yb, dyb, dxb) = (
        g.storage_init(x, "x"),
        g.storage_init(other.unwrap_or(&[0.0]), "other"),
        g.storage(batch * outputs, "y"),
        g.storage_init(dy, "dy"),
        g.storage(batch * inputs, "dx"),
    );
    let (pb, gb, sb, unused, wt) = (
        g.storage_init(params, "params"),
        g.storage(params.len(), "grads"),
        g.storage_init(state, "state"),
        g.storage(1, "unused"),
        g.storage(layers::transposed_len(&layer).unwrap_or(1), "wt"),
    );
    let (partials, colsb, dcolsb) = (
        g.storage(2 * layers::BN_MAX_CHUNKS * inputs, "partials"),
        g.storage(cols, "cols"),
        g.storage(cols, "dcols"),
    );
    let split = layers::split_k_len(&layer, batch).max(slices * params.len());
    let splitb = g.storage(split.max(1), "split");
    let row_stats = g.storage(layers::row_stats_len(&layer, batch).max(1), "row stats");
    let step = g.uniform(&twa::nn::StepState::default(), "step");
    let bufs = LayerBuffers {
        params: (&pb).into(),
        grads: (&gb).into(),
        base: 0,
        state: &sb,
        step: &step,
        unused: &unused,
        partials: &partials,
        cols: &colsb,
        dcols: &dcolsb,
        cols_len: cols,
        split: &splitb,
        row_stats: &row_stats,
    };
    let mode = if train {
        layers::Mode::Train
    } else {
        layers::Mode::Eval
    };
    let other = other.map(|_| &ob);
    run(&if relu {
        layers::batchnorm_forward(g, kernels(), &layer, batch, mode, &xb, &yb, true, &bufs)
    } else {
        layers::forward(
            g,
            kernels(),
            &layer,
            batch,
            mode,
            &xb,
            other,
            &yb,
            Some(&wt),
            &bufs,
        )
    });
    let y = read(&yb, batch * outputs);
    let state_after = read(&sb, state.len().max(1));
    if train && relu {
        let k = kernels();
        run(&layers::batchnorm_backward(
            g,
            k,
            &layer,
            batch,
            &xb,
            &dyb,
            Some(&yb),
            &dxb,
            &bufs,
        ));
    } else if train {
        run(&layers::backward(
            g,
            kernels(),
            &layer,
            batch,
            &xb,
            &yb,
            &dyb,
            Some(&dxb),
            &bufs,
        ));
    }
    LayerRun {
        y,
        dx: read(&dxb, batch * inputs),
        grads: read(&gb, params.len().max(1)),
        state: state_after,
    }
}

/// Check analytic gradients (from the GPU backward with upstream r) against central
/// differences of L = Σ r ⊙ f, where f is the reference forward, at sampled coordinates.
/// The reference runs in f64, so the step can be small (1e-7: rounding adds ~1e-8):
/// a ReLU kink or a max-pool tie within the step of a perturbed value is then rare (a
/// BatchNorm + ReLU parameter moves hundreds of values at once; at 1e-5 a kink sat
/// inside the step on about one seed in twenty).
#[track_caller]
fn check_gradient(
    what: &str,
    f: &dyn Fn(&[f64]) -> Vec<f64>,
    at: &[f64],
    r: &[f32],
    analytic: &[f32],
    rng: &mut twa::rng::Rng,
) {
    let r = f64s(r);
    let loss = |v: &[f64]| f(v).iter().zip(&r).map(|(a, b)| a * b).sum::<f64>();
    let idx = sample_indices(rng, at.len(), 24);
    let numeric = numeric_grad(&loss, at, &idx, 1e-7);
    let got: Vec<f32> = idx.iter().map(|&i| analytic[i]).collect();
    assert_close(
        &format!("{what} vs finite differences"),
        &got,
        &numeric,
        1e-4,
        1e-3,
    );
}

#[test]
fn linear_forward_backward_and_gradient_check() {
    let mut rng = rng("linear");
    let (batch, inputs, outputs) = (19, 45, 33);
    let x = random(&mut rng, batch * inputs);
    let params = random(&mut rng, outputs * inputs + outputs);
    let dy = random(&mut rng, batch * outputs);
    let out = run_layer(
        LayerKind::Linear {
            inputs,
            outputs,
            tokens: 1,
        },
        batch,
        &x,
        None,
        &params,
        &[0.0],
        &dy,
        true,
    );
    let (w, b) = (
        f64s(&params[..outputs * inputs]),
        f64s(&params[outputs * inputs..]),
    );
    let xd = f64s(&x);
    assert_close(
        "linear forward",
        &out.y,
        &cpu::linear_forward(&xd, &w, &b, batch, inputs, outputs),
        ATOL,
        RTOL,
    );
    let (dx, dw, db) = cpu::linear_backward(&xd, &w, &f64s(&dy), batch, inputs, outputs);
    assert_close("linear grad x", &out.dx, &dx, ATOL, RTOL);
    assert_close(
        "linear grad W",
        &out.grads[..outputs * inputs],
        &dw,
        ATOL,
        RTOL,
    );
    assert_close(
        "linear grad b",
        &out.grads[outputs * inputs..],
        &db,
        ATOL,
        RTOL,
    );
    let (wc, bc) = (w.clone(), b.clone());
    check_gradient(
        "linear dx",
        &|v| cpu::linear_forward(v, &wc, &bc, batch, inputs, outputs),
        &xd,
        &dy,
        &out.dx,
        &mut rng,
    );
    let p = f64s(&params);
    let split = outputs * inputs;
    check_gradient(
        "linear dW, db",
        &|v| cpu::linear_forward(&xd, &v[..split], &v[split..], batch, inputs, outputs),
        &p,
        &dy,
        &out.grads,
        &mut rng,
    );
}

#[test]
fn relu_forward_backward_and_gradient_check() {
    let mut rng = rng("relu");
    let (batch, features) = (7, 300);
    let x = random(&mut rng, batch * features);
    let dy = random(&mut rng, batch * features);
    let out = run_parameterless(LayerKind::Relu { features }, batch, &x, &dy);
    let y = cpu::relu(&f64s(&x));
    assert_close("relu forward", &out.y, &y, 0.0, 0.0);
    assert_close(
        "relu backward",
        &out.dx,
        &cpu::relu_backward(&y, &f64s(&dy)),
        0.0,
        0.0,
    );
    // In place (the input's buffer overwritten): the same values.
    let buffer = gpu().storage_init(&x, "x, then y");
    let unused = gpu().storage(1, "unused");
    let len = batch * features;
    let io = [&unused, &unused, &buffer];
    run(&[layers::elementwise(gpu(), &kernels().relu_inplace, len, io)]);
    assert_close("relu in place", &read(&buffer, len), &y, 0.0, 0.0);
    // Away from the kink (|x| ≥ 1e-3 by construction) differences are exact.
    check_gradient(
        "relu dx",
        &|v| cpu::relu(v),
        &f64s(&x),
        &dy,
        &out.dx,
        &mut rng,
    );
}

#[test]
fn gelu_forward_backward_and_gradient_check() {
    let mut rng = rng("gelu");
    let (batch, features) = (samples_for_rounds(70), 70);
    // Inputs over the whole curve: the tails (±6, where Φ saturates) and the middle.
    let x: Vec<f32> = random(&mut rng, batch * features)
        .iter()
        .map(|v| 6.0 * v)
        .collect();
    let dy = random(&mut rng, batch * features);
    let out = run_parameterless(LayerKind::Gelu { features }, batch, &x, &dy);
    let xd = f64s(&x);
    // erf's approximation errs by at most 1.5e-7, times |x|/2 ≤ 3.
    assert_close("gelu forward", &out.y, &cpu::gelu(&xd), ATOL, RTOL);
    assert_close(
        "gelu backward",
        &out.dx,
        &cpu::gelu_backward(&xd, &f64s(&dy)),
        ATOL,
        RTOL,
    );
    check_gradient("gelu dx", &|v| cpu::gelu(v), &xd, &dy, &out.dx, &mut rng);
}

#[test]
fn layernorm_forward_backward_and_gradient_check() {
    let mut rng = rng("layernorm");
    let (batch, tokens, features) = (5, 7, 48);
    let kind = LayerKind::LayerNorm { features, tokens };
    // Rows with an offset and a spread far from 0 and 1, as activations have.
    let x: Vec<f32> = random(&mut rng, batch * tokens * features)
        .iter()
        .enumerate()
        .map(|(i, v)| 3.0 * v + (i / features % 5) as f32)
        .collect();
    let params = random(&mut rng, 2 * features);
    let dy = random(&mut rng, batch * tokens * features);
    let out = run_layer(kind, batch, &x, None, &params, &[0.0], &dy, true);
    let (xd, p) = (f64s(&x), f64s(&params));
    let (gamma, beta) = p.split_at(features);
    let eps = twa::nn::model::LN_EPS as f64;
    assert_close(
        "layernorm forward",
        &out.y,
        &cpu::layernorm(&xd, gamma, beta, eps),
        ATOL,
        RTOL,
    );
    let (dx, dg, db) = cpu::layernorm_backward(&xd, gamma, &f64s(&dy), eps);
    assert_close("layernorm dx", &out.dx, &dx, ATOL, RTOL);
    assert_close("layernorm dγ", &out.grads[..features], &dg, ATOL, RTOL);
    assert_close("layernorm dβ", &out.grads[features..], &db, ATOL, RTOL);
    let (g, b) = (gamma.to_vec(), beta.to_vec());
    check_gradient(
        "layernorm dx",
        &|v| cpu::layernorm(v, &g, &b, eps),
        &xd,
        &dy,
        &out.dx,
        &mut rng,
    );
    check_gradient(
        "layernorm dγ, dβ",
        &|v| cpu::layernorm(&xd, &v[..features], &v[features..], eps),
        &p,
        &dy,
        &out.grads,
        &mut rng,
    );
}

#[test]
fn class_token_position_embedding_and_taking_the_class_token() {
    let mut rng = rng("tokens");
    let (batch, tokens, features) = (4, 9, 12);
    let x = random(&mut rng, batch * tokens * features);
    let xd = f64s(&x);
    // The class token: prepended forward, dropped (and summed into dcls) backward.
    let cls = random(&mut rng, features);
    let dy = random(&mut rng, batch * (tokens + 1) * features);
    let kind = LayerKind::ClassToken { features, tokens };
    let out = run_layer(kind, batch, &x, None, &cls, &[0.0], &dy, true);
    let y = cpu::class_token(&xd, &f64s(&cls), batch, tokens);
    assert_close("class token forward", &out.y, &y, 0.0, 0.0);
    let (dx, dcls) = cpu::class_token_backward(&f64s(&dy), batch, tokens, features);
    assert_close("class token dx", &out.dx, &dx, 0.0, 0.0);
    assert_close("class token dcls", &out.grads, &dcls, ATOL, RTOL);
    check_gradient(
        "class token dcls",
        &|v| cpu::class_token(&xd, v, batch, tokens),
        &f64s(&cls),
        &dy,
        &out.grads,
        &mut rng,
    );
    // The position embedding: added to every sample, its gradient summed over them.
    let pos = random(&mut rng, tokens * features);
    let dy = random(&mut rng, batch * tokens * features);
    let kind = LayerKind::PositionEmbedding { features, tokens };
    let out = run_layer(kind, batch, &x, None, &pos, &[0.0], &dy, true);
    let add = |x: &[f64], pos: &[f64]| -> Vec<f64> {
        x.iter()
            .enumerate()
            .map(|(i, v)| v + pos[i % pos.len()])
            .collect()
    };
    assert_close(
        "position forward",
        &out.y,
        &add(&xd, &f64s(&pos)),
        ATOL,
        RTOL,
    );
    assert_close("position dx", &out.dx, &f64s(&dy), 0.0, 0.0);
    let dpos = cpu::sum_over_batch(&f64s(&dy), tokens * features);
    assert_close("position dpos", &out.grads, &dpos, ATOL, RTOL);
    check_gradient(
        "position dpos",
        &|v| add(&xd, v),
        &f64s(&pos),
        &dy,
        &out.grads,
        &mut rng,
    );
    // Taking the class token: the first token forward, dy there and zeros backward.
    let dy = random(&mut rng, batch * features);
    let kind = LayerKind::TakeClassToken { features, tokens };
    let out = run_parameterless(kind, batch, &x, &dy);
    let y = cpu::take_class_token(&xd, tokens, features);
    assert_close("take class token", &out.y, &y, 0.0, 0.0);
    let dx = cpu::take_class_token_backward(&f64s(&dy), tokens, features);
    assert_close("take class token dx", &out.dx, &dx, 0.0, 0.0);
}

#[test]
fn attention_forward_backward_and_gradient_check() {
    let mut rng = rng("attention");
    // Tokens not a multiple of the backward's 64 invocations; 3 heads of 8.
    let (batch, tokens, features, heads) = (3, 70, 24, 3);
    let kind = LayerKind::Attention {
        features,
        tokens,
        heads,
    };
    for spread in [1.0f32, 40.0] {
        // At 40 the scores reach the hundreds: a softmax without its maximum taken
        // out would overflow.
        let qkv: Vec<f32> = random(&mut rng, batch * tokens * 3 * features)
            .iter()
            .map(|v| spread.sqrt() * v)
            .collect();
        let dy = random(&mut rng, batch * tokens * features);
        let out = run_parameterless(kind, batch, &qkv, &dy);
        let xd = f64s(&qkv);
        let what = |s: &str| format!("attention {s} (inputs ×√{spread})");
        let (y, _) = cpu::attention(&xd, batch, tokens, features, heads);
        assert_close(&what("forward"), &out.y, &y, ATOL, RTOL);
        let dx = cpu::attention_backward(&xd, &f64s(&dy), batch, tokens, features, heads);
        assert_close(&what("dqkv"), &out.dx, &dx, 1e-4, 1e-3);
        if spread == 1.0 {
            check_gradient(
                &what("dqkv"),
                &|v| cpu::attention(v, batch, tokens, features, heads).0,
                &xd,
                &dy,
                &out.dx,
                &mut rng,
            );
        }
    }
}

/// Dropout's forward (in every mode) and backward at `state`: (y, dx).
fn run_dropout(
    kind: LayerKind,
    batch: usize,
    x: &[f32],
    dy: &[f32],
    state: twa::nn::StepState,
    mode: layers::Mode,
) -> (Vec<f32>, Vec<f32>) {
    let g = gpu();
    let layer = Layer {
        kind,
        input: 1,
        output: output_shape(kind),
        param_off: 0,
        state_off: 0,
    };
    let len = x.len();
    let (xb, yb, dyb, dxb) = (
        g.storage_init(x, "x"),
        g.storage(len, "y"),
        g.storage_init(dy, "dy"),
        g.storage(len, "dx"),
    );
    let (unused, step) = (g.storage(1, "unused"), g.uniform(&state, "step"));
    let bufs = LayerBuffers {
        params: (&unused).into(),
        grads: (&unused).into(),
        base: 0,
        state: &unused,
        step: &step,
        unused: &unused,
        partials: &unused,
        cols: &unused,
        dcols: &unused,
        cols_len: 1,
        split: &unused,
        row_stats: &unused,
    };
    let k = kernels();
    let mut work = layers::forward(g, k, &layer, batch, mode, &xb, None, &yb, None, &bufs);
    work.extend(layers::backward(
        g,
        k,
        &layer,
        batch,
        &xb,
        &yb,
        &dyb,
        Some(&dxb),
        &bufs,
    ));
    run(&work);
    (read(&yb, len), read(&dxb, len))
}

#[test]
fn dropout_masks_follow_seed_step_and_sample_and_backward_reuses_them() {
    use layers::Mode;
    use twa::nn::StepState;
    let mut rng = rng("dropout");
    let (batch, features, p) = (samples_for_rounds(64).max(100), 64, 0.3);
    let threshold = twa::nn::model::drop_threshold(p);
    let kind = LayerKind::Dropout {
        features,
        threshold,
        salt: 7,
    };
    let x = random(&mut rng, batch * features);
    let dy = random(&mut rng, batch * features);
    let (xd, dyd) = (f64s(&x), f64s(&dy));
    let state = StepState {
        start: 40,
        step: 1234,
        lr: 0.1,
        seed: 5,
    };
    let (y, dx) = run_dropout(kind, batch, &x, &dy, state, Mode::Train);
    let mask = cpu::dropout_mask(features, threshold, 7, batch, &state);
    assert_close("dropout forward", &y, &cpu::times(&xd, &mask), ATOL, RTOL);
    assert_close(
        "dropout backward",
        &dx,
        &cpu::times(&dyd, &mask),
        ATOL,
        RTOL,
    );
    check_gradient(
        "dropout dx",
        &|v| cpu::times(v, &mask),
        &xd,
        &dy,
        &dx,
        &mut rng,
    );
    let dropped = mask.iter().filter(|&&m| m == 0.0).count() as f64 / mask.len() as f64;
    assert!((dropped - p).abs() < 0.03, "dropped {dropped} for p = {p}");
    // Re-estimating BatchNorm drops as training does; evaluation and the landscape's
    // probe do not.
    assert_eq!(
        run_dropout(kind, batch, &x, &dy, state, Mode::Recalibrate).0,
        y
    );
    for mode in [Mode::Eval, Mode::Probe] {
        assert_eq!(
            run_dropout(kind, batch, &x, &dy, state, mode).0,
            x,
            "{mode:?}"
        );
    }
    // Another step, seed, sample position or layer draws another mask; the same
    // state the same one (a resumed run's).
    for other in [
        StepState {
            step: 1235,
            ..state
        },
        StepState { seed: 6, ..state },
        StepState { start: 41, ..state },
    ] {
        let changed = cpu::dropout_mask(features, threshold, 7, batch, &other);
        assert_ne!(changed, mask, "{other:?}");
        let (y_other, _) = run_dropout(kind, batch, &x, &dy, other, Mode::Train);
        assert_close(
            "dropout forward",
            &y_other,
            &cpu::times(&xd, &changed),
            ATOL,
            RTOL,
        );
    }
    assert_ne!(
        cpu::dropout_mask(features, threshold, 8, batch, &state),
        mask
    );
    assert_eq!(
        cpu::dropout_mask(features, threshold, 7, batch, &state),
        mask
    );
}

/// A convolution's forward, input/weight/bias gradients vs the reference, and both
/// backward paths (im2col → dW, dcols → col2im) vs finite differences; with `slice`
/// the im2col scratch holds that many samples.
#[allow(clippy::too_many_arguments)]
fn check_conv(
    name: &str,
    batch: usize,
    input: Shape,
    outputs: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    bias: bool,
    slice: Option<usize>,
) {
    let mut rng = rng(name);
    let window = Window {
        input,
        kernel: (kernel, kernel),
        stride,
        padding,
    };
    let kind = LayerKind::Conv {
        window,
        outputs,
        bias,
    };
    let k = input.channels * kernel * kernel;
    let (oh, ow) = window.out_hw();
    let x = random(&mut rng, batch * input.len());
    let params = random(&mut rng, outputs * k + if bias { outputs } else { 0 });
    let dy = random(&mut rng, batch * oh * ow * outputs);
    let out = run_layer_fused(
        kind,
        false,
        batch,
        &x,
        None,
        &params,
        &[0.0],
        &dy,
        true,
        slice,
    );
    let (xd, p) = (f64s(&x), f64s(&params));
    let b = bias.then(|| &p[outputs * k..]);
    let want = cpu::conv_forward(&xd, &p[..outputs * k], b, batch, &window, outputs);
    assert_close(&format!("{name} forward"), &out.y, &want, ATOL, RTOL);
    let (dx, dw, db) =
        cpu::conv_backward(&xd, &p[..outputs * k], &f64s(&dy), batch, &window, outputs);
    assert_close(&format!("{name} grad x"), &out.dx, &dx, ATOL, RTOL);
    // dW sums batch·oh·ow products in f32: its rounding grows with that length (150
    // samples of 9 × 7: 2e-4 of a 0.28 entry measured).
    let sum_atol = ATOL.max((batch * oh * ow) as f64 * f32::EPSILON as f64);
    assert_close(
        &format!("{name} grad W"),
        &out.grads[..outputs * k],
        &dw,
        sum_atol,
        RTOL,
    );
    if bias {
        assert_close(
            &format!("{name} grad b"),
            &out.grads[outputs * k..],
            &db,
            sum_atol,
            RTOL,
        );
    }
    let pc = p.clone();
    check_gradient(
        &format!("{name} dx"),
        &|v| {
            cpu::conv_forward(
                v,
                &pc[..outputs * k],
                bias.then(|| &pc[outputs * k..]),
                batch,
                &window,
                outputs,
            )
        },
        &xd,
        &dy,
        &out.dx,
        &mut rng,
    );
    check_gradient(
        &format!("{name} dW, db"),
        &|v| {
            cpu::conv_forward(
                &xd,
                &v[..outputs * k],
                bias.then(|| &v[outputs * k..]),
                batch,
                &window,
                outputs,
            )
        },
        &p,
        &dy,
        &out.grads,
        &mut rng,
    );
}

#[test]
fn conv_3x3_same_padding_with_bias() {
    check_conv("conv3x3", 3, Shape::image(9, 7, 5), 12, 3, 1, 1, true, None);
}

/// Room in the im2col scratch for 2 of 5 samples: the convolution takes slices of 2,
/// 2 and 1 samples, its dW summed over them, db over the whole batch.
#[test]
fn conv_takes_slices_of_samples_when_its_im2col_matrix_exceeds_the_scratch() {
    check_conv(
        "conv sliced",
        5,
        Shape::image(9, 7, 5),
        12,
        3,
        2,
        1,
        true,
        Some(2),
    );
}

#[test]
fn conv_3x3_stride_2_without_bias() {
    check_conv(
        "conv3x3s2",
        2,
        Shape::image(8, 9, 4),
        6,
        3,
        2,
        1,
        false,
        None,
    );
}

#[test]
fn conv_1x1_stride_2_shortcut() {
    check_conv(
        "conv1x1s2",
        4,
        Shape::image(6, 6, 8),
        16,
        1,
        2,
        0,
        false,
        None,
    );
}

/// Samples of `per_sample` elements for three items per invocation of a CPU adapter's
/// grid loops (their index counters then carry into every digit).
fn samples_for_rounds(per_sample: usize) -> usize {
    (3 * twa::gpu::kernels::CPU_GRID_GROUPS * twa::gpu::kernels::CPU_LANES).div_ceil(per_sample)
}

/// Enough samples that im2col and col2im take several items per invocation of a CPU
/// adapter's grid loops.
#[test]
fn conv_3x3_on_a_large_batch() {
    check_conv(
        "conv3x3 large batch",
        samples_for_rounds(9 * 7 * 5),
        Shape::image(9, 7, 5),
        4,
        3,
        1,
        1,
        true,
        None,
    );
}

/// Single-channel input (K = 9, not a multiple of 4: the unaligned matmul path).
#[test]
fn conv_first_layer_one_channel() {
    check_conv(
        "conv1ch",
        5,
        Shape::image(10, 10, 1),
        8,
        3,
        1,
        1,
        false,
        None,
    );
}

#[test]
fn max_and_average_pooling_forward_backward_and_gradient_check() {
    let mut rng = rng("pool");
    // Tiling 2×2 windows, overlapping 3×3 stride-2 windows, a global window, padded
    // windows (ResNet's 3/2 stem pool with padding 1, which must never pick the padding
    // over negative values; a padded stride-1 average); then both window kinds on
    // batches large enough that a CPU adapter's grid loops take several items per
    // invocation (sized by their outputs, the fewer).
    for (batch, input, kernel, stride, padding) in [
        (3, Shape::image(8, 6, 5), (2, 2), 2, 0),
        (3, Shape::image(7, 7, 3), (3, 3), 2, 0),
        (3, Shape::image(5, 5, 7), (5, 5), 1, 0),
        (3, Shape::image(8, 7, 3), (3, 3), 2, 1),
        (3, Shape::image(6, 5, 4), (3, 3), 1, 1),
        (
            samples_for_rounds(5 * 4 * 7),
            Shape::image(10, 8, 7),
            (2, 2),
            2,
            0,
        ),
        (
            samples_for_rounds(4 * 3 * 5),
            Shape::image(9, 7, 5),
            (3, 3),
            2,
            1,
        ),
    ] {
        let window = Window {
            input,
            kernel,
            stride,
            padding,
        };
        let (oh, ow) = window.out_hw();
        let x = random(&mut rng, batch * input.len());
        let dy = random(&mut rng, batch * oh * ow * input.channels);
        let xd = f64s(&x);
        let max = run_parameterless(LayerKind::MaxPool { window }, batch, &x, &dy);
        assert_close(
            "max pool forward",
            &max.y,
            &cpu::max_pool(&xd, batch, &window),
            0.0,
            0.0,
        );
        // Overlapping windows sum several gradients in f32.
        assert_close(
            "max pool backward",
            &max.dx,
            &cpu::max_pool_backward(&xd, &f64s(&dy), batch, &window),
            ATOL,
            RTOL,
        );
        check_gradient(
            "max pool dx",
            &|v| cpu::max_pool(v, batch, &window),
            &xd,
            &dy,
            &max.dx,
            &mut rng,
        );
        let avg = run_parameterless(LayerKind::AvgPool { window }, batch, &x, &dy);
        assert_close(
            "avg pool forward",
            &avg.y,
            &cpu::avg_pool(&xd, batch, &window),
            ATOL,
            RTOL,
        );
        assert_close(
            "avg pool backward",
            &avg.dx,
            &cpu::avg_pool_backward(&f64s(&dy), batch, &window),
            ATOL,
            RTOL,
        );
        check_gradient(
            "avg pool dx",
            &|v| cpu::avg_pool(v, batch, &window),
            &xd,
            &dy,
            &avg.dx,
            &mut rng,
        );
    }
}

#[test]
fn flatten_permutes_to_channel_major_and_back() {
    let mut rng = rng("flatten");
    // The second is large enough for several items per invocation of a CPU adapter's grid.
    let large = Shape::image(30, 31, 7);
    for (batch, input) in [
        (3, Shape::image(4, 5, 6)),
        (samples_for_rounds(large.len()), large),
    ] {
        let x = random(&mut rng, batch * input.len());
        let dy = random(&mut rng, batch * input.len());
        let out = run_parameterless(LayerKind::Flatten { input }, batch, &x, &dy);
        let xd = f64s(&x);
        assert_close(
            "flatten",
            &out.y,
            &cpu::flatten(&xd, batch, input),
            0.0,
            0.0,
        );
        assert_close(
            "unflatten",
            &out.dx,
            &cpu::unflatten(&f64s(&dy), batch, input),
            0.0,
            0.0,
        );
        check_gradient(
            "flatten dx",
            &|v| cpu::flatten(v, batch, input),
            &xd,
            &dy,
            &out.dx,
            &mut rng,
        );
    }
}

#[test]
fn residual_add_forward_and_backward() {
    let mut rng = rng("add");
    let (batch, features) = (4, 300);
    let (a, b, dy) = (
        random(&mut rng, batch * features),
        random(&mut rng, batch * features),
        random(&mut rng, batch * features),
    );
    let out = run_layer(
        LayerKind::Add { features, other: 1 },
        batch,
        &a,
        Some(&b),
        &[0.0],
        &[0.0],
        &dy,
        true,
    );
    let sum: Vec<f64> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| *x as f64 + *y as f64)
        .collect();
    assert_close("add forward", &out.y, &sum, 0.0, 1e-7);
    assert_close("add backward (main input)", &out.dx, &f64s(&dy), 0.0, 0.0);
}

#[test]
fn batchnorm_train_eval_backward_and_gradient_check() {
    check_batchnorm("batchnorm1d", 24, 1, 40, false);
}

/// BatchNorm2d: each channel over samples × pixels; 315 rows make 10 chunks, so the
/// chunk merge is exercised.
#[test]
fn batchnorm2d_train_eval_backward_and_gradient_check() {
    check_batchnorm("batchnorm2d", 5, 63, 6, false);
}

/// A BatchNorm and the ReLU after it as one layer: against ReLU ∘ BatchNorm.
#[test]
fn batchnorm_relu_fused_train_eval_backward_and_gradient_check() {
    check_batchnorm("batchnorm1d+relu", 24, 1, 40, true);
    check_batchnorm("batchnorm2d+relu", 5, 63, 6, true);
}

/// `relu`: the layer runs fused with a ReLU after it and is checked against ReLU ∘
/// BatchNorm (the backward's upstream gradient then being the ReLU's).
fn check_batchnorm(name: &str, samples: usize, spatial: usize, features: usize, relu: bool) {
    let mut rng = rng(name);
    // Rows, as the CPU reference sees them.
    let batch = samples * spatial;
    let x: Vec<f32> = random(&mut rng, batch * features)
        .iter()
        .map(|v| 3.0 * v + 0.5)
        .collect();
    let mut params = random(&mut rng, 2 * features);
    params[..features].iter_mut().for_each(|g| *g += 1.5);
    let running = random(&mut rng, 2 * features);
    let mut state = vec![0.0f32; 4 * features];
    state[..features].copy_from_slice(&running[..features]);
    for (s, r) in state[features..2 * features]
        .iter_mut()
        .zip(&running[features..])
    {
        *s = r.abs() + 0.5;
    }
    let dy = random(&mut rng, batch * features);
    let kind = LayerKind::BatchNorm { features, spatial };
    let out = run_layer_fused(
        kind, relu, samples, &x, None, &params, &state, &dy, true, None,
    );
    let (xd, gamma, beta) = (
        f64s(&x),
        f64s(&params[..features]),
        f64s(&params[features..]),
    );
    let eps = BN_EPS as f64;
    let after = |y: Vec<f64>| if relu { cpu::relu(&y) } else { y };
    let train_forward = |x: &[f64], gamma: &[f64], beta: &[f64]| {
        after(cpu::batchnorm_train(x, gamma, beta, batch, eps))
    };
    assert_close(
        &format!("{name} train forward"),
        &out.y,
        &train_forward(&xd, &gamma, &beta),
        1e-5,
        1e-4,
    );
    let (mean, _, var_unbiased) = cpu::batch_stats(&xd, batch, features);
    let m = BN_MOMENTUM as f64;
    let want_rm: Vec<f64> = (0..features)
        .map(|f| (1.0 - m) * state[f] as f64 + m * mean[f])
        .collect();
    let want_rv: Vec<f64> = (0..features)
        .map(|f| (1.0 - m) * state[features + f] as f64 + m * var_unbiased[f])
        .collect();
    assert_close(
        &format!("{name} running mean"),
        &out.state[..features],
        &want_rm,
        1e-6,
        1e-5,
    );
    assert_close(
        &format!("{name} running var"),
        &out.state[features..2 * features],
        &want_rv,
        1e-6,
        1e-5,
    );
    // Through the ReLU: from the device's own output (where an f32 value sits at 0 the
    // gradient's route is no error of the backward).
    let dy_bn = if relu {
        cpu::relu_backward(&f64s(&out.y), &f64s(&dy))
    } else {
        f64s(&dy)
    };
    let (dx, dgamma, dbeta) = cpu::batchnorm_backward(&xd, &gamma, &dy_bn, batch, eps);
    assert_close(&format!("{name} grad x"), &out.dx, &dx, 1e-5, 1e-3);
    assert_close(
        &format!("{name} grad gamma"),
        &out.grads[..features],
        &dgamma,
        1e-5,
        1e-4,
    );
    assert_close(
        &format!("{name} grad beta"),
        &out.grads[features..],
        &dbeta,
        1e-5,
        1e-4,
    );
    let (gc, bc) = (gamma.clone(), beta.clone());
    check_gradient(
        &format!("{name} dx"),
        &|v| train_forward(v, &gc, &bc),
        &xd,
        &dy,
        &out.dx,
        &mut rng,
    );
    check_gradient(
        &format!("{name} dγ, dβ"),
        &|v| train_forward(&xd, &v[..features], &v[features..]),
        &f64s(&params),
        &dy,
        &out.grads,
        &mut rng,
    );
    let eval = run_layer_fused(
        kind, relu, samples, &x, None, &params, &state, &dy, false, None,
    );
    let (rm, rv) = (
        f64s(&state[..features]),
        f64s(&state[features..2 * features]),
    );
    assert_close(
        &format!("{name} eval forward"),
        &eval.y,
        &after(cpu::batchnorm_apply(&xd, &rm, &rv, &gamma, &beta, eps)),
        1e-5,
        1e-4,
    );
}

#[test]
fn cross_entropy_loss_gradient_accuracy_and_gradient_check() {
    let mut rng = rng("cross_entropy");
    let (batch, classes) = (150, 10);
    let g = gpu();
    let logits: Vec<f32> = random(&mut rng, batch * classes)
        .iter()
        .map(|v| 4.0 * v)
        .collect();
    let labels: Vec<u32> = (0..batch).map(|_| rng.below(classes) as u32).collect();
    let step = g.uniform(&twa::nn::StepState::default(), "step");
    let k = kernels();
    // Plain, and with label smoothing (which evaluation ignores).
    for eps in [0.0, 0.1] {
        let (lb, yb, gb, tb, scratch) = (
            g.storage_init(&logits, "logits"),
            g.storage_init(&labels, "labels"),
            g.storage(batch * classes, "grad"),
            g.storage(4, "totals"),
            g.storage(1, "scratch"),
        );
        run(&[twa::nn::loss::cross_entropy(
            g,
            k,
            batch,
            classes,
            &lb,
            &yb,
            Some(&gb),
            eps as f32,
            &scratch,
            &tb,
            &step,
        )]);
        let reference = |z: &[f64]| cpu::smoothed_cross_entropy(z, &labels, classes, eps);
        let (loss, correct, grad) = reference(&f64s(&logits));
        let totals = read(&tb, 4);
        let what = |s: &str| format!("{s} (ε = {eps})");
        assert_close(
            &what("cross-entropy loss sum"),
            &totals[..1],
            &[loss],
            1e-4,
            1e-5,
        );
        assert_close(
            &what("cross-entropy correct, count, bad step"),
            &totals[1..],
            &[correct, batch as f64, 0.0],
            0.0,
            0.0,
        );
        let got = read(&gb, batch * classes);
        assert_close(&what("cross-entropy gradient"), &got, &grad, 1e-7, 1e-4);
        // d(mean loss)/dz via differences of the reference loss.
        let mean_loss = |z: &[f64]| reference(z).0 / batch as f64;
        let idx = sample_indices(&mut rng, batch * classes, 24);
        let numeric = numeric_grad(&mean_loss, &f64s(&logits), &idx, 1e-5);
        let picked: Vec<f32> = idx.iter().map(|&i| got[i]).collect();
        assert_close(
            &what("cross-entropy gradient vs finite differences"),
            &picked,
            &numeric,
            1e-6,
            1e-3,
        );
        // Evaluation accumulates the plain loss on top, without a gradient.
        run(&[twa::nn::loss::cross_entropy(
            g, k, batch, classes, &lb, &yb, None, eps as f32, &scratch, &tb, &step,
        )]);
        let plain = cpu::cross_entropy(&f64s(&logits), &labels, classes).0;
        assert_close(
            &what("evaluate totals"),
            &read(&tb, 3),
            &[loss + plain, 2.0 * correct, 2.0 * batch as f64],
            2e-4,
            1e-5,
        );
    }
}

#[test]
fn gradient_norm_clipping_scales_to_the_bound_and_leaves_smaller_gradients_alone() {
    let mut rng = rng("clip");
    let g = gpu();
    // Long enough for several workgroups' partial sums on any adapter.
    let len = 70_001;
    let grads = random(&mut rng, len);
    let norm = grads
        .iter()
        .map(|&v| (v as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    let step = g.uniform(&twa::nn::StepState::default(), "step");
    let scratch = twa::nn::optim::ClipScratch::new(g, len);
    for max_norm in [0.25 * norm, 2.0 * norm] {
        let buffer = g.storage_init(&grads, "grads");
        run(&twa::nn::optim::clip_norm(
            g,
            kernels(),
            len,
            max_norm as f32,
            &buffer,
            &scratch,
            &step,
        ));
        let got = read(&buffer, len);
        let mut want = f64s(&grads);
        let factor = cpu::clip_grad_norm(&mut want, max_norm);
        if factor < 1.0 {
            assert_close("clipped gradient", &got, &want, 1e-7, 1e-5);
        } else {
            assert_eq!(got, grads, "a gradient within the bound is untouched");
        }
    }
}

#[test]
fn cross_entropy_reports_the_first_non_finite_step() {
    let g = gpu();
    let logits = [1.0f32, f32::NAN, 0.5, 0.2];
    let (lb, yb, gb, tb, scratch) = (
        g.storage_init(&logits, "l"),
        g.storage_init(&[0u32, 1], "y"),
        g.storage(4, "g"),
        g.storage(4, "t"),
        g.storage(1, "s"),
    );
    let step = g.uniform(
        &twa::nn::StepState {
            step: 41,
            ..Default::default()
        },
        "step",
    );
    run(&[twa::nn::loss::cross_entropy(
        g,
        kernels(),
        2,
        2,
        &lb,
        &yb,
        Some(&gb),
        0.0,
        &scratch,
        &tb,
        &step,
    )]);
    assert_eq!(
        read(&tb, 4)[3],
        42.0,
        "1-based step of the first non-finite loss"
    );
}

#[test]
fn sgd_step_and_zero_match_reference() {
    let mut rng = rng("sgd");
    let len = 70_001;
    let g = gpu();
    let (w, v, grad) = (
        random(&mut rng, len),
        random(&mut rng, len),
        random(&mut rng, len),
    );
    let (wb, vb, gb, scratch) = (
        g.storage_init(&w, "w"),
        g.storage_init(&v, "v"),
        g.storage_init(&grad, "g"),
        g.storage(1, "s"),
    );
    let lr = 0.37f32;
    let step = g.uniform(
        &twa::nn::StepState {
            lr,
            ..Default::default()
        },
        "step",
    );
    let sgd = twa::nn::SgdConfig {
        momentum: 0.9,
        weight_decay: 1e-3,
    };
    run(&twa::nn::optim::sgd_step(
        g,
        kernels(),
        len,
        sgd,
        &gb,
        &wb,
        &vb,
        &step,
    ));
    let (mut wr, mut vr) = (f64s(&w), f64s(&v));
    cpu::sgd_step(
        &mut wr,
        &mut vr,
        &f64s(&grad),
        lr as f64,
        0.9f32 as f64,
        1e-3f32 as f64,
    );
    let v_after = read(&vb, len);
    assert_close("sgd velocity", &v_after, &vr, 1e-6, 1e-5);
    assert_close("sgd weights", &read(&wb, len), &wr, 1e-6, 1e-5);
    run(&twa::nn::optim::zero(
        g,
        kernels(),
        len - 1,
        &vb,
        &gb,
        &scratch,
        &step,
    ));
    let zeroed = read(&vb, len);
    assert!(
        zeroed[..len - 1].iter().all(|&x| x == 0.0),
        "zero clears the range"
    );
    assert_eq!(zeroed[len - 1], v_after[len - 1], "zero stops at len");
}

/// Three AdamW steps (global steps 7–9 of a run whose AdamW phase began at 7, so
/// t = 1, 2, 3) against the f64 reference.
#[test]
fn adamw_steps_match_reference() {
    let mut rng = rng("adamw");
    let len = 5_003;
    let g = gpu();
    let w = random(&mut rng, len);
    let (wb, m, v) = (
        g.storage_init(&w, "w"),
        g.storage(len, "m"),
        g.storage(len, "v"),
    );
    let adam = twa::nn::SgdConfig {
        momentum: 0.9,
        weight_decay: 0.01,
    };
    let (mut wr, mut mr, mut vr) = (f64s(&w), vec![0.0; len], vec![0.0; len]);
    for (t, lr) in [(1u32, 0.01f32), (2, 0.02), (3, 0.005)] {
        let grad = random(&mut rng, len);
        let gb = g.storage_init(&grad, "g");
        let step = g.uniform(
            &twa::nn::StepState {
                lr,
                step: 6 + t,
                ..Default::default()
            },
            "step",
        );
        run(&twa::nn::optim::adamw_step(
            g,
            kernels(),
            len,
            adam,
            7,
            &gb,
            &wb,
            [&m, &v],
            &step,
        ));
        cpu::adamw_step(
            &mut wr,
            &mut mr,
            &mut vr,
            &f64s(&grad),
            lr as f64,
            0.9f32 as f64,
            0.01f32 as f64,
            t,
        );
    }
    assert_close("adamw first moment", &read(&m, len), &mr, 1e-6, 1e-5);
    // (1 − β₂ is 1e-3 to 2e-6 relative in f32.)
    assert_close("adamw second moment", &read(&v, len), &vr, 1e-9, 1e-4);
    // The bias correction 1 − 0.999ᵗ is formed in f32 (≈ 1e-4 relative at t = 1):
    // each step of ≈ lr moves w within ≈ 1e-6 of the f64 step.
    assert_close("adamw weights", &read(&wb, len), &wr, 5e-6, 1e-4);
}

/// BatchNorm2d re-estimation (TWA's BN update): after batches t = 0, 1, 2 in
/// `Recalibrate` mode the running statistics are the plain average of the batches'
/// mean and unbiased variance over samples × pixels, whatever they were before.
#[test]
fn batchnorm2d_recalibration_averages_batch_statistics() {
    let mut rng = rng("bn2d recalibrate");
    let g = gpu();
    let (samples, spatial, features) = (3, 25, 5);
    let rows = samples * spatial;
    let kind = LayerKind::BatchNorm { features, spatial };
    let layer = Layer {
        kind,
        input: 0,
        output: Shape::image(5, 5, features),
        param_off: 0,
        state_off: 0,
    };
    let params = random(&mut rng, 2 * features);
    let (pb, gb, sb, unused, xb, yb) = (
        g.storage_init(&params, "params"),
        g.storage(2 * features, "grads"),
        g.storage_init(&random(&mut rng, 4 * features), "state"),
        g.storage(1, "unused"),
        g.storage(rows * features, "x"),
        g.storage(rows * features, "y"),
    );
    let partials = g.storage(2 * layers::BN_MAX_CHUNKS * features, "partials");
    let step = g.uniform(&twa::nn::StepState::default(), "step");
    let bufs = LayerBuffers {
        params: (&pb).into(),
        grads: (&gb).into(),
        base: 0,
        state: &sb,
        step: &step,
        unused: &unused,
        partials: &partials,
        cols: &unused,
        dcols: &unused,
        cols_len: 1,
        split: &unused,
        row_stats: &unused,
    };
    let work = layers::forward(
        g,
        kernels(),
        &layer,
        samples,
        layers::Mode::Recalibrate,
        &xb,
        None,
        &yb,
        None,
        &bufs,
    );
    let (mut mean, mut var) = (vec![0.0; features], vec![0.0; features]);
    let batches = 3;
    for t in 0..batches {
        let x: Vec<f32> = random(&mut rng, rows * features)
            .iter()
            .map(|v| 2.0 * v + t as f32)
            .collect();
        g.write(&xb, 0, &x);
        g.write(
            &step,
            0,
            &[twa::nn::StepState {
                step: t,
                ..Default::default()
            }],
        );
        run(&work);
        let (m, _, v) = cpu::batch_stats(&f64s(&x), rows, features);
        for f in 0..features {
            mean[f] += m[f] / batches as f64;
            var[f] += v[f] / batches as f64;
        }
    }
    let state = read(&sb, 2 * features);
    assert_close("recalibrated mean", &state[..features], &mean, 1e-5, 1e-4);
    assert_close("recalibrated var", &state[features..], &var, 1e-5, 1e-4);
}

/// The pipeline cache on disk: written after compiling; a damaged file is no error
/// (wgpu starts an empty cache) and is replaced by a good one.
#[test]
fn pipeline_cache_file_is_written_and_a_damaged_one_replaced() {
    use twa::gpu::pipeline_cache::DiskCache;
    let g = gpu();
    let dir = std::env::temp_dir().join(format!("twa-pipeline-cache-{}", std::process::id()));
    let Some(disk) = DiskCache::open_in(g, dir.clone()) else {
        eprintln!("{}: no pipeline cache on this adapter", g.describe());
        return;
    };
    twa::gpu::Kernels::with_cache(g, Some(&disk));
    let good = std::fs::read(disk.path()).expect("the cache file is written");
    assert!(!good.is_empty());
    std::fs::write(disk.path(), b"not a pipeline cache").unwrap();
    let reopened = DiskCache::open_in(g, dir.clone()).expect("a damaged file still opens");
    twa::gpu::Kernels::with_cache(g, Some(&reopened));
    let rewritten = std::fs::read(reopened.path()).unwrap();
    assert_ne!(
        rewritten, b"not a pipeline cache",
        "the damaged file is replaced"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The tuning the kernels above ran with: the one `TWA_KERNELS` forces (CI runs this
/// file with `gpu` too), else the adapter type's.
#[test]
fn the_kernels_take_the_tuning_twa_kernels_forces() {
    use twa::gpu::{kernels::lanes, Tuning};
    let g = gpu();
    let expected = match std::env::var("TWA_KERNELS").as_deref() {
        Ok("gpu") => Tuning::Gpu,
        Ok("cpu") => Tuning::Cpu,
        _ => Tuning::of_type(g.info.device_type),
    };
    assert_eq!(g.tuning, expected);
    assert_eq!(kernels().prefer_tiled, expected == Tuning::Gpu);
    let wide = if expected == Tuning::Gpu { 256 } else { 8 };
    assert_eq!(lanes(g), wide);
    eprintln!("kernels tuned for {expected:?} on {}", g.describe());
}

/// One copy through `r`: record, submit, request the map.
fn copy_through(r: &twa::gpu::readback::AsyncReadback, src: &wgpu::Buffer) {
    let gpu = gpu();
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    assert!(r.copy_if_idle(&mut encoder, src), "idle before a copy");
    gpu.queue.submit([encoder.finish()]);
    r.after_submit();
}

/// Waits until the map requested last has completed, then takes.
fn take_after_wait(r: &twa::gpu::readback::AsyncReadback) -> Option<Vec<f32>> {
    let gpu = gpu();
    gpu.device
        .poll(wgpu::PollType::wait_indefinitely())
        .unwrap();
    r.try_take(gpu)
}

#[test]
fn a_staging_buffer_serves_many_reads_and_a_discarded_copy_is_never_taken() {
    let gpu = gpu();
    let src = gpu.storage_init(&[1.0f32, 2.0, 3.0, 4.0], "source");
    let r = twa::gpu::readback::AsyncReadback::new(gpu, 4);
    copy_through(&r, &src);
    assert_eq!(take_after_wait(&r), Some(vec![1.0, 2.0, 3.0, 4.0]));
    // A copy discarded while mapping: its values are dropped, not taken later.
    gpu.write(&src, 0, &[5.0f32, 6.0, 7.0, 8.0]);
    copy_through(&r, &src);
    r.discard();
    assert_eq!(take_after_wait(&r), None);
    // The same staging buffer then reads the current values.
    gpu.write(&src, 0, &[9.0f32, 10.0, 11.0, 12.0]);
    copy_through(&r, &src);
    assert_eq!(take_after_wait(&r), Some(vec![9.0, 10.0, 11.0, 12.0]));
    // Discarding when idle changes nothing.
    r.discard();
    copy_through(&r, &src);
    assert_eq!(take_after_wait(&r), Some(vec![9.0, 10.0, 11.0, 12.0]));
}

/// A store one storage binding long and then some (on lavapipe 128 MiB + 3001 values):
/// gradient clipping, SGD and AdamW walk it a window at a time, and the values on both
/// sides of the windows' seam, at both ends and at random places are the reference's.
#[test]
fn optimiser_steps_walk_stores_larger_than_one_binding() {
    let g = gpu();
    let binding = g.max_binding() as usize / 4;
    if binding > 1 << 27 {
        eprintln!(
            "note: this adapter binds {binding} values at once; not allocating 5 stores past it"
        );
        return;
    }
    let len = binding + 3001;
    let mut rng = rng("optimiser windows");
    let grad = random(&mut rng, len);
    let w = random(&mut rng, len);
    let mut at: Vec<usize> = (0..500).chain(binding - 500..binding + 500).collect();
    at.extend(len - 500..len);
    at.extend(sample_indices(&mut rng, len, 2000));
    let pick = |v: &[f32]| at.iter().map(|&i| v[i]).collect::<Vec<f32>>();
    let pick64 = |v: &[f64]| at.iter().map(|&i| v[i]).collect::<Vec<f64>>();
    let (lr, wd) = (0.01f32, 0.05f32);
    let step = g.uniform(
        &twa::nn::StepState {
            lr,
            ..Default::default()
        },
        "step",
    );
    // Clipped to a quarter of the gradient's norm.
    let norm = grad.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
    let gb = g.storage_init(&grad, "grads");
    let scratch = twa::nn::optim::ClipScratch::new(g, len);
    run(&twa::nn::optim::clip_norm(
        g,
        kernels(),
        len,
        (0.25 * norm) as f32,
        &gb,
        &scratch,
        &step,
    ));
    let clipped = read(&gb, len);
    let mut want = f64s(&grad);
    cpu::clip_grad_norm(&mut want, (0.25 * norm as f32) as f64);
    assert_close(
        "clipped across the seam",
        &pick(&clipped),
        &pick64(&want),
        1e-6,
        1e-4,
    );
    let hyper = twa::nn::SgdConfig {
        momentum: 0.9,
        weight_decay: wd,
    };
    // SGD's first step: v = g + wd·w, w ← w − lr·v.
    let (wb, vb) = (g.storage_init(&w, "w"), g.storage(len, "v"));
    run(&twa::nn::optim::sgd_step(
        g,
        kernels(),
        len,
        hyper,
        &gb,
        &wb,
        &vb,
        &step,
    ));
    let (mut wr, mut vr) = (f64s(&w), vec![0.0; len]);
    let g64 = f64s(&clipped);
    cpu::sgd_step(&mut wr, &mut vr, &g64, lr as f64, 0.9f32 as f64, wd as f64);
    assert_close(
        "SGD across the seam",
        &pick(&read(&wb, len)),
        &pick64(&wr),
        1e-6,
        1e-5,
    );
    drop((wb, vb));
    // AdamW's first step, its two moments in two stores.
    let (wb, m, v) = (
        g.storage_init(&w, "w"),
        g.storage(len, "m"),
        g.storage(len, "v"),
    );
    run(&twa::nn::optim::adamw_step(
        g,
        kernels(),
        len,
        hyper,
        0,
        &gb,
        &wb,
        [&m, &v],
        &step,
    ));
    let (mut wr, mut mr, mut vr) = (f64s(&w), vec![0.0; len], vec![0.0; len]);
    cpu::adamw_step(
        &mut wr,
        &mut mr,
        &mut vr,
        &g64,
        lr as f64,
        0.9f32 as f64,
        wd as f64,
        1,
    );
    assert_close(
        "AdamW m across the seam",
        &pick(&read(&m, len)),
        &pick64(&mr),
        1e-6,
        1e-5,
    );
    assert_close(
        "AdamW w across the seam",
        &pick(&read(&wb, len)),
        &pick64(&wr),
        5e-6,
        1e-4,
    );
}
