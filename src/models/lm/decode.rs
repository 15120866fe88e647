//! The decode loop every language model here shares: sample from the last logits, stream the
//! token, stop at a stop token or the budget, else run one step. The model supplies the step.

use super::sample::{sample, SampleOptions};
use crate::clock::now_ms;
use crate::error::Result;

/// A model continuing one sequence a token at a time (its cache or state held inside).
pub trait Step {
    /// The logits `[V]` after `token`.
    // Not `Send`: models run on one thread in the browser; nothing here is spawned.
    #[allow(async_fn_in_trait)]
    async fn step(&mut self, token: u32) -> Result<Vec<f32>>;
}

/// What the loop produced.
#[derive(Clone, Debug)]
pub struct Decoded {
    pub tokens: Vec<u32>,
    pub decode_ms: f64,
    pub tokens_per_s: f64,
    pub stopped_at_eos: bool,
}

/// Generates up to `o.max_new_tokens` tokens from `logits` (the prompt's last), calling
/// `on_token` with each one as it is produced (and the model, for live statistics). Stops
/// after a token in `stops`; no step runs after the last token.
pub async fn decode<S: Step>(model: &mut S, mut logits: Vec<f32>, o: &SampleOptions, stops: &[u32], mut on_token: impl FnMut(u32, &S)) -> Result<Decoded> {
    let mut rng = o.seed;
    let mut tokens = Vec::new();
    let mut stopped = false;
    let t0 = now_ms();
    for i in 0..o.max_new_tokens {
        let next = sample(&logits, o, &mut rng);
        tokens.push(next);
        on_token(next, model);
        if stops.contains(&next) {
            stopped = true;
            break;
        }
        if i + 1 == o.max_new_tokens {
            break;
        }
        logits = model.step(next).await?;
    }
    let decode_ms = now_ms() - t0;
    Ok(Decoded { tokens_per_s: if decode_ms > 0.0 { tokens.len() as f64 / (decode_ms / 1000.0) } else { 0.0 }, tokens, decode_ms, stopped_at_eos: stopped })
}
