//! The CPU's selective scan and causal depthwise convolution on host slices, written once for
//! prefill (L steps) and decoding (1 step), with the multi-resolution (MRSS) merging of slow
//! runs; the seam's ops and the arithmetic are described in `tensor/ssm.rs`.

use super::simd::{exp, multiversion, threads};
use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
mod avx512;
mod mrss;
use mrss::mrss_block;

/// A merged run is applied (one exact decay) once its accumulated Δ·max|A| passes this, so
/// the first-order hold inside a run stays accurate however long the slow stretch is.
pub const MAX_RUN_DECAY: f32 = 0.3;

/// Microseconds the CPU scan kernel has run in this process (all calls, all threads' calls
/// summed by wall time of each call), so a benchmark can report the scan's share of a model.
static CPU_SCAN_US: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Milliseconds spent in the CPU selective scan kernel so far (every CPU scan, the op's and
/// [`selective_scan`]'s; GPU scans run asynchronously and are not counted).
pub fn cpu_scan_ms() -> f64 {
    CPU_SCAN_US.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e3
}

/// MRSS's counts over a scan.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct ScanStats {
    /// (channel, step) state updates in all.
    pub updates: u64,
    /// Of those, merged into a run instead of applied one by one.
    pub merged: u64,
    /// Runs applied (one exact decay each): merged − runs state updates were saved.
    pub runs: u64,
}

impl ScanStats {
    pub fn add(&mut self, o: ScanStats) {
        self.updates += o.updates;
        self.merged += o.merged;
        self.runs += o.runs;
    }

    /// Fraction of state updates (N exponentials each) saved: merged steps minus the one
    /// update each run still costs.
    pub fn saved_fraction(&self) -> f64 {
        if self.updates == 0 {
            0.0
        } else {
            self.merged.saturating_sub(self.runs) as f64 / self.updates as f64
        }
    }
    pub fn merged_fraction(&self) -> f64 {
        if self.updates == 0 {
            0.0
        } else {
            self.merged as f64 / self.updates as f64
        }
    }
}

/// Dimensions of one scan call.
#[derive(Clone, Copy, Debug)]
pub struct ScanDims {
    pub batch: usize,
    pub len: usize,
    pub channels: usize,
    pub state: usize,
}

/// Runs the scan over `len` steps from state `h` (updated in place) and returns `y` `[B, L, C]`.
#[allow(clippy::too_many_arguments)]
pub fn selective_scan(dims: ScanDims, x: &[f32], dt: &[f32], bm: &[f32], cm: &[f32], a: &[f32], d: &[f32], h: &mut [f32], tau: f32) -> (Vec<f32>, ScanStats) {
    let n = dims.state;
    let ad: Vec<f32> = a.chunks(n).zip(d).flat_map(|(r, &dv)| r.iter().copied().chain([dv])).collect();
    let io = ScanIo { x, dt, b: StepRows { data: bm, stride: n, off: 0 }, c: StepRows { data: cm, stride: n, off: 0 }, ad: &ad };
    let (y, cols) = selective_scan_cols(dims, &io, h, tau);
    let mut stats = ScanStats::default();
    cols.into_iter().for_each(|s| stats.add(s));
    (y, stats)
}

/// Per step N values in rows of `stride` starting at `off`: B and C read out of x_proj's
/// output rows as they are (no gather), or from arrays of their own (`stride` = N).
#[derive(Clone, Copy)]
struct StepRows<'a> {
    data: &'a [f32],
    stride: usize,
    off: usize,
}

impl StepRows<'_> {
    /// Whether step `row`'s N values are in the data.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn fits(&self, row: usize, n: usize) -> bool {
        row.checked_mul(self.stride).and_then(|v| v.checked_add(self.off + n)).is_some_and(|end| end <= self.data.len())
    }

    /// Step `row`'s N values.
    #[inline(always)]
    fn at(&self, row: usize, n: usize) -> &[f32] {
        &self.data[row * self.stride + self.off..][..n]
    }
}

/// The host inputs of one scan (shapes as in the module docs).
struct ScanIo<'a> {
    x: &'a [f32],
    dt: &'a [f32],
    b: StepRows<'a>,
    c: StepRows<'a>,
    /// `[C, N + 1]`: per channel the N decay rates A, then D.
    ad: &'a [f32],
}

impl ScanIo<'_> {
    /// Channel `ch`'s A (N values) and D.
    #[inline(always)]
    fn ad(&self, ch: usize, n: usize) -> (&[f32], f32) {
        let r = &self.ad[ch * (n + 1)..(ch + 1) * (n + 1)];
        (&r[..n], r[n])
    }
}

