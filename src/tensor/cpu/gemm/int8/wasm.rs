//! The wasm SIMD128 int8 micro-kernels (4 × 8): `i32x4.dot_i16x8_s` on int16 pairs, and in the
//! relaxed-SIMD build `i32x4.relaxed_dot_i8x16_i7x16_add_s` on quads (i8 weights × u7
//! activations, `Layout::QuadsU7`): 16 multiply-adds an instruction. Its x86 forms
//! (`vpdpbusd`, or `pmaddubsw` + `pmaddwd`) treat the 7-bit side as unsigned, and a pair's
//! sum stays within i16 (|pair sum| ≤ 2 · 127 · 127), so any lowering gives the exact sums.

use super::Int8TileFn;
use crate::tensor::cpu::simd::{exp4, rint, ROUND};
use std::arch::wasm32::*;
const MR: usize = 4;
const NR: usize = 8;

/// # Safety
/// See [`Int8TileFn`].
pub unsafe fn simd128<const R: usize>(kp: usize, a: *const i32, b: *const i8, c: *mut i32) {
    let mut lo = [i32x4_splat(0); R];
    let mut hi = [i32x4_splat(0); R];
    for p in 0..kp {
        let w = v128_load(b.add(p * 2 * NR) as *const v128);
        let (w0, w1) = (i16x8_extend_low_i8x16(w), i16x8_extend_high_i8x16(w));
        let ap = a.add(p * MR);
        for i in 0..R {
            let av = i32x4_splat(*ap.add(i));
            lo[i] = i32x4_add(lo[i], i32x4_dot_i16x8(av, w0));
            hi[i] = i32x4_add(hi[i], i32x4_dot_i16x8(av, w1));
        }
    }
    for i in 0..R {
        v128_store(c.add(i * NR) as *mut v128, lo[i]);
        v128_store(c.add(i * NR + 4) as *mut v128, hi[i]);
    }
}

pub static SIMD128: [Int8TileFn; MR] = int8_tile_table!(simd128; 1 2 3 4);

/// # Safety
/// See [`Int8TileFn`].
#[cfg(target_feature = "relaxed-simd")]
pub unsafe fn relaxed<const R: usize>(kq: usize, a: *const i32, b: *const i8, c: *mut i32) {
    let mut lo = [i32x4_splat(0); R];
    let mut hi = [i32x4_splat(0); R];
    for p in 0..kq {
        // Columns 0–3 then 4–7, each a quad of depth.
        let w0 = v128_load(b.add(p * 4 * NR) as *const v128);
        let w1 = v128_load(b.add(p * 4 * NR + 16) as *const v128);
        let ap = a.add(p * MR);
        for i in 0..R {
            let x = i32x4_splat(*ap.add(i));
            lo[i] = i32x4_relaxed_dot_i8x16_i7x16_add(w0, x, lo[i]);
            hi[i] = i32x4_relaxed_dot_i8x16_i7x16_add(w1, x, hi[i]);
        }
    }
    for i in 0..R {
        v128_store(c.add(i * NR) as *mut v128, lo[i]);
        v128_store(c.add(i * NR + 4) as *mut v128, hi[i]);
    }
}

#[cfg(target_feature = "relaxed-simd")]
pub static RELAXED: [Int8TileFn; MR] = int8_tile_table!(relaxed; 1 2 3 4);

/// The same sums as [`relaxed`] in two steps a quad: `i16x8.relaxed_dot_i8x16_i7x16_s` (pair
/// sums, within i16: |sum| ≤ 2 · 127 · 127) then `i32x4.dot_i16x8_s` with ones, depth unrolled
/// twice. Where V8 has no `vpdpbusd` (x86 without AVX-VNNI) it lowers the one-instruction form
/// to five (`pcmpeqd` and `psrlw` rebuild the ones each time), this form to three
/// (`pmaddubsw`, `pmaddwd` on a kept register, `paddd`): in Chromium on Zen 4, 95 GOP/s
/// against 79 (a tile at L1). With AVX-VNNI the one instruction wins, so the build times both
/// once ([`super::Int8MicroKernel::available`]).
///
/// # Safety
/// See [`Int8TileFn`].
#[cfg(target_feature = "relaxed-simd")]
pub unsafe fn relaxed_pairs<const R: usize>(kq: usize, a: *const i32, b: *const i8, c: *mut i32) {
    #[inline(always)]
    unsafe fn quad<const R: usize>(p: usize, a: *const i32, b: *const i8, lo: &mut [v128; R], hi: &mut [v128; R]) {
        let ones = i16x8_splat(1);
        let w0 = v128_load(b.add(p * 4 * NR) as *const v128);
        let w1 = v128_load(b.add(p * 4 * NR + 16) as *const v128);
        let ap = a.add(p * MR);
        for i in 0..R {
            let x = i32x4_splat(*ap.add(i));
            lo[i] = i32x4_add(lo[i], i32x4_dot_i16x8(i16x8_relaxed_dot_i8x16_i7x16(w0, x), ones));
            hi[i] = i32x4_add(hi[i], i32x4_dot_i16x8(i16x8_relaxed_dot_i8x16_i7x16(w1, x), ones));
        }
    }
    let mut lo = [i32x4_splat(0); R];
    let mut hi = [i32x4_splat(0); R];
    let mut p = 0;
    while p + 2 <= kq {
        quad(p, a, b, &mut lo, &mut hi);
        quad(p + 1, a, b, &mut lo, &mut hi);
        p += 2;
    }
    if p < kq {
        quad(p, a, b, &mut lo, &mut hi);
    }
    for i in 0..R {
        v128_store(c.add(i * NR) as *mut v128, lo[i]);
        v128_store(c.add(i * NR + 4) as *mut v128, hi[i]);
    }
}

