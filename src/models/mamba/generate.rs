//! Mamba generation: the prompt prefilled in chunks, then one step per token with O(1) state
//! (the shared [`lm::decode`](crate::models::lm::decode) loop), with the MRSS threshold τ.

use super::scan::ScanStats;
use super::{Logits, MambaLM, MambaState};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::models::lm::{decode, SampleOptions, Step};

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

/// Prompt tokens one Mamba prefill call runs; a longer prompt runs in chunks with the state
/// carried (the chunk bounds the activations' memory). Four times Qwen's `LM_PREFILL_CHUNK`:
/// a Mamba layer holds no `[chunk, chunk]` attention scores.
pub const SCAN_PREFILL_CHUNK: usize = 2048;
/// Prompt tokens a generation takes (the state is O(1), but the prefill's time is not).
pub const MAX_PROMPT_TOKENS: usize = 1 << 20;

/// The MRSS threshold τ must be a finite number ≥ 0 (0 = the full scan).
pub fn check_tau(tau: f32) -> Result<()> {
    if !(tau >= 0.0) || !tau.is_finite() {
        return Err(Error::arg(format!("MRSS threshold tau must be ≥ 0, got {tau}")));
    }
    Ok(())
}

/// The model with one sequence's state: what the decode loop steps.
struct Stepper<'a> {
    model: &'a MambaLM,
    state: MambaState,
    tau: f32,
    stats: ScanStats,
}

impl Step for Stepper<'_> {
    async fn step(&mut self, token: u32) -> Result<Vec<f32>> {
        let out = self.model.forward_async(&[vec![token]], &mut self.state, self.tau, Logits::Last).await?;
        self.stats.add(out.stats);
        Ok(out.logits)
    }
}

/// [`generate_async`], waiting for the device.
pub fn generate(model: &MambaLM, prompt: &[u32], o: &SampleOptions, tau: f32, mut on_token: impl FnMut(u32)) -> Result<GenerateReport> {
    crate::tensor::block_on(generate_async(model, prompt, o, tau, |t, _| on_token(t)))
}

/// Generates after `prompt` with MRSS threshold `tau` (0 = the full scan), calling `on_token`
/// with each new token as it is produced (and the MRSS counts so far, for a live skip rate).
/// Each step runs the LM head on the last position only and reads back one row of logits.
pub async fn generate_async(model: &MambaLM, prompt: &[u32], o: &SampleOptions, tau: f32, mut on_token: impl FnMut(u32, &ScanStats)) -> Result<GenerateReport> {
    o.validate()?;
    check_tau(tau)?;
    if prompt.is_empty() {
        return Err(Error::arg("the prompt is empty"));
    }
    if prompt.len() > MAX_PROMPT_TOKENS {
        return Err(Error::arg(format!("the prompt is {} tokens, over the limit of {MAX_PROMPT_TOKENS}", prompt.len())));
    }
    let mut s = Stepper { model, state: model.new_state(1)?, tau, stats: ScanStats::default() };
    let t0 = now_ms();
    // The prompt in chunks: the state carries over, so memory stays O(chunk) however long the
    // prompt is (a pending MRSS run is closed at each chunk's end, as at the end of any call).
    let mut logits = Vec::new();
    for chunk in prompt.chunks(SCAN_PREFILL_CHUNK) {
        let out = model.forward_async(&[chunk.to_vec()], &mut s.state, tau, Logits::Last).await?;
        s.stats.add(out.stats);
        logits = out.logits;
    }
    let prefill_ms = now_ms() - t0;
    let stops: Vec<u32> = o.eos.or(model.cfg.eos_token_id).into_iter().collect();
    let d = decode(&mut s, logits, o, &stops, |t, s| on_token(t, &s.stats)).await?;
    Ok(GenerateReport {
        prompt_tokens: prompt.len(),
        tokens: d.tokens,
        prefill_ms,
        decode_ms: d.decode_ms,
        tokens_per_s: d.tokens_per_s,
        mrss_merged: s.stats.merged_fraction(),
        stopped_at_eos: d.stopped_at_eos,
    })
}
