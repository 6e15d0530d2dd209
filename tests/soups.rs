//! Fine-tuning from a saved model and averaging checkpoints from the command line:
//! `twa train --init`, `twa average` over several histories and model files (uniform
//! and greedy soups, TWA-v), explicit-coefficient TWA at low bits.

mod common;

use common::cli::*;
use std::path::Path;

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn tensor_values(path: &Path, name: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    bytemuck::cast_slice::<u8, f32>(file.tensor(name).unwrap().data()).to_vec()
}

#[test]
fn init_fine_tunes_a_saved_model_and_refuses_another_architecture() {
    let dir = temp_dir("init");
    let base = dir.join("base");
    json_summary(twa(&[
        "train",
        "--epochs",
        "1",
        "--out",
        &s(&base),
        "--json",
    ]));
    let model = base.join("model.safetensors");
    // A learning rate of 1e-9 leaves the weights where --init put them.
    let tuned = dir.join("tuned");
    let out = twa(&[
        "train",
        "--epochs",
        "1",
        "--lr",
        "1e-9",
        "--init",
        &s(&model),
        "--out",
        &s(&tuned),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("initialised from"));
    let (before, after) = (
        tensor_values(&model, "0.weight"),
        tensor_values(&tuned.join("model.safetensors"), "0.weight"),
    );
    let moved = before
        .iter()
        .zip(&after)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(moved < 1e-5, "weights moved by {moved}");

    let config = dir.join("wide.toml");
    let wide = twa(&["config", "--preset", "quick"]);
    let text = String::from_utf8(wide.stdout)
        .unwrap()
        .replace("hidden = [\n    256,\n    256,\n]", "hidden = [32]");
    assert!(
        text.contains("hidden = [32]"),
        "the preset's hidden layers: {text}"
    );
    std::fs::write(&config, text).unwrap();
    assert_fails(
        &twa(&[
            "train",
            "--config",
            &s(&config),
            "--init",
            &s(&model),
            "--out",
            &s(&dir.join("x")),
        ]),
        1,
        "`0.weight` is [256, 784], the model needs [32, 784]",
    );
    assert_fails(
        &twa(&[
            "train",
            "--init",
            &s(&dir.join("none.safetensors")),
            "--out",
            &s(&dir.join("y")),
        ]),
        1,
        "none.safetensors",
    );
}

#[test]
fn soups_of_model_files_and_twa_over_several_histories() {
    let dir = temp_dir("soups");
    let base = dir.join("base");
    json_summary(twa(&[
        "train",
        "--epochs",
        "2",
        "--out",
        &s(&base),
        "--json",
    ]));
    let init = base.join("model.safetensors");
    let mut models = Vec::new();
    for (i, lr) in ["0.02", "0.05", "0.1"].iter().enumerate() {
        let out = dir.join(format!("ft{i}"));
        let args = [
            "train",
            "--epochs",
            "1",
            "--lr",
            lr,
            "--seed",
            &(i + 2).to_string(),
            "--init",
            &s(&init),
            "--samples-per-epoch",
            "2",
            "--out",
            &s(&out),
        ];
        assert!(twa(&args).status.success());
        models.push(out);
    }
    let mut args = vec!["average".to_string()];
    for m in &models {
        args.extend(["--model".into(), s(&m.join("model.safetensors"))]);
    }
    let soup_dir = dir.join("soup");
    args.extend(["--val", "500", "--out", &s(&soup_dir), "--json"].map(String::from));
    let args: Vec<&str> = args.iter().map(|a| a.as_str()).collect();
    let summary = json_summary(twa(&args));
    let methods: Vec<&str> = summary["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["uniform-soup", "ema", "greedy-soup", "twa-v"]);
    let log = summary["greedy_soup"].as_array().unwrap();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0]["kept"], true, "the best ingredient starts the soup");
    let ranked: Vec<f64> = log.iter().map(|i| i["val_acc"].as_f64().unwrap()).collect();
    assert!(
        ranked.windows(2).all(|w| w[0] >= w[1]),
        "ranked by validation accuracy: {ranked:?}"
    );
    let greedy = &summary["results"][2];
    let alpha: Vec<f64> = greedy["alpha"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_f64().unwrap())
        .collect();
    let kept = log.iter().filter(|i| i["kept"] == true).count();
    assert!(alpha
        .iter()
        .all(|&a| a == 0.0 || (a - 1.0 / kept as f64).abs() < 1e-12));
    assert!(summary["splits"]["greedy_soup"]
        .as_str()
        .unwrap()
        .contains("validation"));
    assert!(soup_dir.join("greedy-soup.safetensors").is_file());

    // The greedy soup never looks at the test split: without --val it is refused.
    let model0 = s(&models[0].join("model.safetensors"));
    let model1 = s(&models[1].join("model.safetensors"));
    assert_fails(
        &twa(&[
            "average", "--model", &model0, "--model", &model1, "--method", "greedy",
        ]),
        3,
        "give --val N",
    );

    // Two histories' samples (3 each) with explicit per-layer 4-bit coefficients.
    let h0 = s(&models[0].join("history.safetensors"));
    let h1 = s(&models[1].join("history.safetensors"));
    let summary = json_summary(twa(&[
        "average",
        "--history",
        &h0,
        "--history",
        &h1,
        "--method",
        "twa",
        "--coefficients",
        "layer",
        "--bits",
        "4",
        "--out",
        &s(&dir.join("explicit")),
        "--json",
    ]));
    let twa_row = &summary["results"][0];
    assert_eq!(twa_row["alpha"].as_array().unwrap().len(), 6);
    let blocks = twa_row["alpha_per_block"].as_array().unwrap();
    assert_eq!(
        blocks.len(),
        5,
        "two Linear+BatchNorm pairs and the last Linear"
    );
    assert!(twa_row["test_acc"].as_f64().unwrap() > 0.5);
    assert!(summary["samples"]
        .as_str()
        .unwrap()
        .starts_with("6 samples"));
    assert_fails(
        &twa(&[
            "average",
            "--history",
            &h0,
            "--history",
            &h1,
            "--range",
            "0..1",
        ]),
        3,
        "--range selects samples of one history",
    );
    assert_fails(
        &twa(&["average", "--history", &h0, "--bits", "4"]),
        3,
        "need explicit coefficients",
    );
    assert_fails(&twa(&["average"]), 3, "nothing to average");
}

