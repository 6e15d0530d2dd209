//! A sampled trajectory as a file: `history.safetensors` holds one n × D tensor
//! `samples` in the flat parameter order; its metadata holds the parameter table
//! (names, shapes, offsets), where each sample was taken, and the run's config, so the
//! averaging can run later in a separate command.

use super::config::RunConfig;
use super::metadata::{f32_tensor, Metadata};
use crate::error::{Error, Result};
use crate::files::write_atomic;
use crate::nn::{ParamEntry, ParamTable};
use crate::train::SampleInfo;
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// A sampled trajectory.
#[derive(Clone, Debug)]
pub struct History {
    /// The parameter table of the model the samples belong to.
    pub table: ParamTable,
    /// n × D, row-major.
    pub samples: Vec<f32>,
    pub infos: Vec<SampleInfo>,
    /// The run that produced the samples.
    pub config: RunConfig,
}

#[derive(Serialize, Deserialize)]
struct TableEntry {
    name: String,
    shape: Vec<usize>,
    offset: usize,
}

impl History {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.infos.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.infos.is_empty()
    }

    /// D.
    pub fn dim(&self) -> usize {
        self.table.len
    }

    /// Sample i.
    pub fn sample(&self, i: usize) -> &[f32] {
        &self.samples[i * self.dim()..(i + 1) * self.dim()]
    }

    /// Write to `path` (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        let table: Vec<TableEntry> = self
            .table
            .entries
            .iter()
            .map(|e| TableEntry {
                name: e.name.clone(),
                shape: e.shape.clone(),
                offset: e.offset,
            })
            .collect();
        let mut meta = HashMap::new();
        meta.insert(
            "format".to_string(),
            "twa history: samples [n, D] in the flat parameter order".to_string(),
        );
        meta.insert(
            "param_table".to_string(),
            serde_json::to_string(&table).expect("table serialises"),
        );
        meta.insert(
            "samples".to_string(),
            serde_json::to_string(&self.infos).expect("infos serialise"),
        );
        meta.insert("config".to_string(), self.config.to_toml());
        let bytes: &[u8] = bytemuck::cast_slice(&self.samples);
        let view = TensorView::new(Dtype::F32, vec![self.len(), self.dim()], bytes).expect("n × D");
        let data = crate::run::model_file::serialize(vec![("samples", view)], meta)?;
        write_atomic(path, &data)
    }

    /// Read from `path`.
    pub fn load(path: &Path) -> Result<History> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        History::decode(path, &bytes)
    }

    /// Parse history bytes; `path` names the source in errors.
    pub fn decode(path: &Path, bytes: &[u8]) -> Result<History> {
        let bad = |reason: String| Error::format(path, reason);
        let meta = Metadata::read(path, bytes, "not a twa history")?;
        let table: Vec<TableEntry> = meta.json("param_table")?;
        let infos: Vec<SampleInfo> = meta.json("samples")?;
        let config = meta.config()?;
        let entries: Vec<ParamEntry> = table
            .into_iter()
            .map(|e| ParamEntry {
                name: e.name,
                shape: e.shape,
                offset: e.offset,
            })
            .collect();
        // The tensors lie back to back from 0, as a model's parameter table does.
        let mut len = 0usize;
        for e in &entries {
            let size = e.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            match size.and_then(|s| len.checked_add(s)) {
                Some(end) if e.offset == len => len = end,
                _ => {
                    return Err(bad(format!(
                        "bad parameter table: `{}` {:?} at offset {} does not follow the tensors before it",
                        e.name, e.shape, e.offset
                    )))
                }
            }
        }
        let file = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let samples = f32_tensor(path, &file, "samples", Some(&[infos.len(), len]))?;
        let table = ParamTable { entries, len };
        if let Some(place) = table.first_non_finite(&samples) {
            return Err(bad(place));
        }
        Ok(History {
            table,
            samples,
            infos,
            config,
        })
    }
}
