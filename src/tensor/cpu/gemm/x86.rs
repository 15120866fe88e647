//! The x86-64 micro-kernels: AVX-512F 12 × 32 and AVX2+FMA 6 × 16.

use super::TileFn;
use std::arch::x86_64::*;

/// 12 × 32: two zmm per row, 24 accumulators.
///
/// # Safety
/// The CPU has AVX-512F; `a` holds `k·12`, `b` `k·32` valid f32s; `c` rows `R × 32` (`ldc` apart) are
/// writable; `bias` is null or holds 32 f32s.
#[target_feature(enable = "avx512f")]
pub unsafe fn avx512<const R: usize>(k: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, bias: *const f32) {
    const MR: usize = 12;
    const NR: usize = 32;
    let (i0, i1) = if bias.is_null() { (_mm512_setzero_ps(), _mm512_setzero_ps()) } else { (_mm512_loadu_ps(bias), _mm512_loadu_ps(bias.add(16))) };
    let mut c0 = [i0; R];
    let mut c1 = [i1; R];
    let (mut ap, mut bp) = (a, b);
    for _ in 0..k {
        if R >= 4 {
            // The panel streams from L2 or memory: ask for it 8 steps (2 KB) ahead.
            _mm_prefetch::<_MM_HINT_T0>(bp.add(8 * NR) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(bp.add(8 * NR + 16) as *const i8);
        } else if R == 1 {
            // One row (decoding): the weights stream from memory at 128 bytes a step, too fast
            // for the FMAs to hide a miss; ask 64 steps (8 KB) ahead (decode +10 % against none
            // at mamba-130m widths on an Intel Xeon; 4 KB gave +5 %, 16 KB no more than 8).
            _mm_prefetch::<_MM_HINT_T0>(bp.add(64 * NR) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(bp.add(64 * NR + 16) as *const i8);
        }
        let b0 = _mm512_loadu_ps(bp);
        let b1 = _mm512_loadu_ps(bp.add(16));
        for i in 0..R {
            let av = _mm512_set1_ps(*ap.add(i));
            c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
        }
        ap = ap.add(MR);
        bp = bp.add(NR);
    }
    for i in 0..R {
        _mm512_storeu_ps(c.add(i * ldc), c0[i]);
        _mm512_storeu_ps(c.add(i * ldc + 16), c1[i]);
    }
}

/// 6 × 16: two ymm per row, 12 accumulators (of 16 registers).
///
/// # Safety
/// The CPU has AVX2 and FMA; `a` holds `k·6`, `b` `k·16` valid f32s; `c` rows `R × 16` (`ldc` apart) are
/// writable; `bias` is null or holds 16 f32s.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn avx2<const R: usize>(k: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, bias: *const f32) {
    const MR: usize = 6;
    const NR: usize = 16;
    if R == 1 {
        return avx2_row(k, a, b, c, bias);
    }
    let (i0, i1) = if bias.is_null() { (_mm256_setzero_ps(), _mm256_setzero_ps()) } else { (_mm256_loadu_ps(bias), _mm256_loadu_ps(bias.add(8))) };
    let mut c0 = [i0; R];
    let mut c1 = [i1; R];
    let (mut ap, mut bp) = (a, b);
    for _ in 0..k {
        let b0 = _mm256_loadu_ps(bp);
        let b1 = _mm256_loadu_ps(bp.add(8));
        for i in 0..R {
            let av = _mm256_broadcast_ss(&*ap.add(i));
            c0[i] = _mm256_fmadd_ps(av, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(av, b1, c1[i]);
        }
        ap = ap.add(MR);
        bp = bp.add(NR);
    }
    for i in 0..R {
        _mm256_storeu_ps(c.add(i * ldc), c0[i]);
        _mm256_storeu_ps(c.add(i * ldc + 8), c1[i]);
    }
}

/// The 6 × 16 kernel's one-row case (a decoding step's products, M = 1): every weight is
/// used once, so the loop is bound by how fast the panel streams in, not by FMAs. Four k
/// steps at a time into eight accumulators (the two of the general loop would chain each
/// FMA on the last one's latency), summed at the end.
///
/// # Safety
/// As for [`avx2`] with one row.
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_row(k: usize, a: *const f32, b: *const f32, c: *mut f32, bias: *const f32) {
    const MR: usize = 6;
    const NR: usize = 16;
    let z = _mm256_setzero_ps();
    let mut acc = [z; 8];
    if !bias.is_null() {
        acc[0] = _mm256_loadu_ps(bias);
        acc[1] = _mm256_loadu_ps(bias.add(8));
    }
    let (mut ap, mut bp) = (a, b);
    for _ in 0..k / 4 {
        for u in 0..4 {
            let av = _mm256_broadcast_ss(&*ap.add(u * MR));
            acc[2 * u] = _mm256_fmadd_ps(av, _mm256_loadu_ps(bp.add(u * NR)), acc[2 * u]);
            acc[2 * u + 1] = _mm256_fmadd_ps(av, _mm256_loadu_ps(bp.add(u * NR + 8)), acc[2 * u + 1]);
        }
        ap = ap.add(4 * MR);
        bp = bp.add(4 * NR);
    }
    for _ in 0..k % 4 {
        let av = _mm256_broadcast_ss(&*ap);
        acc[0] = _mm256_fmadd_ps(av, _mm256_loadu_ps(bp), acc[0]);
        acc[1] = _mm256_fmadd_ps(av, _mm256_loadu_ps(bp.add(8)), acc[1]);
        ap = ap.add(MR);
        bp = bp.add(NR);
    }
    let lo = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[4], acc[6]));
    let hi = _mm256_add_ps(_mm256_add_ps(acc[1], acc[3]), _mm256_add_ps(acc[5], acc[7]));
    _mm256_storeu_ps(c, lo);
    _mm256_storeu_ps(c.add(8), hi);
}

