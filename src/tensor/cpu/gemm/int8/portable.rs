//! The portable int8 micro-kernels (4 × 8): pairs, and the relaxed-SIMD kernel's quads of
//! u7 activations (so its scheme runs and is tested on every target).

use super::Int8TileFn;
const MR: usize = 4;
const NR: usize = 8;

/// # Safety
/// See [`Int8TileFn`].
pub unsafe fn k<const R: usize>(kp: usize, a: *const i32, b: *const i8, c: *mut i32) {
    let mut acc = [[0i32; NR]; R];
    for p in 0..kp {
        let w = std::slice::from_raw_parts(b.add(p * 2 * NR), 2 * NR);
        for (i, row) in acc.iter_mut().enumerate() {
            let word = *a.add(p * MR + i);
            let (lo, hi) = (word as i16 as i32, (word >> 16) as i16 as i32);
            for (c, v) in row.iter_mut().enumerate() {
                *v += lo * w[2 * c] as i32 + hi * w[2 * c + 1] as i32;
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        std::ptr::copy_nonoverlapping(row.as_ptr(), c.add(i * NR), NR);
    }
}

pub static PORTABLE: [Int8TileFn; MR] = int8_tile_table!(k; 1 2 3 4);

/// The relaxed-SIMD kernel's sums (`Layout::QuadsU7`): each activation word is a row's quad
/// of u7 bytes, each weight word a column's quad of i8.
///
/// # Safety
/// See [`Int8TileFn`].
#[cfg_attr(all(target_arch = "wasm32", target_feature = "relaxed-simd"), allow(dead_code))]
pub unsafe fn quads_u7<const R: usize>(kq: usize, a: *const i32, b: *const i8, c: *mut i32) {
    let mut acc = [[0i32; NR]; R];
    for p in 0..kq {
        let w = std::slice::from_raw_parts(b.add(p * 4 * NR), 4 * NR);
        for (i, row) in acc.iter_mut().enumerate() {
            let x = (*a.add(p * MR + i) as u32).to_le_bytes();
            for (c, v) in row.iter_mut().enumerate() {
                *v += (0..4).map(|t| x[t] as i32 * w[4 * c + t] as i32).sum::<i32>();
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        std::ptr::copy_nonoverlapping(row.as_ptr(), c.add(i * NR), NR);
    }
}

#[cfg_attr(all(target_arch = "wasm32", target_feature = "relaxed-simd"), allow(dead_code))]
pub static QUADS_U7: [Int8TileFn; MR] = int8_tile_table!(quads_u7; 1 2 3 4);
