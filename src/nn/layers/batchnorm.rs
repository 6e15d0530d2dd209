//! BatchNorm (`batchnorm.wgsl`): its passes, fused with the ReLU after it or not, and
//! the sync points where ranks sum their statistics (`--sync-bn`).

use super::*;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct BatchNormParams {
    rows: u32,
    features: u32,
    g_off: u32,
    s_off: u32,
    momentum: f32,
    eps: f32,
    chunk_rows: u32,
    chunks: u32,
}

/// Most chunks a BatchNorm reduction cuts its rows into (see `batchnorm.wgsl`).
pub const BN_MAX_CHUNKS: usize = 256;

/// (rows per chunk, chunks) of a BatchNorm reduction over `rows` rows.
pub(super) fn bn_chunks(rows: usize) -> (usize, usize) {
    let chunk_rows = rows.div_ceil(BN_MAX_CHUNKS).max(32);
    (chunk_rows, rows.div_ceil(chunk_rows))
}

/// The uniform of a BatchNorm pass over `rows` rows.
pub(super) fn batchnorm_params(
    layer: &Layer,
    bufs: &LayerBuffers,
    rows: usize,
    features: usize,
) -> BatchNormParams {
    let (chunk_rows, chunks) = bn_chunks(rows);
    BatchNormParams {
        rows: rows as u32,
        features: features as u32,
        g_off: bufs.param_off(layer) as u32,
        s_off: layer.state_off as u32,
        momentum: BN_MOMENTUM,
        eps: BN_EPS,
        chunk_rows: chunk_rows as u32,
        chunks: chunks as u32,
    }
}

/// The dispatches of one BatchNorm pass: `entries` in order, each over (chunk,
/// feature) pairs, features or all values as its name says. `io` is (x, dy, out, the
/// ReLU output a fused backward reads).
pub(super) fn batchnorm(
    gpu: &Gpu,
    layer: &Layer,
    rows: usize,
    features: usize,
    entries: &[&crate::gpu::Kernel],
    io: [&wgpu::Buffer; 4],
    bufs: &LayerBuffers,
) -> Vec<Dispatch> {
    let p = batchnorm_params(layer, bufs, rows, features);
    let u = gpu.uniform(&p, "batchnorm");
    batchnorm_with(gpu, &p, &u, entries, io, bufs)
}

/// [`batchnorm`]'s dispatches with the uniform `u` holding `p`.
pub(super) fn batchnorm_with(
    gpu: &Gpu,
    p: &BatchNormParams,
    u: &wgpu::Buffer,
    entries: &[&crate::gpu::Kernel],
    io: [&wgpu::Buffer; 4],
    bufs: &LayerBuffers,
) -> Vec<Dispatch> {
    let (rows, features, chunks) = (p.rows as usize, p.features as usize, p.chunks as usize);
    let [x, dy, out, relu_out] = io;
    entries
        .iter()
        .map(|kernel| {
            let groups = if kernel.name.starts_with("partial") {
                groups_1d(chunks * features, 64)
            } else if kernel.name.starts_with("finish") {
                groups_1d(features, 64)
            } else {
                // An invocation keeps one feature: at least one lane per feature.
                let [groups, ..] = grid(gpu, rows * features);
                [groups.max(features.div_ceil(lanes(gpu)) as u32), 1, 1]
            };
            Dispatch::new(
                gpu,
                kernel,
                &[
                    x.into(),
                    bufs.params,
                    dy.into(),
                    out.into(),
                    bufs.state.into(),
                    bufs.grads,
                    bufs.partials.into(),
                    u.into(),
                    bufs.step.into(),
                    relu_out.into(),
                ],
                groups,
            )
        })
        .collect()
}

/// Where a BatchNorm layer's training step waits for the other ranks (`--sync-bn`),
/// so that R ranks normalise with, and differentiate through, the statistics of the
/// whole global batch as one process does.
pub struct BnSync {
    /// The layer's uniform (this rank's rows) and, for the statistics, the uniform of
    /// `finish_train` that is told the global rows.
    params: BatchNormParams,
    finish: Option<wgpu::Buffer>,
    /// Where the layer's (dγ, dβ) start in the whole gradient store.
    grad_off: usize,
    /// Where the values it sums are read back (made once, used every step).
    staging: wgpu::Buffer,
}

