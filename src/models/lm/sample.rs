//! Picking the next token: greedy or sampled (temperature, top-k, top-p, seed).

use crate::error::{Error, Result};
use crate::num::splitmix64;

#[derive(Clone, Debug)]
pub struct SampleOptions {
    /// 0 = greedy (argmax).
    pub temperature: f32,
    /// 0 = no top-k cut.
    pub top_k: usize,
    /// 1 = no nucleus cut.
    pub top_p: f32,
    pub seed: u64,
    pub max_new_tokens: usize,
    /// Stop when this token is produced (besides the model's own stop tokens).
    pub eos: Option<u32>,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions { temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0, max_new_tokens: 32, eos: None }
    }
}

impl SampleOptions {
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature >= 0.0) || !self.temperature.is_finite() {
            return Err(Error::arg(format!("temperature must be ≥ 0, got {}", self.temperature)));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::arg(format!("top_p must be in (0, 1], got {}", self.top_p)));
        }
        if self.max_new_tokens > 1 << 16 {
            return Err(Error::arg(format!("max_new_tokens {} is over the limit of 65536", self.max_new_tokens)));
        }
        Ok(())
    }
}

/// Picks the next token from `logits` (one row).
pub fn sample(logits: &[f32], o: &SampleOptions, rng: &mut u64) -> u32 {
    if o.temperature == 0.0 {
        return argmax(logits) as u32;
    }
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if o.top_k > 0 {
        idx.truncate(o.top_k);
    }
    let m = logits[idx[0]];
    let mut p: Vec<f32> = idx.iter().map(|&i| ((logits[i] - m) / o.temperature).exp()).collect();
    let total: f32 = p.iter().sum();
    p.iter_mut().for_each(|v| *v /= total);
    if o.top_p < 1.0 {
        let mut acc = 0.0;
        let cut = p.iter().position(|&v| {
            acc += v;
            acc >= o.top_p
        });
        if let Some(c) = cut {
            p.truncate(c + 1);
            idx.truncate(c + 1);
        }
    }
    let total: f32 = p.iter().sum();
    let mut r = (splitmix64(rng) >> 40) as f32 / (1u64 << 24) as f32 * total;
    for (k, &v) in p.iter().enumerate() {
        if r < v {
            return idx[k] as u32;
        }
        r -= v;
    }
    idx[p.len() - 1] as u32
}

/// Index of the largest value (the first on ties).
pub fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0
}
