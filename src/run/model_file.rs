//! Model weights as `safetensors`: one tensor per named parameter and per BatchNorm
//! running statistic, PyTorch names and shapes, so `nn.Sequential.load_state_dict`
//! takes the file as it is. The metadata describes the model (config, input shape,
//! classes, per-channel input normalisation), all a reader needs to use the file.

use super::config::RunConfig;
use super::metadata::Metadata;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::files::write_atomic;
use crate::nn::model::Shape;
use crate::nn::{Model, ParamTable};
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::Path;

/// The metadata that makes a model file self-describing: `format`, `config` (TOML),
/// `input_shape` [H, W, C], `classes`, and the inputs' per-channel `mean` and `std`
/// (pixels scaled to [0, 1], then (x − mean) / std), as JSON.
pub fn describe(config: &RunConfig, data: &Dataset) -> HashMap<String, String> {
    let s = data.train.shape;
    let json = |v: serde_json::Value| v.to_string();
    HashMap::from([
        (
            "format".to_string(),
            "twa model: PyTorch nn.Sequential state_dict names".to_string(),
        ),
        ("config".to_string(), config.to_toml()),
        (
            "input_shape".to_string(),
            json(serde_json::json!([s.height, s.width, s.channels])),
        ),
        ("classes".to_string(), data.classes.to_string()),
        ("mean".to_string(), json(serde_json::json!(data.mean))),
        ("std".to_string(), json(serde_json::json!(data.std))),
    ])
}

/// What a model file says about itself (see [`describe`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub config: RunConfig,
    pub shape: Shape,
    pub classes: usize,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl ModelInfo {
    /// Read the description from a model file's bytes; `path` names it in errors.
    pub fn read(path: &Path, bytes: &[u8]) -> Result<ModelInfo> {
        let bad = |reason: String| Error::format(path, reason);
        let meta = Metadata::read(
            path,
            bytes,
            "a model written by an older twa, or not by twa: pass --config",
        )?;
        let config = meta.config()?;
        let dims: Vec<usize> = meta.json("input_shape")?;
        let [height, width, channels] = dims[..] else {
            return Err(bad(format!("`input_shape` {dims:?} is not [H, W, C]")));
        };
        let classes: usize = meta.json("classes")?;
        let stats = |name: &str| -> Result<Vec<f32>> {
            let v: Vec<f32> = meta.json(name)?;
            if v.len() != channels || v.iter().any(|x| !x.is_finite()) {
                return Err(bad(format!(
                    "`{name}` needs {channels} finite values, got {v:?}"
                )));
            }
            Ok(v)
        };
        let (mean, std) = (stats("mean")?, stats("std")?);
        if std.iter().any(|&s| s <= 0.0) {
            return Err(bad(format!("`std` must be positive, got {std:?}")));
        }
        Ok(ModelInfo {
            config,
            shape: Shape::image(height, width, channels),
            classes,
            mean,
            std,
        })
    }
}

fn views<'a>(table: &ParamTable, values: &'a [f32], out: &mut Vec<(String, TensorView<'a>)>) {
    for e in &table.entries {
        let bytes: &[u8] = bytemuck::cast_slice(&values[e.range()]);
        let view =
            TensorView::new(Dtype::F32, e.shape.clone(), bytes).expect("shape matches the table");
        out.push((e.name.clone(), view));
    }
}

/// Serialise parameters and running statistics with `metadata`.
pub fn encode(
    model: &Model,
    params: &[f32],
    state: &[f32],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let mut tensors = Vec::new();
    views(&model.params, params, &mut tensors);
    views(&model.state, state, &mut tensors);
    serialize(tensors, metadata)
}

/// safetensors bytes with the header's keys in sorted order, so that the same tensors
/// and metadata always give the same file (safetensors writes its metadata map in
/// hash order, which changes from process to process).
pub fn serialize<'a>(
    tensors: Vec<(impl AsRef<str>, TensorView<'a>)>,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let tensors: Vec<(String, TensorView)> = tensors
        .into_iter()
        .map(|(n, t)| (n.as_ref().to_string(), t))
        .collect();
    let bytes = safetensors::serialize(tensors, Some(metadata))
        .map_err(|e| Error::Gpu(format!("safetensors encoding: {e}")))?;
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8-byte length")) as usize;
    // Tensor entries keep safetensors' field order; both maps are sorted by key.
    let mut header: std::collections::BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).expect("safetensors wrote a JSON object");
    if let Some(meta) = header.get_mut("__metadata__") {
        let sorted: std::collections::BTreeMap<String, String> =
            serde_json::from_value(meta.take()).expect("metadata is a string map");
        *meta = serde_json::to_value(sorted).expect("string map");
    }
    let mut sorted = serde_json::to_vec(&header).expect("JSON");
    sorted.resize(sorted.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + sorted.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(sorted.len() as u64).to_le_bytes());
    out.extend_from_slice(&sorted);
    out.extend_from_slice(&bytes[8 + n..]);
    Ok(out)
}

