//! Whole conv nets against the CPU reference: one training step of `cnn` (28×28) and
//! of a pre-activation ResNet-8 (with its residual additions, 1×1 shortcut
//! convolutions and global pooling) on a small random batch — the loss, every
//! parameter gradient and the updated parameters. (Shape errors: `nn::model`'s unit
//! tests and the CLI test.)

mod common;

use common::*;
use twa::nn::architecture::Arch;
use twa::nn::model::Shape;
use twa::nn::spec::{ConvSpec, LayerSpec, Width};
use twa::nn::{Model, ModelConfig, Network, Optimizer, SgdConfig, StepState, UpdateRule};
use twa::reference as cpu;

/// One GPU training step of `model` vs the reference forward/backward and SGD step;
/// with `gpu_kernels` the kernels a GPU gets (tiled products, split-K weight
/// gradients) whatever the adapter.
fn check_step(name: &str, model: Model, batch: usize, gpu_kernels: bool) {
    let rule = SgdConfig {
        momentum: 0.9,
        weight_decay: 1e-4,
    };
    check_step_with(name, model, batch, gpu_kernels, rule.into());
}

/// One training step of `net` (prepared for `batch`, its input and labels written) at
/// `state`: its totals.
fn train_step(net: &Network, batch: usize, state: StepState) -> twa::nn::Totals {
    let g = gpu();
    net.set_step(g, state);
    net.reset_totals(g, true);
    let mut encoder = g.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        net.record_train_step(&mut pass, batch, &twa::nn::GradientStep::Sgd(Vec::new()));
    }
    g.queue.submit([encoder.finish()]);
    block_on(net.read_totals(g, true)).unwrap()
}

/// [`check_step`] with the update `rule` (SGD or AdamW, clipped or not).
fn check_step_with(name: &str, model: Model, batch: usize, gpu_kernels: bool, rule: UpdateRule) {
    let mut rng = rng(name);
    let g = gpu();
    let init = model.init_params(rng.below(1000) as u64);
    let x = random(&mut rng, batch * model.input.len());
    let labels: Vec<u32> = (0..batch)
        .map(|_| rng.below(model.classes) as u32)
        .collect();
    let lr = 0.05;
    let (momentum, wd) = (rule.hyper.momentum, rule.hyper.weight_decay);
    let mut net = Network::new(g, model.clone(), batch, &init, rule).unwrap();
    net.kernels.prefer_tiled |= gpu_kernels;
    net.prepare(g, batch);
    g.write(&net.acts[0], 0, &x);
    g.write(&net.labels, 0, &labels);
    // A step in the middle of an epoch, so that dropout's masks depend on all of it.
    let state = StepState {
        start: 13,
        step: 57,
        lr,
        seed: 3,
    };
    let totals = train_step(&net, batch, state);
    let grads = block_on(net.read_grads(g)).unwrap();
    let params = block_on(net.read_params(g)).unwrap();

    let p = f64s(&init);
    let acts = cpu::model_forward(&model, &p, &f64s(&x), batch, Some(&state));
    let (loss, _, _) = cpu::cross_entropy(acts.last().unwrap(), &labels, model.classes);
    assert_close(
        &format!("{name} loss"),
        &[totals.mean_loss() as f32],
        &[loss / batch as f64],
        1e-5,
        1e-4,
    );
    // The backward from the device's own forward activations: where an f32 value
    // sits at a ReLU's 0 or ties a max-pool window, f32 and f64 may route the gradient
    // differently, which is no error of the backward kernels. (A BatchNorm fused with
    // its ReLU never stores its own output: the reference's stands in.)
    let device_acts: Vec<Vec<f64>> = (0..=model.layers.len())
        .map(|i| match net.keeps_activation(i) {
            true => f64s(
                &block_on(g.read::<f32>(&net.acts[i], 0, batch * model.act_shape(i).len()))
                    .unwrap(),
            ),
            false => acts[i].clone(),
        })
        .collect();
    let (_, _, dlogits) = cpu::cross_entropy(device_acts.last().unwrap(), &labels, model.classes);
    let mut want = cpu::model_backward(&model, &p, &device_acts, &dlogits, batch, &state);
    if rule.clip_norm > 0.0 {
        // The device's gradient is left clipped.
        let factor = cpu::clip_grad_norm(&mut want, rule.clip_norm as f64);
        assert!(
            factor < 1.0,
            "{name}: the gradient is not clipped ({factor})"
        );
    }
    // Each gradient to 2e-3 relative, and absolutely to 1e-5 plus 1e-3 of its tensor's
    // largest magnitude: a value summed from many terms that cancel (a stem's
    // BatchNorm bias in ResNet-50, its true value ≈ 0) carries the f32 rounding of
    // those terms, not of the small result. (With a fixed 1e-5 the random draws
    // failed about one run in seven, always in the deepest networks' stems.)
    for e in &model.params.entries {
        let want = &want[e.range()];
        let largest = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert_close(
            &format!("{name} grad {}", e.name),
            &grads[e.range()],
            want,
            1e-5 + 1e-3 * largest,
            2e-3,
        );
    }
    // The step from the device's own gradients (compared above).
    let (mut w, mut v, mut m) = (p.clone(), vec![0.0; p.len()], vec![0.0; p.len()]);
    let (lr, momentum, wd, g) = (lr as f64, momentum as f64, wd as f64, f64s(&grads));
    match rule.optimizer {
        Optimizer::Sgd => cpu::sgd_step(&mut w, &mut v, &g, lr, momentum, wd),
        // AdamW's bias correction counts from global step 0: this is step 58.
        Optimizer::Adamw => cpu::adamw_step(&mut w, &mut m, &mut v, &g, lr, momentum, wd, 58),
    }
    assert_close(
        &format!("{name} parameters after the step"),
        &params,
        &w,
        1e-5,
        1e-4,
    );
}