#[cfg(target_feature = "relaxed-simd")]
pub static RELAXED_PAIRS: [Int8TileFn; MR] = int8_tile_table!(relaxed_pairs; 1 2 3 4);

/// The quantisers' `rint` (`(v + ROUND) − ROUND`), four lanes: the same IEEE adds, so the same
/// values.
#[inline(always)]
fn rint4(v: v128) -> v128 {
    let round = f32x4_splat(ROUND);
    f32x4_sub(f32x4_add(v, round), round)
}

/// Four values of `x` from `i` (`i + 4 ≤ x.len()`).
#[inline(always)]
fn load4(x: &[f32], i: usize) -> v128 {
    debug_assert!(i + 4 <= x.len());
    // SAFETY: in bounds (above); wasm loads need no alignment.
    unsafe { v128_load(x.as_ptr().add(i) as *const v128) }
}

/// One pass over a row: its minimum and maximum, each with 0 (`min(x, 0)`, `max(x, 0)`), and
/// whether every value is finite (`v − v` is NaN exactly for NaN and ±∞, and a NaN sum stays
/// NaN). The bounds are meaningless when a value is not finite.
#[inline(always)]
fn range(x: &[f32]) -> (f32, f32, bool) {
    let (mut lo, mut hi, mut bad) = (f32x4_splat(0.0), f32x4_splat(0.0), f32x4_splat(0.0));
    let n4 = x.len() / 4 * 4;
    for i in (0..n4).step_by(4) {
        let v = load4(x, i);
        lo = f32x4_pmin(lo, v);
        hi = f32x4_pmax(hi, v);
        bad = f32x4_add(bad, f32x4_sub(v, v));
    }
    let lanes = |v: v128| [f32x4_extract_lane::<0>(v), f32x4_extract_lane::<1>(v), f32x4_extract_lane::<2>(v), f32x4_extract_lane::<3>(v)];
    let tail = &x[n4..];
    let finite = i32x4_all_true(f32x4_eq(bad, bad)) && tail.iter().all(|v| v.is_finite());
    let lo = lanes(lo).iter().chain(tail).fold(0f32, |a, &v| a.min(v));
    let hi = lanes(hi).iter().chain(tail).fold(0f32, |a, &v| a.max(v));
    (lo, hi, finite)
}

/// Quantises `x` into `out` (bytes) 16 values a step: `clamp(rint(v · inv) + add, lo, hi)`
/// converted to integers, each 16 narrowed to bytes by `pack` and stored; the tail by `one`.
#[inline(always)]
fn quantize_with(x: &[f32], out: &mut [u8], (inv, add, lo, hi): (f32, f32, f32, f32), pack: impl Fn(v128, v128) -> v128, one: impl Fn(f32) -> u8) {
    let (inv4, add4, lo4, hi4) = (f32x4_splat(inv), f32x4_splat(add), f32x4_splat(lo), f32x4_splat(hi));
    let q = |i| i32x4_trunc_sat_f32x4(f32x4_pmin(hi4, f32x4_pmax(lo4, f32x4_add(rint4(f32x4_mul(load4(x, i), inv4)), add4))));
    let n16 = x.len().min(out.len()) / 16 * 16;
    for i in (0..n16).step_by(16) {
        let v = pack(i16x8_narrow_i32x4(q(i), q(i + 4)), i16x8_narrow_i32x4(q(i + 8), q(i + 12)));
        // SAFETY: i + 16 ≤ out.len().
        unsafe { v128_store(out.as_mut_ptr().add(i) as *mut v128, v) };
    }
    for (o, &v) in out[n16..].iter_mut().zip(&x[n16..]) {
        *o = one((rint(v * inv) + add).clamp(lo, hi));
    }
}

