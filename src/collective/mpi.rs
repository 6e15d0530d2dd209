//! [`Collective`] over MPI (rsmpi): the world communicator of the job, and the node's
//! shared-memory communicator for the local rank.

use super::Collective;
use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::CommunicatorCollectives;

/// The MPI world of this process (finalised when dropped).
pub struct Mpi {
    world: SimpleCommunicator,
    local_rank: usize,
    _universe: Universe,
}

impl Mpi {
    /// Initialise MPI; `None` if it was initialised already.
    pub fn init() -> Option<Mpi> {
        let universe = mpi::initialize()?;
        let world = universe.world();
        let local_rank = world.split_shared(world.rank()).rank() as usize;
        Some(Mpi {
            world,
            local_rank,
            _universe: universe,
        })
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn size(&self) -> usize {
        self.world.size() as usize
    }
    fn local_rank(&self) -> usize {
        self.local_rank
    }
    fn sum(&self, values: &mut [f64]) {
        // rsmpi has no in-place all-reduce.
        let send = values.to_vec();
        self.world
            .all_reduce_into(&send[..], values, SystemOperation::sum());
    }
    fn sum_f32(&self, values: &mut [f32]) {
        let send = values.to_vec();
        self.world
            .all_reduce_into(&send[..], values, SystemOperation::sum());
    }
    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}
