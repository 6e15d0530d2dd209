//! Data: the IDX and CIFAR binary readers, generated spirals, in-memory data sets and their device copies.

pub mod cifar;
pub mod dataset;
pub mod holdout;
pub mod idx;
pub mod spirals;

pub use dataset::{Classes, Dataset, DeviceSplit, Split};
