//! Data: the IDX and CIFAR binary readers, generated spirals, in-memory data sets and their device copies.

pub mod cifar;
pub mod dataset;
pub mod holdout;
pub mod idx;
pub mod shape;
pub mod spirals;

pub use dataset::{BatchTarget, Classes, Dataset, DeviceSplit, Split};
pub use shape::Shape;
