//! The selective scan (Mamba's SSM over time) and its causal depthwise convolution: the
//! seam's ops ([`Tensor::selective_scan`], [`Tensor::causal_conv1d`]) and the CPU backend's
//! kernels on host slices, written once for prefill (L steps) and decoding (1 step). The GPU
//! kernels (`gpu/ssm_*.wgsl`) do the same arithmetic.
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

use super::cpu::{scan, with_f32};
use super::{gpu, Tensor};
use crate::error::{Error, Result};

pub use super::cpu::scan::{causal_conv1d, cpu_scan_ms, selective_scan, ScanDims, ScanStats, MAX_RUN_DECAY};

/// registers, so it has a bound); an error names the limit.
pub fn check_state_size(device: &super::Device, n: usize) -> Result<()> {
    if matches!(device, super::Device::Gpu(_)) && n > gpu::ssm::MAX_STATE {
        return Err(Error::Device(format!("state_size {n}: the GPU scan holds at most {} state values per channel", gpu::ssm::MAX_STATE)));
    }
    Ok(())
}

/// What MRSS did in one scan.
/// The selective scan's inputs on the seam, laid out as the projections produce them.
pub struct ScanInputs<'a> {
    /// `[B, L, C]`: the conv's output after SiLU.
    pub x: &'a Tensor,
    /// `[B, L, C]`: Δ, after softplus.
    pub dt: &'a Tensor,
    /// `[B, L, S]`: x_proj's output; B is at `b_off..b_off + N` of each row and C follows it.
    pub proj: &'a Tensor,
    pub b_off: usize,
    /// `[C, N + 1]`: per channel the N decay rates A (= −exp(A_log)), then D.
    pub ad: &'a Tensor,
    /// `[B, C, N]`: the state before this call.
    pub h: &'a Tensor,
}

