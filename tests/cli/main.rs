//! The CLI end to end on the tiny fixture: `--json` fields, the overlay, exit codes.
#![cfg(not(target_arch = "wasm32"))]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub(crate) fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip-tiny")
}

pub(crate) fn effarch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_effarch")).args(args).output().expect("runs")
}

/// `effarch args` that must succeed, its stdout parsed as JSON.
pub(crate) fn effarch_json(args: &[&str]) -> serde_json::Value {
    let out = effarch(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

/// A GPU profile (`bench … --profile`): its kernels account for every dispatch, one whose
/// name starts with `want` is among them, and the span holds the busy time.
pub(crate) fn check_profile(p: &serde_json::Value, want: &str) {
    let kernels = p["kernels"].as_array().unwrap_or_else(|| panic!("no kernels: {p}"));
    assert_eq!(kernels.iter().map(|k| k["count"].as_u64().unwrap()).sum::<u64>(), p["dispatches"].as_u64().unwrap(), "{p}");
    assert!(p["dispatches"].as_u64().unwrap() > 0 && kernels.iter().any(|k| k["kernel"].as_str().unwrap().starts_with(want)), "{want}: {p}");
    assert!(p["gpu_span_ms"].as_f64().unwrap() >= p["busy_ms"].as_f64().unwrap(), "{p}");
}

pub(crate) fn clip_args<'a>(extra: &[&'a str], image: &'a str, model: &'a str) -> Vec<&'a str> {
    let mut v = vec!["clip", "--model", model, "--image", image];
    v.extend_from_slice(extra);
    v
}

mod clip;
mod interface;
mod mamba;
mod qwen;