/// Save parameters and running statistics to `path` (atomically).
pub fn save(
    path: &Path,
    model: &Model,
    params: &[f32],
    state: &[f32],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let bad = model.params.first_non_finite(params).or_else(|| {
        model
            .state
            .first_non_finite(&state[..model.state.len.min(state.len())])
    });
    if let Some(place) = bad {
        return Err(Error::NotFinite(format!(
            "the model for {} diverged: {place}; nothing written",
            path.display()
        )));
    }
    write_atomic(path, &encode(model, params, state, metadata)?)
}

/// Read the tensors named in `table` from safetensors bytes into a flat vector,
/// matched by name and shape (F32, or F64/F16/BF16 converted); other tensors are
/// ignored. The error lists every tensor missing or mismatched.
pub fn load_table(path: &Path, bytes: &[u8], table: &ParamTable) -> Result<Vec<f32>> {
    let file = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| Error::format(path, format!("not a safetensors file: {e}")))?;
    let mut flat = vec![0.0f32; table.len];
    let mut missing = Vec::new();
    let mut mismatched = Vec::new();
    for e in &table.entries {
        let Ok(t) = file.tensor(&e.name) else {
            missing.push(format!("`{}`", e.name));
            continue;
        };
        let convert: fn(&[u8]) -> f32 = match t.dtype() {
            Dtype::F32 => |b| f32::from_le_bytes(b.try_into().expect("4 bytes")),
            Dtype::F64 => |b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32,
            Dtype::F16 => |b| half_to_f32(u16::from_le_bytes(b.try_into().expect("2 bytes"))),
            Dtype::BF16 => |b| {
                f32::from_bits((u16::from_le_bytes(b.try_into().expect("2 bytes")) as u32) << 16)
            },
            _ => {
                mismatched.push(format!("`{}` is {:?}, not a float type", e.name, t.dtype()));
                continue;
            }
        };
        if t.shape() != e.shape.as_slice() {
            mismatched.push(format!(
                "`{}` is {:?}, the model needs {:?}",
                e.name,
                t.shape(),
                e.shape
            ));
            continue;
        }
        let width = t.dtype().bitsize() / 8;
        for (dst, src) in flat[e.range()].iter_mut().zip(t.data().chunks_exact(width)) {
            *dst = convert(src);
        }
    }
    if missing.is_empty() && mismatched.is_empty() {
        return match table.first_non_finite(&flat) {
            Some(place) => Err(Error::format(path, place)),
            None => Ok(flat),
        };
    }
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing tensors {}", missing.join(", ")));
    }
    parts.extend(mismatched);
    Err(Error::format(
        path,
        format!("does not fit the model: {}", parts.join("; ")),
    ))
}

/// An IEEE half-precision value as f32.
fn half_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = ((h >> 10) & 0x1f) as i32;
    let fraction = (h & 0x3ff) as f32;
    sign * match exponent {
        0 => fraction * 2f32.powi(-24),
        31 if fraction == 0.0 => f32::INFINITY,
        31 => f32::NAN,
        e => (1.0 + fraction / 1024.0) * 2f32.powi(e - 15),
    }
}

#[cfg(test)]
mod tests {
    use super::half_to_f32;

    #[test]
    fn half_precision_values_convert_exactly() {
        // (bits, value): normal, negative, fraction, largest, subnormal, zero, infinity.
        let cases = [
            (0x3c00, 1.0),
            (0xc000, -2.0),
            (0x3555, 0.333_251_95),
            (0x7bff, 65504.0),
            (0x0001, 2f32.powi(-24)),
            (0x8000, -0.0),
            (0x7c00, f32::INFINITY),
        ];
        for (bits, value) in cases {
            assert_eq!(half_to_f32(bits), value, "{bits:#06x}");
        }
        assert!(half_to_f32(0x7e00).is_nan());
    }
}
