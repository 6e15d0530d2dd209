//! Image classification data: an IDX directory loaded into memory (train and test
//! splits), normalisation statistics, and the device copy that batches are gathered from.

use super::idx::read_idx;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu};
use crate::nn::Network;
use std::path::{Path, PathBuf};

/// One split: `count` images of `features` bytes each, and their labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
    pub count: usize,
    pub features: usize,
}

/// A data set with train and test splits.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub train: Split,
    pub test: Split,
    pub classes: usize,
    /// Mean and standard deviation of the training pixels (in [0, 1]).
    pub mean: f32,
    pub std: f32,
    pub source: PathBuf,
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
    let features = images.dims[1..].iter().product();
    Ok(Split {
        pixels: images.data,
        labels: labels.data,
        count,
        features,
    })
}

impl Dataset {
    /// Load `train-*` and `t10k-*` IDX files from `dir`.
    pub fn load_idx_dir(dir: &Path) -> Result<Dataset> {
        if !dir.is_dir() {
            return Err(Error::io(dir, "data directory not found"));
        }
        let train = load_split(dir, "train")?;
        let test = load_split(dir, "t10k")?;
        Dataset::from_splits(train, test, dir.to_path_buf())
    }

    /// Build from splits, checking they agree and computing normalisation statistics.
    pub fn from_splits(train: Split, test: Split, source: PathBuf) -> Result<Dataset> {
        if train.features != test.features {
            return Err(Error::format(
                &source,
                format!(
                    "train images have {} pixels but test images {}",
                    train.features, test.features
                ),
            ));
        }
        if train.count == 0 || test.count == 0 {
            return Err(Error::format(&source, "a split holds no images"));
        }
        let classes = train
            .labels
            .iter()
            .chain(&test.labels)
            .copied()
            .max()
            .unwrap_or(0) as usize
            + 1;
        let n = train.pixels.len() as f64;
        let sum: f64 = train.pixels.iter().map(|&p| p as f64).sum();
        let sq: f64 = train.pixels.iter().map(|&p| (p as f64) * (p as f64)).sum();
        let mean = sum / n / 255.0;
        let var = (sq / n / (255.0 * 255.0) - mean * mean).max(1e-12);
        Ok(Dataset {
            train,
            test,
            classes,
            mean: mean as f32,
            std: var.sqrt() as f32,
            source,
        })
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct GatherParams {
    batch: u32,
    features: u32,
    mean: f32,
    inv_std: f32,
}

/// A split on the device: packed pixels, labels and the current epoch's order.
pub struct DeviceSplit {
    pub count: usize,
    pub features: usize,
    pixels: wgpu::Buffer,
    labels: wgpu::Buffer,
    order: wgpu::Buffer,
    mean: f32,
    inv_std: f32,
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
        let mut words = vec![0u32; split.pixels.len().div_ceil(4)];
        for (i, &b) in split.pixels.iter().enumerate() {
            words[i / 4] |= (b as u32) << ((i % 4) * 8);
        }
        let labels: Vec<u32> = split.labels.iter().map(|&l| l as u32).collect();
        let order: Vec<u32> = (0..split.count as u32).collect();
        Ok(DeviceSplit {
            count: split.count,
            features: split.features,
            pixels: gpu.storage_init(&words, "pixels"),
            labels: gpu.storage_init(&labels, "labels"),
            order: gpu.storage_init(&order, "order"),
            mean: data.mean,
            inv_std: 1.0 / data.std,
        })
    }

    /// Set the order in which batches are drawn (a permutation of 0..count).
    pub fn set_order(&self, gpu: &Gpu, order: &[u32]) {
        assert_eq!(order.len(), self.count, "order length vs split size");
        gpu.write(&self.order, 0, order);
    }

    /// The dispatch that fills `net`'s input and label buffers with `batch` samples
    /// starting at the step's `start` position of the order.
    pub fn gather(&self, gpu: &Gpu, net: &Network, batch: usize) -> Dispatch {
        let p = GatherParams {
            batch: batch as u32,
            features: self.features as u32,
            mean: self.mean,
            inv_std: self.inv_std,
        };
        let u = gpu.uniform(&p, "gather");
        Dispatch::new(
            gpu,
            &net.kernels.gather,
            &[
                &self.pixels,
                &self.labels,
                &self.order,
                &net.acts[0],
                &net.labels,
                &u,
                &net.step,
            ],
            crate::gpu::kernels::groups_1d(batch * self.features, 256),
        )
    }
}
