//! twa: a WebGPU training engine (WGSL compute shaders through wgpu) implementing
//! Trainable Weight Averaging. See `shaders/` for the kernels and README.md for use.

#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
pub mod canvas;
pub mod collective;
pub mod confusion;
pub mod data;
pub mod error;
pub mod files;
pub mod gpu;
pub mod landscape;
pub mod nn;
#[cfg(not(target_arch = "wasm32"))]
pub mod outdir;
pub mod reference;
pub mod rng;
pub mod run;
pub mod train;
pub mod twa;
