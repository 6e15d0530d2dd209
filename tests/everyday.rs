//! Everyday use of the binary: a killed, interrupted or terminated run resumes to the
//! same numbers and files as an uninterrupted one, two runs never share an output
//! directory, saved models are evaluated again, a trajectory
//! saved by PyTorch is imported and averaged, corrupt labels are named, and headless
//! commands print no display noise.

mod common;

use common::cli::*;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_twa"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start twa")
}

/// Lines of `OUT/metrics.jsonl` (0 while it does not exist).
fn metric_lines(out: &Path) -> usize {
    std::fs::read_to_string(out.join("metrics.jsonl")).map_or(0, |t| t.lines().count())
}

/// Wait until `out` has `lines` metric lines, then SIGKILL `child`, which must still be
/// running then.
fn kill_after(mut child: Child, out: &Path, lines: usize) {
    let started = Instant::now();
    while metric_lines(out) < lines {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(started.elapsed() < Duration::from_secs(300), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run finished before the kill: nothing was tested"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A JSON-lines or JSON file with every wall-clock `seconds` field removed (the only
/// values that may differ between two runs).
fn without_seconds(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut values = Vec::new();
    for line in text.lines() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        strip_seconds(&mut v);
        values.push(v.to_string());
    }
    values.join("\n")
}

fn strip_seconds(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            map.remove("seconds");
            map.values_mut().for_each(strip_seconds);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_seconds),
        _ => {}
    }
}

#[track_caller]
fn assert_same_file(a: &Path, b: &Path) {
    assert!(
        std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
        "{} and {} differ",
        a.display(),
        b.display()
    );
}

