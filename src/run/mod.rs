//! An experiment, the one layer that knows a whole run: its configuration (TOML
//! presets and files), the pipelines (head, tail: SGD with sampling, SWA, TWA, the
//! full run), model files, checkpoints and resuming, sampled histories as files, and
//! the memory plan of a run before it starts. The commands (`cli/`, `app/`) call it;
//! it calls the method (`twa/`), the loop (`train/`) and the layers below.

pub mod checkpoint;
pub mod config;
pub mod history;
pub mod metadata;
pub mod model_file;
pub mod pipeline;
pub mod plan;
pub mod progress;

pub use config::RunConfig;
pub use history::History;
