//! Finding a model natively: a local directory, the Hugging Face hub cache, or (online) a
//! download into that cache with a progress bar.

use crate::error::{Error, Result};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("HF_HOME") {
        return PathBuf::from(p).join("hub");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache/huggingface/hub")
}

fn is_repo_id(s: &str) -> bool {
    let mut parts = s.split('/');
    matches!((parts.next(), parts.next(), parts.next()), (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
}

/// A cached snapshot of `repo` that has all of `files`, if any.
pub fn cached_snapshot(repo: &str, files: &[&str]) -> Option<PathBuf> {
    let base = cache_dir().join(format!("models--{}", repo.replace('/', "--")));
    let has_all = |d: &Path| files.iter().all(|f| d.join(f).exists());
    if let Ok(rev) = std::fs::read_to_string(base.join("refs/main")) {
        let d = base.join("snapshots").join(rev.trim());
        if has_all(&d) {
            return Some(d);
        }
    }
    std::fs::read_dir(base.join("snapshots")).ok()?.flatten().map(|e| e.path()).find(|d| has_all(d))
}

/// Resolves `--model`: a directory as is; a hub id from the cache, else downloaded.
/// `required` must exist; `optional` files are fetched when the hub has them.
pub fn resolve(model: &str, required: &[&str], optional: &[&str]) -> Result<PathBuf> {
    let p = Path::new(model);
    if p.is_dir() {
        return Ok(p.to_path_buf());
    }
    if !is_repo_id(model) {
        return Err(Error::arg(format!("--model `{model}` is neither a directory nor a hub id like openai/clip-vit-base-patch16")));
    }
    if let Some(d) = cached_snapshot(model, required) {
        return Ok(d);
    }
    let dir = cache_dir().join(format!("models--{}", model.replace('/', "--"))).join("snapshots/main");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
    for f in required {
        if !dir.join(f).exists() {
            download(model, f, &dir)?;
        }
    }
    for f in optional {
        if !dir.join(f).exists() {
            let _ = download(model, f, &dir); // a repo may lack an optional file
        }
    }
    let refs = dir.parent().and_then(|p| p.parent()).map(|p| p.join("refs"));
    if let Some(refs) = refs {
        let _ = std::fs::create_dir_all(&refs).and_then(|_| std::fs::write(refs.join("main"), "main"));
    }
    Ok(dir)
}

fn download(repo: &str, file: &str, dir: &Path) -> Result<()> {
    let url = format!("https://huggingface.co/{repo}/resolve/main/{file}");
    let fail = |msg: String| Error::Download { url: url.clone(), msg };
    let resp = ureq::get(&url).call().map_err(|e| fail(format!("{e} (offline? pass a local directory with --model)")))?;
    let total = resp.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let bar = indicatif::ProgressBar::new(total.unwrap_or(0));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(file.to_string());
    let tmp = dir.join(format!("{file}.part"));
    let mut out = std::fs::File::create(&tmp).map_err(|e| Error::io(tmp.display(), e))?;
    let mut body = resp.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = body.read(&mut buf).map_err(|e| fail(e.to_string()))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(|e| Error::io(tmp.display(), e))?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    std::fs::rename(&tmp, dir.join(file)).map_err(|e| Error::io(dir.join(file).display(), e))
}
