//! The `twa` binary as users and scripts see it: JSON summary, metrics and weights
//! files, reproducibility, and one clear line with a non-zero exit for bad input.

mod common;

use common::cli::*;
use std::process::Command;

#[test]
fn train_writes_metrics_weights_and_json_and_is_reproducible() {
    let dir = temp_dir("train");
    write_toy_set(&dir);
    let data = dir.display().to_string();
    let run = |out: &str| {
        let out_dir = dir.join(out).display().to_string();
        let o = twa(&[
            "train", "--data", &data, "--epochs", "3", "--batch", "32", "--lr", "0.05", "--seed",
            "3", "--out", &out_dir, "--json",
        ]);
        let summary = json_summary(o);
        let metrics = std::fs::read_to_string(dir.join(out).join("metrics.jsonl")).unwrap();
        (summary, metrics)
    };
    let (summary, metrics) = run("a");
    assert_eq!(summary["epochs"], 3);
    assert!(
        summary["test_acc"].as_f64().unwrap() > 0.9,
        "toy set is learnable: {summary}"
    );
    for key in ["test_loss", "seconds", "params"] {
        assert!(summary.get(key).is_some(), "summary has {key}");
    }
    let lines: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for key in [
        "epoch",
        "lr",
        "train_loss",
        "train_acc",
        "test_loss",
        "test_acc",
        "seconds",
    ] {
        assert!(lines[2].get(key).is_some(), "metrics line has {key}");
    }
    let weights = std::fs::read(dir.join("a/model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&weights).unwrap();
    assert_eq!(file.tensor("0.weight").unwrap().shape(), &[256, 64]);
    assert_eq!(file.tensor("1.running_var").unwrap().shape(), &[256]);
    // Same seed, same adapter: the same numbers.
    let (_, again) = run("b");
    let strip = |text: &str| -> Vec<serde_json::Value> {
        text.lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("seconds");
                v
            })
            .collect()
    };
    assert_eq!(strip(&metrics), strip(&again));
}

#[test]
fn divergence_stops_with_the_step_and_a_hint() {
    let dir = temp_dir("nan");
    write_toy_set(&dir);
    let out = twa(&[
        "train",
        "--data",
        &dir.display().to_string(),
        "--epochs",
        "2",
        "--lr",
        "1e30",
        "--out",
        &dir.join("o").display().to_string(),
    ]);
    assert_fails(&out, 4, "lower learning rate");
    assert!(stderr(&out).contains("at step"), "{}", stderr(&out));
    assert!(
        !dir.join("o/model.safetensors").exists(),
        "no weights from a diverged run"
    );
}

#[test]
fn bad_input_gives_one_clear_line_and_a_non_zero_exit() {
    let dir = temp_dir("bad");
    let out_dir = dir.join("o").display().to_string();
    assert_fails(
        &twa(&["train", "--data", "/nonexistent/fashion", "--out", &out_dir]),
        1,
        "/nonexistent/fashion",
    );
    write_toy_set(&dir);
    let images = dir.join("train-images-idx3-ubyte");
    let bytes = std::fs::read(&images).unwrap();
    std::fs::write(&images, &bytes[..bytes.len() - 10]).unwrap();
    assert_fails(
        &twa(&[
            "train",
            "--data",
            &dir.display().to_string(),
            "--out",
            &out_dir,
        ]),
        1,
        "truncated",
    );
    std::fs::write(&images, b"this is not an idx file").unwrap();
    assert_fails(
        &twa(&[
            "train",
            "--data",
            &dir.display().to_string(),
            "--out",
            &out_dir,
        ]),
        1,
        "not an IDX file",
    );
    assert_fails(
        &twa(&["train", "--preset", "nope", "--out", &out_dir]),
        3,
        "unknown preset `nope`",
    );
    assert_fails(
        &twa(&["train", "--schedule", "sometimes", "--out", &out_dir]),
        2,
        "sometimes",
    );
    assert_fails(
        &twa(&["train", "--epochs", "0", "--out", &out_dir]),
        3,
        "epochs",
    );
    let file = dir.join("a-file");
    std::fs::write(&file, b"").unwrap();
    let inside_file = file.join("out").display().to_string();
    assert_fails(&twa(&["train", "--out", &inside_file]), 1, "cannot write");
    let config = dir.join("bad.toml");
    std::fs::write(&config, "[train]\nlearning_rate = 3\n").unwrap();
    assert_fails(
        &twa(&[
            "train",
            "--config",
            &config.display().to_string(),
            "--out",
            &out_dir,
        ]),
        3,
        "learning_rate",
    );
}

