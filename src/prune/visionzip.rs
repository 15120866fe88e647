//! VisionZip (Yang et al., CVPR 2025): *dominant* tokens, those CLS attends to most, kept as
//! they are; the rest compressed into a few *contextual* tokens by key similarity.
//!
//! As in the official code: the dominant tokens are the top by CLS attention (summed over
//! heads; here averaged, the same order); of the remaining patches (in index order) every
//! `step`-th is a contextual *target* (`step = max(1, remaining / contextual)`, the first
//! `contextual` of them); every other remaining patch joins the target whose key (averaged
//! over heads, L2-normalised) is most similar (ties: the first), and a contextual token is
//! `target + mean(joined)` (the target alone when none joined). Output order: CLS, the
//! dominant tokens in index order, then the contextual tokens in target order.
//!
//! In effarch the compression happens inside the chosen encoder layer between its attention
//! and its MLP (where every pruning method here acts) on that layer's tokens, keys and CLS
//! attention; the official code applies the same steps to the penultimate layer's output.
//! The plan is made on the host from one read-back of the CLS attention and the keys; the
//! gather and the merge (one small product) run on the device.

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Contextual tokens out of `k` kept ones: VisionZip's own split for LLaVA-1.5 (54 dominant,
/// 10 contextual of 64), rounded half up; none when `k` is too small for one.
pub fn contextual_for(k: usize) -> usize {
    ((k * 10) as f64 / 64.0 + 0.5).floor() as usize
}

/// One image's compression over `p` patches: which patches stay, which become targets, and
/// how the others merge.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Dominant patches, ascending.
    pub dominant: Vec<u32>,
    /// Contextual targets (patch indices), in target order.
    pub targets: Vec<u32>,
    /// Per patch, the token it ends in: 1 + rank among the dominant, or 1 + dominant + target.
    pub groups: Vec<u32>,
    /// `[targets, p]`: contextual token t = Σ weight[t, q] · patch q (1 for the target itself,
    /// 1/count for each patch that joined it).
    pub weights: Vec<f32>,
}

/// The plan for one image: `cls_attn` `[p]`, `metric` `[p, d]` (keys averaged over heads),
/// keeping `dominant + contextual` tokens.
pub fn plan(cls_attn: &[f32], metric: &[f32], d: usize, dominant: usize, contextual: usize) -> Result<Plan> {
    let p = cls_attn.len();
    if metric.len() != p * d {
        return Err(Error::Backend(format!("visionzip: metric of {} values for {p}×{d}", metric.len())));
    }
    if dominant + contextual > p || dominant + contextual == 0 {
        return Err(Error::arg(format!("visionzip: {dominant} dominant + {contextual} contextual tokens of {p} patches")));
    }
    let dom = crate::num::top_k_ascending(cls_attn, dominant);
    let mut is_dom = vec![false; p];
    for &i in &dom {
        is_dom[i as usize] = true;
    }
    let remaining: Vec<usize> = (0..p).filter(|&i| !is_dom[i]).collect();
    let mut groups = vec![0u32; p];
    for (r, &i) in dom.iter().enumerate() {
        groups[i as usize] = 1 + r as u32;
    }
    if contextual == 0 {
        return Ok(Plan { dominant: dom, targets: Vec::new(), groups, weights: Vec::new() });
    }
    let step = (remaining.len() / contextual).max(1);
    let target_pos: Vec<usize> = (0..remaining.len()).step_by(step).take(contextual).collect();
    let targets: Vec<usize> = target_pos.iter().map(|&t| remaining[t]).collect();
    let unit = |i: usize| -> Vec<f32> {
        let row = &metric[i * d..(i + 1) * d];
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        row.iter().map(|v| v / norm).collect()
    };
    let target_units: Vec<Vec<f32>> = targets.iter().map(|&t| unit(t)).collect();
    let mut weights = vec![0f32; targets.len() * p];
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); targets.len()];
    for (ti, &t) in targets.iter().enumerate() {
        groups[t] = 1 + (dom.len() + ti) as u32;
    }
    for &i in remaining.iter().filter(|i| !targets.contains(i)) {
        let u = unit(i);
        let mut best = (0usize, f32::NEG_INFINITY);
        for (ti, tu) in target_units.iter().enumerate() {
            let s: f32 = u.iter().zip(tu).map(|(a, b)| a * b).sum();
            if s > best.1 {
                best = (ti, s);
            }
        }
        members[best.0].push(i);
        groups[i] = 1 + (dom.len() + best.0) as u32;
    }
    for (ti, (&t, m)) in targets.iter().zip(&members).enumerate() {
        weights[ti * p + t] = 1.0;
        for &i in m {
            weights[ti * p + i] = 1.0 / m.len() as f32;
        }
    }
    Ok(Plan { dominant: dom, targets: targets.iter().map(|&t| t as u32).collect(), groups, weights })
}

