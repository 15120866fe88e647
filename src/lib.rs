//! effarch: efficient neural architectures on one tensor seam, natively and in the browser.
//!
//! - [`tensor`]: the seam (`Tensor`, `Device`) every model is written against.
//! - [`models::clip`]: CLIP with training-free vision-token pruning ([`prune`]).
//! - [`bench`]: the benchmark driver shared by the CLI and the page.

pub mod bench;
pub mod clock;
pub mod error;
pub mod image;
pub mod models;
pub mod num;
pub mod overlay;
pub mod prune;
pub mod tensor;
#[doc(hidden)]
pub mod testing;
pub mod weights;

#[cfg(all(not(target_arch = "wasm32"), feature = "cli"))]
pub mod hub;

#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, Result};
