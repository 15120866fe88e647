//! Linear layers and norms with HF's parameter names (`weight`, `bias`).

use crate::error::Result;
use crate::tensor::{Device, LinearWeight, Tensor};
use crate::weights::Scope;

/// LayerNorm with weight and bias.
pub struct LayerNorm {
    w: Tensor,
    b: Tensor,
    eps: f32,
}

impl LayerNorm {
    pub fn load(s: &Scope, d: usize, eps: f64, dev: &Device) -> Result<Self> {
        Ok(LayerNorm { w: s.get("weight", &[d], dev)?, b: s.get("bias", &[d], dev)?, eps: eps as f32 })
    }
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.layer_norm(&self.w, &self.b, self.eps)
    }
    fn parts(&self) -> (&Tensor, &Tensor, f32) {
        (&self.w, &self.b, self.eps)
    }
}

/// `y = x Wᵀ + b` with HF's `[out, in]` weight.
pub struct Linear {
    w: LinearWeight,
    b: Option<Tensor>,
}

impl Linear {
    pub fn new(w: LinearWeight, b: Option<Tensor>) -> Self {
        Linear { w, b }
    }
    pub fn load(s: &Scope, out: usize, inp: usize, bias: bool, dev: &Device) -> Result<Self> {
        let b = if bias { Some(s.get("bias", &[out], dev)?) } else { None };
        Ok(Linear { w: s.get_linear("weight", [out, inp], dev)?, b })
    }
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.w.forward(x, self.b.as_ref())
    }
    /// `act(x Wᵀ + b) + res` in one pass on the GPU ([`Tensor::linear_ex`]).
    pub fn forward_ex(&self, x: &Tensor, act: Option<crate::tensor::Activation>, res: Option<&Tensor>) -> Result<Tensor> {
        self.w.forward_ex(x, self.b.as_ref(), act, res)
    }
    /// `act(ln(x) Wᵀ + b) + res`: a pre-norm block's projection, the norm fused into the CPU
    /// product's input packing ([`LinearWeight::forward_normed`]).
    pub fn forward_normed(&self, x: &Tensor, ln: &LayerNorm, act: Option<crate::tensor::Activation>, res: Option<&Tensor>) -> Result<Tensor> {
        self.w.forward_normed(x, ln.parts(), self.b.as_ref(), act, res)
    }
    pub fn is_half(&self) -> bool {
        self.w.is_half()
    }
}

/// LayerNorm, then a linear layer: how every pre-norm block starts its attention (QKV) and its
/// MLP (fc1), in one pass over x on either backend. On the CPU the norm is applied while x is
/// packed for the product. On a GPU the norm's weight and bias are folded into the product at
/// load — `LN(x)·Wᵀ + b = x̂·(W·diag(γ))ᵀ + (b + W·β)` with `x̂` the row less its mean over its
/// std — so the kernel needs only each row's mean and variance, which it sums while it stages
/// the row ([`Tensor::linear_normed`]): no normalised copy of x, no pass of its own.
pub struct NormedLinear {
    inner: Normed,
}

enum Normed {
    Cpu { ln: LayerNorm, lin: Linear },
    Folded { w: LinearWeight, b: Tensor, colsum: Tensor, eps: f32 },
}

impl NormedLinear {
    /// `ln`: the LayerNorm's scope (`weight`, `bias` of `[inp]`); `w`, `b`: the linear
    /// layer's HF `[out, inp]` weight and its bias (zeros when it has none).
    pub fn new(ln: &Scope, w: Vec<f32>, [out, inp]: [usize; 2], b: Option<Vec<f32>>, eps: f64, dev: &Device) -> Result<Self> {
        let b = b.unwrap_or_else(|| vec![0.0; out]);
        if !matches!(dev, Device::Gpu(_)) {
            let lin = Linear::new(LinearWeight::new(w, [out, inp], dev)?, Some(Tensor::from_f32(b, &[out], dev)?));
            return Ok(NormedLinear { inner: Normed::Cpu { ln: LayerNorm::load(ln, inp, eps, dev)?, lin } });
        }
        let (g, beta) = (ln.get_f32("weight", &[inp])?, ln.get_f32("bias", &[inp])?);
        let mut wf = w;
        let (mut bf, mut colsum) = (Vec::with_capacity(out), Vec::with_capacity(out));
        for (row, &bj) in wf.chunks_exact_mut(inp.max(1)).zip(&b) {
            let mut bias = bj as f64;
            for ((v, &gk), &bk) in row.iter_mut().zip(&g).zip(&beta) {
                bias += *v as f64 * bk as f64;
                *v *= gk;
            }
            bf.push(bias as f32);
        }
        // The row sums of what the kernel multiplies by (f16- or int8-rounded where it stores so).
        for row in LinearWeight::stored_values(&wf, [out, inp], dev)?.chunks_exact(inp.max(1)) {
            colsum.push(row.iter().map(|&v| v as f64).sum::<f64>() as f32);
        }
        Ok(NormedLinear {
            inner: Normed::Folded {
                w: LinearWeight::new(wf, [out, inp], dev)?,
                b: Tensor::from_f32(bf, &[out], dev)?,
                colsum: Tensor::from_f32(colsum, &[out], dev)?,
                eps: eps as f32,
            },
        })
    }