/// What one VisionZip step produced: the new tokens `[B, 1 + k, D]` (CLS, dominant,
/// contextual), the dominant patches' positions `u32 [B, dominant]`, the CLS attention
/// `[B, p]` that ranked them, the plans (for the merge map), and the step's own FLOPs per image.
pub struct Compressed {
    pub x: Tensor,
    pub dominant: Tensor,
    pub scores: Tensor,
    pub plans: Vec<Plan>,
    pub flops: f64,
}

/// VisionZip on a layer's tokens `x [B, N, D]` (CLS at 0) with its keys `k [B, N, H·d]` and the
/// CLS attention over the patches `cls_attn [B, N-1]`, keeping `k_keep` patch tokens.
pub async fn compress_async(x: &Tensor, keys: &Tensor, cls_attn: &Tensor, heads: usize, k_keep: usize) -> Result<Compressed> {
    let s = x.shape();
    let &[b, n, h] = &s[..] else {
        return Err(Error::arg(format!("visionzip expects tokens [B, N, D], got {s:?}")));
    };
    let hk = keys.dim(2)?;
    if heads == 0 || hk % heads != 0 {
        return Err(Error::arg(format!("visionzip: keys of width {hk} do not split into {heads} heads")));
    }
    let (p, d) = (n - 1, hk / heads);
    let contextual = contextual_for(k_keep).min(k_keep.saturating_sub(1));
    let dominant = k_keep - contextual;
    let attn = cls_attn.to_vec_f32_async().await?;
    let kv = keys.to_vec_f32_async().await?;
    let mut plans = Vec::with_capacity(b);
    let (mut dom_idx, mut weights) = (Vec::with_capacity(b * dominant), Vec::with_capacity(b * contextual * p));
    for img in 0..b {
        // The patches' keys averaged over heads: [p, d].
        let mut metric = vec![0f32; p * d];
        for t in 0..p {
            let row = &kv[(img * n + 1 + t) * hk..(img * n + 2 + t) * hk];
            for (j, m) in metric[t * d..(t + 1) * d].iter_mut().enumerate() {
                *m = (0..heads).map(|hh| row[hh * d + j]).sum::<f32>() / heads as f32;
            }
        }
        let pl = plan(&attn[img * p..(img + 1) * p], &metric, d, dominant, contextual)?;
        dom_idx.extend(&pl.dominant);
        weights.extend(&pl.weights);
        plans.push(pl);
    }
    let dev = x.device();
    let patches = x.narrow(1, 1, p)?;
    let dom = Tensor::from_u32(dom_idx, &[b, dominant], &dev)?;
    let mut parts = vec![x.narrow(1, 0, 1)?, patches.gather_rows(&dom)?];
    if contextual > 0 {
        parts.push(Tensor::from_f32(weights, &[b, contextual, p], &dev)?.matmul(&patches)?);
    }
    let y = Tensor::cat(&parts.iter().collect::<Vec<_>>(), 1)?;
    let flops = 2.0 * ((p - dominant) * contextual * d + contextual * p * h) as f64;
    Ok(Compressed { x: y, dominant: dom, scores: cls_attn.clone(), plans, flops })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contextual_split_follows_llava_ratio() {
        assert_eq!(contextual_for(64), 10);
        assert_eq!(contextual_for(98), 15);
        assert_eq!(contextual_for(1), 0);
        assert_eq!(contextual_for(4), 1);
    }

    #[test]
    fn plan_keeps_dominant_and_merges_the_rest() {
        // 6 patches, 2-d keys: attention picks 1 and 4; of the rest (0, 2, 3, 5) step 2 gives
        // targets 0 and 3; 2 is nearest 3's key, 5 nearest 0's.
        let attn = [0.1, 0.9, 0.2, 0.1, 0.8, 0.05];
        let metric = [1.0, 0.0, 5.0, 5.0, 0.1, 1.0, 0.0, 2.0, 3.0, 3.0, 2.0, 0.1];
        let pl = plan(&attn, &metric, 2, 2, 2).unwrap();
        assert_eq!(pl.dominant, vec![1, 4]);
        assert_eq!(pl.targets, vec![0, 3]);
        assert_eq!(pl.groups, vec![3, 1, 4, 4, 2, 3]);
        assert_eq!(&pl.weights[..6], &[1.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
        assert_eq!(&pl.weights[6..], &[0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
        assert!(plan(&attn, &metric, 2, 5, 2).is_err());
        assert!(plan(&attn, &metric[..4], 2, 1, 1).is_err());
        let none = plan(&attn, &metric, 2, 3, 0).unwrap();
        assert_eq!((none.dominant, none.groups), (vec![1, 2, 4], vec![0, 1, 2, 0, 3, 0]));
    }
}
