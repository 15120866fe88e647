//! A layer's key/value cache for causal decoding.

use crate::error::Result;
use crate::tensor::Tensor;

/// Keys and values `[B, H, T, d]` of the tokens a layer has seen (T grows along axis 2).
#[derive(Clone, Default)]
pub struct KvCache {
    kv: Option<(Tensor, Tensor)>,
}

impl KvCache {
    pub fn is_empty(&self) -> bool {
        self.kv.is_none()
    }

    /// Tokens held.
    pub fn len(&self) -> usize {
        self.kv.as_ref().map_or(0, |(k, _)| k.shape().get(2).copied().unwrap_or(0))
    }

    /// The keys held, `[B, H, T, d]`.
    pub fn keys(&self) -> Option<&Tensor> {
        self.kv.as_ref().map(|(k, _)| k)
    }

    /// Appends the new tokens' keys and values and returns all of them (the cache keeps them).
    pub fn append(&mut self, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let (k, v) = match self.kv.take() {
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
            None => (k, v),
        };
        self.kv = Some((k.clone(), v.clone()));
        Ok((k, v))
    }
}
