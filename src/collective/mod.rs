//! Sums across processes: the one seam through which training and TWA scale out
//! (DESIGN.md, point 9). [`Single`] is today's one process and costs nothing; `Mpi`
//! (cargo feature `mpi`) runs the same code in every rank of an `mpirun`/`srun` job.
//! Data-parallel gradients, evaluation totals, BatchNorm statistics and the
//! row-sharded TWA subspace all go through [`Collective::sum`].

mod device;
#[cfg(feature = "mpi")]
mod mpi;

pub use device::DeviceSum;

use crate::error::{Error, Result};
use std::ops::Range;

/// The processes of a job and the sums between them.
pub trait Collective {
    /// This process's index, 0-based.
    fn rank(&self) -> usize;
    /// Processes in the job.
    fn size(&self) -> usize;
    /// This process's index among those on the same machine (picks its adapter).
    fn local_rank(&self) -> usize;
    /// values ← the element-wise sum of every rank's `values` (the same length on all).
    fn sum(&self, values: &mut [f64]);
    /// values ← the element-wise sum, in f32 (gradients, projections: D values).
    fn sum_f32(&self, values: &mut [f32]);
    /// End every process of the job with `code`, so that no rank waits forever in a
    /// sum that a failed rank will never join.
    fn abort(&self, code: i32) -> !;

    /// Whether this process prints and writes the job's files.
    fn is_root(&self) -> bool {
        self.rank() == 0
    }

    /// Every rank's `values` (the same length on all), rank after rank.
    fn gather(&self, values: &[f64]) -> Vec<f64> {
        let n = values.len();
        let mut all = vec![0.0; n * self.size()];
        all[self.rank() * n..(self.rank() + 1) * n].copy_from_slice(values);
        self.sum(&mut all);
        all
    }
}

/// One process: every sum is the identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn local_rank(&self) -> usize {
        0
    }
    fn sum(&self, _values: &mut [f64]) {}
    fn sum_f32(&self, _values: &mut [f32]) {}
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// The part of `0..len` that rank `rank` of `size` takes: contiguous, in order, sizes
/// differing by at most one.
pub fn shard(len: usize, rank: usize, size: usize) -> Range<usize> {
    len * rank / size..len * (rank + 1) / size
}

/// Variables a launcher (OpenMPI's mpirun, MPICH/Hydra, PMIx, Slurm's srun with
/// PMI) sets in each process it starts, with the job size.
const LAUNCHER_SIZE: [&str; 3] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"];

/// The job size a launcher announced, if this process was started by one.
fn launched_size() -> Option<(&'static str, usize)> {
    LAUNCHER_SIZE.iter().find_map(|var| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .map(|size| (*var, size))
    })
}

/// The job this process belongs to: MPI's world when started by an MPI launcher
/// (`mpirun -np R twa …`), else [`Single`]. A launch of several processes with a
/// binary built without the `mpi` feature is an error, not R independent runs
/// writing the same files.
pub fn from_environment() -> Result<Box<dyn Collective>> {
    match launched_size() {
        None | Some((_, 0 | 1)) => Ok(Box::new(Single)),
        Some((var, size)) => start_mpi(var, size),
    }
}

#[cfg(feature = "mpi")]
fn start_mpi(var: &str, size: usize) -> Result<Box<dyn Collective>> {
    let world = mpi::Mpi::init().ok_or_else(|| {
        Error::Config(format!(
            "{var}={size}: started by an MPI launcher, but MPI could not be initialised"
        ))
    })?;
    Ok(Box::new(world))
}

#[cfg(not(feature = "mpi"))]
fn start_mpi(var: &str, size: usize) -> Result<Box<dyn Collective>> {
    Err(Error::Config(format!(
        "started as one of {size} processes ({var}={size}), but this twa was built without MPI; build it with `cargo build --release --features mpi` (needs an MPI library, e.g. Debian's libopenmpi-dev)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_range_in_order_and_differ_by_at_most_one() {
        for len in 0..40 {
            for size in 1..6 {
                let parts: Vec<_> = (0..size).map(|r| shard(len, r, size)).collect();
                assert_eq!(parts[0].start, 0);
                assert_eq!(parts[size - 1].end, len);
                for w in parts.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                }
                let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
                let (lo, hi) = (lens.iter().min().unwrap(), lens.iter().max().unwrap());
                assert!(hi - lo <= 1, "{len} over {size}: {lens:?}");
            }
        }
    }

    #[test]
    fn a_single_process_gathers_its_own_values() {
        assert_eq!(Single.gather(&[1.0, 2.0]), vec![1.0, 2.0]);
    }
}
