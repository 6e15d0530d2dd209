//! Data: the IDX reader, generated spirals, in-memory data sets and their device copies.

pub mod dataset;
pub mod idx;
pub mod spirals;

pub use dataset::{Dataset, DeviceSplit, Split};
