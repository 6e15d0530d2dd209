//! Training: LR schedules, the epoch loop and sampling its trajectory.

pub mod sampler;
pub mod schedule;
pub mod trainer;

pub use sampler::{SampleInfo, SamplePlan, SampleStore};
pub use schedule::Schedule;
pub use trainer::{
    EpochMetrics, Event, Part, SharedSamples, TrainConfig, Trainer, TrainerState, MAX_BATCH,
    MAX_EPOCHS,
};
