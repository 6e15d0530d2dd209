//! Image classification data: an IDX directory loaded into memory (train and test
//! splits), normalisation statistics, and the device copy that batches are gathered from.

use super::idx::{decode_idx, read_idx, IdxArray};
use super::Shape;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Kernel};
use std::path::{Path, PathBuf};

/// How a split's values are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encoding {
    /// One byte per value, read as value/255 (image pixels).
    #[default]
    U8,
    /// Four bytes per value: a little-endian f32, read as it is.
    F32,
}

impl Encoding {
    pub fn bytes(self) -> usize {
        match self {
            Encoding::U8 => 1,
            Encoding::F32 => 4,
        }
    }
}

/// One split: `count` samples of `shape` (channels last), and their labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// The values, `encoding.bytes()` bytes each.
    pub pixels: Vec<u8>,
    pub labels: Vec<u32>,
    pub count: usize,
    pub shape: Shape,
    /// Where the labels came from (named in label errors).
    pub labels_file: PathBuf,
    pub encoding: Encoding,
}

impl Split {
    /// Values per sample.
    pub fn features(&self) -> usize {
        self.shape.len()
    }

    /// Bytes per sample.
    pub fn sample_bytes(&self) -> usize {
        self.shape.len() * self.encoding.bytes()
    }

    /// Value `i` of the whole split (sample-major), as the device reads it.
    pub fn value(&self, i: usize) -> f64 {
        match self.encoding {
            Encoding::U8 => self.pixels[i] as f64 / 255.0,
            Encoding::F32 => {
                let b = &self.pixels[4 * i..4 * i + 4];
                f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64
            }
        }
    }
}

/// Where a data set's class count comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classes {
    /// One more than the largest label; every class below it must have a training
    /// sample (a gap means a corrupt label).
    Infer,
    /// Stated by the user (`--classes`); every class must have a training sample.
    Stated(usize),
    /// Fixed by the file format (CIFAR-10/100) or the generator; classes may be absent
    /// from a part of the data set.
    Format(usize),
}

impl Classes {
    /// `Stated(n)` if the user gave `n`, else `otherwise`.
    pub fn stated_or(stated: Option<usize>, otherwise: Classes) -> Classes {
        stated.map_or(otherwise, Classes::Stated)
    }
}

/// A data set with train and test splits.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub train: Split,
    pub test: Split,
    pub classes: usize,
    /// Per-channel mean and standard deviation of the training pixels (in [0, 1]).
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub source: PathBuf,
    /// Files left out as unreadable (`--skip-bad`), each with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Find `stem` in `dir` under the usual IDX names (raw or .gz, `-idx3-ubyte` or `.idx3-ubyte`).
fn find(dir: &Path, stem: &str, kind: &str) -> Result<PathBuf> {
    let names = [
        format!("{stem}-{kind}-ubyte"),
        format!("{stem}-{kind}-ubyte.gz"),
        format!("{stem}.{kind}-ubyte"),
        format!("{stem}.{kind}-ubyte.gz"),
    ];
    names
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::io(
                dir.join(&names[1]),
                format!("no {} (or {}) in the data directory", names[1], names[0]),
            )
        })
}

fn load_split(dir: &Path, prefix: &str) -> Result<Split> {
    let images_path = find(dir, &format!("{prefix}-images"), "idx3")?;
    let labels_path = find(dir, &format!("{prefix}-labels"), "idx1")?;
    let images = read_idx(&images_path)?;
    let labels = read_idx(&labels_path)?;
    split_of(images, images_path, labels, labels_path)
}

/// A split from its decoded image and label arrays (the paths name them in errors).
fn split_of(
    images: IdxArray,
    images_path: PathBuf,
    labels: IdxArray,
    labels_path: PathBuf,
) -> Result<Split> {
    if images.dims.len() < 2 {
        return Err(Error::format(
            &images_path,
            format!(
                "expected images [count, rows, cols], got dims {:?}",
                images.dims
            ),
        ));
    }
    if labels.dims.len() != 1 {
        return Err(Error::format(
            &labels_path,
            format!("expected labels [count], got dims {:?}", labels.dims),
        ));
    }
    if images.dims[0] != labels.dims[0] {
        return Err(Error::format(
            &labels_path,
            format!(
                "{} labels but {} has {} images",
                labels.dims[0],
                images_path.display(),
                images.dims[0]
            ),
        ));
    }
    let count = images.dims[0];
    let (height, width) = match images.dims[1..] {
        [h, w] => (h, w),
        _ => (1, images.dims[1..].iter().product()),
    };
    Ok(Split {
        pixels: images.data,
        labels: labels.data.iter().map(|&l| l as u32).collect(),
        count,
        shape: Shape::image(height, width, 1),
        labels_file: labels_path,
        encoding: Encoding::U8,
    })
}