impl BnSync {
    fn new(
        gpu: &Gpu,
        params: BatchNormParams,
        finish: Option<wgpu::Buffer>,
        grad_off: usize,
    ) -> BnSync {
        // The chunks' (mean, M2) for the statistics, (dγ, dβ) for the gradients.
        let words = match finish {
            Some(_) => 2 * params.chunks * params.features,
            None => 2 * params.features,
        };
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("batchnorm sync staging"),
            size: 4 * words as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        BnSync {
            params,
            finish,
            grad_off,
            staging,
        }
    }

    /// `words` values of `buffer` from `offset` words, through the staging buffer.
    async fn read(
        &self,
        gpu: &Gpu,
        buffer: &wgpu::Buffer,
        offset: usize,
        words: usize,
    ) -> crate::error::Result<Vec<f32>> {
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(
            buffer,
            4 * offset as u64,
            &self.staging,
            0,
            4 * words as u64,
        );
        gpu.queue.submit([encoder.finish()]);
        let mut values = vec![0.0f32; words];
        gpu.read_staging(&self.staging, &mut values).await?;
        Ok(values)
    }

    /// After `partial_stats`: every rank's chunk (mean, M2) merged (Chan et al., in
    /// f64, ranks in order) into chunk 0 of `partials`; after `finish_grads`:
    /// (dγ, dβ) ← Σ_r share_r·(dγ_r, dβ_r) with share_r this rank's part of the global
    /// batch (each rank's dy is a mean over its own rows).
    pub async fn apply(
        &self,
        gpu: &Gpu,
        collective: &dyn crate::collective::Collective,
        partials: &wgpu::Buffer,
        grads: &wgpu::Buffer,
        share: f64,
    ) -> crate::error::Result<()> {
        let p = &self.params;
        let nf = p.features as usize;
        let Some(finish) = &self.finish else {
            let g_off = self.grad_off;
            let local = self.read(gpu, grads, g_off, 2 * nf).await?;
            let mut sums: Vec<f64> = local.iter().map(|&v| v as f64 * share).collect();
            collective.sum(&mut sums);
            let words: Vec<f32> = sums.into_iter().map(|v| v as f32).collect();
            gpu.write(grads, g_off, &words);
            return Ok(());
        };
        let chunks = p.chunks as usize;
        let values = self.read(gpu, partials, 0, 2 * chunks * nf).await?;
        // (count, mean, M2) per feature over this rank's chunks.
        let mut local = vec![0.0f64; 3 * nf];
        for k in 0..chunks {
            let first = k * p.chunk_rows as usize;
            let count = (first + p.chunk_rows as usize).min(p.rows as usize) - first;
            for f in 0..nf {
                let t = k * nf + f;
                let (mean, m2) = (values[2 * t] as f64, values[2 * t + 1] as f64);
                merge(&mut local[3 * f..3 * f + 3], [count as f64, mean, m2]);
            }
        }
        let every = collective.gather(&local);
        let mut global = vec![0.0f64; 3 * nf];
        for rank in every.chunks(3 * nf) {
            for f in 0..nf {
                let s = &rank[3 * f..3 * f + 3];
                merge(&mut global[3 * f..3 * f + 3], [s[0], s[1], s[2]]);
            }
        }
        let merged: Vec<f32> = (0..nf)
            .flat_map(|f| [global[3 * f + 1] as f32, global[3 * f + 2] as f32])
            .collect();
        gpu.write(partials, 0, &merged);
        let rows = global[0].round() as u32;
        let whole = BatchNormParams {
            rows,
            chunk_rows: rows,
            chunks: 1,
            ..*p
        };
        gpu.write(finish, 0, &[whole]);
        Ok(())
    }
}

/// Add the statistics `b` = (count, mean, M2) into `a` (Chan et al.).
pub(super) fn merge(a: &mut [f64], b: [f64; 3]) {
    let n = a[0] + b[0];
    if b[0] == 0.0 {
        return;
    }
    let delta = b[1] - a[1];
    a[1] += delta * b[0] / n;
    a[2] += b[2] + delta * delta * a[0] * b[0] / n;
    a[0] = n;
}

