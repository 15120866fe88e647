//! The scan for N = 16 (every released Mamba's state size) on AVX-512: a channel's 16 state
//! values are one vector, the exponentials are fused multiply-adds with a hardware scale
//! (`vscalefps`), and the read-outs C·h of 16 channels are summed together by one
//! transposing tree instead of one horizontal sum each (the portable loop spent most of a
//! step in that sum and in the exponential's unfused multiply-adds). Full steps and MRSS's
//! merged steps run over index lists, 16 channels at a time, so the same kernel serves the
//! full scan (every channel, in order) and MRSS (the lists `sort_step` makes).

use super::mrss::{mrss_state, sort_step};
use super::{st_pending, ScanDims, ScanIo, ScanStats};
use std::arch::x86_64::*;

/// The state size these kernels take.
pub(super) const N: usize = 16;

/// exp on 16 lanes: k = round(x·log₂e), r = x − k·ln2 (two parts), a degree-6 polynomial
/// for e^r, then ·2^k with `vscalefps`. Inputs clamped to [−87, 88] as the portable
/// [`exp`](super::super::simd::exp); a NaN stays NaN (it is the second operand of max/min).
#[inline]
#[target_feature(enable = "avx512f")]
fn exp16(x: __m512) -> __m512 {
    use super::super::simd::{EXP_CLAMP, EXP_POLY, LN2_HI, LN2_LO};
    let x = _mm512_min_ps(_mm512_set1_ps(EXP_CLAMP[1]), _mm512_max_ps(_mm512_set1_ps(EXP_CLAMP[0]), x));
    let k = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)));
    let r = _mm512_fnmadd_ps(k, _mm512_set1_ps(LN2_HI), x);
    let r = _mm512_fnmadd_ps(k, _mm512_set1_ps(LN2_LO), r);
    let mut p = _mm512_set1_ps(EXP_POLY[0]);
    for &c in &EXP_POLY[1..] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    _mm512_scalef_ps(p, k)
}

/// Sums each of 16 vectors: lane i of the result is the sum of `p[i]`'s lanes. A transposing
/// tree (pairs within 128-bit lanes, then quarters, then halves): 15 adds and 30 shuffles
/// for 16 sums. Every input's lanes are summed in the same order whatever its place, so a
/// channel's read-out does not depend on the channels beside it.
#[inline]
#[target_feature(enable = "avx512f")]
fn reduce16(p: &[__m512; 16]) -> __m512 {
    let q0 = quad(pair(p[0], p[1]), pair(p[2], p[3]));
    let q1 = quad(pair(p[4], p[5]), pair(p[6], p[7]));
    let q2 = quad(pair(p[8], p[9]), pair(p[10], p[11]));
    let q3 = quad(pair(p[12], p[13]), pair(p[14], p[15]));
    half(half(q0, q1), half(q2, q3))
}

/// Per 128-bit lane: [a0 + a2, b0 + b2, a1 + a3, b1 + b3].
#[inline]
#[target_feature(enable = "avx512f")]
fn pair(a: __m512, b: __m512) -> __m512 {
    _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b))
}

/// Two [`pair`]s (of a, b and of c, d) → per 128-bit lane the sums of a, b, c, d over it.
#[inline]
#[target_feature(enable = "avx512f")]
fn quad(x: __m512, y: __m512) -> __m512 {
    _mm512_add_ps(_mm512_shuffle_ps::<0x44>(x, y), _mm512_shuffle_ps::<0xEE>(x, y))
}

/// Adds 128-bit lanes 0 + 1 and 2 + 3 of u, then of v: [u01, u23, v01, v23].
#[inline]
#[target_feature(enable = "avx512f")]
fn half(u: __m512, v: __m512) -> __m512 {
    _mm512_add_ps(_mm512_shuffle_f32x4::<0x88>(u, v), _mm512_shuffle_f32x4::<0xDD>(u, v))
}

/// One channel's full step: h ← exp(Δ·A) ⊙ h + Δx·B; returns C ⊙ h (to be summed).
///
/// # Safety
/// `h` and `a` point at 16 values each.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn full(h: *mut f32, a: *const f32, bt: __m512, ct: __m512, dv: f32, dx: f32) -> __m512 {
    let e = exp16(_mm512_mul_ps(_mm512_set1_ps(dv), _mm512_loadu_ps(a)));
    let hv = _mm512_fmadd_ps(e, _mm512_loadu_ps(h), _mm512_mul_ps(_mm512_set1_ps(dx), bt));
    _mm512_storeu_ps(h, hv);
    _mm512_mul_ps(ct, hv)
}

