//! Quantisers: rows to int8 (the scheme of the module docs) or to u7 with a zero point (the
//! relaxed-SIMD kernel's activations), and weights per output channel.

use crate::tensor::cpu::simd::{multiversion, rint, threads};
use rayon::prelude::*;

/// Quantises one row symmetrically to `out` (±127) and returns its scale `max|x| / 127`
/// (0 for a zero row; NaN when the row holds NaN or ±∞, so the output says so).
#[inline(always)]
pub(super) fn quantize_row_body(x: &[f32], out: &mut [i8]) -> f32 {
    let mut amax = 0f32;
    let mut finite = true;
    for &v in x {
        amax = amax.max(v.abs());
        finite &= v.is_finite();
    }
    if !finite {
        out.iter_mut().for_each(|q| *q = 0);
        return f32::NAN;
    }
    let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
    for (q, &v) in out.iter_mut().zip(x) {
        *q = rint(v * inv).clamp(-127.0, 127.0) as i8;
    }
    amax / 127.0
}

/// One row to u7 with a zero point (the relaxed-SIMD kernel's activations,
/// `Layout::QuadsU7`): `lo = min(x, 0)`, `hi = max(x, 0)`, `inv = 127 / (hi − lo)`,
/// `zp = rint(−lo · inv)`, `u = clamp(rint(x · inv) + zp, 0, 127)`; returns the scale
/// `(hi − lo) / 127` and `zp`, so `x ≈ scale · (u − zp)` (a zero row: 0 and 0; NaN or ±∞:
/// NaN, the values 0).
#[inline(always)]
pub(super) fn quantize_row_u7_body(x: &[f32], out: &mut [u8]) -> (f32, i32) {
    let (mut lo, mut hi) = (0f32, 0f32);
    let mut finite = true;
    for &v in x {
        lo = lo.min(v);
        hi = hi.max(v);
        finite &= v.is_finite();
    }
    let range = hi - lo;
    if !finite || range <= 0.0 {
        out.iter_mut().for_each(|q| *q = 0);
        return (if finite { 0.0 } else { f32::NAN }, 0);
    }
    let inv = 127.0 / range;
    let zp = rint(-lo * inv).clamp(0.0, 127.0);
    for (q, &v) in out.iter_mut().zip(x) {
        *q = (rint(v * inv) + zp).clamp(0.0, 127.0) as u8;
    }
    (range / 127.0, zp as i32)
}

multiversion! {
    fn quantize_row_auto(x: &[f32], out: &mut [i8]) -> f32 = quantize_row_body;
}

multiversion! {
    fn quantize_row_u7_auto(x: &[f32], out: &mut [u8]) -> (f32, i32) = quantize_row_u7_body;
}

/// [`quantize_row_u7_body`]: one row's u7 values, scale and zero point (SIMD128 in wasm).
pub(super) fn quantize_row_u7(x: &[f32], out: &mut [u8]) -> (f32, i32) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return super::wasm::quantize_row_u7(x, out);
    #[allow(unreachable_code)]
    quantize_row_u7_auto(x, out)
}

/// One row's int8 values and scale (the scheme of the module docs); `out` as long as `x`
/// (only the common length is read and written otherwise).
pub fn quantize_row(x: &[f32], out: &mut [i8]) -> f32 {
    let n = x.len().min(out.len());
    let (x, out) = (&x[..n], &mut out[..n]);
    #[cfg(target_arch = "x86_64")]
    if avx512bw() {
        // SAFETY: AVX-512 F/BW were detected; the lengths are equal.
        return unsafe { super::x86::quantize_row_avx512(x, out) };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return super::wasm::quantize_row(x, out);
    #[allow(unreachable_code)]
    quantize_row_auto(x, out)
}

#[cfg(target_arch = "x86_64")]
fn avx512bw() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bw"))
}

/// A `[n, k]` weight quantised per output channel: the int8 values (row-major) and the scales.
pub fn quantize_weight(w: &[f32], n: usize, k: usize) -> Result<(Vec<i8>, Vec<f32>), String> {
    if w.len() != n * k {
        return Err(format!("linear weight: {} values for [{n}, {k}]", w.len()));
    }
    let mut q = vec![0i8; n * k];
    let mut s = vec![0f32; n];
    if k > 0 {
        let run = |((row, qr), sc): ((&[f32], &mut [i8]), &mut f32)| *sc = quantize_row(row, qr);
        if n * k >= 1 << 16 && threads() > 1 {
            w.par_chunks(k).zip(q.par_chunks_mut(k)).zip(s.par_iter_mut()).for_each(run);
        } else {
            w.chunks(k).zip(q.chunks_mut(k)).zip(s.iter_mut()).for_each(run);
        }
    }
    Ok((q, s))
}
