//! Reading a Qwen2.5-VL checkpoint from disk: one `model.safetensors`, or the shards that
//! `model.safetensors.index.json` names (native builds).

use crate::error::{Error, Result};
use crate::weights::Weights;

/// The weights of a directory: the shards listed by `model.safetensors.index.json`, else
/// `model.safetensors`. A missing shard is an error naming it.
pub fn load_checkpoint(dir: &std::path::Path) -> Result<Weights> {
    let Some(index) = read_index(dir)? else {
        return Weights::from_file(&dir.join("model.safetensors"));
    };
    let mut shards = Vec::with_capacity(index.files.len());
    for f in &index.files {
        let p = dir.join(f);
        if !p.exists() {
            return Err(index.bad(format!("missing shard {f} (named by the index)")));
        }
        shards.push(Weights::from_file(&p)?);
    }
    let w = Weights::from_shards(&index.path, shards)?;
    if let Some((name, f)) = index.map.iter().find(|(n, _)| !w.contains(n)) {
        return Err(index.bad(format!("tensor `{name}` is listed in {} but not there", f.as_str().unwrap_or("?"))));
    }
    Ok(w)
}

/// The shard files `model.safetensors.index.json` names (sorted, once each), or `None`
/// without an index. A name that leaves the directory is an error.
pub fn shard_names(dir: &std::path::Path) -> Result<Option<Vec<String>>> {
    Ok(read_index(dir)?.map(|i| i.files))
}

/// `model.safetensors.index.json`, parsed once: its path, tensor → shard map and shard files.
struct ShardIndex {
    path: String,
    map: serde_json::Map<String, serde_json::Value>,
    files: Vec<String>,
}

impl ShardIndex {
    fn bad(&self, msg: String) -> Error {
        Error::Weights { file: self.path.clone(), msg }
    }
}

fn read_index(dir: &std::path::Path) -> Result<Option<ShardIndex>> {
    let index = dir.join("model.safetensors.index.json");
    let text = match std::fs::read_to_string(&index) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(index.display(), e)),
    };
    let path = index.display().to_string();
    let bad = |m: String| Error::Weights { file: path.clone(), msg: m };
    let mut v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let map = match v.get_mut("weight_map").map(serde_json::Value::take) {
        Some(serde_json::Value::Object(m)) => m,
        _ => return Err(bad("no weight_map".into())),
    };
    let mut files: Vec<String> = map.values().filter_map(|f| f.as_str().map(String::from)).collect();
    files.sort_unstable();
    files.dedup();
    if let Some(f) = files.iter().find(|f| f.contains('/') || f.contains('\\') || f.contains("..")) {
        return Err(bad(format!("shard name `{f}` leaves the directory")));
    }
    Ok(Some(ShardIndex { path, map, files }))
}
