//! The coordinates a landscape's planes live in: the samples' orthonormal basis P at
//! 32 bits (the coordinates β = P·w), or — with `--bits 1|2|4|8` — the explicit
//! directions d̃_i = (w_i − c)/‖w_i − c‖ of TWA's journal form stored at b bits
//! (n·D·b/8 bytes instead of 4·n·D for P).
//!
//! The quantised directions are not orthonormal, so their coordinates are made so: with
//! the Gram matrix G = D̃ᵀD̃ = V Λ Vᵀ (computed on the device in f32; eigenvalues at
//! most 1e-6·λ_max dropped as rounding — Σ_i ‖w_i − c‖ d̃_i, zero before quantising,
//! is kept when the levels' rounding makes it larger), a point
//! w = c + D̃β has the coordinates γ = Λ^½ Vᵀ β, and ‖γ − γ'‖ = ‖w − w'‖; back,
//! β = V Λ^-½ γ. The planes and distances are then computed as for P.

use super::plane::symmetric_eigen;
use crate::collective::Single;
use crate::error::Result;
use crate::gpu::kernels::submit;
use crate::gpu::{Gpu, Kernels};
use crate::twa::directions::{self, Block, Directions, Packed};
use crate::twa::Subspace;

/// Eigenvalues of G below this share of the largest (f32 sums' rounding) are left out
/// of the coordinates.
const RELATIVE_EIGENVALUE: f64 = 1e-6;

/// Where a landscape's coordinates come from.
pub enum Basis {
    /// The orthonormal basis P of the samples (32-bit).
    Orthonormal(Subspace),
    /// b-bit directions around the samples' mean.
    Quantised(Box<QuantisedBasis>),
}

/// b-bit directions d̃_i around the centre c, with orthonormal coordinates γ over them.
pub struct QuantisedBasis {
    pub bits: u32,
    /// The directions on the device, with a zero centre (their combination is D̃β).
    directions: Directions,
    centre: Vec<f32>,
    /// ‖w_i − c‖ of every sample.
    norms: Vec<f64>,
    /// γ = `to_coordinates`·β (rank × n, row-major): Λ^½ Vᵀ over the kept eigenvalues.
    to_coordinates: Vec<f64>,
    /// β = `to_coefficients`·γ (n × rank): V Λ^-½.
    to_coefficients: Vec<f64>,
    /// ⟨d̃_i, c⟩: what `coordinates` subtracts from ⟨d̃_i, w⟩.
    centre_dots: Vec<f64>,
    /// Coefficients β on the device, and their dot products with a vector.
    beta: wgpu::Buffer,
    dots: wgpu::Buffer,
}

impl Basis {
    /// The basis of `samples` (n × `dim`): P for `bits` = 32, b-bit directions otherwise.
    pub async fn build(
        gpu: &Gpu,
        k: &Kernels,
        samples: &[f32],
        dim: usize,
        bits: u32,
    ) -> Result<Basis> {
        if bits == 32 {
            let rows = Subspace::rows_per_chunk(gpu, dim)?;
            return Ok(Basis::Orthonormal(
                Subspace::build(gpu, k, samples, dim, rows).await?,
            ));
        }
        let quantised = QuantisedBasis::build(gpu, k, samples, dim, bits).await?;
        Ok(Basis::Quantised(Box::new(quantised)))
    }

    /// Dimensions of the coordinates.
    pub fn rank(&self) -> usize {
        match self {
            Basis::Orthonormal(p) => p.rank,
            Basis::Quantised(q) => q.rank(),
        }
    }

    /// Bits per stored value.
    pub fn bits(&self) -> u32 {
        match self {
            Basis::Orthonormal(_) => 32,
            Basis::Quantised(q) => q.bits,
        }
    }

    /// Bytes of the stored basis on the device.
    pub fn bytes(&self) -> usize {
        match self {
            Basis::Orthonormal(p) => p.local_bytes(),
            Basis::Quantised(q) => q.directions.bytes,
        }
    }

    /// Coordinates of every sample.
    pub fn sample_coordinates(&self) -> Vec<Vec<f64>> {
        match self {
            Basis::Orthonormal(p) => p.sample_coordinates.clone(),
            Basis::Quantised(q) => (0..q.norms.len())
                .map(|i| {
                    let mut beta = vec![0.0; q.norms.len()];
                    beta[i] = q.norms[i];
                    q.coordinates_of_coefficients(&beta)
                })
                .collect(),
        }
    }

    /// Write into `out` (D words) the weights at `coords` (a point: P's span holds
    /// the origin, the directions are around c) or, with `point` false, the weight-space
    /// vector of the coordinate displacement `coords`; done when it returns.
    pub async fn expand(
        &self,
        gpu: &Gpu,
        k: &Kernels,
        coords: &[f64],
        point: bool,
        out: &wgpu::Buffer,
    ) -> Result<()> {
        match self {
            Basis::Orthonormal(p) => {
                let work = p.expand(gpu, k, coords, out);
                submit(gpu, &work.iter().collect::<Vec<_>>());
            }
            Basis::Quantised(q) => {
                let beta = q.coefficients_of_coordinates(coords);
                let words: Vec<f32> = beta.iter().map(|&b| b as f32).collect();
                gpu.write(&q.beta, 0, &words);
                submit(gpu, &[&q.directions.combine(gpu, k, &q.beta, out)]);
                if point {
                    let mut w: Vec<f32> = gpu.read(out, 0, q.centre.len()).await?;
                    w.iter_mut().zip(&q.centre).for_each(|(w, c)| *w += c);
                    gpu.write(out, 0, &w);
                }
            }
        }
        gpu.wait().await
    }

