//! `effarch bench mamba`: prefill time and per-token decode time against sequence length N
//! for one Mamba block and one attention block of the same width (mamba-130m's: d = 768),
//! with random weights, in one process, and the fitted exponent of each curve
//! (time ∝ N^e: expect e ≈ 1 vs ≈ 2 for prefill, ≈ 0 vs ≈ 1 for decode).

use super::{median, random_values, WEIGHT_SCALE};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::models::mamba::{Logits, MambaConfig, MambaLM};
use crate::models::nn::{EncoderLayer, KvCache, LayerDims};
use crate::tensor::{Activation, Device, Tensor};
use crate::weights::{serialize_f32, Weights};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct MambaBenchRow {
    pub n: usize,
    pub mamba_prefill_ms: f64,
    pub attn_prefill_ms: f64,
    /// Per generated token, with N tokens of context.
    pub mamba_decode_ms: f64,
    pub attn_decode_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Exponents {
    pub mamba_prefill: f64,
    pub attn_prefill: f64,
    pub mamba_decode: f64,
    pub attn_decode: f64,
}

#[derive(Clone, Debug)]
pub struct MambaBenchSpec {
    pub ns: Vec<usize>,
    pub iters: usize,
    /// Decode steps timed per N (median per token).
    pub steps: usize,
    pub hidden: usize,
}

impl Default for MambaBenchSpec {
    fn default() -> Self {
        MambaBenchSpec { ns: vec![256, 512, 1024, 2048, 4096, 8192], iters: 3, steps: 8, hidden: 768 }
    }
}

/// One Mamba layer of width `hidden` (mamba-130m's shapes at 768) with random weights.
pub fn random_mamba_block(hidden: usize, device: &Device) -> Result<MambaLM> {
    random_mamba(1, hidden, 256, device)
}

/// mamba-130m's widths and depth (24 layers of 768, vocabulary 50280) with random weights.
pub fn random_mamba_130m(device: &Device) -> Result<MambaLM> {
    random_mamba(24, 768, 50280, device)
}

/// A Mamba LM of `layers` layers of width `hidden` (mamba-130m's shapes at 768) with random
/// weights of trained-like magnitudes, in the hub layout.
pub fn random_mamba(layers: usize, hidden: usize, vocab: usize, device: &Device) -> Result<MambaLM> {
    let (i, n, r, k) = (2 * hidden, 16usize, hidden.div_ceil(16), 4usize);
    let mut shapes: Vec<(String, Vec<usize>)> =
        vec![("backbone.embeddings.weight".into(), vec![vocab, hidden]), ("backbone.norm_f.weight".into(), vec![hidden])];
    for l in 0..layers {
        let p = format!("backbone.layers.{l}");
        shapes.extend(layer_shapes(&p, hidden, i, n, r, k));
    }
    load_random_mamba(shapes, layers, hidden, vocab, device)
}

fn layer_shapes(p: &str, hidden: usize, i: usize, n: usize, r: usize, k: usize) -> Vec<(String, Vec<usize>)> {
    vec![
        (format!("{p}.norm.weight"), vec![hidden]),
        (format!("{p}.mixer.in_proj.weight"), vec![2 * i, hidden]),
        (format!("{p}.mixer.conv1d.weight"), vec![i, 1, k]),
        (format!("{p}.mixer.conv1d.bias"), vec![i]),
        (format!("{p}.mixer.x_proj.weight"), vec![r + 2 * n, i]),
        (format!("{p}.mixer.dt_proj.weight"), vec![i, r]),
        (format!("{p}.mixer.dt_proj.bias"), vec![i]),
        (format!("{p}.mixer.A_log"), vec![i, n]),
        (format!("{p}.mixer.D"), vec![i]),
        (format!("{p}.mixer.out_proj.weight"), vec![hidden, i]),
    ]
}

fn load_random_mamba(shapes: Vec<(String, Vec<usize>)>, layers: usize, hidden: usize, vocab: usize, device: &Device) -> Result<MambaLM> {
    let n = 16;
    let k = 4;
    let tensors: Vec<_> = shapes
        .into_iter()
        .enumerate()
        .map(|(s, (name, shape))| {
            let len: usize = shape.iter().product();
            let vals = if name.ends_with("A_log") {
                (0..len).map(|j| ((j % n) as f32 + 1.0).ln()).collect()
            } else if name.ends_with("norm.weight") || name.ends_with("norm_f.weight") || name.ends_with(".D") {
                vec![1.0; len]
            } else if name.ends_with("dt_proj.bias") {
                // softplus⁻¹ of a trained Mamba's Δ range: biases in −4 ± 2, so Δ ≈ e⁻⁶…e⁻²
                // (random_values is uniform in ±scale).
                random_values(len, s as u64 + 7, 2.0).iter().map(|v| v - 4.0).collect()
            } else {
                random_values(len, s as u64 + 7, WEIGHT_SCALE)
            };
            (name, shape, vals)
        })
        .collect();
    let cfg = MambaConfig::from_json(
        "bench",
        &format!(
            r#"{{"model_type":"mamba","vocab_size":{vocab},"hidden_size":{hidden},"state_size":{n},"num_hidden_layers":{layers},"expand":2,"conv_kernel":{k}}}"#
        ),
    )?;
    MambaLM::load(cfg, &Weights::from_bytes("random Mamba block", serialize_f32(&tensors))?, device)
}

/// One pre-norm attention + MLP block (12 heads of 64 at d = 768, MLP 4·d) with random weights.
pub fn random_attention_block(hidden: usize, device: &Device) -> Result<EncoderLayer> {
    let heads = (hidden / 64).max(1);
    let dims = LayerDims { hidden, intermediate: 4 * hidden, heads, eps: 1e-5, act: Activation::QuickGelu };
    let p = "l";
    let mut t: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, ones: bool| {
        let len: usize = shape.iter().product();
        let seed = t.len() as u64 + 101;
        t.push((name, shape, if ones { vec![1.0; len] } else { random_values(len, seed, WEIGHT_SCALE) }));
    };
    for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
        add(format!("{p}.self_attn.{proj}.weight"), vec![hidden, hidden], false);
        add(format!("{p}.self_attn.{proj}.bias"), vec![hidden], false);
    }
    for ln in ["layer_norm1", "layer_norm2"] {
        add(format!("{p}.{ln}.weight"), vec![hidden], true);
        add(format!("{p}.{ln}.bias"), vec![hidden], false);
    }
    add(format!("{p}.mlp.fc1.weight"), vec![4 * hidden, hidden], false);
    add(format!("{p}.mlp.fc1.bias"), vec![4 * hidden], false);
    add(format!("{p}.mlp.fc2.weight"), vec![hidden, 4 * hidden], false);
    add(format!("{p}.mlp.fc2.bias"), vec![hidden], false);
    let w = Weights::from_bytes("random attention block", serialize_f32(&t))?;
    EncoderLayer::load(&w.pp(p), dims, device)
}

