//! Running the `twa` binary as users and scripts do: temporary directories, IDX data
//! sets written in the real layout, the JSON summary, and the checks that a failure is
//! one clear line with the right exit code and no panic.

use super::toy_split;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use twa::data::idx::{encode_idx, IdxArray};

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("twa-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Write one split (`prefix` train or t10k) as raw IDX files of `side`×`side` images.
pub fn write_split(dir: &Path, prefix: &str, side: usize, pixels: Vec<u8>, labels: Vec<u8>) {
    let n = labels.len();
    let images = IdxArray {
        dims: vec![n, side, side],
        data: pixels,
    };
    let labels = IdxArray {
        dims: vec![n],
        data: labels,
    };
    std::fs::write(
        dir.join(format!("{prefix}-images-idx3-ubyte")),
        encode_idx(&images),
    )
    .unwrap();
    std::fs::write(
        dir.join(format!("{prefix}-labels-idx1-ubyte")),
        encode_idx(&labels),
    )
    .unwrap();
}

/// The toy set of `common::toy_split` as IDX files (400 train, 100 test).
pub fn write_toy_set(dir: &Path) {
    for (prefix, n, seed) in [("train", 400, 11), ("t10k", 100, 12)] {
        let split = toy_split(n, seed);
        let labels = split.labels.iter().map(|&l| l as u8).collect();
        write_split(dir, prefix, 8, split.pixels, labels);
    }
}

pub fn twa(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_twa"))
        .args(args)
        .output()
        .expect("run twa")
}

/// The JSON summary a successful `--json` run prints as its last line of stdout.
pub fn json_summary(out: Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit code `code` and an error line containing `needle`, no panic.
#[track_caller]
pub fn assert_fails(out: &Output, code: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "exit code; stderr: {err}");
    assert!(
        err.contains(needle),
        "stderr should mention `{needle}`: {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "no panic: {err}"
    );
}
