//! Quantised checkpoints in the hub layout (`effarch quantize`): the same files and tensor
//! names, every linear weight stored int8 (symmetric per output channel, the scheme of
//! `--precision int8`) beside its scales `<name>_scale` (f32, one per output row), everything
//! else unchanged; `config.json` gains a `quantization_config` naming the scheme. Such a
//! checkpoint loads like any other (`Weights` reads an int8 tensor as `q · scale`), at a quarter
//! of the linear weights' f32 bytes; at `--precision int8` the weights quantise back to the
//! very same int8 values.

use crate::error::{Error, Result};
pub use crate::weights::SCALE_SUFFIX;
use crate::weights::{serialize_raw, Dtype, Weights};
use std::borrow::Cow;

/// Whether a tensor is a linear layer's weight, quantised by [`quantize_checkpoint`]: 2-D,
/// named `*.weight`, and not an embedding table (those are looked up, not multiplied, and
/// Mamba's tied head shares its table).
pub fn is_linear_weight(name: &str, shape: &[usize]) -> bool {
    shape.len() == 2 && name.ends_with(".weight") && !name.contains("embed") && shape[1] > 1
}

/// What [`quantize_checkpoint`] did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct QuantizeStats {
    /// Tensors quantised to int8.
    pub quantized: usize,
    /// Tensors copied as they were.
    pub kept: usize,
    pub bytes_in: usize,
    pub bytes_out: usize,
    /// The names of the tensors quantised (for a sharded checkpoint's index).
    #[serde(skip)]
    pub quantized_names: Vec<String>,
}

/// Rewrites one safetensors file with its linear weights in int8 (see the module docs).
pub fn quantize_checkpoint(w: &Weights) -> Result<(Vec<u8>, QuantizeStats)> {
    let mut names: Vec<&str> = w.names().collect();
    names.sort_unstable();
    let mut out: Vec<(String, Dtype, Vec<usize>, Cow<[u8]>)> = Vec::with_capacity(names.len() * 2);
    let mut stats = QuantizeStats::default();
    for name in names {
        let (dtype, shape, bytes) = w.raw(name)?;
        stats.bytes_in += bytes.len();
        if dtype == Dtype::I8 || name.ends_with(SCALE_SUFFIX) && w.raw(&name[..name.len() - SCALE_SUFFIX.len()]).is_ok_and(|r| r.0 == Dtype::I8) {
            return Err(Error::Weights { file: w.file().to_string(), msg: format!("tensor `{name}` is already int8: the checkpoint is quantised") });
        }
        if !is_linear_weight(name, shape) {
            out.push((name.to_string(), dtype, shape.to_vec(), Cow::Borrowed(bytes)));
            stats.kept += 1;
            continue;
        }
        let (n, k) = (shape[0], shape[1]);
        let (q, s) = crate::tensor::quantize_int8(&w.get_f32(name, shape)?, n, k).map_err(Error::arg)?;
        out.push((name.to_string(), Dtype::I8, shape.to_vec(), Cow::Owned(q.into_iter().map(|v| v as u8).collect())));
        out.push((format!("{name}{SCALE_SUFFIX}"), Dtype::F32, vec![n], Cow::Owned(s.iter().flat_map(|v| v.to_le_bytes()).collect())));
        stats.quantized += 1;
        stats.quantized_names.push(name.to_string());
    }
    let bytes = serialize_raw(&out);
    stats.bytes_out = bytes.len();
    Ok((bytes, stats))
}

/// `config.json` with the `quantization_config` of a checkpoint made by [`quantize_checkpoint`].
pub fn quantized_config(config_json: &str) -> Result<String> {
    let mut v: serde_json::Value = serde_json::from_str(config_json).map_err(|e| Error::arg(format!("config.json is not valid JSON: {e}")))?;
    let obj = v.as_object_mut().ok_or_else(|| Error::arg("config.json is not a JSON object"))?;
    obj.insert(
        "quantization_config".into(),
        serde_json::json!({
            "quant_method": "effarch-int8",
            "bits": 8,
            "weights": "int8 symmetric per output channel, scales in <name>_scale (f32)",
            "activations": "int8 symmetric per row, quantised at run time (--precision int8)",
        }),
    );
    serde_json::to_string_pretty(&v).map_err(|e| Error::arg(format!("cannot write config.json: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::serialize_f32;

    #[test]
    fn a_quantised_checkpoint_reads_back_as_the_int8_values_and_requantises_to_them() {
        let (n, k) = (5, 12);
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.013).collect();
        let file = serialize_f32(&[
            ("enc.fc1.weight".into(), vec![n, k], w.clone()),
            ("enc.fc1.bias".into(), vec![n], vec![0.5; n]),
            ("embeddings.token_embedding.weight".into(), vec![3, 4], vec![1.0; 12]),
        ]);
        let src = Weights::from_bytes("src", file).unwrap();
        let (bytes, stats) = quantize_checkpoint(&src).unwrap();
        assert_eq!((stats.quantized, stats.kept), (1, 2));
        let q = Weights::from_bytes("q", bytes).unwrap();
        assert_eq!(q.raw("enc.fc1.weight").unwrap().0, Dtype::I8);
        assert_eq!(q.get_f32("enc.fc1.bias", &[n]).unwrap(), vec![0.5; n]);
        assert_eq!(q.raw("embeddings.token_embedding.weight").unwrap().0, Dtype::F32);
        // Read back: q · s, within half a step of the original.
        let back = q.get_f32("enc.fc1.weight", &[n, k]).unwrap();
        let (qv, s) = crate::tensor::quantize_int8(&w, n, k).unwrap();
        for (i, (&b, &o)) in back.iter().zip(&w).enumerate() {
            assert!((b - o).abs() <= 0.5 * s[i / k] * 1.0001, "{i}: {b} vs {o}");
        }
        // Quantising the read-back weight gives the same int8 values (the load path of
        // `--precision int8` on a quantised checkpoint).
        assert_eq!(crate::tensor::quantize_int8(&back, n, k).unwrap().0, qv);
        // A quantised checkpoint is not quantised twice; missing scales are named.
        assert!(quantize_checkpoint(&q).is_err());
        let no_scale = serialize_raw(&[("a.weight".into(), Dtype::I8, vec![1, 2], Cow::Owned(vec![1, 2]))]);
        let e = Weights::from_bytes("f", no_scale).unwrap().get_f32("a.weight", &[1, 2]).unwrap_err().to_string();
        assert!(e.contains("a.weight_scale"), "{e}");
        let int8_scale = serialize_raw(&[
            ("a.weight".into(), Dtype::I8, vec![1, 2], Cow::Owned(vec![1, 2])),
            ("a.weight_scale".into(), Dtype::I8, vec![1], Cow::Owned(vec![1])),
        ]);
        let e = Weights::from_bytes("f", int8_scale).unwrap().get_f32("a.weight", &[1, 2]).unwrap_err().to_string();
        assert!(e.contains("must be F32"), "{e}");
    }
}