/// Below this many (step, channel, state) updates a scan runs on the calling thread: a
/// decoding step (1 × 1536 × 16 at mamba-130m) takes microseconds, less than a hand-off to
/// the pool.
const PARALLEL_MIN_WORK: usize = 1 << 16;

/// One task's work: channels `ch0..ch0 + hs.len() / N` of sequence `b`, all steps; writes
/// `out` `[L, block]` and each channel's counts. Time runs outermost, so the block's states
/// (and per step B and C, shared by every channel) stay in L1 while x and Δ are read row by
/// row; MRSS ([`mrss_block`]) walks time the same way.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn scan_block(io: &ScanIo, dims: ScanDims, b: usize, ch0: usize, hs: &mut [f32], out: &mut [f32], stats: &mut [ScanStats], tau: f32) {
    let ScanDims { len, channels: c, state: n, .. } = dims;
    let cb = hs.len() / n;
    let rows = |t: usize| {
        let row = b * len + t;
        (row, io.b.at(row, n), io.c.at(row, n))
    };
    if tau <= 0.0 {
        for t in 0..len {
            let (row, bt, ct) = rows(t);
            let (xr, dr) = (&io.x[row * c + ch0..][..cb], &io.dt[row * c + ch0..][..cb]);
            let yr = &mut out[t * cb..(t + 1) * cb];
            for j in 0..cb {
                let ((ar, dch), h) = (io.ad(ch0 + j, n), &mut hs[j * n..(j + 1) * n]);
                let (xv, dv) = (xr[j], dr[j]);
                yr[j] = full_step(h, ar, bt, ct, dv, dv * xv) + dch * xv;
            }
        }
        // τ = 0 never merges: the counts are the updates alone.
        stats.iter_mut().for_each(|s| s.updates += len as u64);
        return;
    }
    mrss_block(io, dims, rows, ch0, hs, out, stats, tau);
}

/// A run is open while its summed Δ is positive (Δ = softplus(·) > 0 for every merged step).
#[inline(always)]
fn st_pending(dacc: f32) -> bool {
    dacc > 0.0
}

/// h ← exp(Δ·A) ⊙ h + Δx·B; returns C·h. Eight lanes of partial sums so the loop vectorises
/// (the exponential is [`exp`](super::simd::exp), branch-free).
#[inline(always)]
fn full_step(h: &mut [f32], a: &[f32], b: &[f32], c: &[f32], dv: f32, dx: f32) -> f32 {
    if let (Ok(h), Some(a), Some(b), Some(c)) = (h.try_into(), as16(a), as16(b), as16(c)) {
        return full_step16(h, a, b, c, dv, dx);
    }
    let mut acc = [0f32; 8];
    let split = h.len() - h.len() % 8;
    let (h8, hr) = h.split_at_mut(split);
    for (((hk, ak), bk), ck) in h8.chunks_exact_mut(8).zip(a.chunks_exact(8)).zip(b.chunks_exact(8)).zip(c.chunks_exact(8)) {
        for l in 0..8 {
            hk[l] = exp(dv * ak[l]) * hk[l] + dx * bk[l];
            acc[l] += ck[l] * hk[l];
        }
    }
    let mut tail = 0f32;
    for (k, hk) in hr.iter_mut().enumerate() {
        *hk = exp(dv * a[split + k]) * *hk + dx * b[split + k];
        tail += c[split + k] * *hk;
    }
    hsum8(&acc) + tail
}

/// The sum of eight lanes as a tree (halves, quarters, pairs): three vector adds where a
/// left-to-right sum is a chain of seven scalar ones, once per channel and step.
#[inline(always)]
fn hsum8(v: &[f32; 8]) -> f32 {
    let q = [v[0] + v[4], v[1] + v[5], v[2] + v[6], v[3] + v[7]];
    let p = [q[0] + q[2], q[1] + q[3]];
    p[0] + p[1]
}

/// A merged step: u ← u + Δx·B; returns C·(h ⊙ (1 + ΣΔ·A) + u) (the held state, first-order
/// decay inside the run). No exponential; vectorised as [`full_step`].
#[inline(always)]
fn merged_step(h: &[f32], u: &mut [f32], a: &[f32], b: &[f32], c: &[f32], dx: f32, dacc: f32) -> f32 {
    if let (Some(h), Ok(u), Some(a), Some(b), Some(c)) = (as16(h), u.try_into(), as16(a), as16(b), as16(c)) {
        return merged_step16(h, u, a, b, c, dx, dacc);
    }
    let mut acc = [0f32; 8];
    let split = h.len() - h.len() % 8;
    let (u8, ur) = u.split_at_mut(split);
    for ((((uk, hk), ak), bk), ck) in u8.chunks_exact_mut(8).zip(h.chunks_exact(8)).zip(a.chunks_exact(8)).zip(b.chunks_exact(8)).zip(c.chunks_exact(8)) {
        for l in 0..8 {
            uk[l] += dx * bk[l];
            acc[l] += ck[l] * (hk[l] * (1.0 + dacc * ak[l]) + uk[l]);
        }
    }
    let mut tail = 0f32;
    for (k, uk) in ur.iter_mut().enumerate() {
        let k2 = split + k;
        *uk += dx * b[k2];
        tail += c[k2] * (h[k2] * (1.0 + dacc * a[k2]) + *uk);
    }
    hsum8(&acc) + tail
}