/// Least-squares slope of log(time) against log(n).
pub fn fit_exponent(points: &[(usize, f64)]) -> f64 {
    let pts: Vec<(f64, f64)> = points.iter().filter(|(n, t)| *n > 0 && *t > 0.0).map(|&(n, t)| ((n as f64).ln(), t.ln())).collect();
    let m = pts.len() as f64;
    if m < 2.0 {
        return f64::NAN;
    }
    let (sx, sy) = (pts.iter().map(|p| p.0).sum::<f64>() / m, pts.iter().map(|p| p.1).sum::<f64>() / m);
    let cov: f64 = pts.iter().map(|p| (p.0 - sx) * (p.1 - sy)).sum();
    let var: f64 = pts.iter().map(|p| (p.0 - sx).powi(2)).sum();
    cov / var
}

impl MambaBenchSpec {
    /// Checks the spec before any work.
    pub fn validate(&self) -> Result<()> {
        if self.ns.is_empty() || self.iters == 0 || self.steps == 0 {
            return Err(Error::arg("the benchmark needs at least one N, iteration and decode step"));
        }
        if let Some(&n) = self.ns.iter().find(|&&n| n == 0 || n > 65536) {
            return Err(Error::arg(format!("sequence length {n} is outside 1..=65536")));
        }
        if self.hidden == 0 || self.hidden > 4096 {
            return Err(Error::arg(format!("width {} is outside 1..=4096", self.hidden)));
        }
        Ok(())
    }
}

/// [`bench_mamba_async`], waiting for the device.
pub fn bench_mamba(spec: &MambaBenchSpec, device: &Device, progress: impl FnMut(&str)) -> Result<(Vec<MambaBenchRow>, Exponents)> {
    crate::tensor::block_on(bench_mamba_async(spec, device, progress))
}

