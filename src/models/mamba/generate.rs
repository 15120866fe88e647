//! Generation: prefill the prompt once, then one step per token with O(1) state; greedy or
//! sampled (temperature, top-k, top-p, seed); stops at EOS or the token budget; streams each
//! token to a callback.

use super::scan::{argmax, ScanStats};
use super::{Logits, MambaLM};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::prune::splitmix64;

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
    /// Stop when this token is produced (the model's EOS by default).
    pub eos: Option<u32>,
    /// MRSS threshold τ (0 = the full scan).
    pub tau: f32,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions { temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0, max_new_tokens: 32, eos: None, tau: 0.0 }
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
        if !(self.tau >= 0.0) || !self.tau.is_finite() {
            return Err(Error::arg(format!("MRSS threshold tau must be ≥ 0, got {}", self.tau)));
        }
        if self.max_new_tokens > 1 << 16 {
            return Err(Error::arg(format!("max_new_tokens {} is over the limit of 65536", self.max_new_tokens)));
        }
        Ok(())
    }
}

/// What one generation did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GenerateReport {
    pub prompt_tokens: usize,
    pub tokens: Vec<u32>,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    pub tokens_per_s: f64,
    /// Fraction of SSM state updates merged by MRSS (0 with τ = 0).
    pub mrss_merged: f64,
    pub stopped_at_eos: bool,
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

/// Prompt tokens one prefill call runs.
pub const PREFILL_CHUNK: usize = 2048;
/// Prompt tokens a generation takes (the state is O(1), but the prefill's time is not).
pub const MAX_PROMPT_TOKENS: usize = 1 << 20;

/// [`generate_async`], waiting for the device.
pub fn generate(model: &MambaLM, prompt: &[u32], o: &SampleOptions, mut on_token: impl FnMut(u32)) -> Result<GenerateReport> {
    crate::tensor::block_on(generate_async(model, prompt, o, |t, _| on_token(t)))
}

/// Generates after `prompt`, calling `on_token` with each new token as it is produced (and the
/// MRSS counts so far, for a live skip rate). Each
/// step runs the LM head on the last position only and reads back one row of logits.
pub async fn generate_async(model: &MambaLM, prompt: &[u32], o: &SampleOptions, mut on_token: impl FnMut(u32, &ScanStats)) -> Result<GenerateReport> {
    o.validate()?;
    if prompt.is_empty() {
        return Err(Error::arg("the prompt is empty"));
    }
    if prompt.len() > MAX_PROMPT_TOKENS {
        return Err(Error::arg(format!("the prompt is {} tokens, over the limit of {MAX_PROMPT_TOKENS}", prompt.len())));
    }
    let mut state = model.new_state(1)?;
    let mut stats = ScanStats::default();
    let t0 = now_ms();
    // The prompt in chunks: the state carries over, so memory stays O(chunk) however long the
    // prompt is (a pending MRSS run is closed at each chunk's end, as at the end of any call).
    let mut logits = Vec::new();
    for chunk in prompt.chunks(PREFILL_CHUNK) {
        let out = model.forward_async(&[chunk.to_vec()], &mut state, o.tau, Logits::Last).await?;
        stats.add(out.stats);
        logits = out.logits;
    }
    let prefill_ms = now_ms() - t0;
    let mut rng = o.seed;
    let eos = o.eos.or(model.cfg.eos_token_id);
    let mut tokens = Vec::new();
    let mut stopped = false;
    let t1 = now_ms();
    for step in 0..o.max_new_tokens {
        let next = sample(&logits, o, &mut rng);
        tokens.push(next);
        on_token(next, &stats);
        if Some(next) == eos {
            stopped = true;
            break;
        }
        if step + 1 == o.max_new_tokens {
            break;
        }
        let out = model.forward_async(&[vec![next]], &mut state, o.tau, Logits::Last).await?;
        stats.add(out.stats);
        logits = out.logits;
    }
    let decode_ms = now_ms() - t1;
    Ok(GenerateReport {
        prompt_tokens: prompt.len(),
        tokens_per_s: if decode_ms > 0.0 { tokens.len() as f64 / (decode_ms / 1000.0) } else { 0.0 },
        tokens,
        prefill_ms,
        decode_ms,
        mrss_merged: stats.merged_fraction(),
        stopped_at_eos: stopped,
    })
}
