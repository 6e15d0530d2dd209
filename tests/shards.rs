//! WebDataset-style tar shards: the shipped subset as shards of PNG images loads to
//! exactly its IDX samples in order and trains to exactly its IDX metrics; each bad
//! shard by name.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use twa::data::images::ImageOptions;
use twa::data::shards::load_shards;
use twa::data::{Classes, Dataset};
use twa::run::config::shipped_data_dir;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("twa-shards-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A PNG of a `side` × `side` grayscale image.
fn png(side: u32, pixels: &[u8]) -> Vec<u8> {
    let image = image::GrayImage::from_raw(side, side, pixels.to_vec()).unwrap();
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A tar of `(name, bytes)` entries.
fn tar(path: &Path, entries: &[(String, Vec<u8>)]) {
    let mut builder = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, name, bytes.as_slice())
            .unwrap();
    }
    builder.finish().unwrap();
}

/// Samples `range` of `split` as `KEY.png` + `KEY.cls` entries (KEY: the index).
fn entries(split: &twa::data::Split, range: std::ops::Range<usize>) -> Vec<(String, Vec<u8>)> {
    let f = split.features();
    range
        .flat_map(|i| {
            let image = png(28, &split.pixels[i * f..(i + 1) * f]);
            let label = split.labels[i].to_string().into_bytes();
            [
                (format!("{i:06}.png"), image),
                (format!("{i:06}.cls"), label),
            ]
        })
        .collect()
}

#[test]
fn the_shipped_subset_as_shards_loads_in_order_and_trains_to_exactly_its_idx_metrics() {
    let idx = Dataset::load_idx_dir(&shipped_data_dir(), Classes::Infer).unwrap();
    let dir = temp_dir("subset");
    for s in 0..4 {
        let range = s * 2500..(s + 1) * 2500;
        tar(
            &dir.join(format!("train-{s:06}.tar")),
            &entries(&idx.train, range),
        );
    }
    tar(&dir.join("test-000000.tar"), &entries(&idx.test, 0..2000));
    let data = load_shards(&dir, None, ImageOptions::default()).unwrap();
    assert_eq!(data.classes, 10);
    assert_same_samples_and_metrics(&data, &idx);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_shards_are_refused_by_shard_and_entry() {
    let root = temp_dir("bad");
    let sample = |key: &str, label: &str| {
        vec![
            (format!("{key}.png"), png(4, &[50; 16])),
            (format!("{key}.cls"), label.as_bytes().to_vec()),
        ]
    };
    let good = || [sample("a", "0"), sample("b", "1")].concat();
    let case = |name: &str, train: Vec<(String, Vec<u8>)>, needles: &[&str]| {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        tar(&dir.join("train-0.tar"), &train);
        tar(&dir.join("val-0.tar"), &good());
        let e = match load_shards(&dir, None, ImageOptions::default()) {
            Ok(_) => panic!("{name}: loaded"),
            Err(e) => e.to_string(),
        };
        for needle in needles {
            assert!(e.contains(needle), "{name}: `{needle}` not in: {e}");
        }
        dir
    };
    let no_cls = [good(), vec![("c.png".to_string(), png(4, &[9; 16]))]].concat();
    case("no label", no_cls, &["train-0.tar/c.cls", "no .cls entry"]);
    let no_image = [good(), vec![("c.cls".to_string(), b"1".to_vec())]].concat();
    case(
        "no image",
        no_image,
        &["train-0.tar/c.jpg", "no .jpg, .jpeg or .png"],
    );
    case(
        "text label",
        [good(), sample("c", "cat")].concat(),
        &["train-0.tar/c.cls", "`cat` is not a class index"],
    );
    let corrupt = [
        good(),
        vec![
            ("c.jpg".into(), b"\xff\xd8 no".to_vec()),
            ("c.cls".into(), b"1".to_vec()),
        ],
    ]
    .concat();
    let dir = case(
        "corrupt",
        corrupt,
        &["train-0.tar/c.jpg", "not a readable image"],
    );
    let skip = ImageOptions {
        skip_bad: true,
        ..ImageOptions::default()
    };
    let data = load_shards(&dir, None, skip).unwrap();
    assert_eq!((data.train.count, data.skipped.len()), (2, 1));

    // A shard cut short inside an entry.
    let dir = root.join("truncated");
    std::fs::create_dir_all(&dir).unwrap();
    let whole = root.join("whole.tar");
    tar(&whole, &[good(), sample("c", "0")].concat());
    let bytes = std::fs::read(&whole).unwrap();
    std::fs::write(dir.join("train-0.tar"), &bytes[..1800]).unwrap();
    tar(&dir.join("val-0.tar"), &good());
    let e = load_shards(&dir, None, ImageOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("train-0.tar") && e.contains("truncated or corrupt shard"),
        "{e}"
    );

    let dir = root.join("no-val");
    std::fs::create_dir_all(&dir).unwrap();
    tar(&dir.join("train-0.tar"), &good());
    let e = load_shards(&dir, None, ImageOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("val-*.tar (or test-*.tar)"), "{e}");
    let _ = std::fs::remove_dir_all(&root);
}
