//! Models, each written once against [`crate::tensor`].

pub mod bpe;
pub mod clip;
pub mod lm;
pub mod mamba;
pub mod nn;
pub mod qwen;
