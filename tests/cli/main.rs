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

pub(crate) fn clip_args<'a>(extra: &[&'a str], image: &'a str, model: &'a str) -> Vec<&'a str> {
    let mut v = vec!["clip", "--model", model, "--image", image];
    v.extend_from_slice(extra);
    v
}

mod clip;
mod interface;
mod mamba;
mod qwen;