/// A run with every training option a recipe may set — AdamW, gradient clipping,
/// label smoothing, warm-up, dropout, GELU — killed mid-run resumes to the files of an
/// uninterrupted one (AdamW's moments and dropout's masks included).
#[test]
fn killed_training_with_every_training_option_resumes_bit_for_bit() {
    let dir = temp_dir("resume-options");
    let config = dir.join("options.toml");
    std::fs::write(
        &config,
        r#"[model]
arch = "layers"
layers = [
    { linear = { outputs = 64 } },
    "gelu",
    { dropout = { p = 0.3 } },
    { linear = { outputs = "classes" } },
]

[train]
epochs = 4
optimizer = "adamw"
lr = 0.002
weight_decay = 0.01
clip_grad_norm = 0.5
label_smoothing = 0.1
warmup_epochs = 1
schedule = "cosine"
"#,
    )
    .unwrap();
    let (whole, killed) = (dir.join("whole"), dir.join("killed"));
    let (whole_s, killed_s) = (whole.display().to_string(), killed.display().to_string());
    let args = ["train", "--config", config.to_str().unwrap()];
    let out = twa(&[&args[..], &["--out", &whole_s]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    kill_after(
        spawn(&[&args[..], &["--out", &killed_s]].concat()),
        &killed,
        2,
    );
    let saved =
        twa::run::checkpoint::Checkpoint::load(&killed.join("checkpoint.safetensors")).unwrap();
    assert_eq!(saved.trainer.velocity.len(), 2 * saved.trainer.params.len());
    let out = twa(&[&args[..], &["--resume", &killed_s]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_file(
        &whole.join("model.safetensors"),
        &killed.join("model.safetensors"),
    );
    assert_eq!(
        without_seconds(&whole.join("metrics.jsonl")),
        without_seconds(&killed.join("metrics.jsonl"))
    );
}

#[test]
fn killed_training_resumes_bit_for_bit() {
    let dir = temp_dir("resume-train");
    let (whole, killed) = (dir.join("whole"), dir.join("killed"));
    let (whole_s, killed_s) = (whole.display().to_string(), killed.display().to_string());
    let args = ["train", "--epochs", "4", "--samples-per-epoch", "2"];
    let out = twa(&[&args[..], &["--out", &whole_s]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    kill_after(
        spawn(&[&args[..], &["--out", &killed_s]].concat()),
        &killed,
        2,
    );
    assert!(killed.join("checkpoint.safetensors").is_file());
    assert!(!killed.join("model.safetensors").exists());
    let out = twa(&[&args[..], &["--resume", &killed_s]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("resuming at epoch"),
        "{}",
        stderr(&out)
    );
    assert_same_file(
        &whole.join("model.safetensors"),
        &killed.join("model.safetensors"),
    );
    assert_same_file(
        &whole.join("history.safetensors"),
        &killed.join("history.safetensors"),
    );
    assert_eq!(
        without_seconds(&whole.join("metrics.jsonl")),
        without_seconds(&killed.join("metrics.jsonl"))
    );
    assert!(
        !killed.join("checkpoint.safetensors").exists(),
        "a finished run keeps no checkpoint"
    );
    // Resuming a finished run (a scheduler's retry) finds its files and does nothing.
    let model = std::fs::read(killed.join("model.safetensors")).unwrap();
    let out = twa(&[&args[..], &["--resume", &killed_s]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("has finished"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(killed.join("model.safetensors")).unwrap(),
        model
    );
}

/// Run the pipeline `args` whole and once more SIGKILLed after `lines` epochs (which
/// must fall in `phase`), resume the latter: the same files and metrics.
fn pipeline_resumes_bit_for_bit(name: &str, args: &[&str], lines: usize, phase: &str) {
    let dir = temp_dir(name);
    let (whole, killed) = (dir.join("whole"), dir.join("killed"));
    let (whole_s, killed_s) = (whole.display().to_string(), killed.display().to_string());
    let out = twa(&[args, &["--out", &whole_s]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    kill_after(
        spawn(&[args, &["--out", &killed_s]].concat()),
        &killed,
        lines,
    );
    let saved =
        twa::run::checkpoint::Checkpoint::load(&killed.join("checkpoint.safetensors")).unwrap();
    assert_eq!(saved.progress.phase, phase, "killed while sampling");
    assert!(!saved.trainer.sample_infos.is_empty());
    let out = twa(&[args, &["--resume", &killed_s]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    for file in [
        "history.safetensors",
        "swa.safetensors",
        "twa.safetensors",
        "twa_alpha.json",
    ] {
        assert_same_file(&whole.join(file), &killed.join(file));
    }
    for file in ["metrics.jsonl", "results.json"] {
        assert_eq!(
            without_seconds(&whole.join(file)),
            without_seconds(&killed.join(file)),
            "{file}"
        );
    }
}

#[test]
fn spirals_pipeline_killed_during_sampling_resumes_bit_for_bit() {
    pipeline_resumes_bit_for_bit("resume-head", &["run", "--preset", "spirals"], 3, "sgd");
}

#[test]
fn tail_pipeline_killed_in_the_swa_phase_resumes_bit_for_bit() {
    // The spirals data with the tail stage: 6 SGD epochs, then 4 SWA-phase epochs.
    let dir = temp_dir("tail-config");
    let out = twa(&["config", "--preset", "spirals"]);
    let text = String::from_utf8(out.stdout)
        .unwrap()
        .replace("stage = \"head\"", "stage = \"tail\"")
        .replace("epochs = 20", "epochs = 6")
        .replace("swa_epochs = 10", "swa_epochs = 4");
    let config = dir.join("tail.toml");
    std::fs::write(&config, text).unwrap();
    let config = config.display().to_string();
    pipeline_resumes_bit_for_bit("resume-tail", &["run", "--config", &config], 8, "swa-phase");
}

#[cfg(unix)]
#[test]
fn ctrl_c_saves_mid_epoch_exits_130_and_resumes_bit_for_bit() {
    stop_saves_mid_epoch_and_resumes_bit_for_bit("INT");
}

/// What Slurm and other schedulers send before SIGKILL (time limit, pre-emption).
#[cfg(unix)]
#[test]
fn sigterm_saves_mid_epoch_like_ctrl_c() {
    stop_saves_mid_epoch_and_resumes_bit_for_bit("TERM");
}

/// Send `signal` to a run within its second epoch: it saves a checkpoint at the step
/// reached, exits 130 with the command that continues it, and that command finishes
/// with the files of an uninterrupted run.
#[cfg(unix)]
fn stop_saves_mid_epoch_and_resumes_bit_for_bit(signal: &str) {
    let dir = temp_dir(&format!("stop-{signal}"));
    let (whole, stopped) = (dir.join("whole"), dir.join("stopped"));
    let (whole_s, stopped_s) = (whole.display().to_string(), stopped.display().to_string());
    let args = ["train", "--epochs", "3", "--batch", "16"];
    let out = twa(&[&args[..], &["--out", &whole_s]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let child = spawn(&[&args[..], &["--out", &stopped_s]].concat());
    while metric_lines(&stopped) < 1 {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(150));
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(130), "{err}");
    let program = env!("CARGO_BIN_EXE_twa");
    assert!(
        err.contains(&format!(
            "{program} train --epochs 3 --batch 16 --resume {stopped_s}"
        )),
        "prints the resume command, with the program as it was started: {err}"
    );
    let saved =
        twa::run::checkpoint::Checkpoint::load(&stopped.join("checkpoint.safetensors")).unwrap();
    assert!(
        saved.trainer.step > 0,
        "stopped within an epoch, at step {} of epoch {}",
        saved.trainer.step,
        saved.trainer.epoch + 1
    );
    // The same run with another configuration is refused, naming the difference.
    assert_fails(
        &twa(&[
            "train", "--epochs", "5", "--batch", "16", "--resume", &stopped_s,
        ]),
        3,
        "train.epochs 3 there, 5 now",
    );
    let out = twa(&[&args[..], &["--resume", &stopped_s]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_file(
        &whole.join("model.safetensors"),
        &stopped.join("model.safetensors"),
    );
    assert_eq!(
        without_seconds(&whole.join("metrics.jsonl")),
        without_seconds(&stopped.join("metrics.jsonl"))
    );
}

/// A run SIGKILLed at moments spread over its whole life — before its first epoch,
/// within and at the end of each epoch, during its final writes — is always brought
/// to the uninterrupted run's files by `--resume`: from its checkpoint, from the
/// beginning when none was saved yet, or (finished already) as it is. Nothing of the
/// killed processes (temporaries, the lock) is left behind.
#[cfg(unix)]
#[test]
fn a_run_killed_at_any_moment_resumes_to_the_same_files() {
    let dir = temp_dir("kill-anywhere");
    let whole = dir.join("whole");
    let args = ["train", "--epochs", "2", "--samples-per-epoch", "2"];
    let out = twa(&[&args[..], &["--out", &whole.display().to_string()]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    // (metric lines to wait for, then milliseconds to wait): 0 lines = from the start.
    let mut moments: Vec<(usize, u64)> = vec![(0, 30), (0, 400)];
    moments.extend([0, 3, 20, 60, 150].map(|ms| (1, ms)));
    moments.extend([0, 1, 2, 5, 10, 20, 35, 50, 80, 120, 200, 400].map(|ms| (2, ms)));
    let mut outcomes: HashMap<&str, usize> = HashMap::new();
    for (i, &(lines, ms)) in moments.iter().enumerate() {
        let killed = dir.join(format!("killed{i}"));
        let killed_s = killed.display().to_string();
        let mut child = spawn(&[&args[..], &["--out", &killed_s]].concat());
        let started = Instant::now();
        while metric_lines(&killed) < lines && child.try_wait().unwrap().is_none() {
            assert!(started.elapsed() < Duration::from_secs(300), "no progress");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(ms));
        let _ = child.kill();
        child.wait().unwrap();
        let outcome = match (
            killed.is_dir(),
            killed.join("checkpoint.safetensors").is_file(),
            killed.join("model.safetensors").is_file(),
        ) {
            (false, _, _) => "not started",
            (true, true, _) => "checkpoint",
            (true, false, true) => "finished",
            (true, false, false) => "nothing saved yet",
        };
        *outcomes.entry(outcome).or_default() += 1;
        // The second epoch's line comes after the first epoch's checkpoint: from then
        // on a checkpoint or the finished files are always there.
        assert!(
            metric_lines(&killed) < 2 || outcome == "checkpoint" || outcome == "finished",
            "killed {ms} ms after {lines} epoch line(s): {outcome}"
        );
        // A run killed before it made its directory is started again, not resumed.
        let again = if outcome == "not started" {
            "--out"
        } else {
            "--resume"
        };
        let out = twa(&[&args[..], &[again, &killed_s]].concat());
        let err = stderr(&out);
        let when = format!("killed {ms} ms after {lines} epoch line(s) ({outcome})");
        assert!(out.status.success(), "{when}: {err}");
        if outcome == "finished" {
            assert!(err.contains("has finished"), "{when}: {err}");
        }
        for file in ["model.safetensors", "history.safetensors"] {
            assert_same_file(&whole.join(file), &killed.join(file));
        }
        assert_eq!(
            without_seconds(&whole.join("metrics.jsonl")),
            without_seconds(&killed.join("metrics.jsonl")),
            "{when}"
        );
        let mut left: Vec<String> = std::fs::read_dir(&killed)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["history.safetensors", "metrics.jsonl", "model.safetensors"],
            "{when}"
        );
    }
    eprintln!("kills by what they left: {outcomes:?}");
    assert!(
        outcomes.get("checkpoint").copied().unwrap_or(0) >= 5,
        "{outcomes:?}"
    );
}

/// A second run writing into the same --out is refused while the first runs, naming
/// it; once the first is gone the directory is free again.
#[cfg(unix)]
#[test]
fn a_second_run_on_the_same_out_is_refused() {
    let dir = temp_dir("lock");
    let out_dir = dir.join("o");
    let out_s = out_dir.display().to_string();
    let mut first = spawn(&["train", "--epochs", "3", "--out", &out_s]);
    let started = Instant::now();
    while !out_dir.join(".twa.lock").exists() {
        assert!(started.elapsed() < Duration::from_secs(60), "no lock taken");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The holder writes its name into the lock right after taking it.
    std::thread::sleep(Duration::from_millis(200));
    let second = twa(&["train", "--epochs", "1", "--out", &out_s]);
    let pid = first.id();
    first.kill().unwrap();
    first.wait().unwrap();
    assert_fails(&second, 3, &format!("is in use by process {pid}"));
    let third = twa(&["train", "--epochs", "1", "--out", &out_s]);
    assert!(third.status.success(), "{}", stderr(&third));
}

#[test]
fn eval_reports_the_training_accuracy_per_class_and_a_confusion_matrix() {
    let dir = temp_dir("eval");
    let run = dir.join("run");
    let run_s = run.display().to_string();
    let trained = json_summary(twa(&["train", "--epochs", "2", "--out", &run_s, "--json"]));
    let model = run.join("model.safetensors");
    let report = dir.join("eval");
    let evaluated = json_summary(twa(&[
        "eval",
        "--model",
        &model.display().to_string(),
        "--out",
        &report.display().to_string(),
        "--json",
    ]));
    assert_eq!(evaluated["test_acc"], trained["test_acc"]);
    assert_eq!(evaluated["test_loss"], trained["test_loss"]);
    let csv = std::fs::read_to_string(report.join("confusion.csv")).unwrap();
    let rows: Vec<Vec<u64>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').skip(1).map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 10);
    let total: u64 = rows.iter().flatten().sum();
    let correct: u64 = (0..10).map(|i| rows[i][i]).sum();
    assert_eq!(total, evaluated["samples"].as_u64().unwrap());
    let acc = evaluated["test_acc"].as_f64().unwrap();
    assert!((correct as f64 / total as f64 - acc).abs() < 1e-9);
    assert!(std::fs::read(report.join("confusion.png"))
        .unwrap()
        .starts_with(b"\x89PNG"));
    // The file says how to normalise its inputs; a model file without that is refused.
    let bytes = std::fs::read(&model).unwrap();
    let info = twa::run::model_file::ModelInfo::read(&model, &bytes).unwrap();
    assert_eq!((info.classes, info.shape.len()), (10, 784));
    assert!(info.mean[0] > 0.0 && info.std[0] > 0.0);
    let bare = dir.join("bare.safetensors");
    std::fs::write(&bare, strip_metadata(&bytes)).unwrap();
    assert_fails(
        &twa(&["eval", "--model", &bare.display().to_string()]),
        1,
        "no `config` in the file's metadata",
    );
}

/// The same tensors without the metadata.
fn strip_metadata(bytes: &[u8]) -> Vec<u8> {
    let file = safetensors::SafeTensors::deserialize(bytes).unwrap();
    safetensors::serialize(file.tensors(), None).unwrap()
}

/// A PyTorch `state_dict` of the quick preset's MLP-BN 784-256-256-10 as
/// `safetensors.torch.save_file` writes it (F32 weights, BatchNorm buffers, I64
/// `num_batches_tracked`), values derived from `k`.
fn torch_state_dict(k: f32, path: &Path) {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let f32s = |tensors: &mut Vec<_>, name: &str, shape: Vec<usize>, base: f32| {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|i| base + k * ((i % 97) as f32 - 48.0) * 1e-3)
            .collect();
        tensors.push((name.into(), shape, bytemuck::cast_slice(&values).to_vec()));
    };
    for (layer, (inp, out)) in [(0, (784, 256)), (3, (256, 256)), (6, (256, 10))] {
        f32s(
            &mut tensors,
            &format!("{layer}.weight"),
            vec![out, inp],
            0.01,
        );
        f32s(&mut tensors, &format!("{layer}.bias"), vec![out], 0.0);
        if layer < 6 {
            let bn = layer + 1;
            f32s(&mut tensors, &format!("{bn}.weight"), vec![out], 1.0);
            f32s(&mut tensors, &format!("{bn}.bias"), vec![out], 0.0);
            f32s(&mut tensors, &format!("{bn}.running_mean"), vec![out], 0.0);
            f32s(&mut tensors, &format!("{bn}.running_var"), vec![out], 1.0);
            tensors.push((
                format!("{bn}.num_batches_tracked"),
                vec![],
                100i64.to_le_bytes().to_vec(),
            ));
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(name, shape, data)| {
            let dtype = if name.ends_with("num_batches_tracked") {
                safetensors::Dtype::I64
            } else {
                safetensors::Dtype::F32
            };
            (
                name.clone(),
                safetensors::tensor::TensorView::new(dtype, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    std::fs::write(path, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
}

#[test]
fn a_pytorch_trajectory_imports_and_averages() {
    let dir = temp_dir("import");
    let files: Vec<String> = (0..3)
        .map(|k| {
            let path = dir.join(format!("epoch{k}.safetensors"));
            torch_state_dict(k as f32, &path);
            path.display().to_string()
        })
        .collect();
    let history = dir.join("history.safetensors");
    let history_s = history.display().to_string();
    let out = twa(&[
        &[
            "history", "import", "--preset", "quick", "--out", &history_s,
        ][..],
        &files.iter().map(String::as_str).collect::<Vec<_>>(),
    ]
    .concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let loaded = twa::run::History::load(&history).unwrap();
    assert_eq!(loaded.len(), 3);
    let averaged = dir.join("avg");
    let summary = json_summary(twa(&[
        "average",
        "--history",
        &history_s,
        "--method",
        "swa",
        "--out",
        &averaged.display().to_string(),
        "--json",
    ]));
    assert!(summary["results"][0]["test_acc"].as_f64().unwrap() >= 0.0);
    // SWA of samples k = 0, 1, 2 is sample k = 1.
    let swa = std::fs::read(averaged.join("swa.safetensors")).unwrap();
    let swa = safetensors::SafeTensors::deserialize(&swa).unwrap();
    let middle = std::fs::read(&files[1]).unwrap();
    let middle = safetensors::SafeTensors::deserialize(&middle).unwrap();
    let (a, b) = (
        swa.tensor("3.weight").unwrap(),
        middle.tensor("3.weight").unwrap(),
    );
    let (a, b): (&[f32], &[f32]) = (
        bytemuck::cast_slice(a.data()),
        bytemuck::cast_slice(b.data()),
    );
    assert!(a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-6));

    // A file of another model: every missing or mismatched tensor is named at once.
    let other = dir.join("other.safetensors");
    let bytes = std::fs::read(&files[0]).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<_> = file
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != "4.bias" && n != "0.weight")
        .collect();
    let wrong = vec![0u8; 4 * 10 * 784];
    let mut views = kept;
    views.push((
        "0.weight".into(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![10, 784], &wrong)
            .unwrap(),
    ));
    std::fs::write(&other, safetensors::serialize(views, None).unwrap()).unwrap();
    let out = twa(&[
        "history",
        "import",
        "--out",
        &history_s,
        &files[0],
        &other.display().to_string(),
    ]);
    assert_fails(&out, 1, "missing tensors `4.bias`");
    assert!(
        stderr(&out).contains("`0.weight` is [10, 784], the model needs [256, 784]"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        twa::run::History::load(&history).unwrap().len(),
        3,
        "the earlier history is untouched"
    );
}

#[test]
fn corrupt_labels_are_named_with_file_index_and_value() {
    let dir = temp_dir("labels");
    let out_s = dir.join("o").display().to_string();
    let data = dir.join("d");
    std::fs::create_dir_all(&data).unwrap();
    write_toy_set(&data);
    let labels = data.join("train-labels-idx1-ubyte");
    let mut bytes = std::fs::read(&labels).unwrap();
    bytes[8 + 17] = 200;
    std::fs::write(&labels, &bytes).unwrap();
    let data_s = data.display().to_string();
    let out = twa(&["train", "--data", &data_s, "--out", &out_s]);
    assert_fails(&out, 1, "train-labels-idx1-ubyte");
    assert!(stderr(&out).contains("200 at index 17"), "{}", stderr(&out));
    let out = twa(&[
        "train",
        "--data",
        &data_s,
        "--classes",
        "4",
        "--out",
        &out_s,
    ]);
    assert_fails(&out, 1, "label 200 at index 17 is outside the 4 classes");
    // A stated class count with a class no training sample has.
    bytes[8 + 17] = 0;
    std::fs::write(&labels, &bytes).unwrap();
    let out = twa(&[
        "train",
        "--data",
        &data_s,
        "--classes",
        "5",
        "--out",
        &out_s,
    ]);
    assert_fails(&out, 1, "class 4 of 5 has no training sample");
    assert!(!dir.join("o").join("model.safetensors").exists());
}

#[test]
fn headless_commands_print_no_display_noise() {
    let out = Command::new(env!("CARGO_BIN_EXE_twa"))
        .arg("info")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("WGPU_BACKEND")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.contains("XDG_RUNTIME_DIR"), "{err}");
    assert!(err.trim().is_empty(), "nothing on stderr: {err}");
}