/// Times both blocks on `device` for every N of `spec`. Each timed call ends with a small
/// read-back (the last position), so GPU times include the wait for the device.
pub async fn bench_mamba_async(spec: &MambaBenchSpec, device: &Device, mut progress: impl FnMut(&str)) -> Result<(Vec<MambaBenchRow>, Exponents)> {
    spec.validate()?;
    let h = spec.hidden;
    let mamba = random_mamba_block(h, device)?;
    let attn = random_attention_block(h, device)?;
    let mut rows = Vec::new();
    for &n in &spec.ns {
        let ids: Vec<u32> = (0..n).map(|j| (j * 31 % 256) as u32).collect();
        let x = Tensor::from_f32(random_values(n * h, 5, 1.0), &[1, n, h], device)?;
        let x1 = Tensor::from_f32(random_values(h, 6, 1.0), &[1, 1, h], device)?;
        let last = |y: Tensor| y.narrow(1, y.dim(1)? - 1, 1);
        let (mut mp, mut ap, mut md, mut ad) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // Round 0 warms up (allocations, thread pool, pipelines); rounds 1..=iters are timed.
        for round in 0..=spec.iters {
            let mut state = mamba.new_state(1)?;
            let t0 = now_ms();
            mamba.forward_async(&[ids.clone()], &mut state, 0.0, Logits::Last).await?;
            let t = now_ms() - t0;
            let mut dts = Vec::new();
            for s in 0..spec.steps {
                let t0 = now_ms();
                mamba.forward_async(&[vec![(s % 256) as u32]], &mut state, 0.0, Logits::Last).await?;
                dts.push(now_ms() - t0);
            }
            let t0 = now_ms();
            last(attn.forward(&x, true)?)?.to_vec_f32_async().await?;
            let ta = now_ms() - t0;
            let mut cache = KvCache::default();
            last(attn.forward_cached(&x, &mut cache)?)?.to_vec_f32_async().await?;
            let mut ats = Vec::new();
            for _ in 0..spec.steps {
                let t0 = now_ms();
                attn.forward_cached(&x1, &mut cache)?.to_vec_f32_async().await?;
                ats.push(now_ms() - t0);
            }
            if round > 0 {
                mp.push(t);
                ap.push(ta);
                md.push(median(dts));
                ad.push(median(ats));
            }
        }
        let row = MambaBenchRow { n, mamba_prefill_ms: median(mp), attn_prefill_ms: median(ap), mamba_decode_ms: median(md), attn_decode_ms: median(ad) };
        progress(&format!(
            "N = {n}: prefill mamba {:.1} ms, attention {:.1} ms; decode mamba {:.3} ms/token, attention {:.3} ms/token",
            row.mamba_prefill_ms, row.attn_prefill_ms, row.mamba_decode_ms, row.attn_decode_ms
        ));
        rows.push(row);
    }
    let fit = |f: fn(&MambaBenchRow) -> f64| fit_exponent(&rows.iter().map(|r| (r.n, f(r))).collect::<Vec<_>>());
    let e = Exponents {
        mamba_prefill: fit(|r| r.mamba_prefill_ms),
        attn_prefill: fit(|r| r.attn_prefill_ms),
        mamba_decode: fit(|r| r.mamba_decode_ms),
        attn_decode: fit(|r| r.attn_decode_ms),
    };
    Ok((rows, e))
}

#[cfg(test)]
mod tests {
    #[test]
    fn fits_known_exponents() {
        let lin: Vec<(usize, f64)> = [256, 512, 1024].iter().map(|&n| (n, 3.0 * n as f64)).collect();
        let quad: Vec<(usize, f64)> = [256, 512, 1024].iter().map(|&n| (n, 0.5 * (n * n) as f64)).collect();
        assert!((super::fit_exponent(&lin) - 1.0).abs() < 1e-9);
        assert!((super::fit_exponent(&quad) - 2.0).abs() < 1e-9);
    }
}

