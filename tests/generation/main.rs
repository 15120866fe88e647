//! Every model against transformers itself over whole greedy generations and at real widths
//! (`tests/fixtures/make_generation_fixtures.py`): the token sequence of
//! `generate(do_sample=False)` and every step's logits, on the CPU and the GPU, for
//! Qwen2.5-VL (the tiny committed checkpoint with a tied head; the 3B's widths with reduced
//! depth and an untied head, weights made from a seed), pruned (keep 0.5) and unpruned; Mamba
//! at mamba-130m's widths; CLIP at ViT-B/16's widths. Tolerances are relative to the scale of
//! the logits (max |logit|): 1e-4 on the CPU, 1e-3 on the GPU.

#![cfg(not(target_arch = "wasm32"))]

use effarch::models::lm::SampleOptions;
use effarch::models::mamba::{Logits, MambaConfig, MambaLM};
use effarch::models::qwen::{QwenPrune, QwenVL};
use effarch::prune::{KqWhich, Scorer};
use effarch::tensor::{block_on, Device};
use effarch::testing::{seeded_weights, SeededTensor};
use serde_json::Value;
use std::path::Path;

pub(crate) fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn fixture(name: &str) -> Value {
    let p = root().join("tests/fixtures/generation").join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

pub(crate) fn u32s(v: &Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).unwrap()
}

pub(crate) fn manifest(v: &Value) -> Vec<SeededTensor> {
    serde_json::from_value(v["manifest"].clone()).unwrap()
}

pub(crate) fn gpu() -> Device {
    Device::gpu().expect("a GPU adapter (scripts/setup.sh installs mesa-vulkan-drivers)")
}

pub(crate) fn argmax(x: &[f32]) -> u32 {
    x.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) }).0 as u32
}

/// Largest |ours − theirs| of one step, over the whole vocabulary (`logits`) or transformers'
/// top 32 (`top`), and the step's logit scale.
pub(crate) fn step_error(ours: &[f32], want: &Value) -> (f32, f32) {
    if let Some(top) = want.get("ids") {
        let (ids, vals): (Vec<usize>, Vec<f64>) = (serde_json::from_value(top.clone()).unwrap(), serde_json::from_value(want["values"].clone()).unwrap());
        let d = effarch::testing::max_abs_diff(&ids.iter().map(|&i| ours[i]).collect::<Vec<_>>(), &vals.iter().map(|&v| v as f32).collect::<Vec<_>>());
        (d, want["scale"].as_f64().unwrap() as f32)
    } else {
        let vals: Vec<f64> = serde_json::from_value(want.clone()).unwrap();
        let d = effarch::testing::max_abs_diff(ours, &vals.iter().map(|&v| v as f32).collect::<Vec<_>>());
        (d, vals.iter().fold(0f64, |m, v| m.max(v.abs())) as f32)
    }
}

/// Checks a greedy run: the tokens equal transformers', and each step's logits are within
/// `tol` of its scale. Prints the per-step table.
pub(crate) fn check_steps(what: &str, tokens: &[u32], steps: &[Vec<f32>], want: &Value, tol: f32) {
    let want_tokens = u32s(&want["tokens"]);
    let per_step: Vec<&Value> = match want.get("logits") {
        Some(l) => l.as_array().unwrap().iter().collect(),
        None => want["top"].as_array().unwrap().iter().collect(),
    };
    let mut line = format!("{what}: max |Δ| per step");
    let mut worst = 0f32;
    for (i, (s, w)) in steps.iter().zip(per_step).enumerate() {
        let (d, scale) = step_error(s, w);
        line += &format!(" {d:.1e}");
        let rel = d / scale.max(1.0);
        worst = worst.max(rel);
        assert!(rel <= tol, "{what}: step {i} logits differ by {d} (scale {scale}, relative {rel} > {tol})");
    }
    println!("{line}; worst relative {worst:.1e}; tokens {tokens:?}");
    assert_eq!(tokens, &want_tokens[..], "{what}: greedy tokens differ from transformers'");
}

/// A greedy run of `n` tokens from the prefill's logits; `step` gives the logits after a token.
pub(crate) fn greedy(n: usize, first: Vec<f32>, mut step: impl FnMut(u32) -> Vec<f32>) -> (Vec<u32>, Vec<Vec<f32>>) {
    let (mut tokens, mut steps) = (Vec::new(), vec![first]);
    loop {
        let next = argmax(steps.last().unwrap());
        tokens.push(next);
        if tokens.len() == n {
            return (tokens, steps);
        }
        steps.push(step(next));
    }
}

/// The GPU with the policies of a wide (hardware) device forced: split K, key chunks, the
/// chunked scan, whatever the adapter here.
pub(crate) fn wide_gpu() -> Device {
    let d = gpu();
    if let Device::Gpu(c) = &d {
        c.set_wide(Some(true));
    }
    d
}

mod clip;
mod images;
mod mamba;
mod qwen;
