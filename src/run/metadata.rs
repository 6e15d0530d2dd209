//! Reading the files a run writes (model files, histories, checkpoints): their
//! safetensors metadata fields and their f32 tensors, each missing or malformed one an
//! error naming the file and the field.

use super::config::RunConfig;
use crate::error::{Error, Result};
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::Path;

/// A safetensors file's metadata, with what the file is not if a field is missing.
pub struct Metadata<'a> {
    path: &'a Path,
    fields: HashMap<String, String>,
    /// Said in brackets when a field is missing, e.g. `not a twa history`.
    otherwise: &'static str,
}

impl<'a> Metadata<'a> {
    /// The metadata of the safetensors `bytes` read from `path`.
    pub fn read(path: &'a Path, bytes: &[u8], otherwise: &'static str) -> Result<Metadata<'a>> {
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| Error::format(path, format!("not a safetensors file: {e}")))?;
        Ok(Metadata {
            path,
            fields: header.metadata().clone().unwrap_or_default(),
            otherwise,
        })
    }

    /// An error about this file.
    pub fn bad(&self, reason: impl Into<String>) -> Error {
        Error::format(self.path, reason)
    }

    /// The text of field `name`.
    pub fn field(&self, name: &str) -> Result<&str> {
        self.fields.get(name).map(String::as_str).ok_or_else(|| {
            self.bad(format!(
                "no `{name}` in the file's metadata ({})",
                self.otherwise
            ))
        })
    }

    /// Field `name` parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T> {
        serde_json::from_str(self.field(name)?)
            .map_err(|e| self.bad(format!("bad `{name}` metadata: {e}")))
    }

    /// The run configuration in field `config` (TOML).
    pub fn config(&self) -> Result<RunConfig> {
        RunConfig::from_toml(self.field("config")?, &self.path.display().to_string())
    }
}

/// Tensor `name` of `file` (read from `path`) as f32 values, checked to be F32 and, if
/// given, of `shape`.
pub fn f32_tensor(
    path: &Path,
    file: &SafeTensors,
    name: &str,
    shape: Option<&[usize]>,
) -> Result<Vec<f32>> {
    let t = file
        .tensor(name)
        .map_err(|_| Error::format(path, format!("no `{name}` tensor")))?;
    if t.dtype() != Dtype::F32 || shape.is_some_and(|s| s != t.shape()) {
        return Err(Error::format(
            path,
            format!(
                "`{name}` is {:?} {:?}, expected F32 {shape:?}",
                t.dtype(),
                t.shape()
            ),
        ));
    }
    Ok(t.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect())
}