#[test]
fn cnn_training_step_matches_the_cpu_reference() {
    let config = ModelConfig {
        arch: Arch::Cnn,
        ..Default::default()
    };
    let model = Model::build(&config, Shape::image(28, 28, 1), 10).unwrap();
    check_step("cnn", model, 6, false);
}

/// The cnn step with a GPU's kernels: conv1's and conv2's weight gradients (K = 4704
/// and 1176) are split-K products.
#[test]
fn cnn_training_step_with_gpu_kernels_matches_the_cpu_reference() {
    let config = ModelConfig {
        arch: Arch::Cnn,
        ..Default::default()
    };
    let model = Model::build(&config, Shape::image(28, 28, 1), 10).unwrap();
    check_step("cnn (GPU kernels)", model, 6, true);
}

#[test]
fn resnet8_training_step_matches_the_cpu_reference() {
    let config = ModelConfig {
        arch: Arch::Resnet,
        depth: 8,
        width: 4,
        ..Default::default()
    };
    let model = Model::build(&config, Shape::image(8, 8, 3), 5).unwrap();
    check_step("resnet8", model, 4, false);
}

/// A network from a config's layer list.
fn from_layers(toml_list: &str, input: Shape, classes: usize) -> Model {
    let text = format!("[model]\narch = \"layers\"\nlayers = {toml_list}\n");
    let config = twa::run::config::RunConfig::from_toml(&text, "test").unwrap();
    Model::build(&config.model, input, classes).unwrap()
}

/// LeNet-5 as the shipped preset writes it: 5×5 convolutions with biases, one padded.
#[test]
fn lenet5_from_its_layer_list_steps_as_the_cpu_reference() {
    let config = twa::run::config::RunConfig::preset("lenet5").unwrap();
    let model = Model::build(&config.model, Shape::image(28, 28, 1), 10).unwrap();
    assert_eq!(model.num_params(), 61_706);
    check_step("lenet5", model, 3, false);
}

/// Layers the presets do not use: a 7×7 stride-2 convolution with bias, ResNet's
/// padded stem pool (3, stride 2, padding 1), a 1×1 stride-2 convolution in a shortcut
/// read from the block's input, a padded average pool, dropout and GELU.
#[test]
fn a_layer_list_with_strided_pools_and_large_kernels_steps_as_the_cpu_reference() {
    let model = from_layers(
        r#"[
            { conv = { outputs = 4, kernel = 7, stride = 2, padding = 3 } },
            "batchnorm",
            "relu",
            { max_pool = { kernel = 3, stride = 2, padding = 1 } },
            { residual = { body = [
                { conv = { outputs = 6, kernel = 3, stride = 2, padding = 1, bias = false } },
                "batchnorm",
                "relu",
            ], shortcut = [
                { conv = { outputs = 6, kernel = 1, stride = 2 } },
            ] } },
            { avg_pool = { kernel = 3, stride = 2, padding = 1 } },
            "flatten",
            { dropout = { p = 0.5 } },
            { linear = { outputs = 12 } },
            "gelu",
            { linear = { outputs = "classes" } },
        ]"#,
        Shape::image(18, 18, 3),
        4,
    );
    // 18 → conv/2 → 9 → pool 3/2 (+1) → 5 → block /2 → 3 → avg 3/2 (+1) → 2.
    assert_eq!(model.act_shape(4), Shape::image(5, 5, 4));
    assert_eq!(model.act_shape(10), Shape::image(2, 2, 6));
    check_step("layer list", model, 3, false);
}

/// `list` with every width divided by `by` (at least 1) and every repeat once: the
/// same architecture, small enough for the f64 reference.
fn narrowed(list: &[LayerSpec], by: usize) -> Vec<LayerSpec> {
    list.iter()
        .map(|spec| match spec.clone() {
            LayerSpec::Conv(conv) => LayerSpec::Conv(ConvSpec {
                outputs: (conv.outputs / by).max(1),
                ..conv
            }),
            LayerSpec::Linear {
                outputs: Width::Count(n),
                inputs,
            } => LayerSpec::Linear {
                outputs: Width::Count((n / by).max(1)),
                inputs,
            },
            LayerSpec::PatchEmbed { outputs, patch } => LayerSpec::PatchEmbed {
                outputs: (outputs / by).max(1),
                patch,
            },
            LayerSpec::Residual {
                body,
                shortcut_from,
                shortcut,
            } => LayerSpec::Residual {
                body: narrowed(&body, by),
                shortcut_from,
                shortcut: narrowed(&shortcut, by),
            },
            LayerSpec::Repeat { layers, .. } => LayerSpec::Repeat {
                times: 1,
                layers: narrowed(&layers, by),
            },
            other => other,
        })
        .collect()
}

