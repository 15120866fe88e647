//! safetensors checkpoints in their hub layout and names, from bytes or a file.
//!
//! We parse the format ourselves (8-byte little-endian header length, JSON header, raw data)
//! so that every failure names the file and tensor, the header has a hard size limit, and the
//! page can read the header alone (an HTTP range request) before fetching any tensor.

use crate::error::{Error, Result};
use crate::tensor::{Device, LinearWeight, Tensor};
use std::collections::HashMap;

/// Appended to an int8 weight's name to name its per-row scales: `fc1.weight` →
/// `fc1.weight_scale` (checkpoints made by `effarch quantize`, see `crate::quantize`).
pub const SCALE_SUFFIX: &str = "_scale";

/// Headers larger than this are refused before any allocation (real ones are < 1 MiB).
pub const MAX_HEADER_BYTES: u64 = 64 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    BF16,
    /// An int8 linear weight of a quantised checkpoint (`effarch quantize`): read as
    /// `q · <name>_scale` per output row (see [`crate::quantize`]).
    I8,
}

impl Dtype {
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
            Dtype::I8 => 1,
        }
    }

    /// The name in a safetensors header.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::I8 => "I8",
        }
    }
}

/// Where one tensor's bytes are, relative to the start of the data section.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub dtype: std::result::Result<Dtype, String>,
    pub shape: Vec<usize>,
    pub start: usize,
    pub end: usize,
}

/// A parsed header: the tensors by name and the data section's offset in the file.
#[derive(Clone, Debug)]
pub struct Header {
    pub data_offset: usize,
    pub tensors: HashMap<String, TensorInfo>,
}

impl Header {
    /// Reads the 8-byte length prefix. `total_len` (the whole file's size, when known) bounds it.
    pub fn header_len(file: &str, prefix: &[u8], total_len: Option<u64>) -> Result<u64> {
        let bad = |msg: String| Error::Weights { file: file.to_string(), msg };
        let Some(len) = prefix.get(..8) else {
            return Err(bad(format!("file is {} bytes, too short for a safetensors header", prefix.len())));
        };
        let mut b = [0u8; 8];
        b.copy_from_slice(len);
        let n = u64::from_le_bytes(b);
        if n > MAX_HEADER_BYTES {
            return Err(bad(format!("header length {n} exceeds the limit of {MAX_HEADER_BYTES} bytes (not a safetensors file?)")));
        }
        if let Some(total) = total_len {
            if 8 + n > total {
                return Err(bad(format!("header length {n} runs past the end of the {total}-byte file (truncated?)")));
            }
        }
        Ok(n)
    }

    /// Parses `json` (the header's bytes). `data_len` (when known) bounds every tensor.
    pub fn parse(file: &str, json: &[u8], data_len: Option<usize>) -> Result<Header> {
        let bad = |msg: String| Error::Weights { file: file.to_string(), msg };
        let raw: HashMap<String, serde_json::Value> = serde_json::from_slice(json).map_err(|e| bad(format!("header is not valid JSON: {e}")))?;
        let mut tensors = HashMap::with_capacity(raw.len());
        for (name, v) in raw {
            if name == "__metadata__" {
                continue;
            }
            let info = parse_entry(&v).map_err(|m| bad(format!("tensor `{name}`: {m}")))?;
            if let Some(len) = data_len {
                if info.end > len {
                    return Err(bad(format!("tensor `{name}` ends at byte {} of a {len}-byte data section (truncated file?)", info.end)));
                }
            }
            tensors.insert(name, info);
        }
        Ok(Header { data_offset: 0, tensors })
    }
}

