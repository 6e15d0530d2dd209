//! Buffer helpers: storage and uniform buffers, and reading results back.

use super::context::Gpu;
use super::signal::signal;
use crate::error::{Error, Result};
use wgpu::util::DeviceExt;

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

impl Gpu {
    /// How many rows of `words` 4-byte words one storage binding holds; an error
    /// naming the row (`what`) where not even one fits.
    pub fn rows_per_binding(&self, words: usize, what: &str) -> Result<usize> {
        rows_within(self.max_binding(), "storage binding", words, what)
    }

    /// How many rows of `words` 4-byte words one buffer holds (for rows that are only
    /// copied, never bound whole); an error naming the row where not even one fits.
    pub fn rows_per_buffer(&self, words: usize, what: &str) -> Result<usize> {
        rows_within(self.limits.max_buffer_size, "buffer", words, what)
    }

    /// A zeroed storage buffer of `words` 4-byte words (at least one), rounded up to
    /// whole 16-byte vectors so that kernels may read it as `array<vec4<f32>>`.
    pub fn storage(&self, words: usize, label: &str) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (words.max(1).next_multiple_of(4) * 4) as u64,
            usage: STORAGE,
            mapped_at_creation: false,
        })
    }

    /// A storage buffer holding `data`.
    /// (Padded with zeros to whole 16-byte vectors, as [`Gpu::storage`].)
    pub fn storage_init<T: bytemuck::Pod>(&self, data: &[T], label: &str) -> wgpu::Buffer {
        let mut bytes = bytemuck::cast_slice::<T, u8>(data).to_vec();
        bytes.resize(bytes.len().max(1).next_multiple_of(16), 0);
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: &bytes,
                usage: STORAGE,
            })
    }

    /// A uniform buffer holding `value` (writable later with `queue.write_buffer`).
    pub fn uniform<T: bytemuck::Pod>(&self, value: &T, label: &str) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::bytes_of(value),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// Copy `words` 4-byte words from `offset_words` of `buffer` to the host (natively
    /// it blocks; on the web it waits for the browser to map the copy).
    pub async fn read<T: bytemuck::Pod>(
        &self,
        buffer: &wgpu::Buffer,
        offset_words: usize,
        words: usize,
    ) -> Result<Vec<T>> {
        let bytes = (words * 4) as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, (offset_words * 4) as u64, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        let mut out = vec![T::zeroed(); words];
        self.read_staging(&staging, &mut out).await?;
        Ok(out)
    }

    /// Map the `MAP_READ` buffer `staging` once the device is done with it and copy
    /// its first values into `out`.
    pub async fn read_staging<T: bytemuck::Pod>(
        &self,
        staging: &wgpu::Buffer,
        out: &mut [T],
    ) -> Result<()> {
        let bytes = std::mem::size_of_val(out) as u64;
        let slice = staging.slice(..bytes.max(4));
        let (tx, mapped) = signal();
        slice.map_async(wgpu::MapMode::Read, move |r| tx.send(r));
        self.wait().await?;
        mapped
            .await
            .map_err(|e| Error::Gpu(format!("readback failed: {e}")))?;
        {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::Gpu(e.to_string()))?;
            out.copy_from_slice(bytemuck::cast_slice(&view[..bytes as usize]));
        }
        staging.unmap();
        Ok(())
    }

    /// Overwrite `buffer` from `offset_words` with `data`.
    pub fn write<T: bytemuck::Pod>(&self, buffer: &wgpu::Buffer, offset_words: usize, data: &[T]) {
        self.queue.write_buffer(
            buffer,
            (offset_words * 4) as u64,
            bytemuck::cast_slice(data),
        );
    }
}

/// Rows of `words` words within `limit` bytes (the adapter's largest `kind`).
fn rows_within(limit: u64, kind: &str, words: usize, what: &str) -> Result<usize> {
    let rows = limit as usize / (words.max(1) * 4);
    if rows == 0 {
        return Err(Error::Limits(format!(
            "one {what} of {words} values exceeds the adapter's largest {kind} ({limit} bytes)"
        )));
    }
    Ok(rows)
}
