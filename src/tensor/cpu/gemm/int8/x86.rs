//! The AVX2 int8 micro-kernel (6 × 16, `pmaddwd` on int16 pairs).

use super::Int8TileFn;
use std::arch::x86_64::*;
const MR: usize = 6;
const NR: usize = 16;

/// # Safety
/// AVX2 is available; see [`Int8TileFn`].
#[target_feature(enable = "avx2")]
pub unsafe fn avx2<const R: usize>(kp: usize, a: *const i32, b: *const i8, c: *mut i32) {
    let mut lo = [_mm256_setzero_si256(); R];
    let mut hi = [_mm256_setzero_si256(); R];
    for p in 0..kp {
        let w = b.add(p * 2 * NR);
        let w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(w as *const __m128i));
        let w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(w.add(16) as *const __m128i));
        let ap = a.add(p * MR);
        for i in 0..R {
            let av = _mm256_set1_epi32(*ap.add(i));
            lo[i] = _mm256_add_epi32(lo[i], _mm256_madd_epi16(av, w0));
            hi[i] = _mm256_add_epi32(hi[i], _mm256_madd_epi16(av, w1));
        }
    }
    for i in 0..R {
        _mm256_storeu_si256(c.add(i * NR) as *mut __m256i, lo[i]);
        _mm256_storeu_si256(c.add(i * NR + 8) as *mut __m256i, hi[i]);
    }
}

pub static AVX2: [Int8TileFn; MR] = int8_tile_table!(avx2; 1 2 3 4 5 6);
