//! Every bad input a user can give the binary, by name: each must end with a non-zero
//! exit code, one readable `error:` line naming what is wrong, no panic, and no file
//! written or changed in the output directory.

mod common;

use common::cli::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One case: a name, the arguments (`{data}`, `{out}`, `{dir}`, `{history}`,
/// `{model}` are replaced), the exit code and a piece of the message.
struct Case {
    name: &'static str,
    args: &'static str,
    code: i32,
    needle: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "data directory missing",
        args: "train --data {dir}/nope --out {out}",
        code: 1,
        needle: "data directory not found",
    },
    Case {
        name: "data directory without IDX files",
        args: "train --data {dir}/empty --out {out}",
        code: 1,
        needle: "no train-images-idx3-ubyte.gz",
    },
    Case {
        name: "labels and images disagree in count",
        args: "train --data {dir}/count --out {out}",
        code: 1,
        needle: "labels but",
    },
    Case {
        name: "images of rank 1",
        args: "train --data {dir}/rank1 --out {out}",
        code: 1,
        needle: "expected images [count, rows, cols]",
    },
    Case {
        name: "IDX of another element type",
        args: "train --data {dir}/float --out {out}",
        code: 1,
        needle: "element type 0x0d is not supported",
    },
    Case {
        name: "IDX header that lies about its size",
        args: "train --data {dir}/huge --out {out}",
        code: 1,
        needle: "need",
    },
    Case {
        name: "gzip IDX that is corrupt",
        args: "train --data {dir}/gzip --out {out}",
        code: 1,
        needle: "corrupt gzip stream",
    },
    Case {
        name: "test images of another size",
        args: "train --data {dir}/sizes --out {out}",
        code: 1,
        needle: "train images are",
    },
    Case {
        name: "label far beyond the classes",
        args: "train --data {dir}/label200 --out {out}",
        code: 1,
        needle: "label, 200 at index",
    },
    Case {
        name: "corrupt JPEG in an image folder",
        args: "train --data {dir}/folder-corrupt --out {out}",
        code: 1,
        needle: "not a readable image",
    },
    Case {
        name: "empty class folder",
        args: "train --data {dir}/folder-empty --out {out}",
        code: 1,
        needle: "holds no .jpg, .jpeg or .png file",
    },
    Case {
        name: "image folder of mixed sizes",
        args: "train --data {dir}/folder-sizes --out {out}",
        code: 1,
        needle: "state a size",
    },
    Case {
        name: "a .npz without labels",
        args: "train --data {dir}/no-labels.npz --out {out}",
        code: 1,
        needle: "no array `y_train`",
    },
    Case {
        name: "label beyond the stated classes",
        args: "train --data {data} --classes 3 --out {out}",
        code: 1,
        needle: "outside the 3 classes",
    },
    Case {
        name: "stated class without training samples",
        args: "train --data {data} --classes 6 --out {out}",
        code: 1,
        needle: "class 4 of 6 has no training sample",
    },
    Case {
        name: "zero classes",
        args: "train --data {data} --classes 0 --out {out}",
        code: 3,
        needle: "class count must be at least 1",
    },
    Case {
        name: "negative learning rate",
        args: "train --lr=-1 --out {out}",
        code: 3,
        needle: "lr must be a positive number",
    },
    Case {
        name: "learning rate NaN",
        args: "train --lr NaN --out {out}",
        code: 3,
        needle: "lr must be a positive number",
    },
    Case {
        name: "momentum of 1.5",
        args: "train --momentum 1.5 --out {out}",
        code: 3,
        needle: "momentum must be in [0, 1)",
    },
    Case {
        name: "negative weight decay",
        args: "train --wd=-1 --out {out}",
        code: 3,
        needle: "weight decay must be",
    },
    Case {
        name: "batch of zero",
        args: "train --batch 0 --out {out}",
        code: 3,
        needle: "batch sizes must be in 1..=",
    },
    Case {
        name: "reversed sample epochs",
        args: "train --samples-per-epoch 1 --sample-epochs 3..2 --out {out}",
        code: 3,
        needle: "--sample-epochs `3..2`",
    },
    Case {
        name: "sample epochs past the end",
        args: "train --epochs 2 --samples-per-epoch 1 --sample-epochs 1..9 --out {out}",
        code: 3,
        needle: "B ≤ 2",
    },
    Case {
        name: "config file missing",
        args: "train --config {dir}/none.toml --out {out}",
        code: 1,
        needle: "none.toml",
    },
    Case {
        name: "config not TOML",
        args: "train --config {dir}/garbage.toml --out {out}",
        code: 3,
        needle: "garbage.toml",
    },
    Case {
        name: "config with an unknown section",
        args: "train --config {dir}/section.toml --out {out}",
        code: 3,
        needle: "optimiser",
    },
    Case {
        name: "config value of the wrong type",
        args: "train --config {dir}/type.toml --out {out}",
        code: 3,
        needle: "epochs",
    },
    Case {
        name: "config naming an unknown generated set",
        args: "train --config {dir}/generated.toml --out {out}",
        code: 3,
        needle: "unknown generated data set `moons`",
    },
    Case {
        name: "conv net on 8×8 grey images",
        args: "train --preset cnn --data {data} --out {out}",
        code: 3,
        needle: "the model does not fit",
    },
    Case {
        name: "unknown adapter index",
        args: "--adapter 99 train --data {data} --out {out}",
        code: 2,
        needle: "--adapter 99",
    },
    Case {
        name: "resume in a directory that does not exist",
        args: "train --data {data} --resume {out}",
        code: 1,
        needle: "no run to resume there",
    },
    Case {
        name: "resume from a corrupt checkpoint",
        args: "train --data {data} --resume {dir}/corrupt-ckpt",
        code: 1,
        needle: "not a safetensors file",
    },
    Case {
        name: "resume from a model file posing as a checkpoint",
        args: "train --data {data} --resume {dir}/model-ckpt",
        code: 1,
        needle: "not a twa checkpoint",
    },
    Case {
        name: "resume with another --out",
        args: "train --resume {dir}/a --out {out}",
        code: 3,
        needle: "drop --out",
    },
    Case {
        name: "resume a train checkpoint with twa run",
        args: "run --preset spirals --resume {dir}/train-ckpt",
        code: 3,
        needle: "was written by `twa train`",
    },
    Case {
        name: "run with an unknown preset",
        args: "run --preset nope --out {out}",
        code: 3,
        needle: "unknown preset `nope`",
    },
    Case {
        name: "run with head epochs beyond the schedule",
        args: "run --config {dir}/head.toml --out {out}",
        code: 3,
        needle: "head_epochs must be in 1..=20",
    },
    Case {
        name: "run with an unknown TWA start",
        args: "run --config {dir}/start.toml --out {out}",
        code: 3,
        needle: "middle",
    },
    Case {
        name: "average a missing history",
        args: "average --history {dir}/none.safetensors --out {out}",
        code: 1,
        needle: "none.safetensors",
    },
    Case {
        name: "average a file that is not safetensors",
        args: "average --history {dir}/garbage.toml --out {out}",
        code: 1,
        needle: "not a safetensors file",
    },
    Case {
        name: "average a model file",
        args: "average --history {model} --out {out}",
        code: 1,
        needle: "not a twa history",
    },
    Case {
        name: "average a reversed range",
        args: "average --history {history} --range 2..1 --out {out}",
        code: 3,
        needle: "the range is reversed",
    },
    Case {
        name: "average a range past the end",
        args: "average --history {history} --range 0..99 --out {out}",
        code: 3,
        needle: "past the last sample",
    },
    Case {
        name: "EMA decay of 1.5",
        args: "average --history {history} --ema-decay 1.5 --out {out}",
        code: 3,
        needle: "--ema-decay",
    },
    Case {
        name: "TWA start that is no sample",
        args: "average --history {history} --start nowhere --out {out}",
        code: 3,
        needle: "nowhere",
    },
    Case {
        name: "eval a missing model",
        args: "eval --model {dir}/none.safetensors --out {out}",
        code: 1,
        needle: "none.safetensors",
    },
    Case {
        name: "eval a file that is not safetensors",
        args: "eval --model {dir}/garbage.toml --out {out}",
        code: 1,
        needle: "not a safetensors file",
    },
    Case {
        name: "eval on images of another shape",
        args: "eval --model {model} --data {dir}/sizes12 --out {out}",
        code: 3,
        needle: "does not fit",
    },
    Case {
        name: "landscape grid of 1",
        args: "landscape --history {history} --grid 1 --out {out}",
        code: 3,
        needle: "--grid must be in 2..=257",
    },
    Case {
        name: "landscape at 3 bits",
        args: "landscape --history {history} --bits 3 --out {out}",
        code: 3,
        needle: "--bits 3",
    },
    Case {
        name: "landscape of an unknown metric",
        args: "landscape --history {history} --metric accuracy --out {out}",
        code: 3,
        needle: "accuracy",
    },
    Case {
        name: "landscape of an unknown plane",
        args: "landscape --history {history} --plane xyz --out {out}",
        code: 3,
        needle: "xyz",
    },
    Case {
        name: "landscape with TWA weights of another model",
        args: "landscape --history {history} --twa {dir}/pytorch-other.safetensors --out {out}",
        code: 1,
        needle: "does not fit the model",
    },
    Case {
        name: "import a missing checkpoint",
        args: "history import --data {data} --out {out}/h.safetensors {dir}/none.safetensors",
        code: 1,
        needle: "none.safetensors",
    },
    Case {
        name: "import a file that is not safetensors",
        args: "history import --data {data} --out {out}/h.safetensors {dir}/garbage.toml",
        code: 1,
        needle: "not a safetensors file",
    },
    Case {
        name: "import a checkpoint holding NaN",
        args: "history import --data {data} --out {out}/h.safetensors {dir}/nan.safetensors",
        code: 1,
        needle: "is NaN",
    },
    Case {
        name: "print an unknown preset",
        args: "config --preset nope",
        code: 3,
        needle: "unknown preset",
    },
    Case {
        name: "unknown schedule",
        args: "train --schedule sometimes --out {out}",
        code: 2,
        needle: "sometimes",
    },
    Case {
        name: "epochs at usize::MAX with sampling",
        args: "train --epochs 18446744073709551615 --samples-per-epoch 2 --out {out}",
        code: 3,
        needle: "epochs must be in 1..=1000000",
    },
    Case {
        name: "a billion epochs",
        args: "train --epochs 1000000000 --out {out}",
        code: 3,
        needle: "epochs must be in 1..=1000000",
    },
    Case {
        name: "more samples per epoch than steps",
        args: "train --data {data} --samples-per-epoch 100000000 --out {out}",
        code: 3,
        needle: "100000000 samples per epoch, but an epoch has only",
    },
    Case {
        name: "a batch past 2^24",
        args: "train --batch 99999999999 --out {out}",
        code: 3,
        needle: "batch sizes must be in 1..=16777216",
    },
    Case {
        name: "TWA epochs past the limit",
        args: "average --history {history} --method twa --twa-epochs 2000000 --out {out}",
        code: 3,
        needle: "TWA epochs must be at most",
    },
    Case {
        name: "plan with usize::MAX samples",
        args: "plan --samples 18446744073709551615",
        code: 3,
        needle: "more bytes than a machine can address",
    },
    Case {
        name: "plan of an unknown model",
        args: "plan --model wrt-28-10",
        code: 3,
        needle: "unknown model `wrt-28-10`",
    },
    Case {
        name: "plan with a huge batch",
        args: "plan --model wrn-28-10 --batch 18446744073709551615",
        code: 3,
        needle: "more bytes than a machine can address",
    },
    Case {
        name: "history import onto a directory",
        args: "history import --data {data} --out {dir}/empty {model}",
        code: 1,
        needle: "not a regular file",
    },
    Case {
        name: "history import onto the null device",
        args: "history import --data {data} --out /dev/null {model}",
        code: 1,
        needle: "/dev/null: it exists and is not a regular file",
    },
    Case {
        name: "an --out that is a file",
        args: "train --data {data} --out {model}",
        code: 1,
        needle: "it exists and is not a directory",
    },
    Case {
        name: "average a history holding NaN",
        args: "average --history {dir}/nan-history.safetensors --method swa --out {out}",
        code: 1,
        needle: "sample 1, `0.weight` element 5 is NaN",
    },
    Case {
        name: "landscape of a history holding infinity",
        args: "landscape --history {dir}/inf-history.safetensors --out {out}",
        code: 1,
        needle: "sample 2, `3.bias` element 0 is inf",
    },
    Case {
        name: "evaluate a model holding NaN",
        args: "eval --model {dir}/nan.safetensors --data {data} --out {out}",
        code: 1,
        needle: "`0.weight` element 0 is NaN",
    },
    Case {
        name: "fine-tune from a model holding NaN",
        args: "train --data {data} --init {dir}/nan.safetensors --out {out}",
        code: 1,
        needle: "`0.weight` element 0 is NaN",
    },
    Case {
        name: "TWA that diverges",
        args: "average --history {history} --method twa --twa-lr 1e30 --out {out}",
        code: 4,
        needle: "diverged",
    },
    Case {
        name: "resume a checkpoint edited to epoch 99",
        args: "train --data {data} --epochs 2 --samples-per-epoch 2 --resume {dir}/epoch-ckpt",
        code: 3,
        needle: "continues at epoch 100, step 0 of a run of 2 epochs",
    },
    Case {
        name: "resume a checkpoint edited to step 100000",
        args: "train --data {data} --epochs 2 --samples-per-epoch 2 --resume {dir}/step-ckpt",
        code: 3,
        needle: "step 100000 of a run of 2 epochs of 4 steps",
    },
    Case {
        name: "resume a checkpoint with samples missing",
        args: "train --data {data} --epochs 2 --samples-per-epoch 2 --resume {dir}/samples-ckpt",
        code: 3,
        needle: "holds 0 samples after w_0, but the sampling plan takes 2 before epoch 2",
    },
    Case {
        name: "resume a checkpoint holding NaN",
        args: "train --data {data} --epochs 2 --samples-per-epoch 2 --resume {dir}/nan-ckpt",
        code: 1,
        needle: "`params` value 3 is NaN",
    },
    Case {
        name: "an --out below a file",
        args: "train --data {data} --out {model}/run",
        code: 1,
        needle: "model.safetensors/run",
    },
];

