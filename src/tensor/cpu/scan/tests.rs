//! The CPU scan's own checks: prefill = steps, τ = 0 exact, the MRSS lists = the per-channel
//! walk, the 16-state steps = the general loop, the convolution in pieces.

use super::*;

fn vals(n: usize, s: u64) -> Vec<f32> {
    (0..n as u64).map(|i| ((i.wrapping_mul(2654435761).wrapping_add(s * 97) % 1000) as f32 / 500.0) - 1.0).collect()
}

/// Prefill in one call equals the same steps one at a time (state carried), and τ = 0
/// equals the full scan bit for bit.
#[test]
fn steps_equal_one_pass_and_tau_zero_is_exact() {
    for state in [4, 16] {
        steps_equal_one_pass(ScanDims { batch: 2, len: 9, channels: 5, state });
    }
}

fn steps_equal_one_pass(dims: ScanDims) {
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
    let err = crate::num::max_abs_diff(&y, &y3);
    assert!(err < 0.1, "MRSS error {err}");
}

/// The 16-state steps equal the general loop bit for bit (same products, same sum order).
#[test]
fn sixteen_state_steps_equal_the_general_loop() {
    let v = |s: u64| -> [f32; 16] { vals(16, s).try_into().unwrap() };
    let (a, b, c) = (v(1).map(|x| -(x.abs() + 0.05) * 3.0), v(2), v(3));
    for (k, &(dv, dx, dacc)) in [(0.01f32, 0.3f32, 0.02f32), (0.7, -1.1, 0.2), (1e-6, 4.0, 0.0), (3.0, 0.0, 1.5)].iter().enumerate() {
        let (mut h16, mut h) = (v(10 + k as u64), v(10 + k as u64));
        // The general loop on a 17-value state's first 16 (one 8-lane pair + a tail of
        // one would differ; 16 = two whole chunks is the loop's own path).
        let y16 = full_step16(&mut h16, &a, &b, &c, dv, dx);
        let y = {
            let mut acc = [0f32; 8];
            for (((hk, ak), bk), ck) in h.chunks_exact_mut(8).zip(a.chunks_exact(8)).zip(b.chunks_exact(8)).zip(c.chunks_exact(8)) {
                for l in 0..8 {
                    hk[l] = exp(dv * ak[l]) * hk[l] + dx * bk[l];
                    acc[l] += ck[l] * hk[l];
                }
            }
            hsum8(&acc) + 0.0
        };
        assert_eq!((y16.to_bits(), h16.map(f32::to_bits)), (y.to_bits(), h.map(f32::to_bits)));
        let (mut u16, mut u) = (v(20 + k as u64), v(20 + k as u64));
        let m16 = merged_step16(&h16, &mut u16, &a, &b, &c, dx, dacc);
        let m = {
            let mut acc = [0f32; 8];
            for ((((uk, hk), ak), bk), ck) in u.chunks_exact_mut(8).zip(h.chunks_exact(8)).zip(a.chunks_exact(8)).zip(b.chunks_exact(8)).zip(c.chunks_exact(8))
            {
                for l in 0..8 {
                    uk[l] += dx * bk[l];
                    acc[l] += ck[l] * (hk[l] * (1.0 + dacc * ak[l]) + uk[l]);
                }
            }
            hsum8(&acc) + 0.0
        };
        assert_eq!((m16.to_bits(), u16.map(f32::to_bits)), (m.to_bits(), u.map(f32::to_bits)));
    }
}

/// One channel's full step, merged step and run closing (the portable functions, or the
/// AVX-512 kernel's with the same signatures).
pub(super) struct Steps {
    pub full: fn(&mut [f32], &[f32], &[f32], &[f32], f32, f32) -> f32,
    pub merged: fn(&[f32], &mut [f32], &[f32], &[f32], &[f32], f32, f32) -> f32,
    pub apply: fn(&mut [f32], &mut [f32], &[f32], f32),
}

/// The portable steps.
const PORTABLE: Steps = Steps { full: full_step, merged: merged_step, apply: apply_run };

/// One channel walked through time (MRSS's definition, step by step; τ ≤ 0: the full scan),
/// `ad` = A then D: with the AVX-512 kernel's steps where the scan uses it (N = 16 on a CPU
/// with AVX-512F), else the portable ones. Returns the counts.
#[allow(clippy::too_many_arguments)]
fn walk(x: &[f32], dt: &[f32], bm: &[f32], cm: &[f32], ad: &[f32], h: &mut [f32], y: &mut [f32], tau: f32) -> ScanStats {
    #[cfg(target_arch = "x86_64")]
    if h.len() == avx512::N {
        if let Some(steps) = avx512::steps() {
            return walk_with(&steps, x, dt, bm, cm, ad, h, y, tau);
        }
    }
    walk_with(&PORTABLE, x, dt, bm, cm, ad, h, y, tau)
}

