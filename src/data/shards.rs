//! WebDataset-style tar shards, the form large image corpora are shipped in:
//! `DIR/train-*.tar` and `DIR/val-*.tar` (or `test-*.tar`), shards read in name order,
//! each sample a group of entries sharing a key (the name up to its first dot): the
//! image (`KEY.jpg`, `.jpeg` or `.png`) and its class index as text (`KEY.cls`).
//! Samples keep the order they have in the shards; images are decoded as
//! [`super::images`] says.

use super::dataset::Dataset;
use super::images::{decode_splits, Encoded, ImageOptions};
use crate::error::{Error, Result};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Image extensions of a sample's entries (lower case).
const IMAGE: [&str; 3] = ["jpg", "jpeg", "png"];

/// The shards of `split` (`train`, `val`, `test`) in `dir`, sorted by name.
fn shards(dir: &Path, split: &str) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with(&format!("{split}-")) && name.ends_with(".tar")
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Whether `dir` holds `train-*.tar` shards.
pub fn is_shards(dir: &Path) -> bool {
    dir.is_dir() && shards(dir, "train").is_ok_and(|s| !s.is_empty())
}

/// One sample being assembled from its entries.
#[derive(Default)]
struct Sample {
    key: String,
    image: Option<(PathBuf, Vec<u8>)>,
    label: Option<u32>,
}

/// The samples of one shard, in order.
fn read_shard(path: &Path, out: &mut Vec<Encoded>) -> Result<()> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        Error::format(path, format!("{what}: {e} (a truncated or corrupt shard?)"))
    };
    let mut current = Sample::default();
    let finish = |sample: Sample, out: &mut Vec<Encoded>| -> Result<()> {
        if sample.key.is_empty() {
            return Ok(());
        }
        let entry = |ext: &str| path.join(format!("{}.{ext}", sample.key));
        let (name, bytes) = sample.image.ok_or_else(|| {
            Error::format(entry("jpg"), "the sample has no .jpg, .jpeg or .png entry")
        })?;
        let label = sample
            .label
            .ok_or_else(|| Error::format(entry("cls"), "the sample has no .cls entry"))?;
        out.push(Encoded {
            name,
            bytes: Some(bytes),
            label,
        });
        Ok(())
    };
    for entry in archive.entries().map_err(|e| bad("unreadable", &e))? {
        let mut entry = entry.map_err(|e| bad("an unreadable entry", &e))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| bad("an entry's name", &e))?
            .to_string_lossy()
            .into_owned();
        let base = name.rsplit('/').next().unwrap_or(&name);
        let (key, ext) = match base.split_once('.') {
            Some((k, e)) => (
                format!("{}{k}", &name[..name.len() - base.len()]),
                e.to_lowercase(),
            ),
            None => continue,
        };
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| bad(&format!("entry {name}"), &e))?;
        if key != current.key {
            finish(std::mem::take(&mut current), out)?;
            current.key = key;
        }
        let at = path.join(&name);
        if IMAGE.contains(&ext.as_str()) {
            current.image = Some((at, bytes));
        } else if ext == "cls" {
            let text = String::from_utf8_lossy(&bytes);
            let label = text.trim().parse::<u32>().map_err(|_| {
                Error::format(&at, format!("`{}` is not a class index", text.trim()))
            })?;
            current.label = Some(label);
        }
    }
    finish(current, out)
}

/// Read the `train` shards and the `val` (or `test`) ones of `dir`; `classes` as
/// stated, else one more than the largest label.
pub fn load_shards(dir: &Path, classes: Option<usize>, options: ImageOptions) -> Result<Dataset> {
    let train_shards = shards(dir, "train")?;
    let test_shards = match shards(dir, "val")? {
        s if !s.is_empty() => s,
        _ => shards(dir, "test")?,
    };
    if train_shards.is_empty() || test_shards.is_empty() {
        return Err(Error::io(
            dir,
            "shards need train-*.tar and val-*.tar (or test-*.tar) files",
        ));
    }
    let read = |shards: &[PathBuf]| -> Result<Vec<Encoded>> {
        let mut out = Vec::new();
        for shard in shards {
            read_shard(shard, &mut out)?;
        }
        Ok(out)
    };
    let (train, test) = (read(&train_shards)?, read(&test_shards)?);
    let largest = train
        .iter()
        .chain(&test)
        .map(|s| s.label)
        .max()
        .unwrap_or(0);
    let count = classes.unwrap_or(largest as usize + 1);
    let names = (train_shards[0].clone(), test_shards[0].clone());
    decode_splits(dir, (train, test), names, count, options)
}