fn idx(dims: &[usize], kind: u8, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, kind, dims.len() as u8];
    dims.iter()
        .for_each(|d| out.extend_from_slice(&(*d as u32).to_be_bytes()));
    out.extend_from_slice(data);
    out
}

/// A copy of the toy set in `dir/name` with `file` replaced by `bytes`.
fn variant(dir: &Path, name: &str, file: &str, bytes: Vec<u8>) {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    write_toy_set(&d);
    std::fs::write(d.join(file), bytes).unwrap();
}

/// Files under `dir` with their contents.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                files.extend(snapshot(&p));
            } else {
                files.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    files
}

/// A `twa train` checkpoint of `config` at (`epoch`, `step`) holding `params`, zero
/// momentum and no samples.
fn train_checkpoint(
    config: &twa::run::config::RunConfig,
    options: BTreeMap<String, String>,
    epoch: usize,
    step: usize,
    params: Vec<f32>,
) -> twa::run::checkpoint::Checkpoint {
    twa::run::checkpoint::Checkpoint {
        command: "train".into(),
        config: config.clone(),
        options,
        trainer: twa::train::TrainerState {
            epoch,
            step,
            global_step: 0,
            rng: 1,
            velocity: vec![0.0; params.len()],
            params,
            state: vec![],
            train_totals: [0.0; 4],
            samples: vec![],
            sample_infos: vec![],
        },
        progress: Default::default(),
        metrics: vec![],
    }
}

