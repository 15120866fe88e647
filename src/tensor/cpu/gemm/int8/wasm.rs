//! The wasm SIMD128 int8 micro-kernels (4 × 8): `i32x4.dot_i16x8_s` on int16 pairs, and in the
//! relaxed-SIMD build `i32x4.relaxed_dot_i8x16_i7x16_add_s` on quads (i8 weights × u7
//! activations, `Layout::QuadsU7`): 16 multiply-adds an instruction. Its x86 forms
//! (`vpdpbusd`, or `pmaddubsw` + `pmaddwd`) treat the 7-bit side as unsigned, and a pair's
//! sum stays within i16 (|pair sum| ≤ 2 · 127 · 127), so any lowering gives the exact sums.

use super::Int8TileFn;
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
