//! A device vector summed across ranks: copied into a mapped staging buffer at the end
//! of the caller's encoder, summed on the host by the [`Collective`], written back.

use super::Collective;
use crate::error::Result;
use crate::gpu::Gpu;
use std::time::Duration;
use web_time::Instant;

/// Staging for sums of up to `words` f32 values of a device buffer.
pub struct DeviceSum {
    staging: wgpu::Buffer,
    /// The values on the host (its length: the most values a sum takes).
    host: Vec<f32>,
    /// Time spent so far waiting for the device (the work before the copy, the copy,
    /// the map) and in the collective's sum itself.
    pub waited: Duration,
    pub summed: Duration,
}

impl DeviceSum {
    /// Room for `words` values.
    pub fn new(gpu: &Gpu, words: usize) -> DeviceSum {
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("collective staging"),
            size: (words.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        DeviceSum {
            staging,
            host: vec![0.0; words],
            waited: Duration::ZERO,
            summed: Duration::ZERO,
        }
    }

    /// Submit `encoder` with a copy of the first `words` values of `buffer` appended,
    /// wait for it, and replace those values by Σ over ranks of `scale`·values (the
    /// write lands before the next submit).
    pub async fn sum_in_place(
        &mut self,
        gpu: &Gpu,
        collective: &dyn Collective,
        mut encoder: wgpu::CommandEncoder,
        buffer: &wgpu::Buffer,
        words: usize,
        scale: f32,
    ) -> Result<()> {
        assert!(
            words <= self.host.len(),
            "{words} values, staging for {}",
            self.host.len()
        );
        let bytes = (words * 4) as u64;
        let started = Instant::now();
        encoder.copy_buffer_to_buffer(buffer, 0, &self.staging, 0, bytes);
        gpu.queue.submit([encoder.finish()]);
        gpu.read_staging(&self.staging, &mut self.host[..words])
            .await?;
        let host = &mut self.host[..words];
        if scale != 1.0 {
            host.iter_mut().for_each(|v| *v *= scale);
        }
        let waited = started.elapsed();
        collective.sum_f32(host);
        self.summed += started.elapsed() - waited;
        self.waited += waited;
        gpu.write(buffer, 0, host);
        Ok(())
    }
}
