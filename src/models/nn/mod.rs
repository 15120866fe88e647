//! Layers that several models share, with HF's parameter names: [`Linear`], [`LayerNorm`],
//! [`RmsNorm`], the token [`Embedding`], the pre-norm [`EncoderLayer`] (CLIP's towers, the
//! Mamba bench's attention baseline) and a [`KvCache`]. A model folder holds only what is its own.

mod embedding;
mod encoder;
mod kv_cache;
mod linear;

pub use embedding::Embedding;
pub use encoder::{EncoderLayer, LayerDims, Pruned};
pub use kv_cache::KvCache;
pub use linear::{LayerNorm, Linear, NormedLinear, RmsNorm};