/// One sequence length of `effarch bench scan`: the GPU's two selective-scan kernels (τ = 0)
/// on the same random inputs of mamba-130m's shape (C channels, N state values).
#[derive(Clone, Debug, Serialize)]
pub struct ScanBenchRow {
    pub len: usize,
    /// One invocation per channel walking time (`ssm_scan.wgsl`, MRSS's kernel).
    pub sequential_ms: f64,
    /// Parallel over state values and chunks of time (`ssm_chunk.wgsl`), with the chunks this
    /// device gets.
    pub chunked_ms: f64,
    pub chunks: usize,
    /// sequential / chunked.
    pub speedup: f64,
    /// The chunked kernel with the chunks a wide (hardware) GPU gets, timed here too.
    pub chunked_wide_ms: f64,
    pub wide_chunks: usize,
    /// The chunked kernel with chunks of 64 steps (time split finer than the wide default),
    /// timed here too, to choose the default from a measurement.
    pub chunked_fine_ms: f64,
    pub fine_chunks: usize,
    /// Largest |Δ| of y and of the final state between the chunked and the sequential kernel.
    pub max_abs_diff: f64,
}

/// Times the sequential and the chunked GPU scan over `lens` steps (`channels` × `state`, one
/// sequence), `iters` rounds each after a warm-up, alternating kernels; each round ends with a
/// read-back of y.
#[cfg(not(target_arch = "wasm32"))]
pub fn bench_scan(device: &Device, lens: &[usize], channels: usize, state: usize, iters: usize, mut progress: impl FnMut(&str)) -> Result<Vec<ScanBenchRow>> {
    use crate::tensor::gpu::ssm::{scan_chunked, scan_chunks, scan_sequential, ScanArgs};
    let Device::Gpu(ctx) = device else {
        return Err(Error::arg("bench scan compares two GPU kernels: it needs --device gpu (or auto with a GPU)"));
    };
    if iters == 0 || lens.is_empty() || lens.contains(&0) || channels == 0 || state == 0 || state > crate::tensor::gpu::ssm::MAX_STATE {
        return Err(Error::arg(format!("bench scan: lengths ≥ 1, iterations ≥ 1, 1 ≤ state ≤ {}", crate::tensor::gpu::ssm::MAX_STATE)));
    }
    // x_proj's output row: Δ's rank (mamba-130m's dt_rank, 48) first, then B and C.
    const DT_RANK: usize = 48;
    let (stride, limit) = (DT_RANK + 2 * state, ctx.max_binding());
    if let Some(&len) = lens.iter().find(|&&l| (l as u64).saturating_mul(channels.max(stride) as u64).saturating_mul(4) > limit) {
        return Err(Error::arg(format!(
            "bench scan: {len} steps × {} values per step exceed the adapter's storage buffer limit of {limit} bytes",
            channels.max(stride)
        )));
    }
    let mut rows = Vec::new();
    for &len in lens {
        let (c, n) = (channels, state);
        let x = ctx.upload(&random_values(len * c, 1, 1.0), &[1, len, c])?;
        let dt = ctx.upload(&random_values(len * c, 2, 1.0).iter().map(|v| (v.abs() + 0.01) * 0.1).collect::<Vec<_>>(), &[1, len, c])?;
        let proj = ctx.upload(&random_values(len * stride, 3, 1.0), &[1, len, stride])?;
        let ad: Vec<f32> = random_values(c * (n + 1), 4, 1.0).iter().enumerate().map(|(i, v)| if i % (n + 1) == n { *v } else { -(v.abs() + 0.1) }).collect();
        let ad = ctx.upload(&ad, &[c, n + 1])?;
        let h = ctx.upload(&vec![0.0; c * n], &[1, c, n])?;
        let args = ScanArgs { x: &x, dt: &dt, proj: &proj, b_off: DT_RANK, ad: &ad, h: &h, tau: 0.0, max_run: 1.0 };
        let lanes = c * n.next_power_of_two();
        let (chunks, wide_chunks, fine_chunks) = (scan_chunks(ctx.wide(), lanes, len), scan_chunks(true, lanes, len), len.div_ceil(64));
        type Out = (crate::tensor::gpu::GpuTensor, crate::tensor::gpu::GpuTensor, crate::tensor::gpu::GpuTensor);
        let kernels: [&dyn Fn() -> Result<Out>; 4] =
            [&|| scan_sequential(ctx, &args), &|| scan_chunked(ctx, &args, Some(chunks)), &|| scan_chunked(ctx, &args, Some(wide_chunks)), &|| {
                scan_chunked(ctx, &args, Some(fine_chunks))
            }];
        let mut outs = Vec::new();
        for k in &kernels {
            let (y, h, _) = k()?;
            outs.push((ctx.read_blocking(&y)?, ctx.read_blocking(&h)?));
        }
        let diff =
            outs[1..].iter().map(|(y, h)| crate::num::max_abs_diff(y, &outs[0].0).max(crate::num::max_abs_diff(h, &outs[0].1))).fold(0f32, crate::num::nan_max);
        let mut times = vec![Vec::new(); 4];
        for _ in 0..iters {
            for (k, ts) in kernels.iter().zip(times.iter_mut()) {
                let t0 = now_ms();
                let (y, _, _) = k()?;
                ctx.read_blocking(&y)?;
                ts.push(now_ms() - t0);
            }
        }
        let [s, c1, cw, cf]: [f64; 4] = times.into_iter().map(median).collect::<Vec<_>>().try_into().map_err(|_| Error::Backend("four timings".into()))?;
        progress(&format!(
            "L = {len}: sequential {s:.1} ms, chunked {c1:.1} ms ({chunks} chunks), wide chunking {cw:.1} ms ({wide_chunks} chunks), 64-step chunks {cf:.1} ms ({fine_chunks}), max |Δ| {diff:e}"
        ));
        rows.push(ScanBenchRow {
            len,
            sequential_ms: s,
            chunked_ms: c1,
            chunks,
            speedup: s / c1,
            chunked_wide_ms: cw,
            wide_chunks,
            chunked_fine_ms: cf,
            fine_chunks,
            max_abs_diff: diff as f64,
        });
    }
    Ok(rows)
}