impl Dataset {
    /// Load `train-*` and `t10k-*` IDX files from `dir`; `classes` as in
    /// [`Dataset::from_splits`].
    pub fn load_idx_dir(dir: &Path, classes: Classes) -> Result<Dataset> {
        if !dir.is_dir() {
            return Err(Error::io(dir, "data directory not found"));
        }
        let train = load_split(dir, "train")?;
        let test = load_split(dir, "t10k")?;
        Dataset::from_splits(train, test, dir.to_path_buf(), classes)
    }

    /// The IDX files of [`Dataset::load_idx_dir`] already read (where there are no
    /// files: a browser fetches them): `read(name)` gives the contents of
    /// `source/name` for the names `train-images-idx3-ubyte.gz`,
    /// `train-labels-idx1-ubyte.gz`, `t10k-images-idx3-ubyte.gz` and
    /// `t10k-labels-idx1-ubyte.gz`, raw or gzip.
    pub fn from_idx_files(
        source: &Path,
        read: &mut dyn FnMut(&str) -> Result<Vec<u8>>,
        classes: Classes,
    ) -> Result<Dataset> {
        let mut split = |prefix: &str| -> Result<Split> {
            let mut array = |kind: &str, rank: &str| -> Result<(IdxArray, PathBuf)> {
                let name = format!("{prefix}-{kind}-{rank}-ubyte.gz");
                let path = source.join(&name);
                Ok((decode_idx(&path, read(&name)?)?, path))
            };
            let (images, images_path) = array("images", "idx3")?;
            let (labels, labels_path) = array("labels", "idx1")?;
            split_of(images, images_path, labels, labels_path)
        };
        let train = split("train")?;
        let test = split("t10k")?;
        Dataset::from_splits(train, test, source.to_path_buf(), classes)
    }

    /// Build from splits, checking they agree and computing per-channel
    /// normalisation statistics. Every label must be below the class count (see
    /// [`Classes`]).
    pub fn from_splits(
        train: Split,
        test: Split,
        source: PathBuf,
        classes: Classes,
    ) -> Result<Dataset> {
        if train.shape != test.shape {
            return Err(Error::format(
                &source,
                format!(
                    "train images are {} but test images {}",
                    train.shape, test.shape
                ),
            ));
        }
        let channels = train.shape.channels;
        if channels == 0 {
            return Err(Error::format(&source, "samples have no channels"));
        }
        if train.count == 0 || test.count == 0 {
            return Err(Error::format(&source, "a split holds no images"));
        }
        let classes = check_labels(&train, &test, classes)?;
        if train.encoding != test.encoding {
            return Err(Error::format(
                &source,
                format!(
                    "train values are {:?} but test values {:?}",
                    train.encoding, test.encoding
                ),
            ));
        }
        let values = train.count * train.features();
        let (sum, sq) = channel_sums(&train, channels, &source)?;
        let n = (values / channels) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| ((q / n - m * m).max(1e-12)).sqrt() as f32)
            .collect();
        Ok(Dataset {
            train,
            test,
            classes,
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
            source,
            skipped: Vec::new(),
        })
    }
}

/// Per channel, the sum and the sum of squares of the training split's values (as the
/// device reads them). Bytes are counted per value first: exact, in any order, and
/// one pass of increments over the pixels.
fn channel_sums(train: &Split, channels: usize, source: &Path) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut sum = vec![0.0f64; channels];
    let mut sq = vec![0.0f64; channels];
    let values = train.count * train.features();
    if train.encoding == Encoding::U8 {
        let mut counts = vec![[0u64; 256]; channels];
        for (i, &b) in train.pixels[..values].iter().enumerate() {
            counts[i % channels][b as usize] += 1;
        }
        for (c, counts) in counts.iter().enumerate() {
            for (b, &n) in counts.iter().enumerate() {
                let v = b as f64 / 255.0;
                sum[c] += n as f64 * v;
                sq[c] += n as f64 * v * v;
            }
        }
        return Ok((sum, sq));
    }
    for i in 0..values {
        let v = train.value(i);
        if !v.is_finite() {
            return Err(Error::format(
                source,
                format!(
                    "training sample {} holds a non-finite value ({v})",
                    i / train.features()
                ),
            ));
        }
        sum[i % channels] += v;
        sq[i % channels] += v * v;
    }
    Ok((sum, sq))
}