/// One channel's merged step: u ← u + Δx·B; returns C ⊙ (h ⊙ (1 + ΣΔ·A) + u).
///
/// # Safety
/// `h`, `u` and `a` point at 16 values each.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn merged(h: *const f32, u: *mut f32, a: *const f32, bt: __m512, ct: __m512, dx: f32, dacc: f32) -> __m512 {
    let uv = _mm512_fmadd_ps(_mm512_set1_ps(dx), bt, _mm512_loadu_ps(u));
    _mm512_storeu_ps(u, uv);
    let q = _mm512_fmadd_ps(_mm512_set1_ps(dacc), _mm512_loadu_ps(a), _mm512_set1_ps(1.0));
    _mm512_mul_ps(ct, _mm512_fmadd_ps(_mm512_loadu_ps(h), q, uv))
}

/// Closes a run: h ← exp(ΣΔ·A) ⊙ h + u, u ← 0.
///
/// # Safety
/// `h`, `u` and `a` point at 16 values each.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn apply(h: *mut f32, u: *mut f32, a: *const f32, dacc: f32) {
    let e = exp16(_mm512_mul_ps(_mm512_set1_ps(dacc), _mm512_loadu_ps(a)));
    _mm512_storeu_ps(h, _mm512_fmadd_ps(e, _mm512_loadu_ps(h), _mm512_loadu_ps(u)));
    _mm512_storeu_ps(u, _mm512_setzero_ps());
}

/// The scan (full, τ ≤ 0, or MRSS) over one block of channels with N = 16, time outermost;
/// the same work and results as `scan_block`/`mrss_block` up to the rounding of fused
/// multiply-adds and the read-out's summation order. Returns false (nothing done) when the
/// shapes are not this kernel's, or the CPU lacks AVX-512F.
#[allow(clippy::too_many_arguments)]
pub(super) fn block(io: &ScanIo, dims: ScanDims, b: usize, ch0: usize, hs: &mut [f32], out: &mut [f32], stats: &mut [ScanStats], tau: f32) -> bool {
    let ScanDims { batch, len, channels: c, state: n } = dims;
    let cb = hs.len() / N;
    let fits = n == N
        && hs.len() == cb * N
        && b < batch
        && ch0 + cb <= c
        && out.len() >= len * cb
        && stats.len() >= cb
        && io.ad.len() >= c * (N + 1)
        && io.x.len() >= batch * len * c
        && io.dt.len() >= batch * len * c
        && (batch * len).checked_sub(1).is_none_or(|last| io.b.fits(last, N) && io.c.fits(last, N));
    if !fits || !std::arch::is_x86_feature_detected!("avx512f") {
        return false;
    }
    // SAFETY: AVX-512F was detected; every index below is within the sizes checked above.
    unsafe { block_avx512(io, dims, b, ch0, hs, out, stats, tau) };
    true
}

#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn block_avx512(io: &ScanIo, dims: ScanDims, b: usize, ch0: usize, hs: &mut [f32], out: &mut [f32], stats: &mut [ScanStats], tau: f32) {
    let ScanDims { len, channels: c, .. } = dims;
    let cb = hs.len() / N;
    // A copied to rows of one cache line each (in `ad` a channel's A + D is 68 bytes, so most
    // A loads straddled two lines), D beside it.
    let arows: Vec<Line> = (0..cb).map(|j| Line(io.ad(ch0 + j, N).0.try_into().unwrap_or([0.0; N]))).collect();
    let dch: Vec<f32> = (0..cb).map(|j| io.ad(ch0 + j, N).1).collect();
    let ad = |j: usize| arows[j].0.as_ptr();
    // The read-outs of one group; entries past a part-filled group's end are zeroed.
    let mut p = [_mm512_setzero_ps(); 16];
    let hp = hs.as_mut_ptr();
    let mrss = tau > 0.0;
    let mut st = mrss_state(io, ch0, cb, N, mrss);
    let all: Vec<u32> = (0..cb as u32).collect();
    for t in 0..len {
        let row = b * len + t;
        let (bt, ct) = (_mm512_loadu_ps(io.b.at(row, N).as_ptr()), _mm512_loadu_ps(io.c.at(row, N).as_ptr()));
        let (xr, dr) = (&io.x[row * c + ch0..][..cb], &io.dt[row * c + ch0..][..cb]);
        let yr = &mut out[t * cb..][..cb];
        let (nf, ns) = if mrss {
            let [nc, nf, ns] = sort_step(dr, &st.dacc, &st.amax, tau, [&mut st.close[..], &mut st.fast[..], &mut st.slow[..]], true);
            for &j in &st.close[..nc] {
                let j = j as usize;
                apply(hp.add(j * N), st.u.as_mut_ptr().add(j * N), ad(j), st.dacc[j]);
                st.dacc[j] = 0.0;
                st.runs[j] += 1;
            }
            (nf, ns)
        } else {
            (cb, 0)
        };
        let fast = if mrss { &st.fast[..nf] } else { &all[..] };
        for g in fast.chunks(16) {
            p[g.len()..].fill(_mm512_setzero_ps());
            for (pi, &j) in p.iter_mut().zip(g) {
                let j = j as usize;
                *pi = full(hp.add(j * N), ad(j), bt, ct, dr[j], dr[j] * xr[j]);
            }
            write(yr, g, reduce16(&p), xr, &dch);
        }
        for g in st.slow[..ns].chunks(16) {
            p[g.len()..].fill(_mm512_setzero_ps());
            for (pi, &j) in p.iter_mut().zip(g) {
                let j = j as usize;
                st.dacc[j] += dr[j];
                st.merged[j] += 1;
                *pi = merged(hp.add(j * N), st.u.as_mut_ptr().add(j * N), ad(j), bt, ct, dr[j] * xr[j], st.dacc[j]);
            }
            write(yr, g, reduce16(&p), xr, &dch);
        }
    }
    for j in 0..cb {
        if mrss && st_pending(st.dacc[j]) {
            st.runs[j] += 1;
            apply(hp.add(j * N), st.u.as_mut_ptr().add(j * N), ad(j), st.dacc[j]);
        }
        stats[j] = ScanStats { updates: len as u64, merged: st.merged[j], runs: st.runs[j] };
    }
}