/// One tile of [`super::pack_a`] with AVX2: 8 columns of up to 8 rows at a time are loaded
/// (normalised with the same operations, in the same order, as the scalar path: `(v -
/// mean) · inv · w + b`, no FMA) and transposed in registers, so the gather that turns rows
/// into the kernel's `[k][MR]` layout is no longer one scalar load and store per value.
///
/// # Safety
/// The CPU has AVX2; `src` holds `rows ≤ mr` rows of `k` values `lda` apart; `dst` is
/// `k × mr`; with a norm, `stats` has `rows` entries and the norm's `w`, `b` hold `k`.
#[target_feature(enable = "avx2")]
pub unsafe fn pack_tile_avx2(src: &[f32], lda: usize, rows: usize, k: usize, mr: usize, dst: &mut [f32], norm: Option<(super::Norm, &[(f32, f32)])>) {
    let k8 = k - k % 8;
    for i0 in (0..rows).step_by(8) {
        let n = (rows - i0).min(8);
        for p0 in (0..k8).step_by(8) {
            let mut r = [_mm256_setzero_ps(); 8];
            for (i, ri) in r.iter_mut().enumerate().take(n) {
                let mut v = _mm256_loadu_ps(src.as_ptr().add((i0 + i) * lda + p0));
                if let Some((nm, stats)) = norm {
                    let (mean, inv) = stats[i0 + i];
                    v = _mm256_sub_ps(v, _mm256_set1_ps(mean));
                    v = _mm256_mul_ps(v, _mm256_set1_ps(inv));
                    v = _mm256_mul_ps(v, _mm256_loadu_ps(nm.w.as_ptr().add(p0)));
                    v = _mm256_add_ps(v, _mm256_loadu_ps(nm.b.as_ptr().add(p0)));
                }
                *ri = v;
            }
            let t0 = _mm256_unpacklo_ps(r[0], r[1]);
            let t1 = _mm256_unpackhi_ps(r[0], r[1]);
            let t2 = _mm256_unpacklo_ps(r[2], r[3]);
            let t3 = _mm256_unpackhi_ps(r[2], r[3]);
            let t4 = _mm256_unpacklo_ps(r[4], r[5]);
            let t5 = _mm256_unpackhi_ps(r[4], r[5]);
            let t6 = _mm256_unpacklo_ps(r[6], r[7]);
            let t7 = _mm256_unpackhi_ps(r[6], r[7]);
            let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            let cols = [
                _mm256_permute2f128_ps::<0x20>(s0, s4),
                _mm256_permute2f128_ps::<0x20>(s1, s5),
                _mm256_permute2f128_ps::<0x20>(s2, s6),
                _mm256_permute2f128_ps::<0x20>(s3, s7),
                _mm256_permute2f128_ps::<0x31>(s0, s4),
                _mm256_permute2f128_ps::<0x31>(s1, s5),
                _mm256_permute2f128_ps::<0x31>(s2, s6),
                _mm256_permute2f128_ps::<0x31>(s3, s7),
            ];
            for (j, c) in cols.iter().enumerate() {
                let d = dst.as_mut_ptr().add((p0 + j) * mr + i0);
                if n == 8 {
                    _mm256_storeu_ps(d, *c);
                } else {
                    store_short(d, *c, n);
                }
            }
        }
    }
    // The last k % 8 columns, one value at a time.
    for p in k8..k {
        for i in 0..rows {
            let v = src[i * lda + p];
            dst[p * mr + i] = match norm {
                Some((nm, stats)) => (v - stats[i].0) * stats[i].1 * nm.w[p] + nm.b[p],
                None => v,
            };
        }
    }
}

