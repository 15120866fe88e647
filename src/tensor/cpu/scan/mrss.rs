//! MRSS over one block of channels, time outermost: each step's channels sorted into index
//! lists (runs to apply, fast, slow), then each list run as a loop.

use super::{apply_run, full_step, merged_step, st_pending, ScanDims, ScanIo, ScanStats, MAX_RUN_DECAY};

/// MRSS over one block, time outermost like the full scan. At each step the block's channels
/// are sorted, without a branch, into three index lists: runs to apply first (a channel that
/// had been merging and now turns fast, or whose run would pass [`MAX_RUN_DECAY`]), fast
/// channels (a full step) and slow ones (a merged step); then each list runs as a loop with no
/// data-dependent branch. Walking each channel through time instead (an earlier version)
/// mispredicted the merge branch wherever runs were short, and read x and Δ a column at a
/// time: the scan took 1.5–1.9× the full scan's time on typeseg. Per channel the arithmetic and
/// its order are the same as before (each channel's steps in time order), so the outputs are
/// too, bit for bit.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn mrss_block<'a>(
    io: &ScanIo,
    dims: ScanDims,
    rows: impl Fn(usize) -> (usize, &'a [f32], &'a [f32]),
    ch0: usize,
    hs: &mut [f32],
    out: &mut [f32],
    stats: &mut [ScanStats],
    tau: f32,
) {
    let ScanDims { len, channels: c, state: n, .. } = dims;
    let cb = hs.len() / n;
    let MrssState { amax, dacc, u, merged, runs, close, fast, slow } = &mut mrss_state(io, ch0, cb, n, true);
    // Asked once a block, not once a step.
    #[cfg(target_arch = "x86_64")]
    let wide = std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    let wide = false;
    for t in 0..len {
        let (row, bt, ct) = rows(t);
        let (xr, dr) = (&io.x[row * c + ch0..][..cb], &io.dt[row * c + ch0..][..cb]);
        let [nc, nf, ns] = sort_step(dr, dacc, amax, tau, [close, fast, slow], wide);
        for &j in &close[..nc] {
            let j = j as usize;
            apply_run(&mut hs[j * n..][..n], &mut u[j * n..][..n], io.ad(ch0 + j, n).0, dacc[j]);
            dacc[j] = 0.0;
            runs[j] += 1;
        }
        let yr = &mut out[t * cb..(t + 1) * cb];
        for &j in &fast[..nf] {
            let j = j as usize;
            let ((ar, dch), (xv, dv)) = (io.ad(ch0 + j, n), (xr[j], dr[j]));
            yr[j] = full_step(&mut hs[j * n..][..n], ar, bt, ct, dv, dv * xv) + dch * xv;
        }
        for &j in &slow[..ns] {
            let j = j as usize;
            let ((ar, dch), (xv, dv)) = (io.ad(ch0 + j, n), (xr[j], dr[j]));
            // Merge: accumulate the input, hold the decay (no exponential).
            dacc[j] += dv;
            yr[j] = merged_step(&hs[j * n..][..n], &mut u[j * n..][..n], ar, bt, ct, dv * xv, dacc[j]) + dch * xv;
            merged[j] += 1;
        }
    }
    for j in 0..cb {
        if st_pending(dacc[j]) {
            runs[j] += 1;
            apply_run(&mut hs[j * n..][..n], &mut u[j * n..][..n], io.ad(ch0 + j, n).0, dacc[j]);
        }
        stats[j] = ScanStats { updates: len as u64, merged: merged[j], runs: runs[j] };
    }
}

/// MRSS's running values over one block of `cb` channels: per channel the fastest decay
/// max|A| (a step is slow when Δ < τ; a run is applied once its ΣΔ·max|A| passes
/// [`MAX_RUN_DECAY`]), the open run's summed Δ and accumulated input u `[N]`, the counts, and
/// one step's index lists (16 spare places each: the AVX-512 sort stores whole vectors).
pub(super) struct MrssState {
    pub amax: Vec<f32>,
    pub dacc: Vec<f32>,
    pub u: Vec<f32>,
    pub merged: Vec<u64>,
    pub runs: Vec<u64>,
    pub close: Vec<u32>,
    pub fast: Vec<u32>,
    pub slow: Vec<u32>,
}