fn parse_entry(v: &serde_json::Value) -> std::result::Result<TensorInfo, String> {
    let dtype = v.get("dtype").and_then(|d| d.as_str()).ok_or("no dtype")?;
    let dtype = match dtype {
        "F32" => Ok(Dtype::F32),
        "F16" => Ok(Dtype::F16),
        "BF16" => Ok(Dtype::BF16),
        "I8" => Ok(Dtype::I8),
        other => Err(other.to_string()),
    };
    let shape: Vec<usize> = v
        .get("shape")
        .and_then(|s| s.as_array())
        .ok_or("no shape")?
        .iter()
        .map(|d| d.as_u64().map(|d| d as usize).ok_or("shape entries must be non-negative integers"))
        .collect::<std::result::Result<_, _>>()?;
    let offs = v.get("data_offsets").and_then(|o| o.as_array()).ok_or("no data_offsets")?;
    let (start, end) = match offs.as_slice() {
        [a, b] => (a.as_u64().ok_or("bad offset")? as usize, b.as_u64().ok_or("bad offset")? as usize),
        _ => return Err("data_offsets must hold two numbers".into()),
    };
    if end < start {
        return Err(format!("data_offsets [{start}, {end}] are reversed"));
    }
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("shape overflows")?;
    if let Ok(dt) = dtype {
        if count.checked_mul(dt.size()) != Some(end - start) {
            return Err(format!("shape {shape:?} needs {} bytes but data_offsets span {}", count * dt.size(), end - start));
        }
    }
    Ok(TensorInfo { dtype, shape, start, end })
}

/// A loaded checkpoint: its header and data bytes. Tensors are converted to f32 on request.
pub struct Weights {
    file: String,
    header: Header,
    data: Vec<u8>,
}

impl Weights {
    /// Parses a whole safetensors file held in memory. `file` names it in errors.
    pub fn from_bytes(file: &str, mut bytes: Vec<u8>) -> Result<Weights> {
        let n = Header::header_len(file, &bytes, Some(bytes.len() as u64))? as usize;
        let data_len = bytes.len() - 8 - n;
        let mut header = Header::parse(file, &bytes[8..8 + n], Some(data_len))?;
        header.data_offset = 8 + n;
        bytes.drain(..8 + n);
        Ok(Weights { file: file.to_string(), header, data: bytes })
    }

