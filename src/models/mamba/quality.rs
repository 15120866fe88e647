//! The quality cost of MRSS against the full scan: max and relative error of the logits, mean
//! KL of the next-token distributions, top-1 agreement, perplexity of a text under both, and
//! the time ratio. Shared by `effarch mamba`, the page and `effarch typeseg`.

use super::{Logits, MambaLM};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::models::lm::argmax;
use serde::Serialize;

pub fn log_softmax(v: &[f32]) -> Vec<f32> {
    let m = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let s = v.iter().map(|x| (x - m).exp()).sum::<f32>().ln();
    v.iter().map(|x| x - m - s).collect()
}

/// Running comparison of full-scan rows against approximate rows of the same logits.
#[derive(Clone, Debug, Default)]
pub struct Compare {
    pub rows: usize,
    agree: usize,
    pub max_abs: f32,
    num: f64,
    den: f64,
    kl: f64,
}

/// KL(softmax(p) ‖ softmax(q)) of two logit rows, in f64; ≥ 0 (the sum of rounding errors of
/// two nearly equal rows can come out a hair below zero, and is reported as zero).
fn kl(p: &[f32], q: &[f32]) -> f64 {
    let lse = |x: &[f32]| {
        let m = x.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        m + x.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln()
    };
    let (zp, zq) = (lse(p), lse(q));
    let s: f64 = p.iter().zip(q).map(|(&a, &b)| (a as f64 - zp).exp() * ((a as f64 - zp) - (b as f64 - zq))).sum();
    s.max(0.0)
}

impl Compare {
    /// Adds `[n, v]` rows of the full scan's logits and the approximation's.
    pub fn add(&mut self, full: &[f32], approx: &[f32], v: usize) {
        for (p, q) in full.chunks(v.max(1)).zip(approx.chunks(v.max(1))) {
            self.rows += 1;
            self.agree += (argmax(p) == argmax(q)) as usize;
            self.kl += kl(p, q);
            for (a, b) in p.iter().zip(q) {
                self.max_abs = self.max_abs.max((a - b).abs());
                self.num += ((a - b) as f64).powi(2);
                self.den += (*a as f64).powi(2);
            }
        }
    }
    pub fn agreement(&self) -> f64 {
        if self.rows == 0 {
            1.0
        } else {
            self.agree as f64 / self.rows as f64
        }
    }
    /// ‖Δ‖₂ / ‖full‖₂ over all logits.
    pub fn rel_err(&self) -> f64 {
        (self.num / self.den.max(1e-30)).sqrt()
    }
    pub fn mean_kl(&self) -> f64 {
        self.kl / self.rows.max(1) as f64
    }
}

/// MRSS at `tau` against the full scan on one token sequence (teacher-forced).
#[derive(Clone, Debug, Serialize)]
pub struct MrssQuality {
    pub tau: f32,
    pub tokens: usize,
    pub merged_fraction: f64,
    pub saved_fraction: f64,
    pub max_abs_logit_error: f32,
    pub rel_logit_error: f64,
    pub mean_kl: f64,
    pub top1_agreement: f64,
    /// Perplexity of the sequence's own next tokens under the full scan and under MRSS.
    pub perplexity_full: f64,
    pub perplexity_mrss: f64,
    /// MRSS pass time over the full pass's.
    pub time_ratio: f64,
}

fn perplexity(logits: &[f32], ids: &[u32], v: usize) -> f64 {
    let n = ids.len().saturating_sub(1);
    if n == 0 {
        return f64::NAN;
    }
    let nll: f64 = (0..n).map(|t| -log_softmax(&logits[t * v..(t + 1) * v])[ids[t + 1] as usize] as f64).sum();
    (nll / n as f64).exp()
}

/// Runs `ids` with the full scan and with MRSS at `tau` and compares them.
pub async fn mrss_quality_async(model: &MambaLM, ids: &[u32], tau: f32) -> Result<MrssQuality> {
    if ids.len() < 2 {
        return Err(Error::arg("the quality check needs at least two tokens"));
    }
    let v = model.cfg.vocab_size;
    let seq = [ids.to_vec()];
    let t0 = now_ms();
    let full = model.forward_async(&seq, &mut model.new_state(1)?, 0.0, Logits::All).await?;
    let t1 = now_ms();
    let approx = model.forward_async(&seq, &mut model.new_state(1)?, tau, Logits::All).await?;
    let t2 = now_ms();
    let mut c = Compare::default();
    c.add(&full.logits, &approx.logits, v);
    Ok(MrssQuality {
        tau,
        tokens: ids.len(),
        merged_fraction: approx.stats.merged_fraction(),
        saved_fraction: approx.stats.saved_fraction(),
        max_abs_logit_error: c.max_abs,
        rel_logit_error: c.rel_err(),
        mean_kl: c.mean_kl(),
        top1_agreement: c.agreement(),
        perplexity_full: perplexity(&full.logits, ids, v),
        perplexity_mrss: perplexity(&approx.logits, ids, v),
        time_ratio: (t2 - t1) / (t1 - t0).max(1e-9),
    })
}

pub fn mrss_quality(model: &MambaLM, ids: &[u32], tau: f32) -> Result<MrssQuality> {
    crate::tensor::block_on(mrss_quality_async(model, ids, tau))
}
