//! Token Merging's (ToMe, Bolya et al.) matching and merge on the CPU: bipartite soft matching
//! on the keys averaged over heads, and the size-weighted merge. The GPU runs the same steps
//! (`tensor/gpu/tome.wgsl`, tested against these); the merge schedule is `prune::tome`'s.

use crate::error::{Error, Result};
use candle_core::{bail, Tensor};

/// The most tokens one bipartite matching can merge among `tokens` (CLS included).
pub fn max_merge(tokens: usize) -> usize {
    tokens.saturating_sub(1) / 2
}

/// One matching: for each of `b` images, the token (after merging) that each of the `t` tokens
/// goes to (`dest`, `[b, t]`), and the count after merging.
#[derive(Clone, Debug, PartialEq)]
pub struct Matching {
    pub dest: Vec<u32>,
    pub tokens_out: usize,
    pub merged: usize,
}

/// Bipartite soft matching on `metric` `[b, t, c]` (the keys averaged over heads): tokens at
/// even positions form set A, odd positions set B; every A token's edge goes to its most similar
/// B token (cosine; the first on ties), and the `r` most similar edges (ties: lower index first)
/// merge their A token into the B token. Token 0 (CLS, in A) never merges. `r` is clamped to
/// [`max_merge`].
pub fn bipartite_match(metric: &[f32], b: usize, t: usize, c: usize, r: usize) -> Result<Matching> {
    if metric.len() != b * t * c || c == 0 {
        return Err(Error::Backend(format!("ToMe metric has {} values, expected {b} × {t} × {c}", metric.len())));
    }
    let r = r.min(max_merge(t));
    if r == 0 {
        return Ok(Matching { dest: (0..b).flat_map(|_| 0..t as u32).collect(), tokens_out: t, merged: 0 });
    }
    let (na, nb) = (t.div_ceil(2), t / 2);
    let n_unm = na - r;
    let mut dest = vec![0u32; b * t];
    let mut unit = vec![0f32; t * c];
    for (img, out) in dest.chunks_exact_mut(t).enumerate() {
        for (i, u) in unit.chunks_exact_mut(c).enumerate() {
            let row = &metric[(img * t + i) * c..][..c];
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            u.iter_mut().zip(row).for_each(|(u, v)| *u = v / norm);
        }
        // Each A token's best B token and its similarity; CLS's edge is -inf (never merges).
        let mut edges: Vec<(f32, usize, usize)> = (0..na)
            .map(|a| {
                if a == 0 {
                    return (f32::NEG_INFINITY, 0, 0);
                }
                let ua = &unit[2 * a * c..][..c];
                let (mut best, mut at) = (f32::NEG_INFINITY, 0);
                for j in 0..nb {
                    let s: f32 = ua.iter().zip(&unit[(2 * j + 1) * c..][..c]).map(|(x, y)| x * y).sum();
                    if s > best || (at == 0 && j == 0) {
                        (best, at) = (s, j);
                    }
                }
                (best, a, at)
            })
            .collect();
        // Most similar first; NaN (a zero key) sorts last, as a never-merging edge.
        edges.sort_by(|x, y| y.0.partial_cmp(&x.0).unwrap_or_else(|| x.0.is_nan().cmp(&y.0.is_nan())).then(x.1.cmp(&y.1)));
        let (src, unm) = edges.split_at(r);
        let mut unm: Vec<usize> = unm.iter().map(|e| e.1).collect();
        unm.sort_unstable();
        for (pos, &a) in unm.iter().enumerate() {
            out[2 * a] = pos as u32;
        }
        for &(_, a, j) in src {
            out[2 * a] = (n_unm + j) as u32;
        }
        for j in 0..nb {
            out[2 * j + 1] = (n_unm + j) as u32;
        }
    }
    Ok(Matching { dest, tokens_out: n_unm + nb, merged: r })
}