/// Image folders of two classes of 8×8 grey PNGs, each with one fault (a corrupt
/// JPEG, an empty class folder, an image of another size), and a .npz without labels.
fn image_folders(dir: &Path) {
    let png = |path: PathBuf, side: u32| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::GrayImage::from_pixel(side, side, image::Luma([90]))
            .save(path)
            .unwrap();
    };
    for name in ["folder-corrupt", "folder-empty", "folder-sizes"] {
        for split in ["train", "val"] {
            for class in ["a", "b"] {
                png(dir.join(format!("{name}/{split}/{class}/1.png")), 8);
            }
        }
    }
    std::fs::write(dir.join("folder-corrupt/train/b/2.jpg"), b"\xff\xd8 broken").unwrap();
    std::fs::create_dir_all(dir.join("folder-empty/train/c")).unwrap();
    png(dir.join("folder-sizes/val/a/2.png"), 9);
    // A .npz archive holding only x_train.npy.
    let file = std::fs::File::create(dir.join("no-labels.npz")).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    zip.start_file("x_train.npy", zip::write::SimpleFileOptions::default())
        .unwrap();
    std::io::Write::write_all(&mut zip, b"\x93NUMPY").unwrap();
    zip.finish().unwrap();
}

fn fixtures(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let data = dir.join("toy");
    std::fs::create_dir_all(&data).unwrap();
    write_toy_set(&data);
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    let toy = |f: &str| std::fs::read(data.join(f)).unwrap();
    let labels = toy("train-labels-idx1-ubyte");
    variant(
        dir,
        "count",
        "train-labels-idx1-ubyte",
        idx(&[399], 8, &labels[8..407]),
    );
    let images = toy("train-images-idx3-ubyte");
    variant(
        dir,
        "rank1",
        "train-images-idx3-ubyte",
        idx(&[400 * 64], 8, &images[16..]),
    );
    variant(
        dir,
        "float",
        "train-images-idx3-ubyte",
        idx(&[400, 8, 8], 0x0d, &images[16..]),
    );
    variant(
        dir,
        "huge",
        "train-images-idx3-ubyte",
        idx(&[4_000_000_000, 60_000, 60_000], 8, &images[16..]),
    );
    variant(
        dir,
        "gzip",
        "train-images-idx3-ubyte.gz",
        vec![0x1f, 0x8b, 8, 0, 1, 2, 3],
    );
    std::fs::remove_file(dir.join("gzip/train-images-idx3-ubyte")).unwrap();
    let mut bad = labels.clone();
    bad[8 + 3] = 200;
    variant(dir, "label200", "train-labels-idx1-ubyte", bad);
    variant(
        dir,
        "sizes",
        "t10k-images-idx3-ubyte",
        idx(&[100, 4, 16], 8, &vec![7; 6400]),
    );
    std::fs::create_dir_all(dir.join("sizes12")).unwrap();
    let d12 = dir.join("sizes12");
    std::fs::write(
        d12.join("train-images-idx3-ubyte"),
        idx(&[4, 12, 12], 8, &[9; 576]),
    )
    .unwrap();
    std::fs::write(
        d12.join("t10k-images-idx3-ubyte"),
        idx(&[4, 12, 12], 8, &[9; 576]),
    )
    .unwrap();
    for f in ["train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"] {
        std::fs::write(d12.join(f), idx(&[4], 8, &[0, 1, 2, 3])).unwrap();
    }
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    write("garbage.toml", "this = is = not toml\n\0\u{1}");
    image_folders(dir);
    write("section.toml", "[optimiser]\nlr = 1\n");
    write("type.toml", "[train]\nepochs = \"ten\"\n");
    write("generated.toml", "[data]\ngenerated = \"moons\"\n");
    write(
        "head.toml",
        "[data]\ngenerated = \"spirals\"\n[pipeline]\nhead_epochs = 30\n",
    );
    write(
        "start.toml",
        "[data]\ngenerated = \"spirals\"\n[twa]\nstart = \"middle\"\n",
    );
    // A short run on the toy set gives a model, a history and a train checkpoint.
    let run = dir.join("run");
    let out = twa(&[
        "train",
        "--data",
        &data.display().to_string(),
        "--epochs",
        "2",
        "--samples-per-epoch",
        "2",
        "--out",
        &run.display().to_string(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (model, history) = (
        run.join("model.safetensors"),
        run.join("history.safetensors"),
    );
    let ckpt = |name: &str, bytes: &[u8]| {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        std::fs::write(dir.join(name).join("checkpoint.safetensors"), bytes).unwrap();
    };
    ckpt(
        "corrupt-ckpt",
        b"\xff\xff\xff\xff\xff\xff\xff\x7fnot safetensors",
    );
    ckpt("model-ckpt", &std::fs::read(&model).unwrap());
    let stopped = dir.join("train-ckpt");
    std::fs::create_dir_all(&stopped).unwrap();
    // A checkpoint of `twa train` (its contents do not matter: the command differs).
    let spirals = twa::run::config::RunConfig::preset("spirals").unwrap();
    train_checkpoint(&spirals, BTreeMap::new(), 1, 0, vec![0.0; 4])
        .save(&stopped.join("checkpoint.safetensors"))
        .unwrap();
    // Checkpoints of `train --data toy --epochs 2 --samples-per-epoch 2` edited by
    // hand: the config and options match, the position or the contents do not.
    let mut config = twa::run::config::RunConfig::preset("quick").unwrap();
    config.set_data_dir(&data);
    config.train.epochs = 2;
    let options: BTreeMap<String, String> =
        [("init", "none"), ("sampling", "2 per epoch, epochs 1..2")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
    let edited = |name: &str, epoch: usize, step: usize, params: Vec<f32>| {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        train_checkpoint(&config, options.clone(), epoch, step, params)
            .save(&dir.join(name).join("checkpoint.safetensors"))
            .unwrap();
    };
    edited("epoch-ckpt", 99, 0, vec![0.0; 4]);
    edited("step-ckpt", 0, 100_000, vec![0.0; 4]);
    edited("samples-ckpt", 1, 0, vec![0.0; 4]);
    edited("nan-ckpt", 1, 0, vec![0.0, 0.0, 0.0, f32::NAN]);
    // The history with a NaN in sample 1 and one with an infinity in sample 2.
    let mut h = twa::run::History::load(&history).unwrap();
    let dim = h.dim();
    h.samples[dim + 5] = f32::NAN;
    h.save(&dir.join("nan-history.safetensors")).unwrap();
    h.samples[dim + 5] = 0.0;
    let bias = h
        .table
        .entries
        .iter()
        .find(|e| e.name == "3.bias")
        .unwrap()
        .offset;
    h.samples[2 * dim + bias] = f32::INFINITY;
    h.save(&dir.join("inf-history.safetensors")).unwrap();
    // A model file of another model (wrong first layer) and one holding NaN.
    let bytes = std::fs::read(&model).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let wrong = vec![0u8; 4 * 3 * 64];
    let mut other: Vec<_> = file
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != "0.weight")
        .collect();
    other.push((
        "0.weight".into(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3, 64], &wrong).unwrap(),
    ));
    std::fs::write(
        dir.join("pytorch-other.safetensors"),
        safetensors::serialize(other, None).unwrap(),
    )
    .unwrap();
    let first = file.tensor("0.weight").unwrap();
    let mut nan = first.data().to_vec();
    nan[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    let mut with_nan: Vec<_> = file
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != "0.weight")
        .collect();
    with_nan.push((
        "0.weight".into(),
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, first.shape().to_vec(), &nan)
            .unwrap(),
    ));
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    std::fs::write(
        dir.join("nan.safetensors"),
        safetensors::serialize(with_nan, header.metadata().clone()).unwrap(),
    )
    .unwrap();
    (data, model, history)
}

#[test]
fn every_bad_input_is_one_clear_line_and_a_non_zero_exit() {
    let dir = temp_dir("bad-inputs");
    let (data, model, history) = fixtures(&dir);
    assert!(CASES.len() >= 70, "{} cases", CASES.len());
    let mut failures = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let out_dir = dir.join(format!("out{i}"));
        let args = case
            .args
            .replace("{data}", &data.display().to_string())
            .replace("{dir}", &dir.display().to_string())
            .replace("{out}", &out_dir.display().to_string())
            .replace("{history}", &history.display().to_string())
            .replace("{model}", &model.display().to_string());
        let args: Vec<&str> = args.split(' ').collect();
        let before = snapshot(&dir);
        let out = twa(&args);
        let err = stderr(&out);
        let last = err.lines().last().unwrap_or("");
        let problem = if out.status.code() != Some(case.code) {
            Some(format!(
                "exit {:?}, expected {}",
                out.status.code(),
                case.code
            ))
        } else if !err.contains(case.needle) {
            Some(format!("message lacks `{}`", case.needle))
        } else if err.contains("panicked") {
            Some("panicked".into())
        } else if case.code != 2 && (!last.starts_with("error: ") || last.len() > 600) {
            Some(format!("last line is not one error line: {last}"))
        } else if snapshot(&dir) != before {
            Some("files were written or changed".into())
        } else if out_dir.exists() {
            Some("an output directory was left behind".into())
        } else {
            None
        };
        if let Some(p) = problem {
            failures.push(format!("{}: {p}\n  stderr: {err}", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let null = std::fs::symlink_metadata("/dev/null").unwrap().file_type();
        assert!(null.is_char_device(), "/dev/null is still the device");
    }
}