/// [`MrssState`] at the start of a scan (empty when `mrss` is false: the full scan needs
/// only the counts).
pub(super) fn mrss_state(io: &ScanIo, ch0: usize, cb: usize, n: usize, mrss: bool) -> MrssState {
    let m = if mrss { cb } else { 0 };
    MrssState {
        amax: (0..m).map(|j| io.ad(ch0 + j, n).0.iter().fold(0f32, |m, v| m.max(v.abs())).max(f32::MIN_POSITIVE)).collect(),
        dacc: vec![0f32; m],
        u: vec![0f32; m * n],
        merged: vec![0u64; cb],
        runs: vec![0u64; cb],
        close: vec![0u32; m + 16],
        fast: vec![0u32; m + 16],
        slow: vec![0u32; m + 16],
    }
}

/// One step's lists ([`mrss_block`]): the channels whose run ends now (open, and fast now or
/// past [`MAX_RUN_DECAY`] with this step), the fast ones and the slow ones; returns their
/// lengths. Each list has room for every channel. `wide`: the CPU has AVX-512F.
#[inline(always)]
pub(super) fn sort_step(dr: &[f32], dacc: &[f32], amax: &[f32], tau: f32, lists: [&mut [u32]; 3], wide: bool) -> [usize; 3] {
    let [close, fast, slow] = lists;
    let mut n = [0usize; 3];
    // Channels before `j0` were sorted 16 at a time.
    #[cfg(target_arch = "x86_64")]
    let j0 = if wide {
        // SAFETY: AVX-512F was detected (`wide`); the lists hold a place for every channel.
        unsafe { sort_step_avx512(dr, dacc, amax, tau, [&mut *close, &mut *fast, &mut *slow], &mut n) }
    } else {
        0
    };
    #[cfg(not(target_arch = "x86_64"))]
    let j0 = {
        let _ = wide;
        0
    };
    for j in j0..dr.len().min(dacc.len()).min(amax.len()) {
        let (dv, da) = (dr[j], dacc[j]);
        let is_slow = dv < tau;
        let ends = st_pending(da) & (!is_slow | ((da + dv) * amax[j] > MAX_RUN_DECAY));
        close[n[0]] = j as u32;
        n[0] += ends as usize;
        fast[n[1]] = j as u32;
        n[1] += !is_slow as usize;
        slow[n[2]] = j as u32;
        n[2] += is_slow as usize;
    }
    n
}

/// [`sort_step`] 16 channels at a time: the same three comparisons as masks (ordered, so a
/// NaN Δ is fast as in the scalar loop), each list appended by compressing the indices in a
/// register and storing the whole vector (a compressing store to memory is microcoded on
/// Zen 4: it made the sort cost more than the scan it sorts for). Returns the channels done
/// (whole groups of 16).
///
/// # Safety
/// The CPU has AVX-512F; each list has room for `dr.len()` indices past what `n` counts
/// (checked; nothing is sorted otherwise), and 16 places after the last of them.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sort_step_avx512(dr: &[f32], dacc: &[f32], amax: &[f32], tau: f32, lists: [&mut [u32]; 3], n: &mut [usize; 3]) -> usize {
    use std::arch::x86_64::*;
    let len = dr.len().min(dacc.len()).min(amax.len());
    let whole = len - len % 16;
    let [close, fast, slow] = lists;
    if close.len() < whole + 16 || fast.len() < whole + 16 || slow.len() < whole + 16 {
        return 0;
    }
    let (tau, zero, limit) = (_mm512_set1_ps(tau), _mm512_setzero_ps(), _mm512_set1_ps(MAX_RUN_DECAY));
    let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for j in (0..whole).step_by(16) {
        let (dv, da, am) = (_mm512_loadu_ps(dr.as_ptr().add(j)), _mm512_loadu_ps(dacc.as_ptr().add(j)), _mm512_loadu_ps(amax.as_ptr().add(j)));
        let is_slow = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(dv, tau);
        let pending = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(da, zero);
        let past = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_mul_ps(_mm512_add_ps(da, dv), am), limit);
        let idx = _mm512_add_epi32(_mm512_set1_epi32(j as i32), iota);
        for (list, count, mask) in [(&mut *close, 0, pending & (!is_slow | past)), (&mut *fast, 1, !is_slow), (&mut *slow, 2, is_slow)] {
            _mm512_storeu_si512(list.as_mut_ptr().add(n[count]) as *mut _, _mm512_maskz_compress_epi32(mask, idx));
            n[count] += mask.count_ones() as usize;
        }
    }
    whole
}
