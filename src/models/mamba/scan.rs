//! The selective scan (Mamba's SSM over time) and its causal depthwise convolution, on host
//! slices: the CPU backend's kernels, written once for prefill (L steps) and decoding (1 step).
//!
//! Shapes (row-major): `x`, `dt` `[B, L, C]` (channels C = intermediate size), `bm`, `cm`
//! `[B, L, N]`, `a` `[C, N]` (= −exp(A_log)), `d` `[C]`, state `h` `[B, C, N]`.
//!
//! Per channel c and step t: h ← exp(Δₜ·A) ⊙ h + Δₜ·Bₜ·xₜ;  yₜ = Cₜ·h + D·xₜ.
//!
//! **Multi-resolution scan (MRSS)**: with a threshold τ > 0, a run of consecutive steps whose
//! Δ < τ is not applied step by step. During the run the state is held at its value before
//! the run, h₀, plus an accumulated input u = Σ Δⱼ·Bⱼ·xⱼ, and the output reads
//! yₜ = Cₜ·(h₀ + u) + D·xₜ; when the run ends the state becomes exp((ΣΔ)·A) ⊙ h₀ + u, which is
//! exact for the decay (exp(Δ₁A)·exp(Δ₂A) = exp((Δ₁+Δ₂)A)) and, for the input term, drops the
//! decay between an input's step and the run's end (error O(ΣΔ·|A|) per merged input). The
//! N exponentials of every merged step are saved. τ = 0 never merges (Δ = softplus(·) > 0)
//! and runs exactly the full scan's code path.

use rayon::prelude::*;

/// A merged run is applied (one exact decay) once its accumulated Δ·max|A| passes this, so
/// the first-order hold inside a run stays accurate however long the slow stretch is.
pub const MAX_RUN_DECAY: f32 = 0.3;

/// x·sigmoid(x).
pub fn silu(v: f32) -> f32 {
    v / (1.0 + (-v).exp())
}

/// Index of the largest value (the first on ties).
pub fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0
}

/// What MRSS did in one scan.
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
    let ScanDims { batch, len, channels: c, state: n } = dims;
    let mut y = vec![0f32; batch * len * c];
    // One task per (batch, channel): each owns its state row and writes a strided column of y.
    let cols: Vec<(Vec<f32>, ScanStats)> = h
        .par_chunks_mut(n)
        .enumerate()
        .map(|(bc, hs)| {
            let (b, ch) = (bc / c, bc % c);
            let ar = &a[ch * n..(ch + 1) * n];
            // The fastest decay of this channel: a step is slow when Δ·max|A| < τ.
            let amax = ar.iter().fold(0f32, |m, v| m.max(v.abs())).max(f32::MIN_POSITIVE);
            let mut out = vec![0f32; len];
            let mut stats = ScanStats::default();
            let mut u = vec![0f32; n];
            let mut dacc = 0f32;
            let mut pending = false;
            for t in 0..len {
                let i = (b * len + t) * c + ch;
                let (xv, dv) = (x[i], dt[i]);
                let bt = &bm[(b * len + t) * n..(b * len + t + 1) * n];
                let ct = &cm[(b * len + t) * n..(b * len + t + 1) * n];
                stats.updates += 1;
                if dv < tau {
                    if pending && (dacc + dv) * amax > MAX_RUN_DECAY {
                        // The run has decayed enough that holding the state drifts: apply it.
                        stats.runs += 1;
                        for k in 0..n {
                            hs[k] = (dacc * ar[k]).exp() * hs[k] + u[k];
                            u[k] = 0.0;
                        }
                        dacc = 0.0;
                    }
                    // Merge: accumulate the input, hold the decay.
                    stats.merged += 1;
                    pending = true;
                    dacc += dv;
                    let dx = dv * xv;
                    let mut acc = 0f32;
                    for k in 0..n {
                        u[k] += dx * bt[k];
                        acc += ct[k] * (hs[k] * (1.0 + dacc * ar[k]) + u[k]);
                    }
                    out[t] = acc + d[ch] * xv;
                    continue;
                }
                if pending {
                    stats.runs += 1;
                    for k in 0..n {
                        hs[k] = (dacc * ar[k]).exp() * hs[k] + u[k];
                        u[k] = 0.0;
                    }
                    dacc = 0.0;
                    pending = false;
                }
                let dx = dv * xv;
                let mut acc = 0f32;
                for k in 0..n {
                    hs[k] = (dv * ar[k]).exp() * hs[k] + dx * bt[k];
                    acc += ct[k] * hs[k];
                }
                out[t] = acc + d[ch] * xv;
            }
            if pending {
                stats.runs += 1;
                for k in 0..n {
                    hs[k] = (dacc * ar[k]).exp() * hs[k] + u[k];
                }
            }
            (out, stats)
        })
        .collect();
    let mut stats = ScanStats::default();
    for (bc, (col, s)) in cols.into_iter().enumerate() {
        let (b, ch) = (bc / c, bc % c);
        for (t, v) in col.into_iter().enumerate() {
            y[(b * len + t) * c + ch] = v;
        }
        stats.add(s);
    }
    (y, stats)
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
mod tests {
    use super::*;