    /// One checkpoint from the shards of a sharded one (`model.safetensors.index.json`):
    /// every tensor keeps its name; a name in two shards is an error. `file` names the whole.
    pub fn from_shards(file: &str, shards: Vec<Weights>) -> Result<Weights> {
        let total = shards.iter().map(|w| w.data.len()).sum();
        let mut data = Vec::with_capacity(total);
        let mut tensors = HashMap::new();
        for w in shards {
            let base = data.len();
            data.extend_from_slice(&w.data);
            for (name, info) in w.header.tensors {
                if tensors.contains_key(&name) {
                    return Err(Error::Weights { file: w.file.clone(), msg: format!("tensor `{name}` is in two shards") });
                }
                tensors.insert(name, TensorInfo { start: base + info.start, end: base + info.end, ..info });
            }
        }
        Ok(Weights { file: file.to_string(), header: Header { data_offset: 0, tensors }, data })
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_file(path: &std::path::Path) -> Result<Weights> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path.display(), e))?;
        Weights::from_bytes(&path.display().to_string(), bytes)
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    pub fn contains(&self, name: &str) -> bool {
        self.header.tensors.contains_key(name)
    }

    /// The named tensor's header entry (dtype, shape, offsets).
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.header.tensors.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.header.tensors.keys().map(|s| s.as_str())
    }

    /// The named tensor's values as f32, after checking its shape against `shape`.
    pub fn get_f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let info = self.header.tensors.get(name).ok_or_else(|| Error::MissingTensor { file: self.file.clone(), name: name.to_string() })?;
        if info.shape != shape {
            return Err(Error::Shape { file: self.file.clone(), name: name.to_string(), expected: shape.to_vec(), got: info.shape.clone() });
        }
        let dtype = info.dtype.clone().map_err(|d| Error::Dtype { file: self.file.clone(), name: name.to_string(), dtype: d })?;
        let bytes = self
            .data
            .get(info.start..info.end)
            .ok_or_else(|| Error::Weights { file: self.file.clone(), msg: format!("tensor `{name}` lies outside the data section") })?;
        let v = match dtype {
            Dtype::I8 => self.dequantize(name, shape, bytes)?,
            _ => to_f32(dtype, bytes),
        };
        // One pass: a NaN or ∞ in a checkpoint would otherwise come out as NaN embeddings.
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(self.non_finite(name, i, v[i]));
        }
        Ok(v)
    }

    /// An int8 tensor times its per-row scales (`<name>_scale`, f32, one per row).
    fn dequantize(&self, name: &str, shape: &[usize], q: &[u8]) -> Result<Vec<f32>> {
        let scale_name = format!("{name}{}", SCALE_SUFFIX);
        let rows = shape.first().copied().unwrap_or(1);
        match self.header.tensors.get(&scale_name).map(|i| &i.dtype) {
            None => return Err(Error::Weights { file: self.file.clone(), msg: format!("tensor `{name}` is int8 but its scales `{scale_name}` are missing") }),
            // f32 only: an int8 scale would need scales of its own (and a chain of them, a stack).
            Some(Ok(Dtype::F32)) => {}
            Some(d) => {
                return Err(Error::Weights {
                    file: self.file.clone(),
                    msg: format!("the scales `{scale_name}` of int8 tensor `{name}` must be F32, not {d:?}"),
                })
            }
        }
        let scales = self.get_f32(&scale_name, &[rows])?;
        let cols = q.len() / rows.max(1);
        Ok(q.iter().enumerate().map(|(i, &b)| b as i8 as f32 * scales[i / cols.max(1)]).collect())
    }

    /// The named tensor's dtype, shape and raw little-endian bytes (for rewriting a checkpoint).
    pub fn raw(&self, name: &str) -> Result<(Dtype, &[usize], &[u8])> {
        let info = self.header.tensors.get(name).ok_or_else(|| Error::MissingTensor { file: self.file.clone(), name: name.to_string() })?;
        let dtype = info.dtype.clone().map_err(|d| Error::Dtype { file: self.file.clone(), name: name.to_string(), dtype: d })?;
        let bytes = self
            .data
            .get(info.start..info.end)
            .ok_or_else(|| Error::Weights { file: self.file.clone(), msg: format!("tensor `{name}` lies outside the data section") })?;
        Ok((dtype, &info.shape, bytes))
    }

    fn non_finite(&self, name: &str, index: usize, value: f32) -> Error {
        Error::Weights { file: self.file.clone(), msg: format!("tensor `{name}` holds a non-finite value ({value}) at flat index {index}") }
    }

    /// A linear layer's `[out, in]` weight for `device`: an f16/bf16 tensor stays half on the
    /// CPU (half the memory; see [`LinearWeight::from_half`]), anything else becomes f32.
    pub fn get_linear(&self, name: &str, shape: [usize; 2], device: &Device) -> Result<LinearWeight> {
        let info = self.header.tensors.get(name).ok_or_else(|| Error::MissingTensor { file: self.file.clone(), name: name.to_string() })?;
        let half = match info.dtype {
            Ok(Dtype::BF16) => Some(true),
            Ok(Dtype::F16) => Some(false),
            _ => None,
        };
        match (half, device) {
            (Some(bf16), Device::Cpu(_)) if info.shape == shape => {
                let bytes = self
                    .data
                    .get(info.start..info.end)
                    .ok_or_else(|| Error::Weights { file: self.file.clone(), msg: format!("tensor `{name}` lies outside the data section") })?;
                // All exponent bits set is ∞ or NaN, in f16 (5 bits) and bf16 (8 bits).
                let mask: u16 = if bf16 { 0x7f80 } else { 0x7c00 };
                if let Some(i) = bytes.chunks_exact(2).position(|b| u16::from_le_bytes([b[0], b[1]]) & mask == mask) {
                    let v = to_f32(if bf16 { Dtype::BF16 } else { Dtype::F16 }, &bytes[2 * i..2 * i + 2])[0];
                    return Err(self.non_finite(name, i, v));
                }
                LinearWeight::from_half(bytes, bf16, shape, device)
            }
            _ => LinearWeight::new(self.get_f32(name, &shape)?, shape, device),
        }
    }

    /// The named tensor on `device`, after checking its shape.
    pub fn get(&self, name: &str, shape: &[usize], device: &Device) -> Result<Tensor> {
        Tensor::from_f32(self.get_f32(name, shape)?, shape, device)
    }

    /// A view that prefixes every name (`vision_model.encoder.layers.0`), like HF module paths.
    pub fn pp<'a>(&'a self, prefix: &str) -> Scope<'a> {
        Scope { w: self, prefix: prefix.to_string() }
    }
}

