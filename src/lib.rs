//! effarch: efficient neural architectures on one tensor seam, natively and in the browser.
//!
//! Layers, bottom up (each should import only from the ones above it in this list):
//! - [`num`], [`error`], [`clock`]: leaf helpers (index math, errors, time).
//! - [`tensor`]: the seam (`Tensor`, `Device`) every model is written against; the CPU and
//!   GPU backends below it.
//! - [`weights`], [`image`] (with its JPEG decoder), [`probe`]: safetensors in the hub layout;
//!   decoding and resizing; per-stage tensors a fidelity check can capture.
//! - [`prune`]: token scorers and the index math of pruning.
//! - [`models`]: shared layers ([`models::nn`]), what language models share ([`models::lm`]),
//!   and the models: [`models::clip`], [`models::mamba`], [`models::qwen`].
//! - [`bench`], [`eval`], [`overlay`], [`quantize`] (int8 checkpoints), `web` (wasm), `hub`
//!   (native CLI): drivers on top.
//!
//! `tests/architecture.rs` checks the rule on the source: no import from a layer above, no
//! circle between files, no source file over 500 lines.

pub mod bench;
pub mod clock;
pub mod error;
pub mod eval;
pub mod image;
pub mod models;
pub mod num;
pub mod overlay;
pub mod probe;
pub mod prune;
pub mod quantize;
pub mod tensor;
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing;
pub mod weights;

#[cfg(all(not(target_arch = "wasm32"), feature = "cli"))]
pub mod hub;

#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, Result};
