//! The portable int8 micro-kernel (4 × 8).

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
