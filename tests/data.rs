//! The IDX reader, data-set loading errors, and the device-side batch gather.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use twa::data::idx::{encode_idx, parse_idx, read_idx, IdxArray};
use twa::data::{Dataset, DeviceSplit, Split};
use twa::error::Error;
use twa::nn::model::Shape;
use twa::nn::{Model, ModelConfig, Network, SgdConfig, StepState};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("twa-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Write a small IDX data set: `train` and `test` images of 4×3 pixels.
fn write_set(dir: &Path, train: usize, test: usize, gz: bool) {
    let mut rng = twa::rng::Rng::new(5);
    for (prefix, n) in [("train", train), ("t10k", test)] {
        let images = IdxArray {
            dims: vec![n, 4, 3],
            data: (0..n * 12).map(|_| rng.below(256) as u8).collect(),
        };
        let labels = IdxArray {
            dims: vec![n],
            data: (0..n).map(|i| (i % 3) as u8).collect(),
        };
        for (kind, array) in [("images-idx3", images), ("labels-idx1", labels)] {
            let bytes = encode_idx(&array);
            let (name, bytes) = if gz {
                (format!("{prefix}-{kind}-ubyte.gz"), gzip(&bytes))
            } else {
                (format!("{prefix}-{kind}-ubyte"), bytes)
            };
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}

#[test]
fn idx_round_trips_raw_and_gzip() {
    let dir = temp_dir("idx");
    let array = IdxArray {
        dims: vec![3, 2, 2],
        data: (0..12).collect(),
    };
    std::fs::write(dir.join("a"), encode_idx(&array)).unwrap();
    std::fs::write(dir.join("b.gz"), gzip(&encode_idx(&array))).unwrap();
    assert_eq!(read_idx(&dir.join("a")).unwrap(), array);
    assert_eq!(read_idx(&dir.join("b.gz")).unwrap(), array);
}

#[test]
fn idx_rejects_bad_magic_truncation_and_types() {
    let good = encode_idx(&IdxArray {
        dims: vec![2, 3],
        data: vec![1; 6],
    });
    assert!(parse_idx(b"PK\x03\x04....")
        .unwrap_err()
        .contains("not an IDX file"));
    assert!(parse_idx(&good[..good.len() - 1])
        .unwrap_err()
        .contains("truncated"));
    let mut float = good.clone();
    float[2] = 0x0d;
    assert!(parse_idx(&float).unwrap_err().contains("not supported"));
    let dir = temp_dir("corrupt");
    std::fs::write(dir.join("x.gz"), [0x1f, 0x8b, 1, 2, 3]).unwrap();
    let err = read_idx(&dir.join("x.gz")).unwrap_err().to_string();
    assert!(err.contains("x.gz") && err.contains("gzip"), "{err}");
}

#[test]
fn dataset_loads_and_reports_missing_and_mismatched_files() {
    let dir = temp_dir("set");
    write_set(&dir, 10, 4, true);
    let data = Dataset::load_idx_dir(&dir, twa::data::Classes::Infer).unwrap();
    assert_eq!(
        (
            data.train.count,
            data.test.count,
            data.train.features(),
            data.classes
        ),
        (10, 4, 12, 3)
    );
    let missing = Dataset::load_idx_dir(&dir.join("nope"), twa::data::Classes::Infer).unwrap_err();
    assert!(matches!(missing, Error::Io { .. }) && missing.to_string().contains("not found"));
    // Labels for 5 images next to 10 images.
    let labels = IdxArray {
        dims: vec![5],
        data: vec![0; 5],
    };
    std::fs::write(
        dir.join("train-labels-idx1-ubyte.gz"),
        gzip(&encode_idx(&labels)),
    )
    .unwrap();
    let err = Dataset::load_idx_dir(&dir, twa::data::Classes::Infer)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("5 labels") && err.contains("10 images"),
        "{err}"
    );
    write_set(&dir, 10, 4, true);
    std::fs::remove_file(dir.join("t10k-images-idx3-ubyte.gz")).unwrap();
    let err = Dataset::load_idx_dir(&dir, twa::data::Classes::Infer)
        .unwrap_err()
        .to_string();
    assert!(err.contains("t10k-images"), "{err}");
}

#[test]
fn shipped_subset_is_class_balanced() {
    let data = Dataset::load_idx_dir(
        &twa::run::config::shipped_data_dir(),
        twa::data::Classes::Infer,
    )
    .unwrap();
    assert_eq!(
        (
            data.train.count,
            data.test.count,
            data.train.features(),
            data.classes
        ),
        (10_000, 2_000, 784, 10)
    );
    for c in 0..10u32 {
        assert_eq!(data.train.labels.iter().filter(|&&l| l == c).count(), 1000);
        assert_eq!(data.test.labels.iter().filter(|&&l| l == c).count(), 200);
    }
}

/// The same split with values v·0.37 − 20 stored as f32 (negative, past [0, 1]).
fn as_floats(split: &Split) -> Split {
    let pixels = (split.pixels.iter())
        .flat_map(|&p| (p as f32 * 0.37 - 20.0).to_le_bytes())
        .collect();
    Split {
        pixels,
        encoding: twa::data::Encoding::F32,
        ..split.clone()
    }
}

/// The gather kernel against the CPU, for byte pixels (÷ 255) and f32 values (as
/// they are): normalised with the training statistics, in the given order.
#[test]
fn gather_normalises_bytes_and_floats_in_the_given_order() {
    let dir = temp_dir("gather");
    write_set(&dir, 9, 2, false);
    let bytes = Dataset::load_idx_dir(&dir, twa::data::Classes::Infer).unwrap();
    let floats = Dataset::from_splits(
        as_floats(&bytes.train),
        as_floats(&bytes.test),
        dir.clone(),
        twa::data::Classes::Infer,
    )
    .unwrap();
    let g = gpu();
    for data in [bytes, floats] {
        let model = Model::mlp(
            &ModelConfig {
                hidden: vec![],
                batchnorm: false,
                ..Default::default()
            },
            12,
            3,
        );
        let init = model.init_params(1);
        let sgd = SgdConfig {
            momentum: 0.0,
            weight_decay: 0.0,
        };
        let net = Network::new(g, model, 4, &init, sgd).unwrap();
        let split = DeviceSplit::upload(g, &data.train, &data).unwrap();
        let order: Vec<u32> = vec![8, 3, 0, 7, 1, 2, 6, 5, 4];
        split.set_order(g, &order);
        let gather = split.gather(g, &net.kernels.gather, net.batch_target(), 3, None);
        let start = StepState {
            start: 5,
            ..Default::default()
        };
        net.set_step(g, start);
        twa::gpu::kernels::submit(g, &[&gather]);
        let x: Vec<f32> = block_on(g.read(&net.acts[0], 0, 3 * 12)).unwrap();
        let y: Vec<u32> = block_on(g.read(&net.labels, 0, 3)).unwrap();
        let mut want_x = Vec::new();
        let mut want_y = Vec::new();
        let (mean, std) = (data.mean[0] as f64, data.std[0] as f64);
        for &i in &order[5..8] {
            let i = i as usize;
            want_x.extend((0..12).map(|j| (data.train.value(i * 12 + j) - mean) / std));
            want_y.push(data.train.labels[i]);
        }
        let what = format!("gathered {:?} values", data.train.encoding);
        assert_close(&what, &x, &want_x, 1e-5, 1e-5);
        assert_eq!(y, want_y);
    }
}

/// The image `i` of `split` cropped at (oy, ox) from its 4-pixel zero padding and
/// optionally flipped, normalised per channel (the CPU twin of the gather kernel).
fn crop_flip(data: &Dataset, i: usize, oy: usize, ox: usize, flip: bool) -> Vec<f64> {
    let s = data.train.shape;
    let (h, w, c) = (s.height as isize, s.width as isize, s.channels);
    let image = &data.train.pixels[i * s.len()..(i + 1) * s.len()];
    let mut out = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let xs = if flip { w - 1 - x } else { x };
            let (sy, sx) = (y + oy as isize - 4, xs + ox as isize - 4);
            for ch in 0..c {
                let v = if sy >= 0 && sx >= 0 && sy < h && sx < w {
                    image[((sy * w + sx) as usize) * c + ch] as f64 / 255.0
                } else {
                    0.0
                };
                out.push((v - data.mean[ch] as f64) / data.std[ch] as f64);
            }
        }
    }
    out
}

