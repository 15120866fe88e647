//! DART (Wen et al., 2025, "Stop Looking for Important Tokens in Multimodal Language Models:
//! Duplication Matters More"), inside a language model: at layer K a few *pivot* tokens are
//! picked — the visual tokens, and the text tokens after the image, whose keys in layer K−1
//! have the largest L1 norm — and, for each pivot in turn, the remaining visual tokens *least*
//! similar to it (cosine of the final-normed hidden states after layer K−1) are kept: the
//! duplicates of the pivots go. The kept visual tokens are the visual pivots and those picks.
//!
//! As the official code, except for the budget: it gives every pivot ⌊budget / pivots⌋ picks
//! (so the count kept drifts from the budget); here the picks are `k − visual pivots` split
//! over the pivots with the remainder to the first ones, so exactly `k` visual tokens stay.
//! Pivots are visited in index order (the official code visits a Python set of the indices,
//! which for such integers is that order too).

use crate::error::{Error, Result};

/// Pivots of each kind, as the official configuration (4 visual, 4 text).
pub const PIVOTS: usize = 4;

/// The kept visual tokens (indices among the `n` visual tokens, ascending) for a sequence of
/// `len` tokens whose visual tokens are `first..first + n`: `key_l1[t]` is the L1 norm of
/// token t's keys (all heads), `hidden` `[len, h]` its final-normed hidden state.
pub fn select(key_l1: &[f32], hidden: &[f32], h: usize, first: usize, n: usize, k: usize) -> Result<Vec<u32>> {
    let len = key_l1.len();
    if hidden.len() != len * h || first + n > len || n == 0 {
        return Err(Error::Backend(format!("dart: {len} tokens, hidden of {} values, visual {first}..{}", hidden.len(), first + n)));
    }
    let k = k.clamp(1, n);
    let top = |range: std::ops::Range<usize>, m: usize| -> Vec<usize> {
        let idx = crate::num::top_k_ascending(&key_l1[range.clone()], m);
        idx.into_iter().map(|i| range.start + i as usize).collect()
    };
    let vis_pivots = top(first..first + n, PIVOTS.min(k));
    let text_pivots = top(first + n..len, PIVOTS.min(len - first - n));
    let mut pivots: Vec<usize> = vis_pivots.iter().chain(&text_pivots).copied().collect();
    pivots.sort_unstable();
    let picks = k - vis_pivots.len();
    let (each, extra) = (picks / pivots.len().max(1), picks % pivots.len().max(1));
    let row = |t: usize| &hidden[t * h..(t + 1) * h];
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let mut kept: Vec<usize> = vis_pivots.clone();
    let mut valid: Vec<usize> = (first..first + n).filter(|t| !vis_pivots.contains(t)).collect();
    for (pi, &p) in pivots.iter().enumerate() {
        let want = (each + usize::from(pi < extra)).min(valid.len());
        if want == 0 {
            continue;
        }
        let (pv, pn) = (row(p), norm(row(p)));
        // Negative cosine: the least similar score highest.
        let scores: Vec<f32> = valid
            .iter()
            .map(|&t| {
                let v = row(t);
                let dot: f32 = pv.iter().zip(v).map(|(a, b)| a * b).sum();
                -(dot / (pn * norm(v)).max(1e-8))
            })
            .collect();
        let chosen: Vec<usize> = crate::num::top_k_ascending(&scores, want).into_iter().map(|i| valid[i as usize]).collect();
        kept.extend(&chosen);
        valid.retain(|t| !chosen.contains(t));
    }
    let mut out: Vec<u32> = kept.into_iter().map(|t| (t - first) as u32).collect();
    out.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_exactly_k_and_drops_the_pivots_duplicates() {
        // 2 text tokens, 12 visual tokens (first = 2), 3 text tokens after; h = 2.
        let (first, n, len, h) = (2usize, 12usize, 17usize, 2usize);
        let mut key_l1 = vec![1.0f32; len];
        key_l1[first + 3] = 9.0; // the strongest visual pivot
        let mut hidden = vec![0f32; len * h];
        for t in 0..len {
            // Visual tokens alternate between two directions; text tokens point elsewhere.
            let (a, b) = if (first..first + n).contains(&t) {
                if t % 2 == 0 {
                    (1.0, 0.0)
                } else {
                    (0.0, 1.0)
                }
            } else {
                (1.0, 1.0)
            };
            hidden[t * h] = a;
            hidden[t * h + 1] = b;
        }
        for k in [1usize, 5, 8, 12] {
            let kept = select(&key_l1, &hidden, h, first, n, k).unwrap();
            assert_eq!(kept.len(), k, "k = {k}: {kept:?}");
            assert!(kept.windows(2).all(|w| w[0] < w[1]) && kept.iter().all(|&u| (u as usize) < n));
            assert!(kept.contains(&3), "the strongest key is a pivot: {kept:?}");
        }
        assert!(select(&key_l1, &hidden[..4], h, first, n, 4).is_err());
    }
}