#[test]
fn no_adapter_is_exit_code_2_with_the_fix() {
    // A backend that does not exist on this platform leaves no adapter.
    let backend = if cfg!(target_os = "macos") {
        "dx12"
    } else {
        "metal"
    };
    let out = Command::new(env!("CARGO_BIN_EXE_twa"))
        .arg("info")
        .env("WGPU_BACKEND", backend)
        .output()
        .unwrap();
    assert_fails(&out, 2, "mesa-vulkan-drivers");
}

#[test]
fn info_lists_adapters_with_limits() {
    let out = twa(&["info"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("[0]") && text.contains("max storage binding"),
        "{text}"
    );
}

#[test]
fn sampled_history_averages_with_swa_ema_and_twa() {
    let dir = temp_dir("average");
    write_toy_set(&dir);
    let data = dir.display().to_string();
    let run_dir = dir.join("run").display().to_string();
    let o = twa(&[
        "train",
        "--data",
        &data,
        "--epochs",
        "2",
        "--batch",
        "32",
        "--lr",
        "0.05",
        "--samples-per-epoch",
        "3",
        "--out",
        &run_dir,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let history = dir.join("run/history.safetensors").display().to_string();
    let avg_dir = dir.join("avg").display().to_string();
    let o = twa(&[
        "average",
        "--history",
        &history,
        "--twa-epochs",
        "1",
        "--twa-lr",
        "0.5",
        "--out",
        &avg_dir,
        "--json",
    ]);
    let summary = json_summary(o);
    let results = summary["results"].as_array().unwrap();
    let methods: Vec<&str> = results
        .iter()
        .map(|r| r["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["swa", "ema", "twa"]);
    for r in results {
        assert!(r["test_acc"].as_f64().unwrap() > 0.9, "{r}");
        assert_eq!(
            r["alpha"].as_array().unwrap().len(),
            7,
            "w_0 + 3 × 2 samples"
        );
    }
    for name in ["swa", "ema", "twa"] {
        assert!(dir.join(format!("avg/{name}.safetensors")).is_file());
    }
    // Bad selections and files: one line, non-zero, and nothing overwritten.
    let before = std::fs::read(dir.join("avg/twa.safetensors")).unwrap();
    for (range, needle) in [
        ("5..2", "reversed"),
        ("3..3", "at least 2"),
        ("0..99", "past the last"),
    ] {
        assert_fails(
            &twa(&[
                "average",
                "--history",
                &history,
                "--range",
                range,
                "--out",
                &avg_dir,
            ]),
            3,
            needle,
        );
    }
    let not_st = dir.join("x.safetensors");
    std::fs::write(&not_st, b"hello").unwrap();
    assert_fails(
        &twa(&[
            "average",
            "--history",
            &not_st.display().to_string(),
            "--out",
            &avg_dir,
        ]),
        1,
        "not a safetensors file",
    );
    // A history over a different model: data of 4×4 instead of 8×8 pixels.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    for (prefix, n) in [("train", 40), ("t10k", 8)] {
        let pixels = (0..n * 16).map(|i| (i % 251) as u8).collect();
        write_split(
            &other,
            prefix,
            4,
            pixels,
            (0..n).map(|i| (i % 4) as u8).collect(),
        );
    }
    let err = twa(&[
        "average",
        "--history",
        &history,
        "--data",
        &other.display().to_string(),
        "--out",
        &avg_dir,
    ]);
    assert_fails(&err, 1, "does not match the model");
    assert_eq!(
        std::fs::read(dir.join("avg/twa.safetensors")).unwrap(),
        before,
        "nothing overwritten"
    );

    // The landscape of the same history through SWA, TWA and the last sample.
    let twa_weights = dir.join("avg/twa.safetensors").display().to_string();
    let land_dir = dir.join("land").display().to_string();
    let o = twa(&[
        "landscape",
        "--history",
        &history,
        "--twa",
        &twa_weights,
        "--grid",
        "9",
        "--batch",
        "100",
        "--out",
        &land_dir,
        "--json",
    ]);
    let summary = json_summary(o);
    assert_eq!(summary["plane"], "swa-twa-last");
    assert_eq!(summary["samples"].as_array().unwrap().len(), 7);
    assert_eq!(summary["swa"]["x"], 0.0);
    assert!(summary["twa"]["x"].as_f64().unwrap() > 0.0);
    let csv = std::fs::read_to_string(dir.join("land/landscape.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "i,j,x,y,loss,accuracy");
    assert_eq!(rows.len(), 1 + 81);
    for row in &rows[1..] {
        let loss: f64 = row.split(',').nth(4).unwrap().parse().unwrap();
        // (Far out a confident toy model's cross-entropy rounds to 0 in f32.)
        assert!(loss.is_finite() && loss >= 0.0, "{row}");
    }
    let png = std::fs::read(dir.join("land/landscape.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    for (args, code, needle) in [
        (vec!["--plane", "swa-twa-last"], 3, "needs the TWA point"),
        (vec!["--metric", "accuracy"], 3, "unknown metric"),
        (
            vec!["--twa", &not_st.display().to_string()],
            1,
            "not a safetensors file",
        ),
    ] {
        let mut all = vec!["landscape", "--history", &history, "--out", &land_dir];
        all.extend(args);
        assert_fails(&twa(&all), code, needle);
    }
}

#[test]
fn trains_on_a_cifar_binary_directory_and_names_a_broken_file() {
    let dir = temp_dir("cifar");
    // CIFAR-10 layout: label byte, then 3072 pixel bytes; the class sets the red plane.
    let record = |i: usize| {
        let label = (i % 10) as u8;
        let mut r = vec![label];
        r.extend((0..3072).map(|p| {
            if p < 1024 {
                label * 20
            } else {
                ((i + p) % 7) as u8
            }
        }));
        r
    };
    for b in 1..=5 {
        let bytes: Vec<u8> = (0..20).flat_map(|i| record(b * 20 + i)).collect();
        std::fs::write(dir.join(format!("data_batch_{b}.bin")), bytes).unwrap();
    }
    let test: Vec<u8> = (0..20).flat_map(record).collect();
    std::fs::write(dir.join("test_batch.bin"), &test).unwrap();
    let data = dir.display().to_string();
    let out = dir.join("run").display().to_string();
    let args = [
        "train", "--data", &data, "--epochs", "1", "--batch", "25", "--out", &out, "--json",
    ];
    let o = twa(&args);
    let summary = json_summary(o);
    // 3072 → 256 → 256 → 10 with BatchNorm.
    let params = 3072 * 256 + 256 + 2 * 256 + 256 * 256 + 256 + 2 * 256 + 256 * 10 + 10;
    assert_eq!(summary["params"], params);
    // The 28×28 grey `cnn` does not fit 32×32 colour images: one line naming the layer.
    let cnn = ["train", "--preset", "cnn", "--data", &data, "--out", &out];
    assert_fails(
        &twa(&cnn),
        3,
        "layer 0 (Conv2d 1→32 3×3 stride 1) expects 1 channels",
    );
    // A pre-activation ResNet-8 with augmentation trains on it.
    let config = dir.join("resnet.toml");
    let text = twa(&["config", "--preset", "resnet"]).stdout;
    let text = String::from_utf8(text)
        .unwrap()
        .replace("depth = 20", "depth = 8")
        .replace("width = 16", "width = 4")
        .replace("epochs = 160", "epochs = 1")
        .replace("batch = 128", "batch = 25");
    std::fs::write(&config, text).unwrap();
    let resnet = [
        "train",
        "--config",
        config.to_str().unwrap(),
        "--data",
        &data,
        "--out",
        &out,
        "--json",
    ];
    let summary = json_summary(twa(&resnet));
    assert!(summary["test_acc"].as_f64().unwrap() > 0.0, "{summary}");
    // torchvision's ResNet-18 at full width, a few steps.
    let resnet18 = [
        "train",
        "--preset",
        "resnet-18",
        "--data",
        &data,
        "--epochs",
        "1",
        "--batch",
        "25",
        "--out",
        &out,
        "--json",
    ];
    let summary = json_summary(twa(&resnet18));
    assert_eq!(summary["params"], 11_181_642, "{summary}");
    assert!(
        summary["test_loss"].as_f64().unwrap().is_finite(),
        "{summary}"
    );
    // So does the ViT preset, narrowed (24 wide in 3 heads, 2 blocks), with its
    // recipe: AdamW, warm-up, label smoothing, clipping.
    let text = twa(&["config", "--preset", "vit"]).stdout;
    let text = String::from_utf8(text)
        .unwrap()
        .replace("outputs = 192", "outputs = 24")
        .replace("outputs = 768", "outputs = 48")
        .replace("times = 6", "times = 2")
        .replace("epochs = 200", "epochs = 2")
        .replace("batch = 128", "batch = 20");
    std::fs::write(&config, text).unwrap();
    let summary = json_summary(twa(&resnet));
    let params = 3 * 16 * 24
        + 24
        + 24
        + 65 * 24
        + 2 * (4 * 24 + 24 * 72 + 72 + 24 * 24 + 24 + 24 * 48 + 48 + 48 * 24 + 24)
        + 2 * 24
        + 24 * 10
        + 10;
    assert_eq!(summary["params"], params, "{summary}");
    let loss = summary["test_loss"].as_f64().unwrap();
    assert!(loss.is_finite() && loss > 0.0, "{summary}");
    std::fs::write(dir.join("test_batch.bin"), &test[..test.len() - 1]).unwrap();
    assert_fails(&twa(&args), 1, "test_batch.bin");
}

/// `twa plan` sizes the paper's models from their architectures and splits the
/// subspace and the batch over ranks, without a GPU.
#[test]
fn plan_sizes_models_and_splits_the_subspace_over_ranks() {
    let plans = |args: &[&str]| -> serde_json::Value {
        let mut all = vec!["plan", "--json"];
        all.extend(args);
        json_summary(twa(&all))
    };
    // A network written in a config file is sized from the same description.
    let lenet = plans(&["--config", "assets/presets/lenet5.toml"]);
    assert_eq!(lenet[0]["params"], 61_706);
    assert_eq!(lenet[0]["model"], "assets/presets/lenet5.toml");
    let one = plans(&["--model", "wrn-28-10", "--samples", "100"]);
    let two = plans(&[
        "--model",
        "wrn-28-10",
        "--samples",
        "100",
        "--ranks",
        "2",
        "--bits",
        "8",
    ]);
    let (one, two) = (&one[0], &two[0]);
    // The TWA code's WideResNet28x10 on CIFAR-100 (a downsampling and 4 plain units
    // per stage: 46.2 M, where the paper's WRN-28-10 has 36.5 M).
    let d = 46_218_164u64;
    assert_eq!(one["params"], d);
    // 100 rows of D floats on one device.
    assert_eq!(one["subspace_bytes"], 100 * d * 4);
    assert_eq!(one["gradient_exchange_bytes"], 0);
    assert_eq!(two["batch_per_rank"], 64);
    assert_eq!(two["gradient_exchange_bytes"], d * 4);
    assert!(
        two["subspace_bytes"].as_u64().unwrap()
            < one["subspace_bytes"].as_u64().unwrap() / 8 + 1000
    );
    let preset = plans(&["--preset", "head"]);
    assert_eq!(preset[0]["params"], 270_346);
    assert_fails(
        &twa(&["plan", "--model", "alexnet"]),
        3,
        "unknown model `alexnet`",
    );
    assert_fails(&twa(&["plan", "--bits", "3"]), 3, "--bits 3");
}

/// A network written in a config file: LeNet-5 (assets/presets/lenet5.toml) trains on
/// the shipped subset; a preset written out by `twa config --layers` trains exactly as
/// the preset does.
#[test]
fn networks_written_as_layer_lists_train_from_their_config_files() {
    let dir = temp_dir("layer_lists");
    let lenet = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/presets/lenet5.toml");
    let out = dir.join("lenet").display().to_string();
    let summary = json_summary(twa(&[
        "train", "--config", lenet, "--epochs", "1", "--out", &out, "--json",
    ]));
    assert_eq!(summary["params"], 61_706);
    assert!(summary["test_acc"].as_f64().unwrap() > 0.6, "{summary}");

    let written = dir.join("quick-layers.toml");
    let text = twa(&["config", "--preset", "quick", "--layers"]).stdout;
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("arch = \"layers\"") && !text.contains("hidden"),
        "{text}"
    );
    std::fs::write(&written, text).unwrap();
    let run = |source: &[&str], name: &str| {
        let out = dir.join(name).display().to_string();
        let mut args = vec!["train", "--epochs", "1", "--out", &out, "--json"];
        args.extend(source);
        let summary = json_summary(twa(&args));
        (summary["test_acc"].clone(), summary["test_loss"].clone())
    };
    assert_eq!(
        run(&["--preset", "quick"], "preset"),
        run(&["--config", written.to_str().unwrap()], "listed")
    );
    let tensors = |name: &str| {
        let bytes = std::fs::read(dir.join(name).join("model.safetensors")).unwrap();
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut all: Vec<(String, Vec<u8>)> = file
            .tensors()
            .into_iter()
            .map(|(n, t)| (n, t.data().to_vec()))
            .collect();
        all.sort();
        all
    };
    assert_eq!(tensors("preset"), tensors("listed"), "the same weights");
}

/// `twa bench --loader` on a folder of 3 + 2 JPEGs of mixed sizes: every image counted,
/// a positive rate, at the side asked for.
#[test]
fn the_loader_benchmark_reads_an_image_folder() {
    let dir = temp_dir("loader");
    for (split, count) in [("train", 3), ("val", 2)] {
        for i in 0..count {
            let path = dir.join(format!("{split}/c{}/{i}.jpg", i % 2));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            image::RgbImage::from_pixel(40 + 8 * i, 30, image::Rgb([200, 90, 10]))
                .save(&path)
                .unwrap();
        }
    }
    let dir_arg = dir.display().to_string();
    let out = twa(&[
        "bench",
        "--loader",
        &dir_arg,
        "--image-size",
        "16",
        "--json",
    ]);
    let report = json_summary(out);
    assert_eq!(report["images"], 5);
    assert_eq!(report["side"], 16);
    assert!(report["images_per_s"].as_f64().unwrap() > 0.0, "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}
