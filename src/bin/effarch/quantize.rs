//! `effarch quantize`: a checkpoint in the hub layout with int8 linear weights
//! (`effarch::quantize`), loadable by every command and the page like any other.

use crate::common::emit;
use clap::Args;
use effarch::weights::Weights;
use effarch::{Error, Result};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Args)]
pub struct QuantizeArgs {
    /// A local directory in the hub layout (config.json, *.safetensors, tokenizer files), or a
    /// hub id with a single model.safetensors.
    #[arg(long)]
    model: String,
    /// The precision of the linear weights written (int8: symmetric per output channel).
    #[arg(long, default_value = "int8")]
    precision: String,
    /// The directory to write (created; files of the same names are overwritten).
    #[arg(long)]
    out: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct FileRow {
    file: String,
    quantized: usize,
    kept: usize,
    bytes_in: usize,
    bytes_out: usize,
}

#[derive(Serialize)]
struct Report {
    out: String,
    precision: &'static str,
    files: Vec<FileRow>,
    bytes_in: usize,
    bytes_out: usize,
}

pub fn run(a: QuantizeArgs) -> Result<()> {
    if a.precision != "int8" {
        return Err(Error::arg(format!("--precision {}: `quantize` writes int8 (bf16 checkpoints load as they are)", a.precision)));
    }
    let dir = effarch::hub::resolve(&a.model, &["config.json", "model.safetensors"], &[])?;
    if dir.canonicalize().ok() == a.out.canonicalize().ok() {
        return Err(Error::arg("--out is the model's own directory: write the quantised copy elsewhere"));
    }
    std::fs::create_dir_all(&a.out).map_err(|e| Error::io(a.out.display(), e))?;
    let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(dir.display(), e))?;
    let mut files = Vec::new();
    let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    // Shards first, the index (which gains their scales' names) after them.
    names.sort_by_key(|p| (p.to_string_lossy().ends_with(".index.json"), p.clone()));
    let mut quantized: Vec<String> = Vec::new();
    for path in names {
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
        let dst = a.out.join(&name);
        let write = |bytes: &[u8]| std::fs::write(&dst, bytes).map_err(|e| Error::io(dst.display(), e));
        if name.ends_with(".safetensors") {
            let w = Weights::from_file(&path)?;
            let (bytes, s) = effarch::quantize::quantize_checkpoint(&w)?;
            write(&bytes)?;
            quantized.extend(s.quantized_names.iter().cloned());
            if !a.json {
                eprintln!(
                    "{name}: {} linear weights int8, {} tensors kept, {:.1} MB → {:.1} MB",
                    s.quantized,
                    s.kept,
                    s.bytes_in as f64 / 1e6,
                    s.bytes_out as f64 / 1e6
                );
            }
            files.push(FileRow { file: name, quantized: s.quantized, kept: s.kept, bytes_in: s.bytes_in, bytes_out: s.bytes_out });
        } else if name == "config.json" {
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(path.display(), e))?;
            write(effarch::quantize::quantized_config(&text)?.as_bytes())?;
        } else if name.ends_with(".safetensors.index.json") {
            // The scales live in the same shard as their weight.
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(path.display(), e))?;
            let mut v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::arg(format!("{name}: {e}")))?;
            if let Some(map) = v.get_mut("weight_map").and_then(|m| m.as_object_mut()) {
                let adds: Vec<(String, serde_json::Value)> =
                    quantized.iter().filter_map(|k| map.get(k).map(|f| (format!("{k}{}", effarch::quantize::SCALE_SUFFIX), f.clone()))).collect();
                map.extend(adds);
            }
            write(serde_json::to_string_pretty(&v).map_err(|e| Error::arg(e.to_string()))?.as_bytes())?;
        } else {
            std::fs::copy(&path, &dst).map_err(|e| Error::io(dst.display(), e))?;
        }
    }
    let report = Report {
        out: a.out.display().to_string(),
        precision: "int8",
        bytes_in: files.iter().map(|f| f.bytes_in).sum(),
        bytes_out: files.iter().map(|f| f.bytes_out).sum(),
        files,
    };
    if a.json {
        return emit(&report);
    }
    println!(
        "wrote {} ({:.1} MB of tensors, was {:.1} MB); run any command on it with --model {} --precision int8",
        report.out,
        report.bytes_out as f64 / 1e6,
        report.bytes_in as f64 / 1e6,
        report.out
    );
    Ok(())
}