#[test]
fn gather_normalises_per_channel_and_augments_with_seeded_crops_and_flips() {
    let mut rng = rng("augment");
    let shape = Shape::image(6, 7, 3);
    let count = 16;
    // Channel c has its own brightness range, so per-channel statistics differ.
    let pixels: Vec<u8> = (0..count * shape.len())
        .map(|i| (60 * (i % 3) + rng.below(60)) as u8)
        .collect();
    let split = Split {
        pixels,
        labels: (0..count).map(|i| (i % 4) as u32).collect(),
        count,
        shape,
        labels_file: "in memory".into(),
        encoding: twa::data::Encoding::U8,
    };
    let data = Dataset::from_splits(
        split.clone(),
        split,
        "in memory".into(),
        twa::data::Classes::Infer,
    )
    .unwrap();
    for ch in 0..3 {
        let values: Vec<f64> = data
            .train
            .pixels
            .iter()
            .skip(ch)
            .step_by(3)
            .map(|&p| p as f64 / 255.0)
            .collect();
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
        assert!(
            (data.mean[ch] as f64 - mean).abs() < 1e-6,
            "channel {ch} mean"
        );
        assert!(
            (data.std[ch] as f64 - var.sqrt()).abs() < 1e-6,
            "channel {ch} std"
        );
    }
    let g = gpu();
    let model = Model::mlp(
        &ModelConfig {
            hidden: vec![],
            batchnorm: false,
            ..Default::default()
        },
        shape.len(),
        4,
    );
    let net = Network::new(
        g,
        model.clone(),
        count,
        &model.init_params(1),
        SgdConfig {
            momentum: 0.0,
            weight_decay: 0.0,
        },
    )
    .unwrap();
    let device = DeviceSplit::upload(g, &data.train, &data).unwrap();
    let seed = rng.below(1 << 30) as u64;
    let gathered = |augment: Option<u64>, step: u32| -> Vec<f32> {
        let gather = device.gather(g, &net.kernels.gather, net.batch_target(), count, augment);
        net.set_step(
            g,
            StepState {
                step,
                ..Default::default()
            },
        );
        twa::gpu::kernels::submit(g, &[&gather]);
        block_on(g.read(&net.acts[0], 0, count * shape.len())).unwrap()
    };
    let plain = gathered(None, 0);
    for i in 0..count {
        let want = crop_flip(&data, i, 4, 4, false);
        assert_close(
            "plain gather",
            &plain[i * shape.len()..(i + 1) * shape.len()],
            &want,
            1e-5,
            1e-5,
        );
    }
    let first = gathered(Some(seed), 3);
    assert_eq!(
        first,
        gathered(Some(seed), 3),
        "same seed and step, same batch"
    );
    assert_ne!(
        first,
        gathered(Some(seed), 4),
        "another step draws other crops"
    );
    let mut transforms = std::collections::HashSet::new();
    for i in 0..count {
        let got = &first[i * shape.len()..(i + 1) * shape.len()];
        let found = (0..9)
            .flat_map(|oy| (0..9).flat_map(move |ox| [(oy, ox, false), (oy, ox, true)]))
            .find(|&(oy, ox, flip)| {
                crop_flip(&data, i, oy, ox, flip)
                    .iter()
                    .zip(got)
                    .all(|(w, &g)| (w - g as f64).abs() < 1e-4)
            });
        let t = found.unwrap_or_else(|| panic!("sample {i} is no crop/flip of its image"));
        transforms.insert(t);
    }
    assert!(
        transforms.len() > count / 2,
        "crops vary across the batch: {transforms:?}"
    );
}