/// [`walk`] with the given steps.
#[allow(clippy::too_many_arguments)]
fn walk_with(s: &Steps, x: &[f32], dt: &[f32], bm: &[f32], cm: &[f32], ad: &[f32], h: &mut [f32], y: &mut [f32], tau: f32) -> ScanStats {
    let n = h.len();
    let (ar, dch) = (&ad[..n], ad[n]);
    let amax = ar.iter().fold(0f32, |m, v| m.max(v.abs())).max(f32::MIN_POSITIVE);
    let (mut u, mut dacc, mut st) = (vec![0f32; n], 0f32, ScanStats::default());
    for t in 0..x.len() {
        let (bt, ct, xv, dv) = (&bm[t * n..][..n], &cm[t * n..][..n], x[t], dt[t]);
        st.updates += 1;
        if tau > 0.0 && dacc > 0.0 && (dv >= tau || (dacc + dv) * amax > MAX_RUN_DECAY) {
            (s.apply)(h, &mut u, ar, dacc);
            (dacc, st.runs) = (0.0, st.runs + 1);
        }
        y[t] = if tau > 0.0 && dv < tau {
            dacc += dv;
            st.merged += 1;
            (s.merged)(h, &mut u, ar, bt, ct, dv * xv, dacc)
        } else {
            (s.full)(h, ar, bt, ct, dv, dv * xv)
        } + dch * xv;
    }
    if dacc > 0.0 {
        (s.apply)(h, &mut u, ar, dacc);
        st.runs += 1;
    }
    st
}

/// MRSS time outermost (the per-step lists) equals MRSS walking each channel through time
/// (its definition, step by step) bit for bit: outputs, states and counts, with N = 16 and
/// an odd N, in one block and split over the pool; and the full scan (τ = 0) likewise.
#[test]
fn mrss_lists_equal_each_channel_walked_through_time() {
    for (l, c, n) in [(40usize, 7usize, 5usize), (64, 80, 16), (33, 24, 16)] {
        let dims = ScanDims { batch: 2, len: l, channels: c, state: n };
        let x = vals(2 * l * c, 1);
        // Δ in slow and fast stretches per channel, so runs open, overflow and close.
        let dt: Vec<f32> =
            vals(2 * l * c, 2).iter().enumerate().map(|(i, v)| (v.abs() + 0.001) * if (i / c / 5 + i % c) % 3 == 0 { 0.6 } else { 0.05 }).collect();
        let (bm, cm) = (vals(2 * l * n, 3), vals(2 * l * n, 4));
        let a: Vec<f32> = vals(c * n, 5).iter().map(|v| -(v.abs() + 0.1) * 4.0).collect();
        let d = vals(c, 6);
        let tau = 0.1;
        let mut h = vec![0.01f32; 2 * c * n];
        let (y, _) = selective_scan(dims, &x, &dt, &bm, &cm, &a, &d, &mut h, tau);
        let (mut h2, mut y2, mut st2) = (vec![0.01f32; 2 * c * n], vec![0f32; 2 * l * c], ScanStats::default());
        for bi in 0..2 {
            for ch in 0..c {
                let rows =
                    |v: &[f32], w: usize, k: usize| (0..l).flat_map(|t| v[(bi * l + t) * w + k..][..if w == n { n } else { 1 }].to_vec()).collect::<Vec<f32>>();
                let (xs, ds, bs, cs) = (rows(&x, c, ch), rows(&dt, c, ch), rows(&bm, n, 0), rows(&cm, n, 0));
                let ad: Vec<f32> = a[ch * n..(ch + 1) * n].iter().copied().chain([d[ch]]).collect();
                let mut yc = vec![0f32; l];
                let s = walk(&xs, &ds, &bs, &cs, &ad, &mut h2[(bi * c + ch) * n..][..n], &mut yc, tau);
                st2.add(s);
                for t in 0..l {
                    y2[(bi * l + t) * c + ch] = yc[t];
                }
            }
        }
        let mut st = ScanStats::default();
        let mut h3 = vec![0.01f32; 2 * c * n];
        let (y3, s3) = selective_scan(dims, &x, &dt, &bm, &cm, &a, &d, &mut h3, tau);
        st.add(s3);
        assert!(st.merged > 0 && st.runs > 0 && st.merged < st.updates, "{st:?}");
        assert_eq!((st.updates, st.merged, st.runs), (st2.updates, st2.merged, st2.runs));
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert!(y.iter().chain(&h).all(|v| v.is_finite()), "non-finite values at {l}x{c}x{n}");
        assert_eq!(bits(&y), bits(&y2), "y at {l}x{c}x{n}");
        assert_eq!(bits(&y3), bits(&y2));
        assert_eq!(bits(&h), bits(&h2), "state at {l}x{c}x{n}");
        // The full scan: the same walk at τ = 0.
        let (mut h4, mut h5) = (vec![0.01f32; 2 * c * n], vec![0.01f32; 2 * c * n]);
        let (y4, _) = selective_scan(dims, &x, &dt, &bm, &cm, &a, &d, &mut h4, 0.0);
        for bi in 0..2 {
            for ch in 0..c {
                let rows =
                    |v: &[f32], w: usize, k: usize| (0..l).flat_map(|t| v[(bi * l + t) * w + k..][..if w == n { n } else { 1 }].to_vec()).collect::<Vec<f32>>();
                let ad: Vec<f32> = a[ch * n..(ch + 1) * n].iter().copied().chain([d[ch]]).collect();
                let mut yc = vec![0f32; l];
                walk(&rows(&x, c, ch), &rows(&dt, c, ch), &rows(&bm, n, 0), &rows(&cm, n, 0), &ad, &mut h5[(bi * c + ch) * n..][..n], &mut yc, 0.0);
                let got: Vec<f32> = (0..l).map(|t| y4[(bi * l + t) * c + ch]).collect();
                assert_eq!(bits(&got), bits(&yc), "full scan y of channel {ch} at {l}x{c}x{n}");
            }
        }
        assert_eq!(bits(&h4), bits(&h5), "full scan state at {l}x{c}x{n}");
    }
}

