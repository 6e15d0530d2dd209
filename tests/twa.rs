//! The TWA subspace against PyTorch's Gram–Schmidt (golden, float64) and on
//! trajectories with nearly parallel samples: orthonormality, chunking, projection,
//! and the averaging coefficients α.

mod common;

use common::*;
use safetensors::SafeTensors;
use twa::collective::Single;
use twa::gpu::kernels::submit;
use twa::gpu::Kernels;
use twa::train::{SampleInfo, SampleStore};
use twa::twa::rows::Segments;
use twa::twa::{Samples, Subspace};

fn kernels() -> &'static Kernels {
    static K: std::sync::OnceLock<Kernels> = std::sync::OnceLock::new();
    K.get_or_init(|| Kernels::new(gpu()))
}

fn tensor(file: &SafeTensors, name: &str) -> Vec<f64> {
    let t = file.tensor(name).unwrap();
    t.data()
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Pᵀ(P g) on the device.
fn project(space: &Subspace, g: &[f32]) -> Vec<f32> {
    let gpu = gpu();
    let buffer = gpu.storage_init(g, "g");
    let work = space.projection(gpu, kernels(), &buffer);
    submit(gpu, &work.iter().collect::<Vec<_>>());
    block_on(gpu.read(&buffer, 0, g.len())).unwrap()
}

/// Pᵀ(P g) in f64 on the CPU for the rows `p` (each g's length).
fn cpu_projection(p: &[f32], g: &[f32]) -> Vec<f64> {
    let dim = g.len();
    let coefficients: Vec<f64> = p
        .chunks(dim)
        .map(|row| row.iter().zip(g).map(|(a, b)| *a as f64 * *b as f64).sum())
        .collect();
    (0..dim)
        .map(|d| {
            (coefficients.iter().enumerate())
                .map(|(i, c)| c * p[i * dim + d] as f64)
                .sum()
        })
        .collect()
}

/// max |P Pᵀ − I| over all entries, in f64.
fn orthogonality_error(p: &[f32], rank: usize, dim: usize) -> f64 {
    let mut worst: f64 = 0.0;
    for i in 0..rank {
        for j in 0..=i {
            let dot: f64 = (0..dim)
                .map(|d| p[i * dim + d] as f64 * p[j * dim + d] as f64)
                .sum();
            worst = worst.max((dot - if i == j { 1.0 } else { 0.0 }).abs());
        }
    }
    worst
}

#[test]
fn gram_schmidt_and_projection_match_pytorch() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/twa_projection.safetensors"
    ))
    .unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let w = f32s(&tensor(&file, "W"));
    let g = f32s(&tensor(&file, "g"));
    for rows_per_chunk in [6, 4, 1] {
        let space = block_on(Subspace::build(gpu(), kernels(), &w, 40, rows_per_chunk)).unwrap();
        assert_eq!((space.rank, space.dropped.len()), (6, 0));
        let what = format!("chunks of {rows_per_chunk} rows");
        assert_close(
            &format!("P, {what}"),
            &block_on(space.read_basis(gpu())).unwrap(),
            &tensor(&file, "P"),
            1e-5,
            1e-4,
        );
        assert_close(
            &format!("T, {what}"),
            &f32s(&space.transform),
            &tensor(&file, "T"),
            1e-3,
            1e-4,
        );
        assert_close(
            &format!("Pᵀ(Pg), {what}"),
            &project(&space, &g),
            &tensor(&file, "PtPg"),
            1e-5,
            1e-4,
        );
    }
}

/// A trajectory: w_0 random, then each sample a small step from the previous one.
fn trajectory(rng: &mut twa::rng::Rng, n: usize, dim: usize, step: f32) -> Vec<f32> {
    let mut w = random(rng, dim);
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        out.extend_from_slice(&w);
        for (v, d) in w.iter_mut().zip(random(rng, dim)) {
            *v += step * d;
        }
    }
    out
}