fn to_f32(dtype: Dtype, bytes: &[u8]) -> Vec<f32> {
    match dtype {
        Dtype::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => bytes.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        // The bare int8 values: callers with the scales at hand dequantise (`Weights::dequantize`).
        Dtype::I8 => bytes.iter().map(|&b| b as i8 as f32).collect(),
    }
}

/// A name prefix over [`Weights`], mirroring the HF module tree.
#[derive(Clone)]
pub struct Scope<'a> {
    w: &'a Weights,
    prefix: String,
}

impl<'a> Scope<'a> {
    pub fn pp(&self, name: impl std::fmt::Display) -> Scope<'a> {
        Scope { w: self.w, prefix: self.join(&name.to_string()) }
    }

    fn join(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    pub fn get(&self, name: &str, shape: &[usize], device: &Device) -> Result<Tensor> {
        self.w.get(&self.join(name), shape, device)
    }

    pub fn get_f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        self.w.get_f32(&self.join(name), shape)
    }

    pub fn get_linear(&self, name: &str, shape: [usize; 2], device: &Device) -> Result<LinearWeight> {
        self.w.get_linear(&self.join(name), shape, device)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.w.contains(&self.join(name))
    }
}

/// Writes tensors as a safetensors file (f32). Used for random benchmark models and tests.
pub fn serialize_f32(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    serialize(tensors, Dtype::F32)
}

/// Writes tensors as a safetensors file in `dtype` (values rounded to it).
pub fn serialize(tensors: &[(String, Vec<usize>, Vec<f32>)], dtype: Dtype) -> Vec<u8> {
    let raw: Vec<(String, Dtype, Vec<usize>, std::borrow::Cow<'_, [u8]>)> = tensors
        .iter()
        .map(|(n, shape, data)| {
            let mut bytes = Vec::with_capacity(data.len() * dtype.size());
            for &v in data {
                match dtype {
                    Dtype::F32 => bytes.extend_from_slice(&v.to_le_bytes()),
                    Dtype::F16 => bytes.extend_from_slice(&half::f16::from_f32(v).to_le_bytes()),
                    Dtype::BF16 => bytes.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes()),
                    Dtype::I8 => bytes.push(v.round().clamp(-127.0, 127.0) as i8 as u8),
                }
            }
            (n.clone(), dtype, shape.clone(), std::borrow::Cow::Owned(bytes))
        })
        .collect();
    serialize_raw(&raw)
}

/// Writes tensors given as raw little-endian bytes of their dtype, in order, as a safetensors file.
pub fn serialize_raw(tensors: &[(String, Dtype, Vec<usize>, std::borrow::Cow<'_, [u8]>)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut off = 0usize;
    for (n, dtype, shape, data) in tensors {
        let end = off + data.len();
        header.insert(n.clone(), serde_json::json!({"dtype": dtype.name(), "shape": shape, "data_offsets": [off, end]}));
        off = end;
    }
    let mut json = serde_json::Value::Object(header).to_string().into_bytes();
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len() + off);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for (_, _, _, data) in tensors {
        out.extend_from_slice(data);
    }
    out
}
