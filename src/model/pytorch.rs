//! PyTorch checkpoints of pytorch/examples' TransformerNet (`torch.save(model.state_dict())`),
//! in today's zip format and in the legacy pickle format, read without Python.
//!
//! Users bring their own trained styles this way. The deprecated InstanceNorm
//! `running_mean`/`running_var` buffers of 2017-era checkpoints are dropped.

use super::pickle::{self, TensorRef, Value};
use super::safetensors_file::{decode_storage, dtype_of_storage};
use super::{ModelError, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;

const LEGACY_MAGIC: i128 = 0x1950a86a20f9469cfc6c;

/// Whether `bytes` start like a PyTorch checkpoint (a zip archive or a legacy pickle stream).
pub fn looks_like_checkpoint(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(&[0x80, 0x02, 0x8a])
}

/// Reads the tensor dict of a checkpoint, converting every tensor to f32.
pub fn read(bytes: &[u8], origin: &str) -> Result<BTreeMap<String, Tensor>, ModelError> {
    let format_error = |detail: String| ModelError::Format {
        path: origin.to_string(),
        format: "PyTorch checkpoint",
        detail,
    };
    let (dict, storages) = if bytes.starts_with(b"PK") {
        read_zip(bytes)
    } else {
        read_legacy(bytes)
    }
    .map_err(format_error)?;
    let mut tensors = BTreeMap::new();
    for (key, tensor) in state_dict_entries(dict).map_err(format_error)? {
        if key.ends_with(".running_mean") || key.ends_with(".running_var") {
            continue;
        }
        let storage = storages
            .get(&tensor.storage_key)
            .ok_or_else(|| format_error(format!("tensor `{key}` refers to a missing storage")))?;
        let data = materialize(&tensor, storage)
            .ok_or_else(|| format_error(format!("tensor `{key}` reaches outside its storage")))?;
        tensors.insert(
            key,
            Tensor {
                shape: tensor.shape,
                data,
            },
        );
    }
    Ok(tensors)
}

/// The (name, tensor) pairs of a state dict; a `{"state_dict": {...}}` wrapper is unwrapped.
fn state_dict_entries(dict: Value) -> Result<Vec<(String, TensorRef)>, String> {
    let Value::Dict(items) = dict else {
        return Err("the checkpoint does not hold a dict of tensors".into());
    };
    let wrapped = items
        .iter()
        .find(|(k, _)| matches!(k, Value::Str(s) if s == "state_dict"));
    if let Some((_, inner @ Value::Dict(_))) = wrapped {
        return state_dict_entries(inner.clone());
    }
    items
        .into_iter()
        .map(|(k, v)| match (k, v) {
            (Value::Str(key), Value::Tensor(t)) => Ok((key, t)),
            (Value::Str(key), _) => Err(format!("entry `{key}` is not a tensor")),
            _ => Err("a state dict key is not a string".into()),
        })
        .collect()
}

/// A storage's elements, already converted to f32, by storage key.
type Storages = HashMap<String, Vec<f32>>;

fn read_zip(bytes: &[u8]) -> Result<(Value, Storages), String> {
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| e.to_string())?;
    let names: Vec<String> = archive.file_names().map(str::to_string).collect();
    let pickle_name = names
        .iter()
        .find(|n| n.ends_with("data.pkl"))
        .ok_or("no data.pkl in the archive")?
        .clone();
    let prefix = pickle_name.trim_end_matches("data.pkl").to_string();
    let mut read_entry = |name: &str| -> Result<Vec<u8>, String> {
        let mut file = archive.by_name(name).map_err(|e| format!("{name}: {e}"))?;
        let mut buf = Vec::with_capacity(file.size() as usize);
        file.read_to_end(&mut buf).map_err(|e| e.to_string())?;
        Ok(buf)
    };
    if names.contains(&format!("{prefix}byteorder"))
        && read_entry(&format!("{prefix}byteorder"))? != b"little"
    {
        return Err("big-endian checkpoints are not supported".into());
    }
    let (dict, _) = pickle::load(&read_entry(&pickle_name)?)?;
    let mut storages = Storages::new();
    for (class, key) in storage_refs(&dict) {
        let dtype = dtype_of_storage(&class).ok_or(format!("unsupported storage {class}"))?;
        let raw = read_entry(&format!("{prefix}data/{key}"))?;
        storages.insert(key, decode_storage(dtype, &raw));
    }
    Ok((dict, storages))
}

fn read_legacy(bytes: &[u8]) -> Result<(Value, Storages), String> {
    let mut pos = 0;
    let next = |pos: &mut usize| -> Result<Value, String> {
        let (value, used) = pickle::load(&bytes[*pos..])?;
        *pos += used;
        Ok(value)
    };
    match next(&mut pos)? {
        Value::Int(LEGACY_MAGIC) => {}
        _ => return Err("not a legacy PyTorch file (bad magic number)".into()),
    }
    next(&mut pos)?; // protocol version
    next(&mut pos)?; // sys info
    let dict = next(&mut pos)?;
    let Value::List(keys) = next(&mut pos)? else {
        return Err("storage key list missing".into());
    };
    let classes: HashMap<String, String> = storage_refs(&dict)
        .into_iter()
        .map(|(class, key)| (key, class))
        .collect();
    let mut storages = Storages::new();
    for key in keys {
        let Value::Str(key) = key else {
            return Err("storage key is not a string".into());
        };
        let class = classes
            .get(&key)
            .ok_or(format!("storage {key} is not used"))?;
        let dtype = dtype_of_storage(class).ok_or(format!("unsupported storage {class}"))?;
        let count_bytes = bytes
            .get(pos..pos + 8)
            .ok_or("file ends inside a storage")?;
        let count = u64::from_le_bytes(count_bytes.try_into().expect("8")) as usize;
        let size = count * dtype.size();
        let raw = bytes
            .get(pos + 8..pos + 8 + size)
            .ok_or("file ends inside a storage")?;
        storages.insert(key, decode_storage(dtype, raw));
        pos += 8 + size;
    }
    Ok((dict, storages))
}

/// (storage class, key) of every tensor in the dict.
fn storage_refs(dict: &Value) -> Vec<(String, String)> {
    match dict {
        Value::Dict(items) => items.iter().flat_map(|(_, v)| storage_refs(v)).collect(),
        Value::Tensor(t) => vec![(t.storage_class.clone(), t.storage_key.clone())],
        _ => Vec::new(),
    }
}

/// Gathers a strided view into a contiguous row-major tensor.
fn materialize(tensor: &TensorRef, storage: &[f32]) -> Option<Vec<f32>> {
    let count: usize = tensor.shape.iter().product();
    let mut out = Vec::with_capacity(count);
    let mut index = vec![0usize; tensor.shape.len()];
    for _ in 0..count {
        let offset = tensor.offset
            + index
                .iter()
                .zip(&tensor.stride)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        out.push(*storage.get(offset)?);
        for dim in (0..index.len()).rev() {
            index[dim] += 1;
            if index[dim] < tensor.shape[dim] {
                break;
            }
            index[dim] = 0;
        }
    }
    Some(out)
}