#[test]
fn nearly_parallel_samples_stay_orthonormal_and_chunking_changes_nothing() {
    let mut rng = rng("nearly_parallel");
    let (n, dim) = (24, 40_001);
    let w = trajectory(&mut rng, n, dim, 2e-3);
    let whole = block_on(Subspace::build(gpu(), kernels(), &w, dim, n)).unwrap();
    assert_eq!(whole.rank, n, "no sample is dependent: {:?}", whole.dropped);
    let p = block_on(whole.read_basis(gpu())).unwrap();
    let err = orthogonality_error(&p, n, dim);
    assert!(err <= 1e-5, "‖PPᵀ − I‖∞ = {err:e}");
    let chunked = block_on(Subspace::build(gpu(), kernels(), &w, dim, 5)).unwrap();
    // Chunks change the summation order, so the basis vectors differ by rounding
    // (amplified for nearly parallel samples); the span, and so the projection, must not.
    let err = orthogonality_error(&block_on(chunked.read_basis(gpu())).unwrap(), n, dim);
    assert!(err <= 1e-5, "chunked: ‖PPᵀ − I‖∞ = {err:e}");
    // Every sample lies in the span, whichever the chunking: ‖w − PᵀPw‖/‖w‖ small.
    for space in [&whole, &chunked] {
        for (i, w_i) in w.chunks(dim).enumerate() {
            let back = project(space, w_i);
            let diff: f64 = back
                .iter()
                .zip(w_i)
                .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                .sum::<f64>()
                .sqrt();
            let norm: f64 = w_i.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
            assert!(
                diff / norm <= 1e-5,
                "sample {i}: ‖w − PᵀPw‖/‖w‖ = {:e}",
                diff / norm
            );
        }
    }
    let g = random(&mut rng, dim);
    let a = project(&whole, &g);
    // The projection is idempotent and orthogonal to the residual.
    let again = project(&whole, &a);
    assert_close("P(P g) = P g", &again, &f64s(&a), 1e-6, 1e-4);
}

#[test]
fn duplicates_are_dropped_and_alpha_reproduces_points_of_the_span() {
    let mut rng = rng("alpha");
    let (n, dim) = (8, 5_003); // D not a multiple of 4: rows are padded to whole vec4s
    let mut w = trajectory(&mut rng, n, dim, 0.05);
    // Sample 5 repeats sample 4 exactly.
    let copy: Vec<f32> = w[4 * dim..5 * dim].to_vec();
    w[5 * dim..6 * dim].copy_from_slice(&copy);
    let space = block_on(Subspace::build(gpu(), kernels(), &w, dim, n)).unwrap();
    assert_eq!(space.rank, n - 1);
    assert_eq!(
        space.dropped.iter().map(|d| d.sample).collect::<Vec<_>>(),
        vec![5]
    );
    // x = Σ γ_i w_i, then α = Tᵀ(P x) must rebuild x.
    let gamma: Vec<f64> = (0..n).map(|_| rng.uniform(-1.0, 1.0) as f64).collect();
    let combine = |coef: &[f64]| -> Vec<f64> {
        (0..dim)
            .map(|d| (0..n).map(|i| coef[i] * w[i * dim + d] as f64).sum())
            .collect()
    };
    let x = combine(&gamma);
    let xb = gpu().storage_init(&f32s(&x), "x");
    let alpha = space.averaging_coefficients(
        &block_on(space.coordinates(gpu(), kernels(), &twa::collective::Single, &xb)).unwrap(),
    );
    let rebuilt = combine(&alpha);
    let diff: f64 = rebuilt
        .iter()
        .zip(&x)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = x.iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!(diff / norm <= 1e-4, "‖Σ αᵢwᵢ − x‖/‖x‖ = {:e}", diff / norm);
}

/// The projection kernels (per-span dots, their sum, the span-wise combine) against a
/// CPU f64 Pᵀ(P g) on the device's own basis: random samples and g, D = 40,001 (several
/// spans of D on any adapter), chunks of 3 rows (rows not a multiple of 4, a last chunk
/// of one row). Tolerance 1e-6 + 1e-4 relative.
#[test]
fn projection_of_a_random_vector_matches_the_cpu_on_the_devices_basis() {
    let mut rng = rng("projection_cpu");
    let (n, dim) = (7, 40_001);
    let w = random(&mut rng, n * dim);
    let space = block_on(Subspace::build(gpu(), kernels(), &w, dim, 3)).unwrap();
    assert_eq!(space.rank, n);
    let p = block_on(space.read_basis(gpu())).unwrap();
    let g = random(&mut rng, dim);
    let want = cpu_projection(&p, &g);
    assert_close("Pᵀ(P g)", &project(&space, &g), &want, 1e-6, 1e-4);
}

