//! The GPU layer: context (adapter, device, limits), kernel registry, buffers.

pub mod buffers;
pub mod context;
pub mod kernels;
pub mod pipeline_cache;
pub mod readback;
pub mod signal;
pub mod tuning;

pub use context::Gpu;
pub use kernels::{Bind, Dispatch, Kernel, Kernels, Shader};
pub use tuning::Tuning;
