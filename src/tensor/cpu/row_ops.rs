//! Row kernels on plain slices, where candle's generic ops leave time on the table: softmax
//! with the vectorisable exp, LayerNorm with eight partial sums, each compiled per
//! instruction set (`multiversion!`).

use super::simd::{chunk, exp, multiversion};
use rayon::prelude::*;

/// Softmax of `scale · row` (`scale > 0`) in place; entries past `valid` are set to 0.
#[inline(always)]
pub fn softmax_row_scaled(row: &mut [f32], valid: usize, scale: f32) {
    let valid = valid.min(row.len());
    // Eight running maxima and sums, so that both reductions vectorise (a single float
    // accumulator is a serial chain the compiler may not reorder).
    let mut mx = [f32::NEG_INFINITY; 8];
    let (body, tail) = row[..valid].split_at(valid - valid % 8);
    for c in body.chunks_exact(8) {
        for (m, &v) in mx.iter_mut().zip(c) {
            *m = if v > *m { v } else { *m };
        }
    }
    let m = tail.iter().chain(&mx).fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    for v in &mut row[..valid] {
        *v = exp((*v - m) * scale);
    }
    let mut acc = [0f32; 8];
    let (body, tail) = row[..valid].split_at(valid - valid % 8);
    for c in body.chunks_exact(8) {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    let s: f32 = acc.iter().sum::<f32>() + tail.iter().sum::<f32>();
    let inv = 1.0 / s;
    row[..valid].iter_mut().for_each(|v| *v *= inv);
    row[valid..].iter_mut().for_each(|v| *v = 0.0);
}

/// Softmax of every `n`-wide row of `x`, in parallel.
pub fn softmax_rows(x: &[f32], n: usize) -> Vec<f32> {
    let mut y = x.to_vec();
    let n = n.max(1);
    y.par_chunks_mut(chunk(x.len(), n)).for_each(|c| softmax_block(c, n, false, 0, 1.0));
    y
}

/// Softmax of `scale ·` each `n`-wide row of `s`; with `causal`, row `i` sees `i + off + 1`
/// entries.
#[inline(always)]
pub(crate) fn softmax_block_body(s: &mut [f32], n: usize, causal: bool, off: usize, scale: f32) {
    for (i, row) in s.chunks_mut(n.max(1)).enumerate() {
        softmax_row_scaled(row, if causal { i + off + 1 } else { n }, scale);
    }
}

multiversion! {
    pub(crate) fn softmax_block(s: &mut [f32], n: usize, causal: bool, off: usize, scale: f32) = softmax_block_body;
}

/// LayerNorm of every `n`-wide row of `x` (`w`, `b` `[n]`), in parallel: mean, then the
/// variance of the deviations (two passes, as accurate as transformers' in f32).
pub fn layer_norm_rows(x: &[f32], w: &[f32], b: &[f32], n: usize, eps: f32) -> Result<Vec<f32>, String> {
    if n == 0 || x.len() % n != 0 || w.len() != n || b.len() != n {
        return Err(format!("layer_norm: {} values in rows of {n} with weight {} and bias {}", x.len(), w.len(), b.len()));
    }
    let mut y = vec![0f32; x.len()];
    let c = chunk(x.len(), n);
    y.par_chunks_mut(c).zip(x.par_chunks(c)).for_each(|(y, x)| layer_norm_block(x, y, w, b, n, eps));
    Ok(y)
}

#[inline(always)]
fn sum8(v: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; 8];
    let split = v.len() - v.len() % 8;
    for c in v[..split].chunks_exact(8) {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += f(x);
        }
    }
    acc.iter().sum::<f32>() + v[split..].iter().map(|&x| f(x)).sum::<f32>()
}

/// A row's mean and 1/√(variance + eps), two passes (LayerNorm's statistics).
#[inline(always)]
pub(crate) fn row_stats(xr: &[f32], eps: f32) -> (f32, f32) {
    let n = xr.len().max(1) as f32;
    let mean = sum8(xr, |v| v) / n;
    let var = sum8(xr, |v| (v - mean) * (v - mean)) / n;
    (mean, 1.0 / (var + eps).sqrt())
}

#[inline(always)]
fn layer_norm_block_body(x: &[f32], y: &mut [f32], w: &[f32], b: &[f32], n: usize, eps: f32) {
    for (xr, yr) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
        let (mean, inv) = row_stats(xr, eps);
        for (((o, &v), &w), &b) in yr.iter_mut().zip(xr).zip(w).zip(b) {
            *o = (v - mean) * inv * w + b;
        }
    }
}

multiversion! {
    fn layer_norm_block(x: &[f32], y: &mut [f32], w: &[f32], b: &[f32], n: usize, eps: f32) = layer_norm_block_body;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_norm_matches_the_two_pass_formula_in_f64() {
        let n = 37;
        let x: Vec<f32> = (0..n * 5).map(|i| ((i * 7919) % 101) as f32 / 13.0 - 3.0 + (i / n) as f32 * 100.0).collect();
        let w: Vec<f32> = (0..n).map(|i| 0.5 + i as f32 / 50.0).collect();
        let b: Vec<f32> = (0..n).map(|i| i as f32 / 10.0 - 1.0).collect();
        let y = layer_norm_rows(&x, &w, &b, n, 1e-5).unwrap();
        for (r, (xr, yr)) in x.chunks(n).zip(y.chunks(n)).enumerate() {
            let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
            let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
            for i in 0..n {
                let want = (xr[i] as f64 - mean) / (var + 1e-5).sqrt() * w[i] as f64 + b[i] as f64;
                // Rows sit at offsets up to 400 with a spread near 2: f32 rounding of x - mean.
                assert!((yr[i] as f64 - want).abs() < 5e-5, "row {r} col {i}: {} vs {want}", yr[i]);
            }
        }
        let e = layer_norm_rows(&x[..n + 1], &w, &b, n, 1e-5).unwrap_err();
        assert!(e.contains("38 values in rows of 37"), "{e}");
    }
}