    /// A LayerNorm (`ln`) and a linear layer with a bias (`lin`) from their scopes.
    pub fn load(ln: &Scope, lin: &Scope, out: usize, inp: usize, eps: f64, dev: &Device) -> Result<Self> {
        let (w, b) = (lin.get_f32("weight", &[out, inp])?, lin.get_f32("bias", &[out])?);
        Self::new(ln, w, [out, inp], Some(b), eps, dev)
    }

    /// `act(LN(x)·Wᵀ + b) + res`.
    pub fn forward(&self, x: &Tensor, act: Option<crate::tensor::Activation>, res: Option<&Tensor>) -> Result<Tensor> {
        match &self.inner {
            Normed::Cpu { ln, lin } => lin.forward_normed(x, ln, act, res),
            Normed::Folded { w, b, colsum, eps } => w.forward_folded(x, colsum, b, *eps, act, res),
        }
    }
}

/// RMSNorm (Qwen2, Mamba): `x / rms(x) · weight`, no bias.
pub struct RmsNorm {
    w: Tensor,
    eps: f32,
}

impl RmsNorm {
    pub fn load(s: &Scope, d: usize, eps: f32, dev: &Device) -> Result<Self> {
        Ok(RmsNorm { w: s.get("weight", &[d], dev)?, eps })
    }
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.rms_norm(&self.w, self.eps)
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::tensor::Activation;
    use crate::weights::{serialize_f32, Weights};