/// Whichever kernel runs (AVX-512 for N = 16 where the CPU has it), the scan computes the
/// portable steps' values: outputs and states within f32 rounding of fused multiply-adds and
/// another summation order, the same counts, with MRSS and without.
#[test]
fn the_scan_equals_the_portable_steps() {
    let (l, c, n) = (70usize, 40usize, 16usize);
    let dims = ScanDims { batch: 1, len: l, channels: c, state: n };
    let x = vals(l * c, 11);
    let dt: Vec<f32> = vals(l * c, 12).iter().enumerate().map(|(i, v)| (v.abs() + 0.001) * if (i / c / 7 + i % c) % 3 == 0 { 0.8 } else { 0.04 }).collect();
    let (bm, cm) = (vals(l * n, 13), vals(l * n, 14));
    let a: Vec<f32> = vals(c * n, 15).iter().map(|v| -(v.abs() + 0.1) * 4.0).collect();
    let d = vals(c, 16);
    for tau in [0.0f32, 0.1] {
        let mut h = vec![0.02f32; c * n];
        let (y, st) = selective_scan(dims, &x, &dt, &bm, &cm, &a, &d, &mut h, tau);
        let (mut h2, mut y2, mut st2) = (vec![0.02f32; c * n], vec![0f32; l * c], ScanStats::default());
        for ch in 0..c {
            let col = |v: &[f32]| (0..l).map(|t| v[t * c + ch]).collect::<Vec<f32>>();
            let ad: Vec<f32> = a[ch * n..(ch + 1) * n].iter().copied().chain([d[ch]]).collect();
            let mut yc = vec![0f32; l];
            st2.add(walk_with(&PORTABLE, &col(&x), &col(&dt), &bm, &cm, &ad, &mut h2[ch * n..][..n], &mut yc, tau));
            for t in 0..l {
                y2[t * c + ch] = yc[t];
            }
        }
        assert_eq!((st.updates, st.merged, st.runs), (st2.updates, st2.merged, st2.runs), "τ = {tau}");
        let scale = y2.iter().chain(&h2).fold(0f32, |m, v| m.max(v.abs()));
        let err = crate::num::max_abs_diff(&y, &y2).max(crate::num::max_abs_diff(&h, &h2));
        assert!(err <= 2e-6 * scale.max(1.0), "τ = {tau}: max |Δ| {err} (values up to {scale})");
    }
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
