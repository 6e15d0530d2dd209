//! The TWA subspace on the device: an orthonormal basis P (n × D, stored in bindable
//! pieces: [`Rows`]) of the sampled solutions, built by Gram–Schmidt with re-orthogonalisation
//! (CGS2) in row order, the transform T with P = T·W, and the projection g ← Pᵀ(P g).
//!
//! In a job of R ranks P is sharded by rows: rank r holds rows r, r + R, r + 2R, …
//! (TWA.md, "Distributed scheme"). Each Gram–Schmidt pass sums the rows' partial
//! combinations (a D-vector) over the ranks, and the dot products (an n-vector) once
//! per sample; a projection is P_rᵀ(P_r g) on each rank, summed by the caller.

use super::rows::{self, Rows, Segments};
use crate::collective::{Collective, DeviceSum, Single};
use crate::error::Result;
use crate::gpu::kernels::submit;
use crate::gpu::{Bind, Dispatch, Gpu, Kernels};
use crate::nn::GradientStep;
use crate::train::SampleStore;

/// A sample whose residual after orthogonalisation was below the tolerance: it adds
/// (numerically) nothing to the span and is left out of P.
#[derive(Clone, Debug, PartialEq)]
pub struct Dropped {
    /// Index among the samples given to [`Subspace::build`].
    pub sample: usize,
    /// ‖residual‖ / ‖sample‖.
    pub relative_residual: f64,
}

/// The orthonormal basis of span{w_i} on the device.
pub struct Subspace {
    /// D, the length of each row.
    pub dim: usize,
    /// Number of samples given (columns of T).
    pub samples: usize,
    /// Rows of P (samples kept).
    pub rank: usize,
    /// T (rank × samples, row-major, f64) with P = T·W.
    pub transform: Vec<f64>,
    /// Samples left out as numerically dependent.
    pub dropped: Vec<Dropped>,
    /// Coordinates β_i = P·w_i of every sample (each `rank` long), accumulated while
    /// orthogonalising: the CGS2 dot products, and ‖r‖ on the sample's own row.
    pub sample_coordinates: Vec<Vec<f64>>,
    /// This rank's rows (local numbering: row m of P is local row m / ranks).
    basis: Rows,
    /// Coefficients P·x of the last projection (local rows).
    coef: wgpu::Buffer,
    /// (this rank, ranks) of the job the rows are shared by.
    share: (usize, usize),
}

/// Residuals below this fraction of the sample's norm count as dependent.
pub const DEPENDENCE_TOLERANCE: f64 = 1e-5;

impl Subspace {
    /// Rows per chunk for `dim`-long rows within the adapter's binding limit (rows
    /// longer than one binding are cut into segments, [`Segments::of`]).
    pub fn rows_per_chunk(gpu: &Gpu, dim: usize) -> Result<usize> {
        let longest = Segments::of(gpu, dim).len;
        gpu.rows_per_binding(longest, "basis row segment")
    }

    /// Orthonormalise `samples` (n × D, row-major) in row order on the device, at most
    /// `rows_per_chunk` rows per buffer and D cut into segments of one binding.
    pub async fn build(
        gpu: &Gpu,
        k: &Kernels,
        samples: &[f32],
        dim: usize,
        rows_per_chunk: usize,
    ) -> Result<Subspace> {
        Self::build_sharded(gpu, k, &Single, Samples::host(samples), dim, rows_per_chunk).await
    }

    /// [`Subspace::build`] from [`Samples`] (read where they lie) with the rows shared by
    /// the ranks of `collective` (every rank passes the same samples and keeps only its
    /// rows).
    pub async fn build_sharded(
        gpu: &Gpu,
        k: &Kernels,
        collective: &dyn Collective,
        samples: Samples<'_>,
        dim: usize,
        rows_per_chunk: usize,
    ) -> Result<Subspace> {
        let segments = Segments::of(gpu, dim);
        Self::build_segmented(gpu, k, collective, samples, rows_per_chunk, segments).await
    }