/// N = 16 (every released Mamba's state size): [`full_step`] on whole arrays, so the steps
/// compile to one 16-lane vector each instead of a loop of two 8-lane halves; the sums are
/// folded to eight lanes in the same order as the general loop's, so the results are its,
/// bit for bit.
#[inline(always)]
fn full_step16(h: &mut [f32; 16], a: &[f32; 16], b: &[f32; 16], c: &[f32; 16], dv: f32, dx: f32) -> f32 {
    let mut p = [0f32; 16];
    for l in 0..16 {
        h[l] = exp(dv * a[l]) * h[l] + dx * b[l];
        p[l] = c[l] * h[l];
    }
    fold16(&p)
}

/// [`merged_step`] for N = 16, as [`full_step16`].
#[inline(always)]
fn merged_step16(h: &[f32; 16], u: &mut [f32; 16], a: &[f32; 16], b: &[f32; 16], c: &[f32; 16], dx: f32, dacc: f32) -> f32 {
    let mut p = [0f32; 16];
    for l in 0..16 {
        u[l] += dx * b[l];
        p[l] = c[l] * (h[l] * (1.0 + dacc * a[l]) + u[l]);
    }
    fold16(&p)
}

/// The general loops' sum of 16 products: lane l gathers products l and l + 8 onto zero,
/// then [`hsum8`], then the (empty) tail's zero.
#[inline(always)]
fn fold16(p: &[f32; 16]) -> f32 {
    let mut acc = [0f32; 8];
    for l in 0..8 {
        acc[l] += p[l];
        acc[l] += p[l + 8];
    }
    hsum8(&acc) + 0.0
}

#[inline(always)]
fn as16(v: &[f32]) -> Option<&[f32; 16]> {
    v.try_into().ok()
}

/// Closes a run: h ← exp(ΣΔ·A) ⊙ h + u, u ← 0.
#[inline(always)]
fn apply_run(h: &mut [f32], u: &mut [f32], a: &[f32], dacc: f32) {
    for ((hk, uk), ak) in h.iter_mut().zip(u.iter_mut()).zip(a) {
        *hk = exp(dacc * ak) * *hk + *uk;
        *uk = 0.0;
    }
}

multiversion! {
    #[allow(clippy::too_many_arguments)]
    fn scan_block_portable(io: &ScanIo, dims: ScanDims, b: usize, ch0: usize, hs: &mut [f32], out: &mut [f32], stats: &mut [ScanStats], tau: f32) = scan_block;
}

/// One block: the AVX-512 kernel where it applies (N = 16 on a CPU with AVX-512F), else the
/// portable loops compiled for the CPU's vector width.
#[allow(clippy::too_many_arguments)]
fn scan_block_simd(io: &ScanIo, dims: ScanDims, b: usize, ch0: usize, hs: &mut [f32], out: &mut [f32], stats: &mut [ScanStats], tau: f32) {
    #[cfg(target_arch = "x86_64")]
    if avx512::block(io, dims, b, ch0, hs, out, stats, tau) {
        return;
    }
    scan_block_portable(io, dims, b, ch0, hs, out, stats, tau)
}

/// The scan reading B and C in place from x_proj's output rows (`stride` values a row, B at
/// `b_off`, C right after it) and A·D as `[C, N + 1]`: what the seam's op runs; per-channel
/// counts returned.
#[allow(clippy::too_many_arguments)]
pub(crate) fn scan_projected(
    dims: ScanDims,
    x: &[f32],
    dt: &[f32],
    proj: &[f32],
    stride: usize,
    b_off: usize,
    ad: &[f32],
    h: &mut [f32],
    tau: f32,
) -> (Vec<f32>, Vec<ScanStats>) {
    let n = dims.state;
    let (b, c) = (StepRows { data: proj, stride, off: b_off }, StepRows { data: proj, stride, off: b_off + n });
    selective_scan_cols(dims, &ScanIo { x, dt, b, c, ad }, h, tau)
}