/// `effarch bench mamba-lm`: a whole Mamba LM (a checkpoint in the hub layout) at each prompt
/// length and MRSS threshold: prefill tokens/s, then greedy decoding tokens/s, with the CPU
/// scan's share of each (the rest is projections, norms, conv and the LM head).
#[derive(Clone, Debug)]
pub struct MambaLmBenchSpec {
    pub prompt_lens: Vec<usize>,
    /// Tokens decoded (greedily, one step each) after each prompt.
    pub decode: usize,
    pub iters: usize,
    /// MRSS thresholds (0 = the full scan), timed round-robin.
    pub taus: Vec<f32>,
    /// After the timed rounds, one prefill and one decoding step of each setting with the GPU
    /// profile on ([`MambaLmBenchRow::prefill_profile`], `decode_profile`).
    pub profile: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct MambaLmBenchRow {
    pub mrss_tau: f32,
    pub prompt_tokens: usize,
    pub prefill_ms: f64,
    pub prefill_tokens_per_s: f64,
    /// Milliseconds of the prefill spent in the selective scan (CPU; 0 on the GPU, where it is
    /// not separable).
    pub prefill_scan_ms: f64,
    pub decode_tokens: usize,
    pub decode_ms_per_token: f64,
    pub decode_tokens_per_s: f64,
    pub decode_scan_ms_per_token: f64,
    /// Fraction of state updates MRSS merged in the prefill and in the decoding.
    pub prefill_merged: f64,
    pub decode_merged: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefill_profile: Option<crate::tensor::gpu::GpuProfile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decode_profile: Option<crate::tensor::gpu::GpuProfile>,
}

impl MambaLmBenchSpec {
    pub fn validate(&self, vocab: usize) -> Result<()> {
        if self.prompt_lens.is_empty() || self.iters == 0 || self.decode == 0 || self.taus.is_empty() {
            return Err(Error::arg("bench mamba-lm needs a prompt length, a decode count, an iteration and a τ"));
        }
        if let Some(&n) = self.prompt_lens.iter().find(|&&n| n == 0 || n > crate::models::mamba::generate::SCAN_PREFILL_CHUNK) {
            return Err(Error::arg(format!("prompt length {n} is outside 1..={}", crate::models::mamba::generate::SCAN_PREFILL_CHUNK)));
        }
        if self.decode > 65536 {
            return Err(Error::arg(format!("--decode {} is over 65536", self.decode)));
        }
        if let Some(t) = self.taus.iter().find(|t| !(**t >= 0.0) || !t.is_finite()) {
            return Err(Error::arg(format!("MRSS threshold tau must be ≥ 0, got {t}")));
        }
        if vocab < 2 {
            return Err(Error::arg(format!("the model's vocabulary has {vocab} token(s); a benchmark prompt needs at least 2")));
        }
        Ok(())
    }
}

/// A prompt of `n` ids spread over the vocabulary (deterministic).
fn bench_prompt(n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|j| ((j * 7919 + 100) % vocab) as u32).collect()
}