/// 16 values on one cache line.
#[repr(align(64))]
struct Line([f32; N]);

/// y = (the summed read-out) + D·x for each channel of group `g`.
#[inline]
#[target_feature(enable = "avx512f")]
fn write(yr: &mut [f32], g: &[u32], sums: __m512, xr: &[f32], dch: &[f32]) {
    let mut s = [0f32; 16];
    // SAFETY: `s` holds 16 values.
    unsafe { _mm512_storeu_ps(s.as_mut_ptr(), sums) };
    for (&sv, &j) in s.iter().zip(g) {
        let j = j as usize;
        yr[j] = sv + dch[j] * xr[j];
    }
}

/// One channel's steps with this kernel's arithmetic, on slices of 16 (each as the block does
/// it, the read-out summed by the same tree): the tests walk a channel through time with them
/// as the reference for [`block`], which must equal it bit for bit. `None` without AVX-512F.
#[cfg(test)]
pub(super) fn steps() -> Option<super::tests::Steps> {
    fn sum(p: __m512) -> f32 {
        let mut v = [p; 16];
        v[1..].fill(unsafe { _mm512_setzero_ps() });
        let mut s = [0f32; 16];
        // SAFETY: AVX-512F was detected before these steps were handed out; `s` holds 16.
        unsafe { _mm512_storeu_ps(s.as_mut_ptr(), reduce16(&v)) };
        s[0]
    }
    fn full16(h: &mut [f32], a: &[f32], b: &[f32], c: &[f32], dv: f32, dx: f32) -> f32 {
        let (h, a, b, c) = (&mut h[..N], &a[..N], &b[..N], &c[..N]);
        // SAFETY: as in `sum`; every slice holds 16 values (indexed above).
        sum(unsafe { full(h.as_mut_ptr(), a.as_ptr(), _mm512_loadu_ps(b.as_ptr()), _mm512_loadu_ps(c.as_ptr()), dv, dx) })
    }
    fn merged16(h: &[f32], u: &mut [f32], a: &[f32], b: &[f32], c: &[f32], dx: f32, dacc: f32) -> f32 {
        let (h, u, a, b, c) = (&h[..N], &mut u[..N], &a[..N], &b[..N], &c[..N]);
        // SAFETY: as in `full16`.
        sum(unsafe { merged(h.as_ptr(), u.as_mut_ptr(), a.as_ptr(), _mm512_loadu_ps(b.as_ptr()), _mm512_loadu_ps(c.as_ptr()), dx, dacc) })
    }
    fn apply16(h: &mut [f32], u: &mut [f32], a: &[f32], dacc: f32) {
        let (h, u, a) = (&mut h[..N], &mut u[..N], &a[..N]);
        // SAFETY: as in `full16`.
        unsafe { apply(h.as_mut_ptr(), u.as_mut_ptr(), a.as_ptr(), dacc) }
    }
    std::arch::is_x86_feature_detected!("avx512f").then_some(super::tests::Steps { full: full16, merged: merged16, apply: apply16 })
}
