//! CSV tables: an MLP trains on features of very different scales (each normalised on
//! its own), class names or indices as labels, and each bad table by name.

mod common;

use common::*;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use twa::data::table::load_table;
use twa::data::Classes;
use twa::nn::ModelConfig;
use twa::train::{TrainConfig, Trainer};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("twa-table-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `n` rows of three classes: `size` ≈ class (± 0.3), `weight` ≈ 1000 + 300·class
/// (± 90), `noise` uniform in [−5, 5]; the label a name (`fir`, `oak`, `ash` for
/// 0, 1, 2) placed between the features.
fn blobs(rng: &mut twa::rng::Rng, n: usize) -> String {
    let mut out = String::from("size, species ,weight,noise\n");
    let names = ["fir", "oak", "ash"];
    let mut uniform = || rng.below(1_000_000) as f64 / 1e6 * 2.0 - 1.0;
    for i in 0..n {
        let class = i % 3;
        let size = class as f64 + 0.3 * uniform();
        let weight = 1000.0 + 300.0 * class as f64 + 90.0 * uniform();
        let noise = 5.0 * uniform();
        writeln!(out, "{size:.4},{},{weight:.2},{noise:.3}", names[class]).unwrap();
    }
    out
}

#[test]
fn an_mlp_trains_on_a_table_of_features_at_different_scales() {
    let dir = temp_dir("blobs");
    let mut rng = rng("table blobs");
    std::fs::write(dir.join("train.csv"), blobs(&mut rng, 600)).unwrap();
    std::fs::write(dir.join("test.csv"), blobs(&mut rng, 150)).unwrap();
    let data = load_table(&dir, "species", Classes::Infer).unwrap();
    assert_eq!(
        (data.train.count, data.test.count, data.classes),
        (600, 150, 3)
    );
    assert_eq!(data.train.shape, twa::nn::model::Shape::image(1, 1, 3));
    // Names in sorted order: ash 0, fir 1, oak 2; row 0 is a fir.
    assert_eq!(&data.train.labels[..3], &[1, 2, 0]);
    // Each feature has its own statistics (f64 on the host).
    for (f, (mean, std)) in [(1.0, 0.82), (1300.0, 246.0), (0.0, 2.9)]
        .iter()
        .enumerate()
    {
        assert!(
            (data.mean[f] as f64 - mean).abs() < 0.1 * std,
            "feature {f} mean {}",
            data.mean[f]
        );
        assert!(
            (data.std[f] as f64 / std - 1.0).abs() < 0.1,
            "feature {f} std {}",
            data.std[f]
        );
    }
    let model = ModelConfig {
        hidden: vec![16],
        batchnorm: false,
        ..Default::default()
    };
    let config = TrainConfig {
        epochs: 10,
        batch: 30,
        lr: 0.05,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(gpu(), &data, &model, config).unwrap();
    block_on(trainer.train_all(&mut |_| {})).unwrap();
    let totals = block_on(trainer.evaluate()).unwrap();
    // Separable by `size` and `weight` once each is on its own scale.
    assert!(
        totals.accuracy() >= 0.95,
        "test accuracy {}",
        totals.accuracy()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn error(dir: &Path, label: &str) -> String {
    match load_table(dir, label, Classes::Infer) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_tables_are_refused_by_file_line_and_column() {
    let root = temp_dir("bad");
    let good_train = "a,b,label\n1,2,0\n3,4,1\n5,6,0\n";
    let good_test = "a,b,label\n1,2,1\n";
    let case = |name: &str, train: &str, test: Option<&str>, label: &str, needles: &[&str]| {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("train.csv"), train).unwrap();
        if let Some(test) = test {
            std::fs::write(dir.join("test.csv"), test).unwrap();
        }
        let e = error(&dir, label);
        for needle in needles {
            assert!(e.contains(needle), "{name}: `{needle}` not in: {e}");
        }
    };
    case(
        "ragged",
        "a,b,label\n1,2,0\n3,4\n",
        Some(good_test),
        "label",
        &["train.csv", "line 3", "2 fields where the header has 3"],
    );
    case(
        "text",
        good_train,
        Some("a,b,label\n1,two,1\n"),
        "label",
        &[
            "test.csv",
            "line 2",
            "column `b`: `two` is not a finite number",
        ],
    );
    case(
        "empty value",
        "a,b,label\n1,,0\n",
        Some(good_test),
        "label",
        &["line 2", "column `b`: `` is not"],
    );
    case(
        "no label column",
        good_train,
        Some(good_test),
        "class",
        &["no label column `class` among the columns a, b, label"],
    );
    case(
        "no rows",
        "a,b,label\n",
        Some(good_test),
        "label",
        &["no rows below the header"],
    );
    case(
        "columns differ",
        good_train,
        Some("b,a,label\n1,2,1\n"),
        "label",
        &["feature columns b, a differ from train.csv's a, b"],
    );
    case(
        "no test",
        good_train,
        None,
        "label",
        &["no test.csv or val.csv"],
    );
    case(
        "unknown class",
        "a,label\n1,cat\n2,dog\n",
        Some("a,label\n1,cow\n"),
        "label",
        &["row 1: class `cow` is not one of the training split's 2 classes"],
    );
    case(
        "infinite",
        "a,b,label\n1,inf,0\n",
        Some(good_test),
        "label",
        &["`inf` is not a finite number"],
    );
    let _ = std::fs::remove_dir_all(&root);
}