/// A BatchNorm layer's training forward (`dx: None`) or backward cut at its
/// [`BnSync`]: the dispatches before, the sync, the dispatches after.
pub fn batchnorm_synced(
    gpu: &Gpu,
    k: &Kernels,
    layer: &Layer,
    batch: usize,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dx: Option<&wgpu::Buffer>,
    bufs: &LayerBuffers,
) -> (Vec<Dispatch>, BnSync, Vec<Dispatch>) {
    let LayerKind::BatchNorm { features, spatial } = layer.kind else {
        panic!("{} has no BatchNorm sync", layer.kind.describe())
    };
    let p = batchnorm_params(layer, bufs, batch * spatial, features);
    let u = gpu.uniform(&p, "batchnorm");
    match dx {
        None => {
            let finish = gpu.uniform(&p, "batchnorm finish (global rows)");
            let io = [x, bufs.unused, y, bufs.unused];
            let before = batchnorm_with(gpu, &p, &u, &[&k.bn_partial_stats], io, bufs);
            let mut after = batchnorm_with(gpu, &p, &finish, &[&k.bn_finish_train], io, bufs);
            after.extend(batchnorm_with(gpu, &p, &u, &[&k.bn_normalise], io, bufs));
            let sync = BnSync::new(gpu, p, Some(finish), layer.param_off);
            (before, sync, after)
        }
        Some(dx) => {
            let io = [x, dy, dx, bufs.unused];
            let entries: [&crate::gpu::Kernel; 2] = [&k.bn_partial_grads, &k.bn_finish_grads];
            let before = batchnorm_with(gpu, &p, &u, &entries, io, bufs);
            let after = batchnorm_with(gpu, &p, &u, &[&k.bn_backward_dx], io, bufs);
            let sync = BnSync::new(gpu, p, None, layer.param_off);
            (before, sync, after)
        }
    }
}

/// A BatchNorm layer's forward; with `relu` the ReLU after it too, `y` then getting
/// the ReLU's output (the BatchNorm's own is never stored).
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_forward(
    gpu: &Gpu,
    k: &Kernels,
    layer: &Layer,
    batch: usize,
    mode: Mode,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    relu: bool,
    bufs: &LayerBuffers,
) -> Vec<Dispatch> {
    let LayerKind::BatchNorm { features, spatial } = layer.kind else {
        panic!("{} is no BatchNorm", layer.kind.describe())
    };
    let normalise = if relu {
        &k.bn_normalise_relu
    } else {
        &k.bn_normalise
    };
    let entries: &[&crate::gpu::Kernel] = match mode {
        Mode::Train | Mode::Probe => &[&k.bn_partial_stats, &k.bn_finish_train, normalise],
        Mode::Recalibrate => &[&k.bn_partial_stats, &k.bn_finish_recalibrate, normalise],
        Mode::Eval if relu => &[&k.bn_normalise_running_relu],
        Mode::Eval => &[&k.bn_normalise_running],
    };
    let io = [x, bufs.unused, y, bufs.unused];
    batchnorm(gpu, layer, batch * spatial, features, entries, io, bufs)
}

/// A BatchNorm layer's backward from `dy`, or, with `relu_out` = z (the output of
/// [`batchnorm_forward`] with `relu`), from the ReLU's: `dy` is then dz.
#[allow(clippy::too_many_arguments)]
pub fn batchnorm_backward(
    gpu: &Gpu,
    k: &Kernels,
    layer: &Layer,
    batch: usize,
    x: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    relu_out: Option<&wgpu::Buffer>,
    dx: &wgpu::Buffer,
    bufs: &LayerBuffers,
) -> Vec<Dispatch> {
    let LayerKind::BatchNorm { features, spatial } = layer.kind else {
        panic!("{} is no BatchNorm", layer.kind.describe())
    };
    let entries: [&crate::gpu::Kernel; 3] = match relu_out {
        Some(_) => [
            &k.bn_partial_grads_relu,
            &k.bn_finish_grads,
            &k.bn_backward_dx_relu,
        ],
        None => [&k.bn_partial_grads, &k.bn_finish_grads, &k.bn_backward_dx],
    };
    let io = [x, dy, dx, relu_out.unwrap_or(bufs.unused)];
    batchnorm(gpu, layer, batch * spatial, features, &entries, io, bufs)
}
