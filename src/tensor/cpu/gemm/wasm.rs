//! The wasm SIMD128 micro-kernel (4 × 8; `relaxed_madd` in the relaxed-SIMD build).

use super::TileFn;
use std::arch::wasm32::*;

#[inline(always)]
fn madd(a: v128, b: v128, c: v128) -> v128 {
    #[cfg(target_feature = "relaxed-simd")]
    {
        f32x4_relaxed_madd(a, b, c)
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    {
        f32x4_add(f32x4_mul(a, b), c)
    }
}

/// 4 × 8: two v128 per row, 8 accumulators (see [`super::WASM_MR`]).
///
/// # Safety
/// `a` holds `k·6`, `b` `k·8` valid f32s; `c` rows `R × 8` (`ldc` apart) are
/// writable; `bias` is null or holds 8 f32s.
pub unsafe fn simd128<const R: usize>(k: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, bias: *const f32) {
    const MR: usize = super::WASM_MR;
    const NR: usize = 8;
    if R == 1 {
        return simd128_row(k, a, b, c, bias);
    }
    let (i0, i1) = if bias.is_null() { (f32x4_splat(0.0), f32x4_splat(0.0)) } else { (v128_load(bias as *const v128), v128_load(bias.add(4) as *const v128)) };
    let mut c0 = [i0; R];
    let mut c1 = [i1; R];
    let (mut ap, mut bp) = (a, b);
    for _ in 0..k {
        let b0 = v128_load(bp as *const v128);
        let b1 = v128_load(bp.add(4) as *const v128);
        for i in 0..R {
            let av = f32x4_splat(*ap.add(i));
            c0[i] = madd(av, b0, c0[i]);
            c1[i] = madd(av, b1, c1[i]);
        }
        ap = ap.add(MR);
        bp = bp.add(NR);
    }
    for i in 0..R {
        v128_store(c.add(i * ldc) as *mut v128, c0[i]);
        v128_store(c.add(i * ldc + 4) as *mut v128, c1[i]);
    }
}

/// The one-row case (a decoding step's products, M = 1): each weight is used once, and with
/// two sums each `madd` waits for the last one's result, so the loop ran at the adder's
/// latency, not at the rate the panel streams in. Four k steps at a time into eight sums,
/// added at the end (as the AVX2 kernel's row case does natively).
///
/// # Safety
/// As for [`simd128`] with one row.
unsafe fn simd128_row(k: usize, a: *const f32, b: *const f32, c: *mut f32, bias: *const f32) {
    const MR: usize = super::WASM_MR;
    const NR: usize = 8;
    let mut acc = [f32x4_splat(0.0); 8];
    if !bias.is_null() {
        acc[0] = v128_load(bias as *const v128);
        acc[1] = v128_load(bias.add(4) as *const v128);
    }
    let (mut ap, mut bp) = (a, b);
    for _ in 0..k / 4 {
        for u in 0..4 {
            let av = f32x4_splat(*ap.add(u * MR));
            acc[2 * u] = madd(av, v128_load(bp.add(u * NR) as *const v128), acc[2 * u]);
            acc[2 * u + 1] = madd(av, v128_load(bp.add(u * NR + 4) as *const v128), acc[2 * u + 1]);
        }
        ap = ap.add(4 * MR);
        bp = bp.add(4 * NR);
    }
    for _ in 0..k % 4 {
        let av = f32x4_splat(*ap);
        acc[0] = madd(av, v128_load(bp as *const v128), acc[0]);
        acc[1] = madd(av, v128_load(bp.add(4) as *const v128), acc[1]);
        ap = ap.add(MR);
        bp = bp.add(NR);
    }
    let lo = f32x4_add(f32x4_add(acc[0], acc[2]), f32x4_add(acc[4], acc[6]));
    let hi = f32x4_add(f32x4_add(acc[1], acc[3]), f32x4_add(acc[5], acc[7]));
    v128_store(c as *mut v128, lo);
    v128_store(c.add(4) as *mut v128, hi);
}

/// `n` rounds of 12 independent `relaxed_madd` chains in registers (FMA where the
/// browser has relaxed-simd).
#[cfg(target_feature = "relaxed-simd")]
pub fn peak_simd128(n: usize) -> f32 {
    let (m, a) = (f32x4_splat(0.999_99), f32x4_splat(1e-6));
    let mut v = [f32x4_splat(std::hint::black_box(1.0)); 12];
    for _ in 0..n {
        for c in v.iter_mut() {
            *c = madd(*c, m, a);
        }
    }
    let s = v.iter().fold(f32x4_splat(0.0), |s, &c| f32x4_add(s, c));
    f32x4_extract_lane::<0>(s) + f32x4_extract_lane::<1>(s) + f32x4_extract_lane::<2>(s) + f32x4_extract_lane::<3>(s)
}

pub static SIMD128: [TileFn; super::WASM_MR] = tile_table!(simd128; 1 2 3 4);