    fn vals(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i * 7919 + seed * 104729) % 2003) as f32 / 1001.5) - 1.0).collect()
    }

    /// erf (Abramowitz–Stegun 7.1.26 refined by one Newton step is not needed here: 1.5e-7).
    fn libm_erf(x: f64) -> f64 {
        let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
        let y = 1.0 - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t + 0.254_829_592) * t * (-x * x).exp();
        y.copysign(x)
    }

    /// The LayerNorm folded into the product (GPU) equals LayerNorm, then the product (CPU),
    /// on every kernel path: a few rows and K not a multiple of 4 or under 16 (the norm as a
    /// pass of its own), split K, one pass, f16 weights; rows with a mean far from zero (the
    /// shift keeps the row sums from cancelling) and a constant row (variance 0).
    #[test]
    fn folded_layer_norm_matches_norm_then_product() {
        let gpu = crate::tensor::gpu::test_context();
        use crate::tensor::gpu::{GpuContext, GpuWeights};
        let f16 = pollster::block_on(GpuContext::new_with(GpuWeights::F16)).expect("an f16-weight context on the test adapter");
        let int8 = pollster::block_on(GpuContext::new_with(GpuWeights::Int8)).expect("an int8-weight context on the test adapter");
        let cases = [
            (3usize, 768usize, 64usize, None, false),
            (197, 768, 2304, None, false),
            (197, 3072, 768, Some(Activation::QuickGelu), true),
            (700, 64, 130, Some(Activation::Gelu), true),
            (197, 18, 40, None, true),
            (70, 12, 9, Some(Activation::QuickGelu), false),
        ];
        for (ci, &(m, k, n, act, with_res)) in cases.iter().enumerate() {
            let mut xv = vals(m * k, 20 + ci);
            for (i, row) in xv.chunks_mut(k).enumerate() {
                match i % 4 {
                    1 => row.iter_mut().for_each(|v| *v = 40.0 + 3.0 * *v),
                    2 => row.iter_mut().for_each(|v| *v = -25.0 + 0.2 * *v),
                    3 if i == 3 => row.iter_mut().for_each(|v| *v = 7.0),
                    _ => {}
                }
            }
            let (wv, bv, rv) = (vals(n * k, 21).iter().map(|v| v * 0.05).collect::<Vec<_>>(), vals(n, 22), vals(m * n, 23));
            let (g, beta): (Vec<f32>, Vec<f32>) = (vals(k, 24).iter().map(|v| 1.0 + 0.5 * v).collect(), vals(k, 25).iter().map(|v| 0.1 * v).collect());
            let file = serialize_f32(&[("ln.weight".into(), vec![k], g.clone()), ("ln.bias".into(), vec![k], beta.clone())]);
            let w = Weights::from_bytes("ln", file).unwrap();
            let cpu = |v: &[f32], s: &[usize]| Tensor::from_f32(v.to_vec(), s, &Device::cpu()).unwrap();
            // The truth in f64: each row normalised (`(x − mean) / std`, then `affine` with γ and
            // β, or not when they are folded into `w` and `b`), the product with `w` plus `b`,
            // the epilogue.
            let truth = |w: &[f32], b: &[f64], affine: bool| -> Vec<f32> {
                xv.chunks(k)
                    .enumerate()
                    .flat_map(|(i, row)| {
                        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / k as f64;
                        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / k as f64;
                        let xn: Vec<f64> = row
                            .iter()
                            .zip(&g)
                            .zip(&beta)
                            .map(|((&v, &g), &bt)| {
                                let z = (v as f64 - mean) / (var + 1e-5).sqrt();
                                if affine {
                                    z * g as f64 + bt as f64
                                } else {
                                    z
                                }
                            })
                            .collect();
                        let rv = &rv;
                        (0..n).map(move |j| {
                            let y = b[j] + xn.iter().zip(&w[j * k..(j + 1) * k]).map(|(a, &w)| a * w as f64).sum::<f64>();
                            let y = match act {
                                Some(Activation::QuickGelu) => y / (1.0 + (-1.702 * y).exp()),
                                Some(Activation::Gelu) => 0.5 * y * (1.0 + libm_erf(y / std::f64::consts::SQRT_2)),
                                _ => y,
                            };
                            (y + if with_res { rv[i * n + j] as f64 } else { 0.0 }) as f32
                        })
                    })
                    .collect()
            };
            let want = truth(&wv, &bv.iter().map(|&b| b as f64).collect::<Vec<_>>(), true);
            let scale = want.iter().fold(1f32, |a, v| a.max(v.abs()));
            // f16 weights: with f16 math too on a wide device whose adapter has shader-f16
            // (lavapipe has it).
            for (ctx, wide) in [(&gpu, false), (&gpu, true), (&f16, false), (&f16, true)] {
                // Split K's reduce normalises on a wide device; one pass does it otherwise.
                ctx.set_wide(Some(wide));
                let f16w = ctx.weights == GpuWeights::F16;
                let tol = match (f16w, ctx.f16_math()) {
                    (false, _) => 2e-5f32,
                    (true, false) => 5e-4,
                    (true, true) => 2e-3,
                };
                let dev = Device::Gpu(ctx.clone());
                let nl = NormedLinear::new(&w.pp("ln"), wv.clone(), [n, k], Some(bv.clone()), 1e-5, &dev).unwrap();
                let r = with_res.then(|| Tensor::from_f32(rv.clone(), &[m, n], &dev).unwrap());
                let got = nl.forward(&Tensor::from_f32(xv.clone(), &[m, k], &dev).unwrap(), act, r.as_ref()).unwrap().to_vec_f32().unwrap();
                let d = crate::num::max_abs_diff(&got, &want) / scale;
                println!("folded LN [{m}, {k}] x [{n}, {k}], f16 weights {f16w} math {}, wide {wide}: max |Δ| / max |y| {d:e}", ctx.f16_math());
                assert!(d < tol, "folded LN [{m}, {k}] x [{n}, {k}] (f16 weights {f16w}): max |Δ| / max |y| {d} > {tol}");
            }
            // int8 weights (K a multiple of 4): the same within f32 rounding of the product with
            // the folded weight as stored, `q · scale` of W·diag(γ).
            if k % 4 == 0 {
                let dev = Device::Gpu(int8.clone());
                let folded: Vec<f32> = wv.chunks(k).flat_map(|row| row.iter().zip(&g).map(|(v, gk)| v * gk)).collect();
                let deq = LinearWeight::stored_values(&folded, [n, k], &dev).unwrap();
                assert!(deq != folded, "int8 storage rounds the weights");
                let folded_b: Vec<f64> =
                    (0..n).map(|j| bv[j] as f64 + wv[j * k..(j + 1) * k].iter().zip(&beta).map(|(&w, &b)| w as f64 * b as f64).sum::<f64>()).collect();
                let want8 = truth(&deq, &folded_b, false);
                for wide in [false, true] {
                    int8.set_wide(Some(wide));
                    let nl = NormedLinear::new(&w.pp("ln"), wv.clone(), [n, k], Some(bv.clone()), 1e-5, &dev).unwrap();
                    let r = with_res.then(|| Tensor::from_f32(rv.clone(), &[m, n], &dev).unwrap());
                    let got = nl.forward(&Tensor::from_f32(xv.clone(), &[m, k], &dev).unwrap(), act, r.as_ref()).unwrap().to_vec_f32().unwrap();
                    let d = crate::num::max_abs_diff(&got, &want8) / scale;
                    println!("folded LN [{m}, {k}] x [{n}, {k}], int8 weights, wide {wide}: max |Δ| / max |y| {d:e}");
                    assert!(d < 2e-5, "folded LN [{m}, {k}] x [{n}, {k}] (int8 weights, wide {wide}): max |Δ| / max |y| {d}");
                }
            }
            // On the CPU the pair is LayerNorm fused into the packing: the same numbers.
            let nl = NormedLinear::new(&w.pp("ln"), wv.clone(), [n, k], Some(bv.clone()), 1e-5, &Device::cpu()).unwrap();
            let got = nl.forward(&cpu(&xv, &[m, k]), act, with_res.then(|| cpu(&rv, &[m, n])).as_ref()).unwrap().to_vec_f32().unwrap();
            let d = crate::num::max_abs_diff(&got, &want) / scale;
            assert!(d < 1e-4, "CPU [{m}, {k}] x [{n}, {k}]: max |Δ| / max |y| {d}");
        }
    }
}