/// `--val N` keeps N training samples out of SGD; `twa average` then trains TWA-v on
/// them by default, and `twa run` reports TWA-v.
#[test]
fn held_out_samples_are_never_trained_on_and_twa_v_uses_them() {
    let dir = temp_dir("holdout");
    let run = dir.join("run");
    let out = twa(&[
        "train",
        "--epochs",
        "1",
        "--val",
        "1000",
        "--samples-per-epoch",
        "2",
        "--out",
        &s(&run),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("(9000 train,"), "{err}");
    assert!(err.contains("1000 training samples held out"), "{err}");
    let summary = json_summary(twa(&[
        "average",
        "--history",
        &s(&run.join("history.safetensors")),
        "--method",
        "twa",
        "--out",
        &s(&dir.join("avg")),
        "--json",
    ]));
    assert_eq!(summary["results"][0]["method"], "twa-v");
    assert!(summary["splits"]["twa_coefficients"]
        .as_str()
        .unwrap()
        .contains("1000 held-out"));
    assert!(summary["splits"]["batchnorm"]
        .as_str()
        .unwrap()
        .contains("9000"));

    let spirals = json_summary(twa(&[
        "run",
        "--preset",
        "spirals",
        "--val",
        "300",
        "--out",
        &s(&dir.join("spirals")),
        "--json",
    ]));
    let methods: Vec<&str> = spirals["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["method"].as_str().unwrap())
        .collect();
    assert!(methods.contains(&"TWA-v"), "{methods:?}");
}