fn host(t: &candle_core::Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

fn cpu(data: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
    Ok(Tensor::Cpu(candle_core::Tensor::from_vec(data, shape, &candle_core::Device::Cpu)?))
}

impl Tensor {
    /// Causal depthwise conv1d over time of `self` `[B, L, C]` (weights `w` `[C, K]`, `bias`
    /// `[C]`), continuing from `state` `[B, K−1, C]` (the previous K−1 inputs; zeros at the
    /// start), then `act` if given (on the GPU in the same dispatch). Returns
    /// `(y [B, L, C], next state)`.
    pub fn causal_conv1d(&self, state: &Tensor, w: &Tensor, bias: &Tensor, act: Option<super::Activation>) -> Result<(Tensor, Tensor)> {
        let (xs, ss, ws) = (self.shape(), state.shape(), w.shape());
        let (&[b, len, c], &[c2, k]) = (&xs[..], &ws[..]) else {
            return Err(Error::arg(format!("causal_conv1d: input {xs:?}, weight {ws:?}")));
        };
        if k == 0 || c2 != c || ss != [b, k - 1, c] || bias.shape() != [c] {
            return Err(Error::arg(format!("causal_conv1d: input {xs:?}, state {ss:?}, weight {ws:?}, bias {:?} do not agree", bias.shape())));
        }
        let act_on = |y: Tensor| match act {
            Some(a) => y.act(a),
            None => Ok(y),
        };
        match (self, state, w, bias) {
            (Tensor::Cpu(x), Tensor::Cpu(s), Tensor::Cpu(w), Tensor::Cpu(bias)) => {
                let mut st = host(s)?;
                let y = causal_conv1d(b, len, c, k, &host(x)?, &host(w)?, &host(bias)?, &mut st);
                Ok((act_on(cpu(y, &[b, len, c])?)?, cpu(st, &ss)?))
            }
            (Tensor::Gpu(ctx, gx), Tensor::Gpu(_, gs), Tensor::Gpu(_, gw), Tensor::Gpu(_, gb)) => {
                if k == 1 {
                    return Ok((act_on(self.mul(&w.reshape(&[c])?)?.add(bias)?)?, state.clone()));
                }
                let code = act.map_or(0, gpu::elementwise::act_code);
                let (y, next) = gpu::ssm::conv1d(ctx, gs, gx, gw, gb, code)?;
                Ok((Tensor::Gpu(ctx.clone(), y), Tensor::Gpu(ctx.clone(), next)))
            }
            _ => Err(super::mixed()),
        }
    }

    /// The selective scan over `L` steps from state `s.h`, with MRSS threshold `tau`
    /// (0 = the full scan). Returns `(y [B, L, C], next state [B, C, N], counts [B·C, 3])`,
    /// the counts being (updates, merged, runs) per sequence and channel
    /// ([`ScanStats::from_rows`]).
    pub fn selective_scan(s: &ScanInputs, tau: f32) -> Result<(Tensor, Tensor, Tensor)> {
        if !(tau >= 0.0) {
            return Err(Error::arg(format!("MRSS threshold tau must be ≥ 0, got {tau}")));
        }
        let (xs, ads, ps) = (s.x.shape(), s.ad.shape(), s.proj.shape());
        let (&[b, len, c], &[c2, n1]) = (&xs[..], &ads[..]) else {
            return Err(Error::arg(format!("selective_scan: x {xs:?}, A·D {ads:?}")));
        };
        let n = n1.saturating_sub(1);
        let stride = ps.last().copied().unwrap_or(0);
        if c2 != c || n == 0 || s.dt.shape() != xs || s.h.shape() != [b, c, n] || ps.iter().product::<usize>() != b * len * stride || s.b_off + 2 * n > stride {
            return Err(Error::arg(format!(
                "selective_scan: x {xs:?}, dt {:?}, proj {ps:?} (B at {}), A·D {ads:?}, state {:?} do not agree",
                s.dt.shape(),
                s.b_off,
                s.h.shape()
            )));
        }
        match (s.x, s.dt, s.proj, s.ad, s.h) {
            (Tensor::Cpu(x), Tensor::Cpu(dt), Tensor::Cpu(p), Tensor::Cpu(ad), Tensor::Cpu(h)) => {
                let mut h = host(h)?;
                let dims = ScanDims { batch: b, len, channels: c, state: n };
                // The inputs read where they are (no copies); the state is copied once, as the output.
                let (y, cols) = with_f32(x, "scan x", |x| {
                    with_f32(dt, "scan dt", |dt| {
                        with_f32(p, "scan B·C", |p| with_f32(ad, "scan A·D", |ad| Ok(scan::scan_projected(dims, x, dt, p, stride, s.b_off, ad, &mut h, tau))))
                    })
                })?;
                let counts = cols.iter().flat_map(|s| [s.updates as f32, s.merged as f32, s.runs as f32]).collect();
                Ok((cpu(y, &xs)?, cpu(h, &[b, c, n])?, cpu(counts, &[b * c, 3])?))
            }
            (Tensor::Gpu(ctx, x), Tensor::Gpu(_, dt), Tensor::Gpu(_, proj), Tensor::Gpu(_, ad), Tensor::Gpu(_, h)) => {
                let (y, h, st) = gpu::ssm::scan(ctx, &gpu::ssm::ScanArgs { x, dt, proj, b_off: s.b_off, ad, h, tau, max_run: MAX_RUN_DECAY })?;
                Ok((Tensor::Gpu(ctx.clone(), y), Tensor::Gpu(ctx.clone(), h), Tensor::Gpu(ctx.clone(), st)))
            }
            _ => Err(super::mixed()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    fn vals(n: usize, s: u64) -> Vec<f32> {
        (0..n as u64).map(|i| ((i.wrapping_mul(2654435761).wrapping_add(s * 97) % 1000) as f32 / 500.0) - 1.0).collect()
    }

    #[test]
    fn bad_shapes_are_errors() {
        use crate::tensor::Device;
        let t = |v: Vec<f32>, s: &[usize]| Tensor::from_f32(v, s, &Device::cpu()).unwrap();
        let (x, bias) = (t(vec![0.0; 6], &[1, 2, 3]), t(vec![0.0; 3], &[3]));
        let e = x.causal_conv1d(&t(vec![], &[1, 0, 3]), &t(vec![], &[3, 0]), &bias, None).unwrap_err().to_string();
        assert!(e.contains("causal_conv1d"), "{e}");
        let e = x.causal_conv1d(&t(vec![0.0; 6], &[1, 2, 3]), &t(vec![0.0; 12], &[3, 4]), &bias, None).unwrap_err().to_string();
        assert!(e.contains("state [1, 2, 3]"), "{e}");
        let h = t(vec![0.0; 12], &[1, 3, 4]);
        let ad = t(vec![0.0; 15], &[3, 5]);
        let scan = ScanInputs { x: &x, dt: &x, proj: &t(vec![0.0; 2 * 8], &[1, 2, 8]), b_off: 1, ad: &ad, h: &h };
        let e = Tensor::selective_scan(&scan, 0.0).unwrap_err().to_string();
        assert!(e.contains("proj"), "{e}");
        assert!(Tensor::selective_scan(&ScanInputs { b_off: 0, ..scan }, -1.0).unwrap_err().to_string().contains("tau"));
    }

    /// A sequence longer than one GPU time window (`gpu::ssm::time_window`) gives the CPU's
    /// outputs and state on the GPU: the windows carry the state (τ = 0 is exact up to
    /// rounding).
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn gpu_scan_over_several_time_windows_matches_cpu() {
        use crate::tensor::Device;
        let Ok(gpu) = Device::gpu() else { panic!("a GPU adapter (scripts/setup.sh installs mesa-vulkan-drivers)") };
        // 4217 steps: over 65535 loop iterations in one invocation without the windows.
        let (b, l, c, n) = (1usize, 7 * crate::tensor::gpu::ssm::time_window(16) + 17, 8usize, 16usize);
        let stride = 2 * n + 3;
        let x = vals(b * l * c, 1);
        let dt: Vec<f32> = vals(b * l * c, 2).iter().map(|v| (v.abs() + 0.01) * 0.3).collect();
        let proj = vals(b * l * stride, 3);
        let ad: Vec<f32> = vals(c * (n + 1), 5).iter().enumerate().map(|(i, v)| if i % (n + 1) == n { *v } else { -(v.abs() + 0.1) }).collect();
        let run = |dev: &Device| {
            let t = |v: &[f32], s: &[usize]| Tensor::from_f32(v.to_vec(), s, dev).unwrap();
            let (x, dt, proj, ad, h) =
                (t(&x, &[b, l, c]), t(&dt, &[b, l, c]), t(&proj, &[b, l, stride]), t(&ad, &[c, n + 1]), t(&vec![0.0; b * c * n], &[b, c, n]));
            let (y, h, st) = Tensor::selective_scan(&ScanInputs { x: &x, dt: &dt, proj: &proj, b_off: 3, ad: &ad, h: &h }, 0.0).unwrap();
            (y.to_vec_f32().unwrap(), h.to_vec_f32().unwrap(), st.to_vec_f32().unwrap())
        };
        let (yc, hc, sc) = run(&Device::cpu());
        let (yg, hg, sg) = run(&gpu);
        let d = crate::num::max_abs_diff;
        assert!(d(&yc, &yg) < 1e-4 && d(&hc, &hg) < 1e-4, "y {} h {}", d(&yc, &yg), d(&hc, &hg));
        assert_eq!(sc.chunks(3).map(|r| r[0]).collect::<Vec<_>>(), sg.chunks(3).map(|r| r[0]).collect::<Vec<_>>(), "updates per channel");
    }

    /// The GPU's one-dispatch conv (state and input read in place, the next state and SiLU in
    /// the same dispatch) gives the CPU's outputs and next state: prefill and one-step decode,
    /// with and without the activation, and a kernel of one tap (no state).
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn gpu_conv_matches_cpu() {
        use crate::tensor::{Activation, Device};
        let Ok(gpu) = Device::gpu() else { panic!("a GPU adapter (scripts/setup.sh installs mesa-vulkan-drivers)") };
        for &(b, l, c, k) in &[(2usize, 7usize, 5usize, 4usize), (1, 1, 9, 4), (2, 3, 4, 1), (1, 2, 3, 5)] {
            for act in [None, Some(Activation::Silu)] {
                let run = |dev: &Device| {
                    let t = |v: Vec<f32>, s: &[usize]| Tensor::from_f32(v, s, dev).unwrap();
                    let x = t(vals(b * l * c, 1), &[b, l, c]);
                    let st = t(vals(b * (k - 1) * c, 2), &[b, k - 1, c]);
                    let (y, next) = x.causal_conv1d(&st, &t(vals(c * k, 3), &[c, k]), &t(vals(c, 4), &[c]), act).unwrap();
                    (y.to_vec_f32().unwrap(), next.to_vec_f32().unwrap(), next.shape())
                };
                let (yc, nc, sc) = run(&Device::cpu());
                let (yg, ng, sg) = run(&gpu);
                let d = crate::num::max_abs_diff;
                assert_eq!(sc, sg);
                assert!(d(&yc, &yg) < 1e-5 && d(&nc, &ng) == 0.0, "b{b} l{l} c{c} k{k} {act:?}: y {} state {}", d(&yc, &yg), d(&nc, &ng));
            }
        }
    }
}
