//! Trainable Weight Averaging: sampled trajectories, their orthonormal subspace on the
//! device, and projected SGD inside it (see shared TWA.md for the method).

pub mod subspace;

pub use subspace::Subspace;