/// The class count, after checking that every label is below it and, unless the
/// format fixes it, that every class has a training sample.
fn check_labels(train: &Split, test: &Split, count: Classes) -> Result<usize> {
    let largest = |s: &Split| {
        s.labels
            .iter()
            .enumerate()
            .max_by_key(|&(i, &l)| (l, std::cmp::Reverse(i)))
            .map(|(i, &l)| (i, l as usize))
    };
    let classes = match count {
        Classes::Stated(0) | Classes::Format(0) => {
            return Err(Error::Config("the class count must be at least 1".into()))
        }
        Classes::Stated(n) | Classes::Format(n) => n,
        Classes::Infer => [largest(train), largest(test)]
            .into_iter()
            .flatten()
            .map(|(_, l)| l + 1)
            .max()
            .unwrap_or(1),
    };
    for split in [train, test] {
        if let Some(i) = split.labels.iter().position(|&l| l as usize >= classes) {
            return Err(Error::format(
                &split.labels_file,
                format!(
                    "label {} at index {i} is outside the {classes} classes (0..={}); state the class count with --classes N",
                    split.labels[i],
                    classes - 1
                ),
            ));
        }
    }
    if matches!(count, Classes::Format(_)) {
        return Ok(classes);
    }
    let mut seen = vec![false; classes];
    train.labels.iter().for_each(|&l| seen[l as usize] = true);
    if let Some(empty) = seen.iter().position(|s| !s) {
        let (i, top) = largest(train).expect("a split holds images");
        let hint = if count == Classes::Infer && top > empty {
            format!(
                " — the largest label, {top} at index {i}, looks corrupt; state the class count with --classes N"
            )
        } else {
            String::new()
        };
        return Err(Error::format(
            &train.labels_file,
            format!("class {empty} of {classes} has no training sample{hint}"),
        ));
    }
    Ok(classes)
}

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct GatherParams {
    batch: u32,
    height: u32,
    width: u32,
    channels: u32,
    augment: u32,
    seed: u32,
    /// 1: the values are f32 words, 0: bytes (÷ 255).
    floats: u32,
    pad: u32,
}

/// Where a gathered batch goes on the device: a network's input and label buffers,
/// and its per-step uniform, whose `start` says where in the order the batch begins.
#[derive(Clone, Copy)]
pub struct BatchTarget<'a> {
    pub inputs: &'a wgpu::Buffer,
    pub labels: &'a wgpu::Buffer,
    pub step: &'a wgpu::Buffer,
}

/// A split on the device: packed pixels, labels and the current epoch's order.
pub struct DeviceSplit {
    pub count: usize,
    pub shape: Shape,
    encoding: Encoding,
    pixels: wgpu::Buffer,
    labels: wgpu::Buffer,
    order: wgpu::Buffer,
    /// The mean of each channel, then the inverse of its standard deviation.
    stats: wgpu::Buffer,
}

impl DeviceSplit {
    /// Upload `split`, normalised with the training statistics of `data`.
    pub fn upload(gpu: &Gpu, split: &Split, data: &Dataset) -> Result<DeviceSplit> {
        let bytes = split.pixels.len() as u64;
        if bytes > gpu.max_binding() {
            return Err(Error::Limits(format!(
                "the data set's {bytes} bytes of pixels exceed the adapter's largest storage binding ({} bytes)",
                gpu.max_binding()
            )));
        }
        let order: Vec<u32> = (0..split.count as u32).collect();
        let channels = split.shape.channels;
        assert_eq!(data.mean.len(), channels, "statistics per channel");
        let stats: Vec<f32> = (data.mean.iter().copied())
            .chain(data.std.iter().map(|s| 1.0 / s))
            .collect();
        Ok(DeviceSplit {
            count: split.count,
            shape: split.shape,
            encoding: split.encoding,
            // The kernel reads the bytes as little-endian u32 words: as they lie.
            pixels: gpu.storage_init(&split.pixels, "pixels"),
            labels: gpu.storage_init(&split.labels, "labels"),
            order: gpu.storage_init(&order, "order"),
            stats: gpu.storage_init(&stats, "channel statistics"),
        })
    }

    /// Set the order in which batches are drawn (a permutation of 0..count).
    pub fn set_order(&self, gpu: &Gpu, order: &[u32]) {
        assert_eq!(order.len(), self.count, "order length vs split size");
        gpu.write(&self.order, 0, order);
    }

    /// The dispatch of `kernel` (`data.wgsl`'s gather) that fills `into`'s input and
    /// label buffers with `batch` samples starting at the step's `start` position of
    /// the order, normalised per channel; with `augment`, each image is randomly
    /// cropped from its 4-pixel zero padding and flipped horizontally (seeded by `seed`
    /// and the step number).
    pub fn gather(
        &self,
        gpu: &Gpu,
        kernel: &Kernel,
        into: BatchTarget,
        batch: usize,
        augment: Option<u64>,
    ) -> Dispatch {
        let p = GatherParams {
            batch: batch as u32,
            height: self.shape.height as u32,
            width: self.shape.width as u32,
            channels: self.shape.channels as u32,
            augment: augment.is_some() as u32,
            seed: augment.unwrap_or(0) as u32,
            floats: (self.encoding == Encoding::F32) as u32,
            pad: 0,
        };
        let u = gpu.uniform(&p, "gather");
        Dispatch::new(
            gpu,
            kernel,
            &[
                &self.pixels,
                &self.labels,
                &self.order,
                into.inputs,
                into.labels,
                &u,
                into.step,
                &self.stats,
            ],
            crate::gpu::kernels::grid(gpu, batch * self.shape.len()),
        )
    }
}
