//! Trainable Weight Averaging: sampled trajectories, their orthonormal subspace on the
//! device, and projected SGD inside it or explicit per-block coefficients over
//! stored (optionally low-bit) directions (see shared TWA.md for the method).

pub mod average;
pub mod config;
pub mod directions;
pub mod explicit;
pub mod mean;
pub mod outcome;
pub mod rows;
pub mod soup;
pub mod subspace;

pub use subspace::{Samples, Subspace};