    /// [`Subspace::build_sharded`] with D cut into `segments` (as the adapter's binding
    /// limit does for large models; tests cut small ones).
    pub async fn build_segmented(
        gpu: &Gpu,
        k: &Kernels,
        collective: &dyn Collective,
        samples: Samples<'_>,
        rows_per_chunk: usize,
        segments: Segments,
    ) -> Result<Subspace> {
        let dim = segments.dim;
        let n = samples.count(dim);
        let share = (collective.rank(), collective.size());
        let mine = n.saturating_sub(share.0).div_ceil(share.1);
        let basis = Rows::new(gpu, mine, segments, rows_per_chunk, "basis")?;
        let mut space = Subspace {
            dim,
            samples: n,
            rank: 0,
            transform: Vec::new(),
            dropped: Vec::new(),
            sample_coordinates: Vec::with_capacity(n),
            basis,
            coef: gpu.storage(2 * n + 3, "coefficients"),
            share,
        };
        let mut work = Orthogonalisation {
            residual: gpu.storage(dim, "residual"),
            partial: gpu.storage(dim, "partial combination"),
            exchange: (share.1 > 1).then(|| DeviceSum::new(gpu, dim)),
        };
        // coef[2n + 1] = 1: the coefficient of `partial` taken as a one-row basis.
        gpu.write(&space.coef, 2 * n + 1, &[1.0f32]);
        for i in 0..n {
            samples.load(gpu, i, dim, &work.residual);
            space.add_row(gpu, k, collective, i, &mut work).await?;
        }
        let rank = space.rank;
        space
            .sample_coordinates
            .iter_mut()
            .for_each(|c| c.resize(rank, 0.0));
        Ok(space)
    }

    /// Rows of P this rank holds.
    pub fn local_rows(&self) -> usize {
        self.basis.len()
    }

    /// Bytes of P this rank holds.
    pub fn local_bytes(&self) -> usize {
        self.basis.bytes()
    }

