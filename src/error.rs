//! The one error type for everything a user can cause: no adapter, bad data, bad
//! config, divergence, files that cannot be written. Each message is one line that says
//! what went wrong and where; the CLI prints it and exits non-zero.

use std::path::PathBuf;

/// What a user can cause. Programmer errors (kernels bound to buffers of the wrong size) panic.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No GPU adapter could be found or opened.
    #[error("no GPU adapter found{0}; on Linux without a GPU install Mesa's software Vulkan driver (Debian/Ubuntu package `mesa-vulkan-drivers`), or pick a backend with WGPU_BACKEND=vulkan|gl|metal|dx12")]
    NoAdapter(String),
    /// The adapter exists but a device could not be created on it.
    #[error("could not open a device on adapter `{adapter}`: {reason}")]
    Device { adapter: String, reason: String },
    /// A data file or directory is missing or unreadable.
    #[error("cannot read {path}: {reason}")]
    Io { path: PathBuf, reason: String },
    /// A data file exists but its contents are not what the format requires.
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },
    /// A configuration value or flag is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The model's layers do not fit the data (or each other); names the layer.
    #[error("the model does not fit: {0}")]
    Shape(String),
    /// Training produced a NaN or infinite loss.
    #[error("training diverged: the loss became {value} at step {step} (epoch {epoch}); try a lower learning rate (--lr)")]
    Diverged {
        step: u64,
        epoch: usize,
        value: String,
    },
    /// Weights about to be saved are NaN or infinite (a diverged average or TWA).
    #[error("{0}")]
    NotFinite(String),
    /// The model or data does not fit the adapter's limits.
    #[error("{0}")]
    Limits(String),
    /// A device operation failed (lost device, out of memory, failed readback).
    #[error("GPU error: {0}")]
    Gpu(String),
    /// The run was stopped on request (the app's Stop button, Ctrl-C).
    #[error("stopped")]
    Stopped,
    /// An output file or directory could not be written.
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// Result with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A read error on `path`.
    pub fn io(path: impl Into<PathBuf>, err: impl std::fmt::Display) -> Self {
        Error::Io {
            path: path.into(),
            reason: err.to_string(),
        }
    }

    /// A format error in `path`.
    pub fn format(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// A write error on `path`.
    pub fn write(path: impl Into<PathBuf>, err: impl std::fmt::Display) -> Self {
        Error::Write {
            path: path.into(),
            reason: err.to_string(),
        }
    }

    /// The process exit code the CLI uses for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NoAdapter(_) | Error::Device { .. } => 2,
            Error::Diverged { .. } | Error::NotFinite(_) => 4,
            Error::Config(_) | Error::Shape(_) => 3,
            // As a shell reports a command ended by SIGINT.
            Error::Stopped => 130,
            _ => 1,
        }
    }
}