/// [`bench_mamba_lm_async`], waiting for the device.
pub fn bench_mamba_lm(model: &MambaLM, spec: &MambaLmBenchSpec, progress: impl FnMut(&str)) -> Result<Vec<MambaLmBenchRow>> {
    crate::tensor::block_on(bench_mamba_lm_async(model, spec, progress))
}

/// Times `model` for every (τ, prompt length) of `spec`: round 0 warms up, rounds 1..=iters
/// are timed, every setting once per round (so drift hits all alike); medians.
pub async fn bench_mamba_lm_async(model: &MambaLM, spec: &MambaLmBenchSpec, mut progress: impl FnMut(&str)) -> Result<Vec<MambaLmBenchRow>> {
    use crate::models::lm::argmax;
    use crate::tensor::ssm::cpu_scan_ms;
    let vocab = model.cfg.vocab_size;
    spec.validate(vocab)?;
    let settings: Vec<(f32, usize)> = spec.taus.iter().flat_map(|&t| spec.prompt_lens.iter().map(move |&n| (t, n))).collect();
    // Per setting: prefill ms, prefill scan ms, decode ms/token, decode scan ms/token, merged fractions.
    let mut samples: Vec<[Vec<f64>; 6]> = settings.iter().map(|_| Default::default()).collect();
    for round in 0..=spec.iters {
        for (si, &(tau, n)) in settings.iter().enumerate() {
            let mut state = model.new_state(1)?;
            let (t0, s0) = (now_ms(), cpu_scan_ms());
            let out = model.forward_async(&[bench_prompt(n, vocab)], &mut state, tau, Logits::Last).await?;
            let (prefill, prefill_scan) = (now_ms() - t0, cpu_scan_ms() - s0);
            let mut token = argmax(&out.logits) as u32;
            let mut stats = crate::tensor::ssm::ScanStats::default();
            let (t0, s0) = (now_ms(), cpu_scan_ms());
            for _ in 0..spec.decode {
                let o = model.forward_async(&[vec![token]], &mut state, tau, Logits::Last).await?;
                stats.add(o.stats);
                token = argmax(&o.logits) as u32;
            }
            let k = spec.decode as f64;
            let (decode, decode_scan) = ((now_ms() - t0) / k, (cpu_scan_ms() - s0) / k);
            if round > 0 {
                let s = &mut samples[si];
                for (v, x) in s.iter_mut().zip([prefill, prefill_scan, decode, decode_scan, out.stats.merged_fraction(), stats.merged_fraction()]) {
                    v.push(x);
                }
            }
        }
        if round > 0 {
            progress(&format!("round {round}/{} done", spec.iters));
        }
    }
    let mut profiles = Vec::new();
    for &(tau, n) in settings.iter().filter(|_| spec.profile) {
        let mut state = model.new_state(1)?;
        let mut token = 0;
        let prefill = crate::bench::profiled(model.device(), || async {
            token = argmax(&model.forward_async(&[bench_prompt(n, vocab)], &mut state, tau, Logits::Last).await?.logits) as u32;
            Ok(())
        })
        .await?;
        let decode =
            crate::bench::profiled(model.device(), || async { model.forward_async(&[vec![token]], &mut state, tau, Logits::Last).await.map(|_| ()) }).await?;
        profiles.push((Some(prefill), Some(decode)));
    }
    profiles.resize(settings.len(), (None, None));
    Ok(settings
        .iter()
        .zip(samples)
        .zip(profiles)
        .map(|((&(tau, n), s), (prefill_profile, decode_profile))| {
            let [p, ps, d, ds, pm, dm] = s.map(median);
            MambaLmBenchRow {
                mrss_tau: tau,
                prompt_tokens: n,
                prefill_ms: p,
                prefill_tokens_per_s: n as f64 / p * 1e3,
                prefill_scan_ms: ps,
                decode_tokens: spec.decode,
                decode_ms_per_token: d,
                decode_tokens_per_s: 1e3 / d,
                decode_scan_ms_per_token: ds,
                prefill_merged: pm,
                decode_merged: dm,
                prefill_profile,
                decode_profile,
            }
        })
        .collect())
}
