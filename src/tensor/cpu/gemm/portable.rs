//! The portable micro-kernel (4 × 8), which the compiler vectorises for the baseline.

use super::TileFn;
const MR: usize = 4;
const NR: usize = 8;

/// # Safety
/// `a` holds `k·MR`, `b` `k·NR` valid f32s; `c` rows `R × NR` (`ldc` apart) are writable;
/// `bias` is null or holds `NR` f32s.
pub unsafe fn k<const R: usize>(k: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, bias: *const f32) {
    let init = if bias.is_null() { [0f32; NR] } else { *(bias as *const [f32; NR]) };
    let mut acc = [init; R];
    for p in 0..k {
        let bp = std::slice::from_raw_parts(b.add(p * NR), NR);
        for (i, row) in acc.iter_mut().enumerate() {
            let av = *a.add(p * MR + i);
            for (v, &bv) in row.iter_mut().zip(bp) {
                *v += av * bv;
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        std::ptr::copy_nonoverlapping(row.as_ptr(), c.add(i * ldc), NR);
    }
}

pub static PORTABLE: [TileFn; MR] = tile_table!(k; 1 2 3 4);
