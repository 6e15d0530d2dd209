//! The job this process is part of: alone, or one rank of an MPI job
//! (`mpirun -np R twa …`). Rank 0 prints and writes; the other ranks are silent
//! except for their errors, and a rank that fails ends the whole job.

use std::io::Write;
use twa::collective::{self, Collective};
use twa::error::{Error, Result};
use twa::gpu::Gpu;

/// This process's place in the job, and where its errors go.
pub struct Job {
    pub world: Box<dyn Collective>,
    /// stderr as it was before a non-root rank was silenced.
    errors: Box<dyn Write>,
}

impl Job {
    /// Join the job the launcher started (a job of one without a launcher).
    pub fn start() -> Result<Job> {
        let world = collective::from_environment()?;
        let mut errors: Box<dyn Write> = Box::new(std::io::stderr());
        if !world.is_root() {
            twa::files::leave_files_to_rank_0();
            errors = silence_output().unwrap_or(errors);
        }
        Ok(Job { world, errors })
    }

    /// Report `error` as one line (naming the rank in a job of several) and end the
    /// process — in a job of several, every process of the job.
    pub fn fail(mut self, error: &Error) -> ! {
        let code = error.exit_code();
        let (rank, size) = (self.world.rank(), self.world.size());
        if size == 1 {
            let _ = writeln!(self.errors, "error: {error}");
            std::process::exit(code);
        }
        let _ = writeln!(self.errors, "error on rank {rank} of {size}: {error}");
        let _ = self.errors.flush();
        self.world.abort(code)
    }

    /// Open this rank's device: `--adapter A,B,…` gives one adapter per local rank
    /// (cycled); without it, local rank r takes the r-th (modulo) of the adapters
    /// like the best one.
    pub fn gpu(&self, adapter: Option<&str>) -> Result<Gpu> {
        let local = self.world.local_rank();
        match adapter {
            Some(list) if list.contains(',') => {
                let names: Vec<&str> = list.split(',').map(str::trim).collect();
                Gpu::new(Some(names[local % names.len()]))
            }
            Some(name) => Gpu::new(Some(name)),
            None if self.world.size() == 1 => Gpu::new(None),
            None => Gpu::for_local_rank(local),
        }
    }
}

/// Point stdout and stderr at /dev/null; returns a handle on the former stderr.
#[cfg(all(unix, feature = "mpi"))]
fn silence_output() -> Option<Box<dyn Write>> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .ok()?;
    // SAFETY: dup/dup2 on descriptors this process owns; the duplicate of stderr is
    // owned by the returned File from here on.
    unsafe {
        let saved = libc::dup(2);
        if saved < 0 {
            return None;
        }
        libc::dup2(null.as_raw_fd(), 1);
        libc::dup2(null.as_raw_fd(), 2);
        Some(Box::new(std::fs::File::from_raw_fd(saved)))
    }
}

/// Without MPI there is no other rank to leave the output to.
#[cfg(not(all(unix, feature = "mpi")))]
fn silence_output() -> Option<Box<dyn Write>> {
    None
}