/// D cut into segments (as a model larger than one storage binding is): 40,001
/// values in segments of 4,096 (the last one 3,681 long, not a multiple of 4), chunks
/// of 3 rows. The basis, the transform and the projection equal the unsegmented
/// build's within f32 rounding of the changed summation order (1e-5 + 1e-4 relative),
/// and the projection equals a CPU f64 Pᵀ(P g) on the segmented basis (1e-6 + 1e-4).
#[test]
fn a_basis_cut_into_segments_of_d_builds_and_projects_as_a_whole_one() {
    let mut rng = rng("segments");
    let (n, dim) = (6, 40_001);
    let w = trajectory(&mut rng, n, dim, 0.3);
    let g = random(&mut rng, dim);
    let whole = block_on(Subspace::build(gpu(), kernels(), &w, dim, 3)).unwrap();
    let segments = Segments::at_most(gpu(), dim, 4096);
    assert_eq!(segments.count(), 10);
    let cut = block_on(Subspace::build_segmented(
        gpu(),
        kernels(),
        &Single,
        Samples::host(&w),
        3,
        segments,
    ))
    .unwrap();
    assert_eq!((cut.rank, whole.rank), (n, n));
    let p = block_on(cut.read_basis(gpu())).unwrap();
    let f64s = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let whole_p = block_on(whole.read_basis(gpu())).unwrap();
    assert_close("P, segmented", &p, &f64s(&whole_p), 1e-5, 1e-4);
    assert_close(
        "T, segmented",
        &f32s(&cut.transform),
        &whole.transform,
        1e-5,
        1e-4,
    );
    let want = cpu_projection(&p, &g);
    let projected = project(&cut, &g);
    assert_close("Pᵀ(P g), segmented", &projected, &want, 1e-6, 1e-4);
    assert_close(
        "Pᵀ(P g), segmented vs whole",
        &projected,
        &f64s(&project(&whole, &g)),
        1e-5,
        1e-4,
    );
    // The coordinates of a sample are its Gram–Schmidt coordinates.
    let x = gpu().storage_init(&w[2 * dim..3 * dim], "sample 2");
    let beta = block_on(cut.coordinates(gpu(), kernels(), &Single, &x)).unwrap();
    let beta32: Vec<f32> = beta.iter().map(|&b| b as f32).collect();
    assert_close("P·w₂", &beta32, &cut.sample_coordinates[2], 1e-4, 1e-4);
}

#[test]
fn samples_read_on_the_device_build_the_same_subspace_as_from_the_host() {
    let mut rng = rng("device_samples");
    let (n, dim) = (7, 1_001);
    let mut w = trajectory(&mut rng, n, dim, 1e-2);
    // Sample 4 repeats sample 2: dropped as dependent either way.
    w.copy_within(2 * dim..3 * dim, 4 * dim);
    let mut store = SampleStore::new(gpu(), dim, n).unwrap();
    let infos: Vec<SampleInfo> = (0..n)
        .map(|i| SampleInfo {
            epoch: i as f64,
            step: i as u64,
        })
        .collect();
    store.restore(gpu(), &w, &infos);
    let build = |samples| {
        block_on(Subspace::build_sharded(
            gpu(),
            kernels(),
            &Single,
            samples,
            dim,
            3,
        ))
        .unwrap()
    };
    let host = build(Samples::host(&w));
    let device = build(Samples {
        host: &w,
        device: Some(&store),
    });
    assert_eq!((host.rank, device.rank), (n - 1, n - 1));
    assert_eq!(host.dropped, device.dropped);
    assert_eq!(device.dropped[0].sample, 4);
    assert_eq!(host.transform, device.transform);
    assert_eq!(
        block_on(host.read_basis(gpu())).unwrap(),
        block_on(device.read_basis(gpu())).unwrap()
    );
}
