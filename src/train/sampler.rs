//! Sampling the SGD trajectory during training: w_0 before the first step, then K
//! evenly spaced samples per epoch over a range of epochs, each one buffer copy of the
//! flat parameters into a device-side store (rows in bindable chunks).

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use serde::{Deserialize, Serialize};

/// Which steps to sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SamplePlan {
    /// Samples per epoch (K).
    pub per_epoch: usize,
    /// First and last epoch sampled, 1-based and inclusive.
    pub first_epoch: usize,
    pub last_epoch: usize,
}

impl SamplePlan {
    /// Parse `A..B` (1-based, inclusive) as a range of epochs, checked against `epochs`.
    pub fn parse_epochs(text: &str, epochs: usize) -> Result<(usize, usize)> {
        let bad = || {
            Error::Config(format!(
                "--sample-epochs `{text}`: expected A..B with 1 ≤ A ≤ B ≤ {epochs}"
            ))
        };
        let (a, b) = text.split_once("..").ok_or_else(bad)?;
        let a: usize = a.trim().parse().map_err(|_| bad())?;
        let b: usize = b.trim().parse().map_err(|_| bad())?;
        if a == 0 || a > b || b > epochs {
            return Err(bad());
        }
        Ok((a, b))
    }

    /// Whether to sample after step `step` (0-based) of `epoch` (0-based) with `steps`
    /// steps per epoch: after steps ⌈j·steps/K⌉ − 1, j = 1..K.
    pub fn takes(&self, epoch: usize, step: usize, steps: usize) -> bool {
        let e = epoch + 1;
        if self.per_epoch == 0 || e < self.first_epoch || e > self.last_epoch {
            return false;
        }
        (1..=self.per_epoch).any(|j| (j * steps).div_ceil(self.per_epoch) == step + 1)
    }

    /// Total samples, w_0 included (saturating: a count past `usize` is refused by
    /// [`SampleStore::new`] as more than any memory).
    pub fn count(&self) -> usize {
        let epochs = (self.last_epoch + 1).saturating_sub(self.first_epoch);
        self.per_epoch.saturating_mul(epochs).saturating_add(1)
    }

    /// Samples taken after steps (w_0 not counted) before position (`epoch`, `step`)
    /// (0-based: the next step to run) with `steps` steps per epoch and at most one
    /// sample a step (`per_epoch` ≤ `steps`).
    pub fn taken_before(&self, epoch: usize, step: usize, steps: usize) -> usize {
        let first = self.first_epoch.saturating_sub(1);
        let whole = epoch.min(self.last_epoch).saturating_sub(first);
        let within = (0..step.min(steps))
            .filter(|&s| self.takes(epoch, s, steps))
            .count();
        whole * self.per_epoch.min(steps) + within
    }
}

/// Refuse a store whose samples could not be held in this machine's memory (they
/// are read back into it to be saved), before any of it is reserved.
fn check_memory(dim: usize, capacity: usize) -> Result<()> {
    let bytes = capacity.checked_mul(dim).and_then(|v| v.checked_mul(4));
    let available = host_memory();
    let too_much = match (bytes, available) {
        (None, _) => true,
        (Some(b), Some(a)) => b as u64 > a,
        (Some(_), None) => false,
    };
    if too_much {
        let gib = capacity as f64 * dim as f64 * 4.0 / (1u64 << 30) as f64;
        let memory = available.map_or("any machine's".into(), |a| {
            format!(
                "this machine's {:.1} GiB of",
                a as f64 / (1u64 << 30) as f64
            )
        });
        return Err(Error::Limits(format!(
            "{capacity} samples of {dim} parameters need {gib:.1} GiB, more than {memory} memory: take fewer samples per epoch or fewer epochs"
        )));
    }
    Ok(())
}

/// This machine's memory in bytes where the system tells (Linux: `MemTotal` of
/// `/proc/meminfo`); `None` elsewhere.
fn host_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Where a sample was taken: after `step` global steps, `epoch` epochs (fractional).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleInfo {
    pub epoch: f64,
    pub step: u64,
}

/// The samples on the device.
pub struct SampleStore {
    dim: usize,
    rows_per_chunk: usize,
    chunks: Vec<wgpu::Buffer>,
    capacity: usize,
    /// One entry per sample taken so far.
    pub infos: Vec<SampleInfo>,
}

impl SampleStore {
    /// Room for `capacity` samples of `dim` parameters.
    pub fn new(gpu: &Gpu, dim: usize, capacity: usize) -> Result<SampleStore> {
        check_memory(dim, capacity)?;
        let rows_per_chunk = gpu
            .rows_per_buffer(dim.next_multiple_of(4), "sample")?
            .min(capacity.max(1));
        let chunks = (0..capacity.div_ceil(rows_per_chunk))
            .map(|c| {
                gpu.storage(
                    rows_per_chunk.min(capacity - c * rows_per_chunk) * dim,
                    "samples",
                )
            })
            .collect();
        Ok(SampleStore {
            dim,
            rows_per_chunk,
            chunks,
            capacity,
            infos: Vec::new(),
        })
    }

    /// Samples taken so far.
    pub fn len(&self) -> usize {
        self.infos.len()
    }

    /// Whether no sample was taken yet.
    pub fn is_empty(&self) -> bool {
        self.infos.is_empty()
    }

    /// Parameters per sample, D.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Record a copy of sample `i` into the start of `dst` into `encoder`.
    #[track_caller]
    pub fn copy_row(&self, encoder: &mut wgpu::CommandEncoder, i: usize, dst: &wgpu::Buffer) {
        assert!(i < self.len(), "sample {i} of {}", self.len());
        let offset = ((i % self.rows_per_chunk) * self.dim * 4) as u64;
        encoder.copy_buffer_to_buffer(
            &self.chunks[i / self.rows_per_chunk],
            offset,
            dst,
            0,
            (self.dim * 4) as u64,
        );
    }

    /// Bytes the samples take on the device.
    pub fn bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.size()).sum()
    }

    /// Record a copy of `params` as the next sample into `encoder`.
    #[track_caller]
    pub fn record(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        params: &wgpu::Buffer,
        info: SampleInfo,
    ) {
        let i = self.infos.len();
        assert!(
            i < self.capacity,
            "sample store full ({} samples)",
            self.capacity
        );
        let offset = ((i % self.rows_per_chunk) * self.dim * 4) as u64;
        encoder.copy_buffer_to_buffer(
            params,
            0,
            &self.chunks[i / self.rows_per_chunk],
            offset,
            (self.dim * 4) as u64,
        );
        self.infos.push(info);
    }

    /// Put back samples saved from [`SampleStore::read`] with their `infos`.
    #[track_caller]
    pub fn restore(&mut self, gpu: &Gpu, samples: &[f32], infos: &[SampleInfo]) {
        assert!(infos.len() <= self.capacity && samples.len() == infos.len() * self.dim);
        for (c, rows) in samples.chunks(self.rows_per_chunk * self.dim).enumerate() {
            gpu.write(&self.chunks[c], 0, rows);
        }
        self.infos = infos.to_vec();
    }

    /// All samples taken, n × D row-major (read back from the device).
    pub async fn read(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        let n = self.infos.len();
        let mut out = Vec::with_capacity(n * self.dim);
        for (c, chunk) in self.chunks.iter().enumerate() {
            let rows = self
                .rows_per_chunk
                .min(n.saturating_sub(c * self.rows_per_chunk));
            if rows > 0 {
                out.extend(gpu.read::<f32>(chunk, 0, rows * self.dim).await?);
            }
        }
        Ok(out)
    }
}
