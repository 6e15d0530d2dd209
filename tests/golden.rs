//! The whole training step against PyTorch (float64 ground truth, copied from
//! shared/golden into tests/data): MLP-BN 12-16-8-5, three SGD steps (lr 0.1, momentum
//! 0.9, weight decay 1e-4) on batches of 8 — logits, loss, every gradient, the
//! parameters and running statistics after each step — then an eval-mode forward.

mod common;

use common::*;
use safetensors::SafeTensors;
use twa::nn::{Model, ModelConfig, Network, SgdConfig, StepState};

fn tensor(file: &SafeTensors, name: &str) -> Vec<f64> {
    let t = file
        .tensor(name)
        .unwrap_or_else(|_| panic!("golden tensor {name}"));
    t.data()
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn labels(file: &SafeTensors, name: &str) -> Vec<u32> {
    let t = file.tensor(name).unwrap();
    t.data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
        .collect()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

#[test]
fn three_sgd_steps_and_eval_match_pytorch() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/mlp_bn_sgd.safetensors"
    ))
    .unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let g = gpu();
    let model = Model::mlp(
        &ModelConfig {
            hidden: vec![16, 8],
            batchnorm: true,
            ..Default::default()
        },
        12,
        5,
    );
    let mut init = vec![0.0f32; model.num_params()];
    for e in &model.params.entries {
        init[e.range()].copy_from_slice(&f32s(&tensor(&file, &format!("init.{}", e.name))));
    }
    let sgd = SgdConfig {
        momentum: 0.9,
        weight_decay: 1e-4,
    };
    let mut net = Network::new(g, model.clone(), 8, &init, sgd).unwrap();
    net.prepare(g, 8);
    net.prepare(g, 6);
    let logits_buf = net.acts.last().unwrap();
    for s in 0..3 {
        let x = tensor(&file, &format!("step{s}.x"));
        g.write(&net.acts[0], 0, &f32s(&x));
        g.write(&net.labels, 0, &labels(&file, &format!("step{s}.y")));
        net.set_step(
            g,
            StepState {
                start: 0,
                step: s,
                lr: 0.1,
                seed: 0,
            },
        );
        net.reset_totals(g, true);
        let mut encoder = g.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            net.record_train_step(&mut pass, 8, &twa::nn::GradientStep::Sgd(Vec::new()));
        }
        g.queue.submit([encoder.finish()]);
        let logits: Vec<f32> = block_on(g.read(logits_buf, 0, 8 * 5)).unwrap();
        assert_close(
            &format!("step {s} logits"),
            &logits,
            &tensor(&file, &format!("step{s}.logits")),
            1e-5,
            1e-4,
        );
        let totals = block_on(net.read_totals(g, true)).unwrap();
        let loss = tensor(&file, &format!("step{s}.loss"))[0];
        assert_close(
            &format!("step {s} loss"),
            &[totals.mean_loss() as f32],
            &[loss],
            1e-6,
            1e-5,
        );
        let grads = block_on(net.read_grads(g)).unwrap();
        let params = block_on(net.read_params(g)).unwrap();
        for e in &model.params.entries {
            let want = tensor(&file, &format!("step{s}.grad.{}", e.name));
            assert_close(
                &format!("step {s} grad {}", e.name),
                &grads[e.range()],
                &want,
                1e-6,
                1e-4,
            );
            let want = tensor(&file, &format!("step{s}.after.{}", e.name));
            assert_close(
                &format!("step {s} param {}", e.name),
                &params[e.range()],
                &want,
                1e-6,
                1e-4,
            );
        }
        let state = block_on(net.read_state(g)).unwrap();
        for e in &model.state.entries {
            let want = tensor(&file, &format!("step{s}.after.{}", e.name));
            assert_close(
                &format!("step {s} {}", e.name),
                &state[e.range()],
                &want,
                1e-6,
                1e-4,
            );
        }
    }
    let x = tensor(&file, "eval.x");
    g.write(&net.acts[0], 0, &f32s(&x));
    g.write(&net.labels, 0, &[0u32; 6]);
    let mut encoder = g.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        net.record_eval(&mut pass, 6);
    }
    g.queue.submit([encoder.finish()]);
    let logits: Vec<f32> = block_on(g.read(logits_buf, 0, 6 * 5)).unwrap();
    assert_close(
        "eval logits",
        &logits,
        &tensor(&file, "eval.logits"),
        1e-5,
        1e-4,
    );
}