/// The first `n < 8` values of `c` at `d`, in plain stores of 4, 2 and 1 values (a short
/// group of [`pack_tile_avx2`]: the last 4 or 3 of AVX-512's 11- and 12-row tiles). Not
/// `vmaskmovps`, which AMD cores run as a slow microcoded store.
///
/// # Safety
/// The CPU has AVX2; `d` is valid for `n` f32s.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn store_short(mut d: *mut f32, c: __m256, mut n: usize) {
    let mut v = _mm256_castps256_ps128(c);
    if n >= 4 {
        _mm_storeu_ps(d, v);
        v = _mm256_extractf128_ps::<1>(c);
        d = d.add(4);
        n -= 4;
    }
    if n >= 2 {
        _mm_storel_epi64(d as *mut __m128i, _mm_castps_si128(v));
        v = _mm_movehl_ps(v, v);
        d = d.add(2);
        n -= 2;
    }
    if n == 1 {
        _mm_store_ss(d, v);
    }
}

/// `n` rounds of 16 independent zmm multiply-adds in registers (enough chains to cover the
/// FMA latency on every core we know; with 24 LLVM spills some to the stack).
///
/// # Safety
/// The CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn peak_avx512(n: usize) -> f32 {
    let (m, a) = (_mm512_set1_ps(0.999_99), _mm512_set1_ps(1e-6));
    let mut c = [_mm512_set1_ps(1.0); 16];
    for _ in 0..n {
        for v in c.iter_mut() {
            *v = _mm512_fmadd_ps(*v, m, a);
        }
    }
    c.iter().map(|&v| _mm512_reduce_add_ps(v)).sum()
}

/// `n` rounds of 12 independent ymm multiply-adds in registers (the 6 × 16 tile's chains).
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn peak_avx2(n: usize) -> f32 {
    let (m, a) = (_mm256_set1_ps(0.999_99), _mm256_set1_ps(1e-6));
    let mut c = [_mm256_set1_ps(1.0); 12];
    for _ in 0..n {
        for v in c.iter_mut() {
            *v = _mm256_fmadd_ps(*v, m, a);
        }
    }
    let mut out = [0f32; 8];
    _mm256_storeu_ps(out.as_mut_ptr(), c.iter().fold(_mm256_setzero_ps(), |s, &v| _mm256_add_ps(s, v)));
    out.iter().sum()
}

pub static AVX512: [TileFn; 12] = tile_table!(avx512; 1 2 3 4 5 6 7 8 9 10 11 12);
pub static AVX2: [TileFn; 6] = tile_table!(avx2; 1 2 3 4 5 6);