    fn vals(n: usize, s: u64) -> Vec<f32> {
        (0..n as u64).map(|i| ((i.wrapping_mul(2654435761).wrapping_add(s * 97) % 1000) as f32 / 500.0) - 1.0).collect()
    }

    /// Prefill in one call equals the same steps one at a time (state carried), and τ = 0
    /// equals the full scan bit for bit.
    #[test]
    fn steps_equal_one_pass_and_tau_zero_is_exact() {
        let dims = ScanDims { batch: 2, len: 9, channels: 5, state: 4 };
        let (b, l, c, n) = (dims.batch, dims.len, dims.channels, dims.state);
        let x = vals(b * l * c, 1);
        let dt: Vec<f32> = vals(b * l * c, 2).iter().map(|v| (v.abs() + 0.01) * 0.3).collect();
        let (bm, cm) = (vals(b * l * n, 3), vals(b * l * n, 4));
        let a: Vec<f32> = vals(c * n, 5).iter().map(|v| -(v.abs() + 0.1)).collect();
        let d = vals(c, 6);
        let mut h = vec![0f32; b * c * n];
        let (y, s) = selective_scan(dims, &x, &dt, &bm, &cm, &a, &d, &mut h, 0.0);
        assert_eq!(s.merged, 0);
        let mut h2 = vec![0f32; b * c * n];
        let mut y2 = vec![0f32; b * l * c];
        for t in 0..l {
            let pick = |v: &[f32], w: usize| (0..b).flat_map(|bi| v[(bi * l + t) * w..(bi * l + t + 1) * w].to_vec()).collect::<Vec<_>>();
            let one = ScanDims { len: 1, ..dims };
            let (yt, _) = selective_scan(one, &pick(&x, c), &pick(&dt, c), &pick(&bm, n), &pick(&cm, n), &a, &d, &mut h2, 0.0);
            for bi in 0..b {
                y2[(bi * l + t) * c..(bi * l + t + 1) * c].copy_from_slice(&yt[bi * c..(bi + 1) * c]);
            }
        }
        assert_eq!(y, y2);
        assert_eq!(h, h2);
        // MRSS merges some steps and stays close.
        let mut h3 = vec![0f32; b * c * n];
        let (y3, s3) = selective_scan(dims, &x, &dt, &bm, &cm, &a, &d, &mut h3, 0.1);
        assert!(s3.merged > 0 && s3.merged < s3.updates, "{s3:?}");
        let err = y.iter().zip(&y3).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
        assert!(err < 0.1, "MRSS error {err}");
    }

    #[test]
    fn conv_in_pieces_equals_conv_at_once() {
        let (b, l, c, k) = (2usize, 7usize, 3usize, 4usize);
        let x = vals(b * l * c, 7);
        let (w, bias) = (vals(c * k, 8), vals(c, 9));
        let mut st = vec![0f32; b * (k - 1) * c];
        let y = causal_conv1d(b, l, c, k, &x, &w, &bias, &mut st);
        // Direct definition: y[t] = bias + Σ_q w[q] · x[t - (K-1) + q] (zero before the start).
        for bi in 0..b {
            for t in 0..l {
                for ch in 0..c {
                    let mut want = bias[ch];
                    for q in 0..k {
                        let s = t as isize - (k as isize - 1) + q as isize;
                        if s >= 0 {
                            want += w[ch * k + q] * x[(bi * l + s as usize) * c + ch];
                        }
                    }
                    assert!((y[(bi * l + t) * c + ch] - want).abs() < 1e-6);
                }
            }
        }
        let mut st2 = vec![0f32; b * (k - 1) * c];
        let split = 3;
        let part = |from: usize, to: usize| (0..b).flat_map(|bi| x[(bi * l + from) * c..(bi * l + to) * c].to_vec()).collect::<Vec<_>>();
        let y1 = causal_conv1d(b, split, c, k, &part(0, split), &w, &bias, &mut st2);
        let y2 = causal_conv1d(b, l - split, c, k, &part(split, l), &w, &bias, &mut st2);
        for bi in 0..b {
            assert_eq!(&y[(bi * l) * c..(bi * l + split) * c], &y1[bi * split * c..(bi + 1) * split * c]);
            assert_eq!(&y[(bi * l + split) * c..(bi * l + l) * c], &y2[bi * (l - split) * c..(bi + 1) * (l - split) * c]);
        }
        assert_eq!(st, st2);
    }
}
