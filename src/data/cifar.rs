//! The CIFAR binary format: fixed-size records of a label byte (CIFAR-10) or a coarse
//! and a fine label byte (CIFAR-100), then 3072 pixel bytes — the red, green and blue
//! 32×32 planes, each row-major. CIFAR-10 ships `data_batch_1.bin` … `data_batch_5.bin`
//! and `test_batch.bin`; CIFAR-100 ships `train.bin` and `test.bin` (the fine labels are
//! used). Images are stored channels-last (32 × 32 × 3), as the convolutions read them.

use super::dataset::{Classes, Dataset, Split};
use super::Shape;
use crate::error::{Error, Result};
use std::path::Path;

/// Bytes of one image: 3 planes of 32 × 32.
pub const IMAGE_BYTES: usize = 3 * 32 * 32;

/// Which CIFAR: the number of label bytes per record and the label used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// One label byte (10 classes).
    Cifar10,
    /// Coarse then fine label byte; the fine label (100 classes) is used.
    Cifar100,
}

impl Variant {
    fn label_bytes(self) -> usize {
        match self {
            Variant::Cifar10 => 1,
            Variant::Cifar100 => 2,
        }
    }

    fn classes(self) -> usize {
        match self {
            Variant::Cifar10 => 10,
            Variant::Cifar100 => 100,
        }
    }
}

/// Read the records of one CIFAR binary file into `split`; errors name the file.
fn read_records(path: &Path, variant: Variant, split: &mut Split) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_records(path, &bytes, variant, split)
}

/// Parse the bytes of one CIFAR binary file (`path` names it in errors) into `split`.
pub fn parse_records(path: &Path, bytes: &[u8], variant: Variant, split: &mut Split) -> Result<()> {
    let record = variant.label_bytes() + IMAGE_BYTES;
    if bytes.is_empty() || !bytes.len().is_multiple_of(record) {
        return Err(Error::format(
            path,
            format!(
                "{} bytes is not a whole number of {record}-byte {variant:?} records (label{} + 3072 pixels)",
                bytes.len(),
                if variant == Variant::Cifar100 { "s" } else { "" }
            ),
        ));
    }
    for (i, r) in bytes.chunks_exact(record).enumerate() {
        let label = r[variant.label_bytes() - 1];
        if label as usize >= variant.classes() {
            return Err(Error::format(
                path,
                format!(
                    "record {i} has label {label}, outside the {} classes of {variant:?}",
                    variant.classes()
                ),
            ));
        }
        split.labels.push(label as u32);
        let planes = &r[variant.label_bytes()..];
        for pixel in 0..1024 {
            split
                .pixels
                .extend((0..3).map(|channel| planes[channel * 1024 + pixel]));
        }
        split.count += 1;
    }
    Ok(())
}

fn read_split(dir: &Path, names: &[String], variant: Variant) -> Result<Split> {
    let mut split = Split {
        pixels: Vec::new(),
        labels: Vec::new(),
        count: 0,
        shape: Shape::image(32, 32, 3),
        labels_file: dir.join(names.join(", ")),
        encoding: super::Encoding::U8,
    };
    for name in names {
        read_records(&dir.join(name), variant, &mut split)?;
    }
    Ok(split)
}

/// Whether `dir` looks like a CIFAR binary directory.
pub fn is_cifar_dir(dir: &Path) -> bool {
    dir.join("test_batch.bin").is_file() || dir.join("test.bin").is_file()
}

