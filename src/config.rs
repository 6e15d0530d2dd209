//! Run configuration as TOML: model, optimisation and data sections, with presets
//! shipped in `assets/presets/` (embedded in the binary) and every default written out.

use crate::error::{Error, Result};
use crate::nn::ModelConfig;
use crate::train::TrainConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the data comes from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// An IDX directory (`train-images-idx3-ubyte[.gz]`, ...); empty: the shipped subset.
    pub dir: String,
}

/// Everything a `twa train` run needs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    pub model: ModelConfig,
    pub train: TrainConfig,
    pub data: DataConfig,
}

/// Presets shipped with twa: (name, TOML).
pub const PRESETS: &[(&str, &str)] = &[
    ("quick", include_str!("../assets/presets/quick.toml")),
    (
        "fashion-mnist",
        include_str!("../assets/presets/fashion-mnist.toml"),
    ),
];

/// The shipped Fashion-MNIST subset (see `assets/fashion-mnist-subset/README.md`).
pub fn shipped_data_dir() -> PathBuf {
    let here = PathBuf::from("assets/fashion-mnist-subset");
    if here.is_dir() {
        return here;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/fashion-mnist-subset")
}

impl RunConfig {
    /// Parse TOML; `origin` names the source in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<RunConfig> {
        toml::from_str(text)
            .map_err(|e| Error::Config(format!("{origin}: {}", e.to_string().replace('\n', " "))))
    }

    /// A shipped preset by name.
    pub fn preset(name: &str) -> Result<RunConfig> {
        let (_, text) = PRESETS.iter().find(|(n, _)| *n == name).ok_or_else(|| {
            let names: Vec<_> = PRESETS.iter().map(|(n, _)| *n).collect();
            Error::Config(format!(
                "unknown preset `{name}` (known: {})",
                names.join(", ")
            ))
        })?;
        RunConfig::from_toml(text, &format!("preset {name}"))
    }

    /// A config file.
    pub fn load(path: &Path) -> Result<RunConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        RunConfig::from_toml(&text, &path.display().to_string())
    }

    /// The data directory to read.
    pub fn data_dir(&self) -> PathBuf {
        if self.data.dir.is_empty() {
            shipped_data_dir()
        } else {
            PathBuf::from(&self.data.dir)
        }
    }

    /// TOML with every field written out.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serialises")
    }
}
