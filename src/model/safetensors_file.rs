//! Reading `.safetensors` weights (F16, BF16, F32 or F64 tensors) into f32 tensors.

use super::{ModelError, Tensor};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;

/// Reads every tensor of a safetensors file, converting it to f32.
pub fn read(bytes: &[u8], origin: &str) -> Result<BTreeMap<String, Tensor>, ModelError> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| ModelError::Format {
        path: origin.to_string(),
        format: "safetensors",
        detail: e.to_string(),
    })?;
    let mut tensors = BTreeMap::new();
    for (key, view) in file.tensors() {
        let data =
            decode(view.dtype(), view.data()).ok_or_else(|| ModelError::UnsupportedDtype {
                path: origin.to_string(),
                key: key.clone(),
                dtype: format!("{:?}", view.dtype()),
            })?;
        tensors.insert(
            key,
            Tensor {
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    Ok(tensors)
}

/// Little-endian raw values of a float type to f32; `None` for a type the network cannot use.
fn decode(dtype: Dtype, raw: &[u8]) -> Option<Vec<f32>> {
    let values = match dtype {
        Dtype::F32 => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => raw
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => raw
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F64 => raw
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
        _ => return None,
    };
    Some(values)
}

/// The element type names PyTorch storages use, mapped to safetensors' for [`decode_storage`].
pub fn dtype_of_storage(storage_class: &str) -> Option<Dtype> {
    match storage_class {
        "FloatStorage" => Some(Dtype::F32),
        "HalfStorage" => Some(Dtype::F16),
        "BFloat16Storage" => Some(Dtype::BF16),
        "DoubleStorage" => Some(Dtype::F64),
        _ => None,
    }
}

/// Decodes a raw little-endian storage of `dtype`.
pub fn decode_storage(dtype: Dtype, raw: &[u8]) -> Vec<f32> {
    decode(dtype, raw).expect("dtype_of_storage only returns float types")
}