    /// Row m of P for each local row, in order.
    fn global_rows(&self) -> impl Iterator<Item = usize> + '_ {
        let (r, ranks) = self.share;
        (0..self.local_rows()).map(move |l| l * ranks + r)
    }

    /// Values per local row (read back from the coefficient buffer) placed at their
    /// rows of P in an `len`-long vector, summed over the ranks: every rank's rows.
    fn gathered(&self, collective: &dyn Collective, local: &[f32], len: usize) -> Vec<f64> {
        let mut all = vec![0.0f64; len];
        for (m, v) in self.global_rows().zip(local) {
            all[m] = *v as f64;
        }
        collective.sum(&mut all);
        all
    }

    /// Orthogonalise sample `index`, loaded into the residual, against the rows so far
    /// (twice) and append it unless its residual is negligible.
    async fn add_row(
        &mut self,
        gpu: &Gpu,
        k: &Kernels,
        collective: &dyn Collective,
        index: usize,
        work: &mut Orthogonalisation,
    ) -> Result<()> {
        let n = self.samples;
        let residual = &work.residual;
        let segments = self.basis.segments;
        // ‖w‖² before orthogonalising, with w as a one-row basis.
        let own = rows::windows(residual, segments);
        let mut pending = rows::dots(gpu, k, &own, 1, segments, residual, &self.coef, 2 * n + 2);
        for pass in 0..2 {
            let off = pass * n;
            pending.extend(self.basis.dots(gpu, k, residual, &self.coef, off));
            match work.exchange.as_mut() {
                None => pending.extend(self.basis.combine(
                    gpu,
                    k,
                    (&self.coef, off),
                    residual,
                    1.0,
                    -1.0,
                )),
                Some(exchange) => {
                    // partial ← P_rᵀc_r, summed over the ranks; residual −= partial.
                    pending.extend(self.basis.combine(
                        gpu,
                        k,
                        (&self.coef, off),
                        &work.partial,
                        0.0,
                        1.0,
                    ));
                    let encoder = encode(gpu, &pending);
                    pending.clear();
                    exchange
                        .sum_in_place(gpu, collective, encoder, &work.partial, self.dim, 1.0)
                        .await?;
                    pending.extend(rows::combine(
                        gpu,
                        k,
                        &rows::windows(&work.partial, segments),
                        1,
                        segments,
                        (&self.coef, 2 * n + 1),
                        residual,
                        1.0,
                        -1.0,
                    ));
                }
            }
        }
        // ‖r‖² with r as a one-row basis.
        pending.extend(rows::dots(
            gpu,
            k,
            &own,
            1,
            segments,
            residual,
            &self.coef,
            2 * n,
        ));
        submit(gpu, &pending.iter().collect::<Vec<_>>());
        let local: Vec<f32> = gpu.read(&self.coef, 0, 2 * n + 3).await?;
        let norm = (local[2 * n] as f64).max(0.0).sqrt();
        let w_norm = (local[2 * n + 2] as f64).max(0.0).sqrt();
        // The dot products of both passes with every row of P, wherever it is held.
        let first = self.gathered(collective, &local[..n], n);
        let second = self.gathered(collective, &local[n..2 * n], n);
        let coef: Vec<f64> = (0..self.rank).map(|j| first[j] + second[j]).collect();
        let mut beta = coef.clone();
        if norm <= DEPENDENCE_TOLERANCE * w_norm.max(f64::MIN_POSITIVE) {
            self.dropped.push(Dropped {
                sample: index,
                relative_residual: norm / w_norm.max(f64::MIN_POSITIVE),
            });
            self.sample_coordinates.push(beta);
            return Ok(());
        }
        // T row: p = (w_i − Σ_j c_j p_j)/‖r‖ with p_j = Σ_l T_jl w_l.
        let m = self.rank;
        let mut row = vec![0.0f64; n];
        row[index] = 1.0;
        for (j, c) in coef.iter().enumerate() {
            for (r, t) in row.iter_mut().zip(&self.transform[j * n..(j + 1) * n]) {
                *r -= c * t;
            }
        }
        row.iter_mut().for_each(|v| *v /= norm);
        self.transform.extend(row);
        beta.push(norm);
        self.sample_coordinates.push(beta);
        self.rank += 1;
        let (me, ranks) = self.share;
        if m % ranks != me {
            return Ok(());
        }
        // Scale the residual and append it as this rank's next row.
        let any = vec![Bind::from(&self.coef); segments.count()];
        let scale = (1.0 / norm) as f32;
        let scaled = rows::combine(
            gpu,
            k,
            &any,
            0,
            segments,
            (&self.coef, 0),
            residual,
            scale,
            0.0,
        );
        let mut encoder = encode(gpu, &scaled);
        self.basis.copy_in(&mut encoder, m / ranks, residual);
        gpu.queue.submit([encoder.finish()]);
        Ok(())
    }
}

/// The samples a subspace is built from: n × D rows on the host and, while the
/// sampler's store still holds them, the same rows on the device, which are then read
/// there (no trip through the host).
#[derive(Clone, Copy)]
pub struct Samples<'a> {
    pub host: &'a [f32],
    pub device: Option<&'a SampleStore>,
}

impl<'a> Samples<'a> {
    /// Samples held on the host only.
    pub fn host(host: &'a [f32]) -> Samples<'a> {
        Samples { host, device: None }
    }

    /// Number of `dim`-long samples (the device's rows must be the host's).
    #[track_caller]
    pub fn count(&self, dim: usize) -> usize {
        assert!(
            dim > 0 && self.host.len().is_multiple_of(dim),
            "samples ({}) not a multiple of D = {dim}",
            self.host.len()
        );
        let n = self.host.len() / dim;
        if let Some(store) = self.device {
            assert!(
                store.dim() == dim && store.len() == n,
                "the store holds other samples"
            );
        }
        n
    }

    /// Put sample `i` at the start of `dst`.
    fn load(&self, gpu: &Gpu, i: usize, dim: usize, dst: &wgpu::Buffer) {
        match self.device {
            Some(store) => {
                let mut encoder = gpu.device.create_command_encoder(&Default::default());
                store.copy_row(&mut encoder, i, dst);
                gpu.queue.submit([encoder.finish()]);
            }
            None => gpu.write(dst, 0, &self.host[i * dim..(i + 1) * dim]),
        }
    }
}

/// Device vectors and exchange of one Gram–Schmidt build.
struct Orthogonalisation {
    residual: wgpu::Buffer,
    /// A pass's combination over this rank's rows (sharded builds).
    partial: wgpu::Buffer,
    /// The sum over the ranks (none in one process).
    exchange: Option<DeviceSum>,
}

/// An encoder holding `dispatches` in one compute pass.
fn encode(gpu: &Gpu, dispatches: &[Dispatch]) -> wgpu::CommandEncoder {
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        dispatches.iter().for_each(|d| d.record(&mut pass));
    }
    encoder
}