/// TWA-v's held-out split: disjoint from the rest, together the whole training split,
/// stratified, the same for the same seed, with the original normalisation and test.
#[test]
fn held_out_validation_split_is_disjoint_stratified_and_stable() {
    use twa::data::holdout::{hold_out, holdout_indices};
    let data = common::toy_data();
    let (rest, val) = hold_out(&data, 40, 9).unwrap();
    let held = holdout_indices(&data.train.labels, data.classes, 40, 9).unwrap();
    assert_eq!((rest.train.count, val.train.count), (360, 40));
    let f = data.train.features();
    let row = |s: &twa::data::Split, i: usize| (s.labels[i], s.pixels[i * f..(i + 1) * f].to_vec());
    let (mut r, mut v) = (0, 0);
    for i in 0..data.train.count {
        if held.contains(&i) {
            assert_eq!(
                row(&val.train, v),
                row(&data.train, i),
                "held-out sample {i}"
            );
            v += 1;
        } else {
            assert_eq!(
                row(&rest.train, r),
                row(&data.train, i),
                "training sample {i}"
            );
            r += 1;
        }
    }
    for class in 0..data.classes as u32 {
        let all = data.train.labels.iter().filter(|&&l| l == class).count();
        let got = val.train.labels.iter().filter(|&&l| l == class).count();
        assert!(
            got.abs_diff(all * 40 / 400) <= 1,
            "class {class}: {got} of {all} held out"
        );
    }
    let (_, again) = hold_out(&data, 40, 9).unwrap();
    assert_eq!(again.train.labels, val.train.labels);
    assert_eq!(again.train.pixels, val.train.pixels);
    assert_eq!(
        (val.mean.clone(), val.std.clone()),
        (data.mean.clone(), data.std.clone())
    );
    assert_eq!(val.test.labels, data.test.labels);
}

/// What a browser does: the same IDX files, read by someone else, load as the
/// directory does; a file that cannot be had is named.
#[test]
fn idx_files_read_elsewhere_load_as_their_directory() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/fashion-mnist-subset");
    let classes = twa::data::Classes::Infer;
    let from_dir = Dataset::load_idx_dir(&dir, classes).unwrap();
    let mut read =
        |name: &str| std::fs::read(dir.join(name)).map_err(|e| Error::io(dir.join(name), e));
    let fetched = Dataset::from_idx_files(&dir, &mut read, classes).unwrap();
    assert_eq!(fetched.train.pixels, from_dir.train.pixels);
    assert_eq!(fetched.train.labels, from_dir.train.labels);
    assert_eq!(fetched.test.pixels, from_dir.test.pixels);
    assert_eq!(fetched.test.labels, from_dir.test.labels);
    assert_eq!(
        (fetched.classes, &fetched.mean, &fetched.std),
        (from_dir.classes, &from_dir.mean, &from_dir.std)
    );
    let mut missing = |name: &str| -> twa::error::Result<Vec<u8>> {
        Err(Error::io(format!("data/{name}"), "404 Not Found"))
    };
    let err = Dataset::from_idx_files(&dir, &mut missing, classes)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("train-images-idx3-ubyte.gz") && err.contains("404"),
        "{err}"
    );
}
