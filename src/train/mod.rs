//! Training: LR schedules and the epoch loop.

pub mod schedule;
pub mod trainer;

pub use schedule::Schedule;
pub use trainer::{
    EpochMetrics, Event, Part, SharedSamples, TrainConfig, Trainer, TrainerState, MAX_BATCH,
    MAX_EPOCHS,
};