/// α = Tᵀβ for T (rank × `samples`, row-major).
pub fn averaging_coefficients(transform: &[f64], samples: usize, beta: &[f64]) -> Vec<f64> {
    let mut alpha = vec![0.0; samples];
    for (b, row) in beta.iter().zip(transform.chunks(samples)) {
        for (a, t) in alpha.iter_mut().zip(row) {
            *a += t * b;
        }
    }
    alpha
}

impl Subspace {
    /// Dispatches for g ← Pᵀ(P g) in place: the gradient transform of projected SGD.
    /// Sharded, g ← P_rᵀ(P_r g) over this rank's rows: the ranks' results sum to it.
    pub fn projection(&self, gpu: &Gpu, k: &Kernels, g: &wgpu::Buffer) -> Vec<Dispatch> {
        let mut out = self.basis.dots(gpu, k, g, &self.coef, 0);
        out.extend(self.basis.combine(gpu, k, (&self.coef, 0), g, 0.0, 1.0));
        out
    }

    /// Projected SGD's step on the gradient `g`: the projection, summed over the
    /// ranks first when P is sharded.
    pub fn projected_sgd(&self, gpu: &Gpu, k: &Kernels, g: &wgpu::Buffer) -> GradientStep {
        let projection = self.projection(gpu, k, g);
        if self.is_sharded() {
            GradientStep::SgdSummed(projection)
        } else {
            GradientStep::Sgd(projection)
        }
    }

    /// Whether the rows are shared by several ranks.
    pub fn is_sharded(&self) -> bool {
        self.share.1 > 1
    }

    /// Coordinates β = P·x of a device vector x (read back): every row's, from the
    /// ranks of `collective` when P is sharded (the one it was built with).
    pub async fn coordinates(
        &self,
        gpu: &Gpu,
        k: &Kernels,
        collective: &dyn Collective,
        x: &wgpu::Buffer,
    ) -> Result<Vec<f64>> {
        let work = self.basis.dots(gpu, k, x, &self.coef, 0);
        submit(gpu, &work.iter().collect::<Vec<_>>());
        let local = gpu.read::<f32>(&self.coef, 0, self.local_rows()).await?;
        Ok(self.gathered(collective, &local, self.rank))
    }

    /// Averaging coefficients over the original samples, α = Tᵀβ, so that
    /// Pᵀβ = Σ_i α_i w_i.
    pub fn averaging_coefficients(&self, beta: &[f64]) -> Vec<f64> {
        assert_eq!(beta.len(), self.rank, "coordinates vs rank");
        averaging_coefficients(&self.transform, self.samples, beta)
    }

    /// Dispatches writing the coordinates P·x into `out[0..rank]` (this rank's rows,
    /// in local order, when sharded).
    pub fn coordinate_dispatches(
        &self,
        gpu: &Gpu,
        k: &Kernels,
        x: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> Vec<Dispatch> {
        self.basis.dots(gpu, k, x, out, 0)
    }

    /// Write β and return the dispatches computing y ← Pᵀβ (submit them before the
    /// coefficient buffer is used again).
    pub fn expand(&self, gpu: &Gpu, k: &Kernels, beta: &[f64], y: &wgpu::Buffer) -> Vec<Dispatch> {
        assert_eq!(beta.len(), self.rank, "coordinates vs rank");
        let words: Vec<f32> = beta.iter().map(|&b| b as f32).collect();
        gpu.write(&self.coef, 0, &words);
        self.basis.combine(gpu, k, (&self.coef, 0), y, 0.0, 1.0)
    }

    /// This rank's rows of P (all of P in one process) as rows × D floats (read back;
    /// for tests and reports).
    pub async fn read_basis(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        self.basis.read(gpu).await
    }
}
