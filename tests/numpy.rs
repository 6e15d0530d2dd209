//! NumPy arrays: files written by NumPy itself (`tests/data/make_numpy.py`: `np.savez`
//! and `np.savez_compressed`, uint8 and float32 channels-first), the shipped subset as
//! `.npz` training exactly as its IDX files, and each bad array by name.

mod common;

use common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use twa::data::numpy::load_numpy;
use twa::data::{Classes, Dataset, Encoding};
use twa::run::config::shipped_data_dir;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("twa-numpy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A `.npy` file (format 1.0) of `descr` with `shape` and raw `data`.
fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat(total.next_multiple_of(64) - total));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

/// A `.npz` (stored) of `(name, .npy bytes)` members.
fn npz(path: &Path, members: &[(&str, Vec<u8>)]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in members {
        zip.start_file(format!("{name}.npy"), options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

#[test]
fn arrays_written_by_numpy_load_stored_and_compressed_bytes_and_floats() {
    let data = load_numpy(&fixture("numpy_u8.npz"), Classes::Infer, false).unwrap();
    assert_eq!(data.train.encoding, Encoding::U8);
    assert_eq!(data.train.shape, twa::nn::model::Shape::image(4, 3, 1));
    assert_eq!((data.train.count, data.test.count, data.classes), (6, 2, 3));
    let want: Vec<u8> = (0..72).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(data.train.pixels, want);
    assert_eq!(data.test.pixels, want[..24]);
    assert_eq!(data.train.labels, vec![0, 1, 2, 0, 1, 2]);
    assert_eq!(data.test.labels, vec![2, 0]);

    // [N, C, H, W] float32 read channels last: value (n, y, x, c) = index/8 − 3 of
    // NCHW's (n, c, y, x).
    let data = load_numpy(&fixture("numpy_f32_nchw.npz"), Classes::Infer, true).unwrap();
    assert_eq!(data.train.encoding, Encoding::F32);
    assert_eq!(data.train.shape, twa::nn::model::Shape::image(3, 4, 2));
    assert_eq!((data.train.count, data.classes), (5, 2));
    for n in 0..5 {
        for y in 0..3 {
            for x in 0..4 {
                for c in 0..2 {
                    let nchw = ((n * 2 + c) * 3 + y) * 4 + x;
                    let nhwc = ((n * 3 + y) * 4 + x) * 2 + c;
                    let want = nchw as f64 / 8.0 - 3.0;
                    assert_eq!(data.train.value(nhwc), want, "({n}, {c}, {y}, {x})");
                }
            }
        }
    }
    assert_eq!(data.test.labels, vec![1, 0]);
    // Read without channels_first, the same file is [N, H=2, W=3, C=4].
    let data = load_numpy(&fixture("numpy_f32_nchw.npz"), Classes::Infer, false).unwrap();
    assert_eq!(data.train.shape, twa::nn::model::Shape::image(2, 3, 4));
}

/// The shipped subset as `x_train` [N, 28, 28] uint8 … in IDX order.
fn write_subset(idx: &Dataset, path: &Path) {
    let labels = |s: &twa::data::Split| s.labels.iter().map(|&l| l as u8).collect::<Vec<u8>>();
    let n = |s: &twa::data::Split| vec![s.count, 28, 28];
    npz(
        path,
        &[
            ("x_train", npy("|u1", &n(&idx.train), &idx.train.pixels)),
            (
                "y_train",
                npy("|u1", &[idx.train.count], &labels(&idx.train)),
            ),
            ("x_test", npy("|u1", &n(&idx.test), &idx.test.pixels)),
            ("y_test", npy("|u1", &[idx.test.count], &labels(&idx.test))),
        ],
    );
}

#[test]
fn the_shipped_subset_as_npz_trains_to_exactly_its_idx_metrics() {
    let idx = Dataset::load_idx_dir(&shipped_data_dir(), Classes::Infer).unwrap();
    let dir = temp_dir("subset");
    let path = dir.join("fashion.npz");
    write_subset(&idx, &path);
    let data = load_numpy(&path, Classes::Infer, false).unwrap();
    assert_same_samples_and_metrics(&data, &idx);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_arrays_are_refused_by_name() {
    let dir = temp_dir("bad");
    let x = npy("|u1", &[4, 2, 2], &[7; 16]);
    let y = npy("<i8", &[4], &[0u8; 32]);
    let members = |replace: &[(&'static str, Vec<u8>)]| {
        let mut all: Vec<(&str, Vec<u8>)> = vec![
            ("x_train", x.clone()),
            ("y_train", y.clone()),
            ("x_test", x.clone()),
            ("y_test", y.clone()),
        ];
        for (name, bytes) in replace {
            match all.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = bytes.clone(),
                None => all.retain(|(n, _)| n != &name.trim_start_matches('-')),
            }
        }
        all
    };
    let case = |name: &str, replace: &[(&'static str, Vec<u8>)], needles: &[&str]| {
        let path = dir.join(format!("{name}.npz"));
        npz(&path, &members(replace));
        let err = match load_numpy(&path, Classes::Infer, false) {
            Ok(_) => panic!("{name}: loaded"),
            Err(e) => e.to_string(),
        };
        for needle in needles {
            assert!(err.contains(needle), "{name}: `{needle}` not in: {err}");
        }
    };
    let mut labels = vec![0u8; 32];
    labels[8..16].copy_from_slice(&(-1i64).to_le_bytes());
    case(
        "negative",
        &[("y_train", npy("<i8", &[4], &labels))],
        &["y_train.npy", "label -1 at index 1"],
    );
    case(
        "no labels",
        &[("-y_train", vec![])],
        &["no array `y_train`"],
    );
    case(
        "float labels",
        &[("y_test", npy("<f4", &[4], &[0; 16]))],
        &["y_test.npy", "save them as integers"],
    );
    case(
        "count",
        &[("y_train", npy("<i8", &[3], &[0; 24]))],
        &["3 labels for 4 samples"],
    );
    case(
        "truncated",
        &[("x_train", npy("|u1", &[4, 2, 2], &[7; 15]))],
        &["x_train.npy", "needs 16 bytes", "holds 15"],
    );
    case(
        "complex",
        &[("x_test", npy("<c8", &[4, 2, 2], &[0; 128]))],
        &["x_test.npy", "element type <c8"],
    );
    let mut fortran = x.clone();
    let at = fortran.windows(5).position(|w| w == b"False").unwrap();
    fortran[at..at + 5].copy_from_slice(b"True ");
    case("fortran", &[("x_train", fortran)], &["Fortran-ordered"]);
    case(
        "rank",
        &[("x_train", npy("|u1", &[4], &[7; 4]))],
        &["samples of shape [4]"],
    );
    case(
        "mixed types",
        &[("x_test", npy("<f4", &[4, 2, 2], &[0; 64]))],
        &["train values are U8 but test values F32"],
    );
    let not_zip = dir.join("text.npz");
    std::fs::write(&not_zip, "x,y\n1,2\n").unwrap();
    let err = load_numpy(&not_zip, Classes::Infer, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a readable .npz (zip) archive"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
