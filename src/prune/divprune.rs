//! DivPrune (Alvar et al., CVPR 2025): keep the most *diverse* subset of the tokens, chosen
//! greedily by max–min (farthest-point) selection on the cosine distance of their features.
//! No attention and no text: it works on any token set (CLIP's patches inside the encoder,
//! Qwen2.5-VL's merged visual tokens before the language model).
//!
//! The selection follows the official code: the distance matrix is `1 − cos`; the first token
//! is the one whose column has the largest *second-smallest* distance (its nearest other
//! token is farthest away; the smallest is its zero distance to itself); each next token is
//! the one whose smallest distance to the tokens already chosen is largest. Ties go to the
//! lower index (`torch.argmax`). Kept tokens are reported, and run on, in index order.
//!
//! The features' Gram matrix is one batched product on the device; the greedy loop
//! (k · n steps) runs on the host after one read-back of `[B, n, n]`.

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The greedy max–min selection over `n` tokens from their cosine distances `dist` (`[n, n]`,
/// row-major, `dist[i·n + j]` = 1 − cos(tᵢ, tⱼ)): the `k` chosen tokens in pick order, and per
/// token the distance that made it chosen (kept tokens) or its final distance to the chosen
/// set (the others): a diversity score for display.
pub fn select(dist: &[f32], n: usize, k: usize) -> Result<(Vec<u32>, Vec<f32>)> {
    if dist.len() != n * n {
        return Err(Error::Backend(format!("divprune: {} distances for {n} tokens", dist.len())));
    }
    if k == 0 || k > n {
        return Err(Error::arg(format!("divprune: keep {k} of {n} tokens")));
    }
    // NaN (from a zero feature vector) compares as the smallest distance, never chosen first.
    let key = |v: f32| if v.is_nan() { f32::NEG_INFINITY } else { v };
    let mut chosen = vec![false; n];
    let mut picks = Vec::with_capacity(k);
    let mut gain = vec![0f32; n];
    // Step 0: per column, the second smallest distance (the column includes the diagonal).
    let mut score: Vec<f32> = (0..n)
        .map(|j| {
            let (mut a, mut b) = (f32::INFINITY, f32::INFINITY);
            for i in 0..n {
                let v = key(dist[i * n + j]);
                if v < a {
                    (a, b) = (v, a);
                } else if v < b {
                    b = v;
                }
            }
            if n == 1 {
                a
            } else {
                b
            }
        })
        .collect();
    for step in 0..k {
        let mut best: Option<usize> = None;
        for j in 0..n {
            if !chosen[j] && best.is_none_or(|b| score[j] > score[b]) {
                best = Some(j);
            }
        }
        let s = best.ok_or_else(|| Error::Backend("divprune: no token left to choose".into()))?;
        chosen[s] = true;
        gain[s] = score[s];
        picks.push(s as u32);
        // From now on a column's score is its smallest distance to the chosen rows.
        let row = &dist[s * n..(s + 1) * n];
        for j in 0..n {
            let d = key(row[j]);
            score[j] = if step == 0 { d } else { score[j].min(d) };
        }
    }
    for j in 0..n {
        if !chosen[j] {
            gain[j] = score[j];
        }
    }
    Ok((picks, gain))
}

/// Cosine distances `1 − gᵢⱼ/(‖tᵢ‖‖tⱼ‖)` from a Gram matrix `g` (`[n, n]`) and the row norms.
pub fn distances(gram: &[f32], norms: &[f32]) -> Vec<f32> {
    let n = norms.len();
    let mut d = Vec::with_capacity(n * n);
    for i in 0..n {
        for j in 0..n {
            d.push(1.0 - gram[i * n + j] / (norms[i] * norms[j]));
        }
    }
    d
}

/// DivPrune on token features `x [B, n, D]` (on any device), keeping `k` per image: the kept
/// positions `u32 [B, k]` in ascending order and the diversity scores `[B, n]`, both on `x`'s
/// device; and the FLOPs per image of the selection itself.
pub async fn select_async(x: &Tensor, k: usize) -> Result<(Tensor, Tensor, f64)> {
    let s = x.shape();
    let &[b, n, d] = &s[..] else {
        return Err(Error::arg(format!("divprune expects token features [B, n, D], got {s:?}")));
    };
    let gram = x.matmul(&x.permute(&[0, 2, 1])?)?.to_vec_f32_async().await?;
    let norms = x.row_norms()?.to_vec_f32_async().await?;
    let (mut kept, mut scores) = (Vec::with_capacity(b * k), Vec::with_capacity(b * n));
    for img in 0..b {
        let dist = distances(&gram[img * n * n..(img + 1) * n * n], &norms[img * n..(img + 1) * n]);
        let (mut picks, gain) = select(&dist, n, k)?;
        picks.sort_unstable();
        kept.extend(picks);
        scores.extend(gain);
    }
    let dev = x.device();
    let flops = 2.0 * (n * n * d) as f64 + (k * n) as f64;
    Ok((Tensor::from_u32(kept, &[b, k], &dev)?, Tensor::from_f32(scores, &[b, n], &dev)?, flops))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cos_dist(pts: &[[f32; 2]]) -> Vec<f32> {
        let norms: Vec<f32> = pts.iter().map(|p| (p[0] * p[0] + p[1] * p[1]).sqrt()).collect();
        let gram: Vec<f32> = pts.iter().flat_map(|a| pts.iter().map(move |b| a[0] * b[0] + a[1] * b[1])).collect();
        distances(&gram, &norms)
    }

    #[test]
    fn picks_the_spread_out_directions_first() {
        // Three near-duplicates around 0°, one at 90°, one at 180°.
        let pts = [[1.0, 0.0], [1.0, 0.01], [1.0, -0.01], [0.0, 1.0], [-1.0, 0.0]];
        let (picks, gain) = select(&cos_dist(&pts), 5, 3).unwrap();
        // First the token whose nearest neighbour is farthest (180°: 90° from its nearest),
        // then the farthest from it (0°, exactly opposite), then 90°; one of the cluster only.
        assert_eq!(picks, vec![4, 0, 3]);
        assert!(gain.iter().all(|g| g.is_finite()));
    }

    #[test]
    fn keeps_everything_and_refuses_bad_k() {
        let pts = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]];
        let (mut p, _) = select(&cos_dist(&pts), 3, 3).unwrap();
        p.sort_unstable();
        assert_eq!(p, vec![0, 1, 2]);
        assert!(select(&cos_dist(&pts), 3, 0).is_err());
        assert!(select(&cos_dist(&pts), 3, 4).is_err());
        assert!(select(&[0.0; 4], 3, 1).is_err());
        // Identical tokens: still k distinct picks, lower indices first.
        let (p, _) = select(&[0.0; 9], 3, 2).unwrap();
        assert_eq!(p, vec![0, 1]);
        // A zero vector (NaN distances) neither panics nor repeats.
        let (p, _) = select(&cos_dist(&[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), 3, 3).unwrap();
        assert_eq!(p.len(), 3);
    }
}
