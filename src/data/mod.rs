//! Data: the IDX, CIFAR binary, NumPy, CSV, image-folder and tar-shard readers, generated spirals, in-memory data sets and their device copies.

pub mod cifar;
pub mod dataset;
pub mod folder;
pub mod holdout;
pub mod idx;
pub mod images;
pub mod numpy;
pub mod shape;
pub mod shards;
pub mod spirals;
pub mod table;

pub use dataset::{BatchTarget, Classes, Dataset, DeviceSplit, Encoding, Split};
pub use shape::Shape;
