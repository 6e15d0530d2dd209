//! Model weights as `safetensors`: one tensor per named parameter and per BatchNorm
//! running statistic, PyTorch names and shapes, so `nn.Sequential.load_state_dict`
//! takes the file as it is.

use crate::error::{Error, Result};
use crate::files::write_atomic;
use crate::nn::{Model, ParamTable};
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::Path;

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
    safetensors::serialize(tensors, Some(metadata))
        .map_err(|e| Error::Gpu(format!("safetensors encoding: {e}")))
}

/// Save parameters and running statistics to `path` (atomically).
pub fn save(
    path: &Path,
    model: &Model,
    params: &[f32],
    state: &[f32],
    metadata: HashMap<String, String>,
) -> Result<()> {
    write_atomic(path, &encode(model, params, state, metadata)?)
}

/// Read the tensors named in `table` from safetensors bytes into a flat vector.
pub fn load_table(path: &Path, bytes: &[u8], table: &ParamTable) -> Result<Vec<f32>> {
    let file = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| Error::format(path, format!("not a safetensors file: {e}")))?;
    let mut flat = vec![0.0f32; table.len];
    for e in &table.entries {
        let t = file
            .tensor(&e.name)
            .map_err(|_| Error::format(path, format!("missing tensor `{}`", e.name)))?;
        if t.shape() != e.shape.as_slice() || t.dtype() != Dtype::F32 {
            return Err(Error::format(
                path,
                format!(
                    "tensor `{}` is {:?} {:?}, the model needs F32 {:?}",
                    e.name,
                    t.dtype(),
                    t.shape(),
                    e.shape
                ),
            ));
        }
        for (dst, src) in flat[e.range()].iter_mut().zip(t.data().chunks_exact(4)) {
            *dst = f32::from_le_bytes(src.try_into().expect("4 bytes"));
        }
    }
    Ok(flat)
}
