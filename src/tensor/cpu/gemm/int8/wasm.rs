//! The wasm SIMD128 int8 micro-kernel (4 × 8, `i32x4.dot_i16x8_s`).

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