/// ToMe's `merge_wavg`: tokens `x` `[b, t, c]` with sizes `[b, t]` summed, size-weighted, into
/// their destinations `dest` `[b, t]` (from [`bipartite_match`]): `([b, n_out, c], sizes)`.
#[allow(clippy::too_many_arguments)]
pub fn merge_wavg(x: &[f32], size: &[f32], dest: &[u32], b: usize, t: usize, c: usize, n_out: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    if x.len() != b * t * c || size.len() != b * t || dest.len() != b * t || dest.iter().any(|&o| o as usize >= n_out) {
        return Err(Error::Backend(format!(
            "ToMe merge: {} values, {} sizes, {} destinations for {b} × {t} × {c} into {n_out}",
            x.len(),
            size.len(),
            dest.len()
        )));
    }
    let mut y = vec![0f32; b * n_out * c];
    let mut s = vec![0f32; b * n_out];
    for img in 0..b {
        for i in 0..t {
            let (o, w) = (img * n_out + dest[img * t + i] as usize, size[img * t + i]);
            s[o] += w;
            y[o * c..][..c].iter_mut().zip(&x[(img * t + i) * c..][..c]).for_each(|(y, x)| *y += w * x);
        }
    }
    for (row, &sz) in y.chunks_exact_mut(c.max(1)).zip(&s) {
        row.iter_mut().for_each(|v| *v /= sz);
    }
    Ok((y, s))
}

/// The metric of a layer: its keys `[b, t, heads·d]` averaged over heads, `[b, t, d]`.
pub fn key_metric(k: &[f32], b: usize, t: usize, heads: usize) -> Vec<f32> {
    let h = k.len() / (b * t).max(1);
    let d = h / heads.max(1);
    let mut out = vec![0f32; b * t * d];
    for (row, o) in k.chunks_exact(h).zip(out.chunks_exact_mut(d)) {
        for head in row.chunks_exact(d) {
            o.iter_mut().zip(head).for_each(|(o, v)| *o += v);
        }
        o.iter_mut().for_each(|v| *v /= heads as f32);
    }
    out
}

pub(crate) fn tome_match(qkv: &Tensor, heads: usize, r: usize) -> candle_core::Result<Tensor> {
    let (b, t, w) = qkv.dims3()?;
    if heads == 0 || w % (3 * heads) != 0 || r == 0 || r > max_merge(t) {
        bail!("tome_match: {t} tokens of width {w}, {heads} heads, r = {r}");
    }
    let h = w / 3;
    let k = qkv.narrow(2, h, h)?.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    let m = bipartite_match(&key_metric(&k, b, t, heads), b, t, h / heads, r).map_err(|e| candle_core::Error::msg(e.to_string()))?;
    Tensor::from_vec(m.dest, (b, t), qkv.device())
}

pub(crate) fn tome_merge(x: &Tensor, sizes: &Tensor, dest: &Tensor, n_out: usize) -> candle_core::Result<(Tensor, Tensor)> {
    let (b, t, c) = x.dims3()?;
    if sizes.dims() != [b, t] || dest.dims() != [b, t] {
        bail!("tome_merge: x {:?}, sizes {:?}, dest {:?}", x.dims(), sizes.dims(), dest.dims());
    }
    let (xs, ss, ds) = (x.flatten_all()?.to_vec1::<f32>()?, sizes.flatten_all()?.to_vec1::<f32>()?, dest.flatten_all()?.to_vec1::<u32>()?);
    let (y, s) = merge_wavg(&xs, &ss, &ds, b, t, c, n_out).map_err(|e| candle_core::Error::msg(e.to_string()))?;
    Ok((Tensor::from_vec(y, (b, n_out, c), x.device())?, Tensor::from_vec(s, (b, n_out), x.device())?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_merges_the_most_similar_pairs_and_never_cls() {
        // 5 tokens: A = {0 (CLS), 2, 4}, B = {1, 3}. Token 2 equals token 3, 4 is near 1.
        let metric = [1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.1, 0.9];
        let m = bipartite_match(&metric, 1, 5, 2, 1).unwrap();
        // Unmerged A: CLS, 4 → 0, 1; B tokens 1, 3 → 2, 3; token 2 merges into 3.
        assert_eq!(m, Matching { dest: vec![0, 2, 3, 3, 1], tokens_out: 4, merged: 1 });
        let m = bipartite_match(&metric, 1, 5, 2, 9).unwrap();
        assert_eq!((m.dest, m.tokens_out, m.merged), (vec![0, 1, 2, 2, 1], 3, 2));
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let (y, s) = merge_wavg(&x, &[1.0, 1.0, 3.0, 1.0, 1.0], &[0, 2, 3, 3, 1], 1, 5, 1, 4).unwrap();
        assert_eq!(s, vec![1.0, 1.0, 1.0, 4.0]);
        assert_eq!(y, vec![1.0, 5.0, 2.0, 0.75 * 3.0 + 0.25 * 4.0]);
        assert!(merge_wavg(&x, &[1.0; 5], &[0, 2, 3, 3, 4], 1, 5, 1, 4).is_err(), "a destination past the end");
        assert!(bipartite_match(&metric, 1, 4, 2, 1).is_err());
    }
}