/// Load CIFAR-10 (`data_batch_*.bin`, `test_batch.bin`) or CIFAR-100 (`train.bin`,
/// `test.bin`) from `dir`; `classes` replaces the variant's 10 or 100 if given.
pub fn load_cifar_dir(dir: &Path, classes: Option<usize>) -> Result<Dataset> {
    if !dir.is_dir() {
        return Err(Error::io(dir, "data directory not found"));
    }
    let (variant, train, test) = if dir.join("test_batch.bin").is_file() {
        let train: Vec<String> = (1..=5).map(|i| format!("data_batch_{i}.bin")).collect();
        (Variant::Cifar10, train, vec!["test_batch.bin".to_string()])
    } else if dir.join("test.bin").is_file() {
        (
            Variant::Cifar100,
            vec!["train.bin".to_string()],
            vec!["test.bin".to_string()],
        )
    } else {
        return Err(Error::io(
            dir,
            "no CIFAR files (test_batch.bin for CIFAR-10, test.bin for CIFAR-100)",
        ));
    };
    let train = read_split(dir, &train, variant)?;
    let test = read_split(dir, &test, variant)?;
    let classes = Classes::stated_or(classes, Classes::Format(variant.classes()));
    Dataset::from_splits(train, test, dir.to_path_buf(), classes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records in the exact CIFAR layout: pixel bytes derived from the index.
    fn records(variant: Variant, labels: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, &l) in labels.iter().enumerate() {
            if variant == Variant::Cifar100 {
                out.push(l / 5); // coarse label
            }
            out.push(l);
            out.extend((0..IMAGE_BYTES).map(|p| ((i * 7 + p) % 256) as u8));
        }
        out
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("twa-cifar-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reads_cifar10_batches_in_order_with_planes_intact() {
        let dir = temp_dir("10");
        for b in 1..=5 {
            let labels: Vec<u8> = (0..3).map(|i| ((b + i) % 10) as u8).collect();
            std::fs::write(
                dir.join(format!("data_batch_{b}.bin")),
                records(Variant::Cifar10, &labels),
            )
            .unwrap();
        }
        std::fs::write(
            dir.join("test_batch.bin"),
            records(Variant::Cifar10, &[9, 0]),
        )
        .unwrap();
        let data = load_cifar_dir(&dir, None).unwrap();
        assert_eq!(
            (data.train.count, data.test.count, data.classes),
            (15, 2, 10)
        );
        assert_eq!(data.train.shape, Shape::image(32, 32, 3));
        assert_eq!(&data.train.labels[..4], &[1, 2, 3, 2]);
        assert_eq!(data.test.labels, vec![9, 0]);
        // Image 1 of the test split: file byte p (plane p / 1024, pixel p % 1024) is
        // (7 + p) mod 256, stored channels-last.
        let image = &data.test.pixels[IMAGE_BYTES..2 * IMAGE_BYTES];
        assert_eq!(image[0], 7, "red of pixel 0");
        assert_eq!(image[1], ((7 + 1024) % 256) as u8, "green of pixel 0");
        assert_eq!(
            image[3 * 5 + 2],
            ((7 + 2048 + 5) % 256) as u8,
            "blue of pixel 5"
        );
        // A truncated batch: one clear error naming the file.
        let mut cut = records(Variant::Cifar10, &[1, 2]);
        cut.pop();
        std::fs::write(dir.join("data_batch_3.bin"), cut).unwrap();
        let err = load_cifar_dir(&dir, None).unwrap_err().to_string();
        assert!(
            err.contains("data_batch_3.bin") && err.contains("3073-byte"),
            "{err}"
        );
    }

    #[test]
    fn reads_cifar100_fine_labels_and_rejects_bad_labels() {
        let dir = temp_dir("100");
        std::fs::write(
            dir.join("train.bin"),
            records(Variant::Cifar100, &[99, 42, 7]),
        )
        .unwrap();
        std::fs::write(dir.join("test.bin"), records(Variant::Cifar100, &[5])).unwrap();
        let data = load_cifar_dir(&dir, None).unwrap();
        assert_eq!(data.classes, 100);
        assert_eq!(data.train.labels, vec![99, 42, 7]);
        let mut bad = records(Variant::Cifar100, &[3]);
        bad[1] = 200;
        std::fs::write(dir.join("test.bin"), bad).unwrap();
        let err = load_cifar_dir(&dir, None).unwrap_err().to_string();
        assert!(
            err.contains("test.bin") && err.contains("label 200"),
            "{err}"
        );
        assert!(load_cifar_dir(&dir.join("missing"), None).is_err());
    }
}
