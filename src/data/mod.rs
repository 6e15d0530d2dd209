//! Data: the IDX reader, in-memory data sets and their device copies.

pub mod dataset;
pub mod idx;

pub use dataset::{Dataset, DeviceSplit, Split};