    /// Coordinates of the orthogonal projection of the weights `x` (a device vector)
    /// onto the samples' span (read back).
    pub async fn coordinates(&self, gpu: &Gpu, k: &Kernels, x: &wgpu::Buffer) -> Result<Vec<f64>> {
        match self {
            Basis::Orthonormal(p) => p.coordinates(gpu, k, &Single, x).await,
            Basis::Quantised(q) => {
                let h: Vec<f64> = q
                    .dot_products(gpu, k, x)
                    .await?
                    .iter()
                    .zip(&q.centre_dots)
                    .map(|(h, c)| h - c)
                    .collect();
                // γ = Λ^-½ Vᵀ h, i.e. to_coefficientsᵀ·h.
                let (n, rank) = (q.norms.len(), q.rank());
                Ok((0..rank)
                    .map(|r| (0..n).map(|i| q.to_coefficients[i * rank + r] * h[i]).sum())
                    .collect())
            }
        }
    }

    /// Averaging coefficients α over the samples of the point at `coords`
    /// (Σ_i α_i w_i is the point; for b-bit directions, up to their rounding).
    pub fn averaging_coefficients(&self, coords: &[f64]) -> Vec<f64> {
        match self {
            Basis::Orthonormal(p) => p.averaging_coefficients(coords),
            Basis::Quantised(q) => {
                let beta = q.coefficients_of_coordinates(coords);
                directions::averaging_coefficients(&beta, &q.norms, 1).remove(0)
            }
        }
    }
}

impl QuantisedBasis {
    async fn build(gpu: &Gpu, k: &Kernels, samples: &[f32], dim: usize, bits: u32) -> Result<Self> {
        let whole = [Block {
            name: "all".into(),
            range: 0..dim,
        }];
        let (centre, dirs, norms) = directions::normalised_directions(samples, dim, &whole);
        let mut packed = Packed::pack(&dirs, dim, &whole, bits)?;
        drop(dirs);
        packed.renormalise();
        let directions = Directions::upload(gpu, &vec![0.0; dim], &packed)?;
        drop(packed);
        let n = norms.len();
        let mut basis = QuantisedBasis {
            bits,
            centre,
            norms,
            to_coordinates: Vec::new(),
            to_coefficients: Vec::new(),
            centre_dots: Vec::new(),
            beta: gpu.storage(n, "landscape coefficients"),
            dots: gpu.storage(n, "landscape direction dots"),
            directions,
        };
        // G column by column: d̃_j expanded, then its dot products with every d̃_i.
        let column = gpu.storage(dim, "landscape direction");
        let mut gram = vec![0.0; n * n];
        for j in 0..n {
            let mut unit = vec![0.0f32; n];
            unit[j] = 1.0;
            gpu.write(&basis.beta, 0, &unit);
            submit(
                gpu,
                &[&basis.directions.combine(gpu, k, &basis.beta, &column)],
            );
            for (i, g) in basis
                .dot_products(gpu, k, &column)
                .await?
                .into_iter()
                .enumerate()
            {
                gram[i * n + j] = g;
            }
        }
        // Symmetrise the f32 sums' rounding before the eigen-decomposition.
        for i in 0..n {
            for j in 0..i {
                let mean = 0.5 * (gram[i * n + j] + gram[j * n + i]);
                gram[i * n + j] = mean;
                gram[j * n + i] = mean;
            }
        }
        let (values, vectors) = symmetric_eigen(gram, n);
        let largest = values.iter().copied().fold(0.0, f64::max);
        let kept: Vec<usize> = (0..n)
            .filter(|&r| values[r] > RELATIVE_EIGENVALUE * largest)
            .collect();
        for &r in &kept {
            let root = values[r].sqrt();
            basis
                .to_coordinates
                .extend((0..n).map(|i| root * vectors[i * n + r]));
        }
        basis.to_coefficients = (0..n)
            .flat_map(|i| kept.iter().map(move |&r| (i, r)))
            .map(|(i, r)| vectors[i * n + r] / values[r].sqrt())
            .collect();
        let centre_buffer = gpu.storage_init(&basis.centre, "landscape centre");
        basis.centre_dots = basis.dot_products(gpu, k, &centre_buffer).await?;
        Ok(basis)
    }

    /// ⟨d̃_i, x⟩ for every direction (read back).
    async fn dot_products(&self, gpu: &Gpu, k: &Kernels, x: &wgpu::Buffer) -> Result<Vec<f64>> {
        let [dots, sum] = self.directions.gradient(gpu, k, x, &self.dots);
        submit(gpu, &[&dots, &sum]);
        let words: Vec<f32> = gpu.read(&self.dots, 0, self.norms.len()).await?;
        Ok(words.into_iter().map(f64::from).collect())
    }

    /// Dimensions of γ: the eigenvalues of G kept.
    fn rank(&self) -> usize {
        self.to_coordinates.len() / self.norms.len()
    }

    /// γ = Λ^½ Vᵀ β.
    fn coordinates_of_coefficients(&self, beta: &[f64]) -> Vec<f64> {
        self.to_coordinates
            .chunks(self.norms.len())
            .map(|row| row.iter().zip(beta).map(|(a, b)| a * b).sum())
            .collect()
    }

    /// β = V Λ^-½ γ.
    fn coefficients_of_coordinates(&self, coords: &[f64]) -> Vec<f64> {
        assert_eq!(coords.len(), self.rank(), "coordinates vs rank");
        self.to_coefficients
            .chunks(self.rank())
            .map(|row| row.iter().zip(coords).map(|(a, b)| a * b).sum())
            .collect()
    }
}