/// [`selective_scan`] with the MRSS counts of each (sequence, channel), timed into
/// [`cpu_scan_ms`]. Channels are split into blocks, one task each (on the calling thread when
/// the work is small).
fn selective_scan_cols(dims: ScanDims, io: &ScanIo, h: &mut [f32], tau: f32) -> (Vec<f32>, Vec<ScanStats>) {
    let t0 = crate::clock::now_ms();
    let out = scan_blocks(dims, io, h, tau);
    CPU_SCAN_US.fetch_add(((crate::clock::now_ms() - t0) * 1e3) as u64, std::sync::atomic::Ordering::Relaxed);
    out
}

fn scan_blocks(dims: ScanDims, io: &ScanIo, h: &mut [f32], tau: f32) -> (Vec<f32>, Vec<ScanStats>) {
    let ScanDims { batch, len, channels: c, state: n } = dims;
    let mut y = vec![0f32; batch * len * c];
    let mut stats = vec![ScanStats::default(); batch * c];
    if batch * len * c * n < PARALLEL_MIN_WORK {
        let mut out = vec![0f32; len * c];
        for (b, (hb, sb)) in h.chunks_mut(c * n).zip(stats.chunks_mut(c)).enumerate() {
            scan_block_simd(io, dims, b, 0, hb, &mut out, sb, tau);
            for t in 0..len {
                y[(b * len + t) * c..][..c].copy_from_slice(&out[t * c..(t + 1) * c]);
            }
        }
        return (y, stats);
    }
    // One block per thread (multiples of 16 channels: the AVX-512 kernel's groups), none
    // crossing a sequence: long blocks keep MRSS's lists long (few part-filled groups of 16)
    // and measured 10 % faster than four blocks per thread for the full scan too (L = 1536,
    // 256 channels, Zen 4).
    let per_seq = threads().div_ceil(batch).max(1);
    let cb = c.div_ceil(per_seq).next_multiple_of(16).min(c);
    let blocks: Vec<(usize, usize, Vec<f32>)> = h
        .par_chunks_mut(c * n)
        .zip(stats.par_chunks_mut(c))
        .enumerate()
        .flat_map(|(b, (hb, sb))| {
            hb.par_chunks_mut(cb * n).zip(sb.par_chunks_mut(cb)).enumerate().map(move |(k, (hs, ss))| {
                let mut out = vec![0f32; len * (hs.len() / n)];
                scan_block_simd(io, dims, b, k * cb, hs, &mut out, ss, tau);
                (b, k * cb, out)
            })
        })
        .collect();
    for (b, ch0, out) in blocks {
        let w = out.len() / len;
        for t in 0..len {
            y[(b * len + t) * c + ch0..][..w].copy_from_slice(&out[t * w..(t + 1) * w]);
        }
    }
    (y, stats)
}

impl ScanStats {
    /// Sums the rows of the `[.., 3]` counts the scan op returns (updates, merged, runs).
    pub fn from_rows(v: &[f32]) -> ScanStats {
        let mut s = ScanStats::default();
        for r in v.chunks_exact(3) {
            s.add(ScanStats { updates: r[0] as u64, merged: r[1] as u64, runs: r[2] as u64 });
        }
        s
    }
}

/// Causal depthwise conv1d (kernel K, per-channel weights `w` `[C, K]`, bias `[C]`) over
/// `x` `[B, L, C]`, continuing from `state` `[B, K-1, C]` (the previous K-1 inputs, zeros at
/// the start), which is updated to the last K-1 inputs.
pub fn causal_conv1d(batch: usize, len: usize, c: usize, k: usize, x: &[f32], w: &[f32], bias: &[f32], state: &mut [f32]) -> Vec<f32> {
    let hist = k.saturating_sub(1);
    let mut y = vec![0f32; batch * len * c];
    for b in 0..batch {
        // The window: the previous K-1 inputs, then this call's inputs.
        let st = &mut state[b * hist * c..(b + 1) * hist * c];
        let xs = &x[b * len * c..(b + 1) * len * c];
        let at = |j: usize, ch: usize, st: &[f32]| if j < hist { st[j * c + ch] } else { xs[(j - hist) * c + ch] };
        for t in 0..len {
            for ch in 0..c {
                let mut acc = bias[ch];
                for q in 0..k {
                    acc += w[ch * k + q] * at(t + q, ch, st);
                }
                y[(b * len + t) * c + ch] = acc;
            }
        }
        let total = hist + len;
        let mut next = vec![0f32; hist * c];
        for j in 0..hist {
            for ch in 0..c {
                next[j * c + ch] = at(total - hist + j, ch, st);
            }
        }
        st.copy_from_slice(&next);
    }
    y
}

#[cfg(test)]
mod tests;