/// `quant::quantize_row_body` in SIMD128: the same values and scale bit for bit (the same
/// IEEE operations in the same order; min, max and the added 0 are exact), for the rows the
/// int8 engine packs on the fly and the weights it quantises at load.
pub(super) fn quantize_row(x: &[f32], out: &mut [i8]) -> f32 {
    let (lo, hi, finite) = range(x);
    if !finite {
        out.iter_mut().for_each(|q| *q = 0);
        return f32::NAN;
    }
    let amax = hi.max(-lo);
    let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(out);
    quantize_with(x, bytes, (inv, 0.0, -127.0, 127.0), |a, b| i8x16_narrow_i16x8(a, b), |v| v as i8 as u8);
    amax / 127.0
}

/// `quant::quantize_row_u7_body` in SIMD128: the same values, scale and zero point bit for bit.
pub(super) fn quantize_row_u7(x: &[f32], out: &mut [u8]) -> (f32, i32) {
    let (lo, hi, finite) = range(x);
    let range = hi - lo;
    if !finite || range <= 0.0 {
        out.iter_mut().for_each(|q| *q = 0);
        return (if finite { 0.0 } else { f32::NAN }, 0);
    }
    let inv = 127.0 / range;
    let zp = rint(-lo * inv).clamp(0.0, 127.0);
    quantize_with(x, out, (inv, zp, 0.0, 127.0), |a, b| u8x16_narrow_i16x8(a, b), |v| v as u8);
    (range / 127.0, zp as i32)
}

/// The int8 epilogue ([`dequant_tile`](super::dequant::dequant_tile)) for a whole 8-column
/// tile without an activation or with QuickGELU (CLIP's): each row's two vectors in SIMD128,
/// the same arithmetic as the generic body in the same order (bias and residual added as 0
/// where absent, as there), so the same values. In Chromium on Zen 4 (ViT-B/16, one thread)
/// the generic body's loop over a tile's 8 columns took 6.6 % of the int8 time, this 4.9 %.
/// Returns false (nothing written) for any other tile.
///
/// # Safety
/// As for `dequant_tile`.
pub(super) unsafe fn dequant8(t: &super::Tile, sx: &[f32], sw: &[f32], epi: super::Epilogue, y: *mut f32, ldc: usize) -> bool {
    use crate::tensor::Activation;
    let gelu = match epi.act {
        None => false,
        Some(Activation::QuickGelu) => true,
        Some(_) => return false,
    };
    let (bias_short, res_short) = (epi.bias.is_some_and(|b| b.len() < t.col0 + 8), epi.res.is_some_and(|v| v.len() < (t.row0 + t.rows) * t.n));
    if t.cols != 8
        || t.nr != 8
        || t.col0 + 8 > t.n
        || sw.len() < 8
        || t.comp.len() < 8
        || t.acc.len() < t.rows * 8
        || sx.len() < t.rows
        || bias_short
        || res_short
    {
        return false;
    }
    let ld = |p: *const f32| v128_load(p as *const v128);
    let (sw, comp) = ([ld(sw.as_ptr()), ld(sw.as_ptr().add(4))], [ld(t.comp.as_ptr() as _), ld(t.comp.as_ptr().add(4) as _)]);
    let zero = f32x4_splat(0.0);
    let bias = epi.bias.map_or([zero; 2], |b| [ld(b.as_ptr().add(t.col0)), ld(b.as_ptr().add(t.col0 + 4))]);
    for i in 0..t.rows {
        let r = t.row0 + i;
        let (s, z) = (f32x4_splat(sx[i]), i32x4_splat(t.zp.get(i).copied().unwrap_or(1)));
        let res = epi.res.map(|v| v.as_ptr().add(r * t.n + t.col0));
        let out = y.add(r * ldc + t.col0);
        for h in 0..2 {
            let acc = ld(t.acc.as_ptr().add(i * 8 + 4 * h) as _);
            let v = f32x4_mul(f32x4_convert_i32x4(i32x4_sub(acc, i32x4_mul(comp[h], z))), f32x4_mul(s, sw[h]));
            let mut v = f32x4_add(v, bias[h]);
            if gelu {
                v = f32x4_div(v, f32x4_add(f32x4_splat(1.0), exp4(f32x4_mul(f32x4_splat(-1.702), v))));
            }
            let v = f32x4_add(v, res.map_or(zero, |p| ld(p.add(4 * h))));
            v128_store(out.add(4 * h) as *mut v128, v);
        }
    }
    true
}