/// The paper's networks, narrowed, on 32×32 colour images: one training step of each
/// as the f64 reference takes it (ResNets: the ImageNet stem, whose last stage is 1×1,
/// so that BatchNorm there normalises over the batch alone: 4 samples keep it
/// well-conditioned; WRN: dropout; the ViT: 65 tokens of 12 features in heads of 4).
#[test]
fn the_paper_networks_step_as_the_cpu_reference() {
    for (name, by, batch) in [
        ("vgg16-bn", 16, 2),
        ("preresnet-164", 4, 2),
        ("wrn-28-10", 40, 2),
        ("resnet-18", 16, 4),
        ("resnet-50", 16, 4),
        ("vit", 16, 2),
    ] {
        let mut config = twa::run::config::RunConfig::preset(name).unwrap().model;
        config.layers = narrowed(&config.layers, by);
        // PyTorch's initialisation: WRN-28-10's zero classifier would leave every
        // other gradient zero, and the comparison empty.
        config.init = twa::nn::model::Init::Pytorch;
        let model = Model::build(&config, Shape::image(32, 32, 3), 5).unwrap();
        check_step(name, model, batch, false);
    }
}

/// LeNet-5 trained by AdamW with its gradient clipped to a norm of 0.05 (below the
/// step's): the clipped gradient and the update as the reference computes them.
#[test]
fn an_adamw_step_with_a_clipped_gradient_matches_the_cpu_reference() {
    let config = twa::run::config::RunConfig::preset("lenet5").unwrap();
    let model = Model::build(&config.model, Shape::image(28, 28, 1), 10).unwrap();
    let rule = UpdateRule {
        optimizer: Optimizer::Adamw,
        hyper: SgdConfig {
            momentum: 0.9,
            weight_decay: 0.05,
        },
        clip_norm: 0.05,
    };
    check_step_with("lenet5 (AdamW, clipped)", model, 3, false, rule);
}

/// WRN-28-10 at full width (46.2 M parameters, 185 MB: more than one storage binding
/// on lavapipe, whose largest is 128 MiB) takes a training step on two 32×32 images:
/// every layer's parameters are bound through a window of the stores and SGD walks
/// them a window at a time. The loss is that of a fresh 100-class network, every
/// parameter tensor gets a gradient, and the step is SGD's (first step: v = g + wd·w,
/// w ← w − lr·v) on every parameter, across the windows' seams.
#[test]
fn wrn_28_10_at_full_width_steps_with_stores_larger_than_one_binding() {
    let g = gpu();
    // PyTorch's initialisation: the preset's zero classifier would stop every
    // gradient but its own at the first step.
    let config = ModelConfig {
        init: twa::nn::model::Init::Pytorch,
        ..twa::run::config::RunConfig::preset("wrn-28-10")
            .unwrap()
            .model
    };
    let model = Model::build(&config, Shape::image(32, 32, 3), 100).unwrap();
    let d = model.num_params();
    assert_eq!(d, 46_218_164);
    if (d * 4) as u64 <= g.max_binding() {
        eprintln!(
            "note: this adapter binds {} bytes at once: no windows needed",
            g.max_binding()
        );
    }
    let mut rng = rng("wrn full width");
    let init = model.init_params(7);
    let batch = 2;
    let x = random(&mut rng, batch * model.input.len());
    let labels = [3u32, 71];
    let (lr, wd) = (0.05f32, 5e-4f32);
    let rule = SgdConfig {
        momentum: 0.9,
        weight_decay: wd,
    };
    let net = Network::new(g, model.clone(), batch, &init, rule);
    let mut net = net.unwrap();
    net.prepare(g, batch);
    g.write(&net.acts[0], 0, &x);
    g.write(&net.labels, 0, &labels);
    let state = StepState {
        lr,
        ..Default::default()
    };
    let totals = train_step(&net, batch, state);
    let loss = totals.mean_loss();
    assert!((loss - 100f64.ln()).abs() < 1.0, "loss {loss}");
    let grads = block_on(net.read_grads(g)).unwrap();
    let params = block_on(net.read_params(g)).unwrap();
    for e in &model.params.entries {
        let got = &grads[e.range()];
        assert!(
            got.iter().all(|v| v.is_finite()) && got.iter().any(|&v| v != 0.0),
            "{}: no gradient",
            e.name
        );
    }
    let mut worst = 0.0f64;
    for i in 0..d {
        let (w, gr) = (init[i] as f64, grads[i] as f64);
        let want = w - lr as f64 * (gr + wd as f64 * w);
        worst = worst.max((params[i] as f64 - want).abs() / (1e-6 + 1e-5 * want.abs()));
    }
    assert!(worst <= 1.0, "SGD step off by {worst} × the tolerance");
}
