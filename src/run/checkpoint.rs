//! Checkpoints for resuming a run: `OUT/checkpoint.safetensors`, rewritten atomically
//! after every epoch and when a run is stopped. It holds the trainer's whole state
//! (weights, momentum, BatchNorm statistics, the epoch's totals, the samples so far as
//! tensors; epoch, step, generator state in the metadata), the run's config, the
//! pipeline's progress and the metrics so far, so that `--resume OUT` finishes with
//! the same numbers as an uninterrupted run.

use super::config::RunConfig;
use super::metadata::{f32_tensor, Metadata};
use super::progress::Progress;
use crate::error::{Error, Result};
use crate::files::write_atomic;
use crate::train::SampleInfo;
use crate::train::{EpochMetrics, TrainerState};
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The checkpoint's file name inside a run's output directory.
pub const FILE: &str = "checkpoint.safetensors";

/// The checkpoint path of the run writing into `out`.
pub fn path_in(out: &Path) -> PathBuf {
    out.join(FILE)
}

/// A saved run.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The command that wrote it (`train`, `run`).
    pub command: String,
    /// The run's configuration.
    pub config: RunConfig,
    /// Settings of the command outside the config (e.g. the sampling plan), compared
    /// on resume like the config.
    pub options: BTreeMap<String, String>,
    pub trainer: TrainerState,
    pub progress: Progress,
    /// Every epoch reported so far, with its phase (the lines of metrics.jsonl).
    pub metrics: Vec<(String, EpochMetrics)>,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    command: String,
    options: BTreeMap<String, String>,
    epoch: usize,
    step: usize,
    global_step: u64,
    rng: u64,
    sample_infos: Vec<SampleInfo>,
    progress: Progress,
    metrics: Vec<(String, EpochMetrics)>,
}

const FORMAT: &str = "twa checkpoint 1";

impl Checkpoint {
    /// Write to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let t = &self.trainer;
        let meta = Meta {
            command: self.command.clone(),
            options: self.options.clone(),
            epoch: t.epoch,
            step: t.step,
            global_step: t.global_step,
            rng: t.rng,
            sample_infos: t.sample_infos.clone(),
            progress: self.progress.clone(),
            metrics: self.metrics.clone(),
        };
        let mut header = HashMap::new();
        header.insert("format".to_string(), FORMAT.to_string());
        header.insert(
            "checkpoint".to_string(),
            serde_json::to_string(&meta).expect("checkpoint metadata serialises"),
        );
        header.insert("config".to_string(), self.config.to_toml());
        fn view(values: &[f32], shape: Vec<usize>) -> TensorView<'_> {
            TensorView::new(Dtype::F32, shape, bytemuck::cast_slice(values)).expect("shape fits")
        }
        let n = t.sample_infos.len();
        let mut tensors = vec![
            ("params", view(&t.params, vec![t.params.len()])),
            ("velocity", view(&t.velocity, vec![t.velocity.len()])),
            ("state", view(&t.state, vec![t.state.len()])),
            ("train_totals", view(&t.train_totals, vec![4])),
        ];
        if n > 0 {
            tensors.push(("samples", view(&t.samples, vec![n, t.params.len()])));
        }
        let bytes = crate::run::model_file::serialize(tensors, header)?;
        write_atomic(path, &bytes)
    }

    /// Read a checkpoint from `path`; every inconsistency is a one-line error.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Checkpoint::decode(path, &bytes)
    }

    /// Parse checkpoint bytes; `path` names the source in errors.
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<Checkpoint> {
        let bad = |reason: String| Error::format(path, reason);
        let file = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let header = Metadata::read(path, bytes, "not a twa checkpoint")?;
        if header.field("format").ok() != Some(FORMAT) {
            return Err(bad(format!("not a twa checkpoint (format `{FORMAT}`)")));
        }
        let meta: Meta = header.json("checkpoint")?;
        let config = header.config()?;
        let vector = |name: &str, shape: Option<&[usize]>| f32_tensor(path, &file, name, shape);
        let params = vector("params", None)?;
        let dim = params.len();
        let state_words = config.train.optimizer.state_words();
        let velocity = vector("velocity", Some(&[state_words * dim]))?;
        let state = vector("state", None)?;
        let totals = vector("train_totals", Some(&[4]))?;
        let n = meta.sample_infos.len();
        let samples = if n > 0 {
            vector("samples", Some(&[n, dim]))?
        } else {
            Vec::new()
        };
        for (name, values) in [
            ("params", &params),
            ("velocity", &velocity),
            ("samples", &samples),
        ] {
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(bad(format!("`{name}` value {i} is {}", values[i])));
            }
        }
        Ok(Checkpoint {
            command: meta.command,
            config,
            options: meta.options,
            trainer: TrainerState {
                epoch: meta.epoch,
                step: meta.step,
                global_step: meta.global_step,
                rng: meta.rng,
                params,
                velocity,
                state,
                train_totals: totals.try_into().expect("checked: 4 values"),
                samples,
                sample_infos: meta.sample_infos,
            },
            progress: meta.progress,
            metrics: meta.metrics,
        })
    }

    /// Check that this checkpoint continues the run `command` would start now with
    /// `config` and `options`; the error lists every difference.
    pub fn check_same_run(
        &self,
        path: &Path,
        command: &str,
        config: &RunConfig,
        options: &BTreeMap<String, String>,
    ) -> Result<()> {
        if self.command != command {
            return Err(Error::Config(format!(
                "{} was written by `twa {}`, not `twa {command}`",
                path.display(),
                self.command
            )));
        }
        let mut differences = differences(&settings(&self.config), &settings(config));
        differences.extend(self::differences(&self.options, options));
        if differences.is_empty() {
            return Ok(());
        }
        Err(Error::Config(format!(
            "{} belongs to another run: {} (repeat the original options, or start afresh in another --out)",
            path.display(),
            differences.join("; ")
        )))
    }
}

/// Every setting of `config` as `section.key` → value.
fn settings(config: &RunConfig) -> BTreeMap<String, String> {
    fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) {
        match value {
            toml::Value::Table(t) => t.iter().for_each(|(k, v)| {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out)
            }),
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    let value = toml::Value::try_from(config).expect("config is TOML");
    flatten("", &value, &mut out);
    out
}

/// The settings that differ, as `key A there, B now`.
fn differences(then: &BTreeMap<String, String>, now: &BTreeMap<String, String>) -> Vec<String> {
    let keys: std::collections::BTreeSet<_> = then.keys().chain(now.keys()).collect();
    let show = |m: &BTreeMap<String, String>, k: &str| m.get(k).cloned().unwrap_or("unset".into());
    keys.into_iter()
        .filter(|k| then.get(*k) != now.get(*k))
        .map(|k| format!("{k} {} there, {} now", show(then, k), show(now, k)))
        .collect()
}
