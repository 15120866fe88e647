//! The one benchmark driver, used by `effarch bench` and by the page.
//!
//! Latency does not depend on weight values, so the models here are full-size with
//! deterministic random weights: nothing is downloaded. All settings run in one process,
//! interleaved per round, and are reported as ratios to the unpruned run.

use crate::clock::{now_ms, Timings};
use crate::error::{Error, Result};
use crate::models::clip::{Clip, ClipConfig};
use crate::prune::{PruneConfig, Scorer};
use crate::tensor::{Device, Tensor};
use crate::weights::{serialize_f32, Weights};
use serde::Serialize;

pub mod gemm;
pub mod mamba;
pub mod qwen;

/// The spread of the random weights of the benchmark models (uniform in ±0.035): about what a
/// trained ViT-B/16's and mamba-130m's projections hold (std ≈ 0.02), so activations keep
/// realistic magnitudes through the layers.
pub const WEIGHT_SCALE: f32 = 0.035;

pub(crate) use crate::num::random_values;

/// A CLIP checkpoint (vision tower + projection) in the HF layout with random weights.
pub fn random_clip_weights(cfg: &ClipConfig) -> Result<Weights> {
    Weights::from_bytes("random ViT", random_clip_safetensors(cfg))
}

/// [`random_clip_weights`] as safetensors bytes (for a peer engine to load the same file).
pub fn random_clip_safetensors(cfg: &ClipConfig) -> Vec<u8> {
    let v = cfg.vision();
    let (h, i, p, c) = (v.hidden_size, v.intermediate_size, v.patch_size, v.num_channels);
    let mut t: Vec<(String, Vec<usize>)> = vec![
        ("vision_model.embeddings.patch_embedding.weight".into(), vec![h, c, p, p]),
        ("vision_model.embeddings.class_embedding".into(), vec![h]),
        ("vision_model.embeddings.position_embedding.weight".into(), vec![v.num_patches() + 1, h]),
        ("visual_projection.weight".into(), vec![cfg.projection_dim, h]),
    ];
    for ln in ["pre_layrnorm", "post_layernorm"] {
        t.push((format!("vision_model.{ln}.weight"), vec![h]));
        t.push((format!("vision_model.{ln}.bias"), vec![h]));
    }
    for l in 0..v.num_hidden_layers {
        let pre = format!("vision_model.encoder.layers.{l}");
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            t.push((format!("{pre}.self_attn.{proj}.weight"), vec![h, h]));
            t.push((format!("{pre}.self_attn.{proj}.bias"), vec![h]));
        }
        for ln in ["layer_norm1", "layer_norm2"] {
            t.push((format!("{pre}.{ln}.weight"), vec![h]));
            t.push((format!("{pre}.{ln}.bias"), vec![h]));
        }
        t.push((format!("{pre}.mlp.fc1.weight"), vec![i, h]));
        t.push((format!("{pre}.mlp.fc1.bias"), vec![i]));
        t.push((format!("{pre}.mlp.fc2.weight"), vec![h, i]));
        t.push((format!("{pre}.mlp.fc2.bias"), vec![h]));
    }
    let tensors: Vec<_> = t
        .into_iter()
        .enumerate()
        .map(|(k, (name, shape))| {
            let n = shape.iter().product();
            let mut vals = random_values(n, k as u64 + 1, WEIGHT_SCALE);
            if name.contains("norm") && name.ends_with("weight") {
                vals.iter_mut().for_each(|x| *x += 1.0);
            }
            (name, shape, vals)
        })
        .collect();
    serialize_f32(&tensors)
}

/// Full-size `openai/clip-vit-base-patch16` vision tower with random weights.
pub fn random_vit_b16(device: &Device) -> Result<Clip> {
    let cfg = ClipConfig::vit_b16();
    let w = random_clip_weights(&cfg)?;
    Clip::load(cfg, &w, device, false)
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchRow {
    /// The pruning method ("unpruned" for the keep = 1 baseline all methods share).
    pub scorer: String,
    pub keep: f32,
    pub batch: usize,
    /// The CPU precision of the linear layers ("f32" on a GPU).
    pub precision: &'static str,
    /// Median wall time per image, ms.
    pub ms_median: f64,
    /// ms_median / ms_median at keep = 1.0 (same batch).
    pub ratio: f64,
    /// FLOPs at this keep / FLOPs unpruned: the bound the ratio would reach if time were
    /// exactly proportional to arithmetic.
    pub flop_ratio: f64,
    /// GPU dispatches and command-buffer submits of one forward pass of the batch (null on
    /// the CPU): the fixed per-dispatch costs a real GPU pays.
    pub dispatches: Option<u64>,
    pub submits: Option<u64>,
    /// The first pass of this setting (the warm-up), ms per image: on a GPU it pays for any
    /// pipeline not compiled at load (the cold start), so first_ms / ms_median says what a
    /// user's first run costs.
    pub first_ms: f64,
    /// ms_median / the first model's (f32's) at the same keep and batch.
    pub f32_ratio: f64,
    /// The smallest per-image cosine similarity of this row's embeddings to the first
    /// model's (f32's) at the same keep and batch (1 for the first model itself).
    pub cos_to_f32: f64,
    /// With `--profile` on a GPU: one more pass of this setting, timed per kernel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<crate::tensor::gpu::GpuProfile>,
}

#[derive(Clone, Debug)]
pub struct BenchSpec {
    pub keeps: Vec<f32>,
    pub batches: Vec<usize>,
    pub iters: usize,
    /// Methods timed side by side (one unpruned baseline for all).
    pub scorers: Vec<Scorer>,
    pub layers: Vec<usize>,
    /// After the timed rounds, one more pass of each setting with the GPU profile on
    /// ([`BenchRow::profile`]; an error on the CPU or an adapter without timestamp queries).
    pub profile: bool,
}

impl Default for BenchSpec {
    fn default() -> Self {
        BenchSpec {
            keeps: vec![1.0, 0.9, 0.7, 0.5, 0.3],
            batches: vec![1, 8],
            iters: 7,
            scorers: vec![Scorer::KqNorm(crate::prune::KqWhich::Key)],
            layers: vec![1],
            profile: false,
        }
    }
}

/// Runs `pass` once with the GPU profile on: each kernel's GPU time and the idle gaps
/// ([`crate::tensor::gpu::GpuContext::profile_start`]). An error on the CPU.
pub async fn profiled<F: std::future::Future<Output = Result<()>>>(device: &Device, pass: impl FnOnce() -> F) -> Result<crate::tensor::gpu::GpuProfile> {
    let Device::Gpu(ctx) = device else {
        return Err(Error::arg("--profile times GPU kernels: use it with --device gpu"));
    };
    ctx.profile_start()?;
    let r = pass().await;
    let p = ctx.profile_finish().await;
    r?;
    p
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `keeps` with 1.0 (the unpruned baseline every ratio is relative to) first when it is not
/// listed: a ratio is always to the unpruned model, never to whichever keep came first.
pub fn with_baseline(keeps: &[f32]) -> Vec<f32> {
    let mut k = keeps.to_vec();
    if !k.iter().any(|&x| x >= 1.0) {
        k.insert(0, 1.0);
    }
    k
}

/// Times the vision tower at every (batch, keep) of `spec`. Each round runs every keep once,
/// so slow drift (thermal, other load) hits all settings alike. `progress` gets a line per
/// finished setting.
impl BenchSpec {
    /// Checks the spec before any work (the model is built after this).
    pub fn validate(&self) -> Result<()> {
        if self.keeps.is_empty() || self.batches.is_empty() || self.iters == 0 || self.scorers.is_empty() {
            return Err(Error::arg("benchmark needs at least one keep ratio, batch size, method and iteration"));
        }
        if self.batches.iter().any(|&b| b == 0 || b > 256) {
            return Err(Error::arg("batch sizes must be in 1..=256"));
        }
        self.configs().map(|_| ())
    }

    /// The settings timed: the unpruned baseline, then each method at each keep < 1 (the
    /// methods compared under one setting: [`PruneConfig::for_comparison`]).
    pub fn configs(&self) -> Result<Vec<(String, PruneConfig)>> {
        let mut v = vec![("unpruned".to_string(), PruneConfig::new(self.scorers[0], 1.0, self.layers.clone())?)];
        for &s in &self.scorers {
            for &k in self.keeps.iter().filter(|&&k| k < 1.0) {
                v.push((s.to_string(), PruneConfig::for_comparison(s, k, &self.layers)?));
            }
        }
        Ok(v)
    }
}

pub fn bench_clip(clip: &Clip, spec: &BenchSpec, progress: impl FnMut(&str) + Send) -> Result<Vec<BenchRow>> {
    crate::tensor::block_on_for([&clip.device], bench_clip_async(clip, spec, progress))
}

/// [`bench_clip`] for the browser on WebGPU, where read-backs are awaited. Each timed pass
/// ends with the read-back of its embeddings, so queued GPU work is inside the timing.
pub async fn bench_clip_async(clip: &Clip, spec: &BenchSpec, progress: impl FnMut(&str)) -> Result<Vec<BenchRow>> {
    bench_clips_async(&[clip], spec, progress).await
}

/// [`bench_clip`] on several models of the same checkpoint (one per precision), timed
/// round-robin: each round runs every (model, keep) once, so drift hits all alike. Rows say
/// each one's time and embeddings against the first model's (f32 by convention) at the same
/// keep and batch.
pub fn bench_clips(clips: &[&Clip], spec: &BenchSpec, progress: impl FnMut(&str) + Send) -> Result<Vec<BenchRow>> {
    crate::tensor::block_on_for(clips.iter().map(|c| &c.device), bench_clips_async(clips, spec, progress))
}

/// Every method of `spec` at one keep as the page's compare view runs them: one pass that
/// shares the embedding and early layers, against the same passes one after another.
#[derive(Clone, Debug, Serialize)]
pub struct CompareRow {
    pub keep: f32,
    pub batch: usize,
    pub methods: usize,
    /// The shared pass (median), ms per image.
    pub shared_ms: f64,
    /// The methods and the unpruned pass one after another, each from scratch (median), ms per image.
    pub sequential_ms: f64,
    /// shared_ms / sequential_ms.
    pub ratio: f64,
}

/// [`CompareRow`]s for each keep < 1 and batch of `spec` (f32 model only), interleaved per round.
pub fn bench_compare(clip: &Clip, spec: &BenchSpec) -> Result<Vec<CompareRow>> {
    crate::tensor::block_on(async {
        spec.validate()?;
        let s = clip.config.vision().image_size;
        let mut rows = Vec::new();
        for &b in &spec.batches {
            let x = Tensor::from_f32(random_values(b * 3 * s * s, 99, 1.0), &[b, 3, s, s], &clip.device)?;
            for &keep in spec.keeps.iter().filter(|&&k| k < 1.0) {
                let mut cfgs: Vec<Option<PruneConfig>> = vec![None];
                for &sc in &spec.scorers {
                    cfgs.push(Some(PruneConfig::for_comparison(sc, keep, &spec.layers)?));
                }
                let (mut shared, mut seq) = (Vec::new(), Vec::new());
                for round in 0..=spec.iters {
                    let t0 = now_ms();
                    clip.vision.forward_many_async(&x, &cfgs).await?.outs[0].image_embeds.to_vec_f32_async().await?;
                    let t1 = now_ms();
                    for c in &cfgs {
                        clip.vision.forward_async(&x, c.as_ref(), &mut Timings::start()).await?.image_embeds.to_vec_f32_async().await?;
                    }
                    if round > 0 {
                        shared.push((t1 - t0) / b as f64);
                        seq.push((now_ms() - t1) / b as f64);
                    }
                }
                let (sh, sq) = (median(shared), median(seq));
                rows.push(CompareRow { keep, batch: b, methods: spec.scorers.len(), shared_ms: sh, sequential_ms: sq, ratio: sh / sq });
            }
        }
        Ok(rows)
    })
}

/// The smallest per-image cosine between two `[b, d]` embedding batches.
fn min_cosine(a: &[f32], b: &[f32], batch: usize) -> f64 {
    let d = a.len() / batch.max(1);
    (0..batch).map(|i| crate::num::cosine(&a[i * d..(i + 1) * d], &b[i * d..(i + 1) * d])).fold(f64::INFINITY, f64::min)
}

async fn bench_clips_async(clips: &[&Clip], spec: &BenchSpec, mut progress: impl FnMut(&str)) -> Result<Vec<BenchRow>> {
    spec.validate()?;
    let Some(first) = clips.first() else {
        return Err(Error::arg("benchmark needs a model"));
    };
    let s = first.config.vision().image_size;
    let mut rows = Vec::new();
    let named = spec.configs()?;
    let cfgs: Vec<PruneConfig> = named.iter().map(|(_, c)| c.clone()).collect();
    for &b in &spec.batches {
        let values = random_values(b * 3 * s * s, 99, 1.0);
        // (model, keep) in round-robin order.
        let settings: Vec<(usize, usize)> = (0..clips.len()).flat_map(|m| (0..cfgs.len()).map(move |k| (m, k))).collect();
        let inputs = clips.iter().map(|c| Tensor::from_f32(values.clone(), &[b, 3, s, s], &c.device)).collect::<Result<Vec<_>>>()?;
        // Warm-up: first-touch allocations, thread pools, pipeline caches.
        let (mut flops, mut counts, mut first_ms, mut embeds) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for &(m, k) in &settings {
            let clip = clips[m];
            let counters = || match &clip.device {
                crate::tensor::Device::Gpu(c) => Some(c.counters()),
                crate::tensor::Device::Cpu(_) => None,
            };
            let before = counters();
            let t0 = now_ms();
            let out = clip.vision.forward_async(&inputs[m], Some(&cfgs[k]), &mut Timings::start()).await?;
            embeds.push(out.image_embeds.to_vec_f32_async().await?);
            first_ms.push((now_ms() - t0) / b as f64);
            flops.push(out.flops / out.flops_unpruned);
            counts.push(before.zip(counters()).map(|((d0, s0), (d1, s1))| (d1 - d0, s1 - s0)));
        }
        let mut times = vec![Vec::new(); settings.len()];
        for _ in 0..spec.iters {
            for (i, &(m, k)) in settings.iter().enumerate() {
                let t0 = now_ms();
                let out = clips[m].vision.forward_async(&inputs[m], Some(&cfgs[k]), &mut Timings::start()).await?;
                out.image_embeds.to_vec_f32_async().await?;
                times[i].push((now_ms() - t0) / b as f64);
            }
        }
        let medians: Vec<f64> = times.into_iter().map(median).collect();
        let mut profiles = vec![None; settings.len()];
        if spec.profile {
            for (i, &(m, k)) in settings.iter().enumerate() {
                let pass = || async {
                    let out = clips[m].vision.forward_async(&inputs[m], Some(&cfgs[k]), &mut Timings::start()).await?;
                    out.image_embeds.to_vec_f32_async().await.map(|_| ())
                };
                profiles[i] = Some(profiled(&clips[m].device, pass).await?);
            }
        }
        for (i, &(m, k)) in settings.iter().enumerate() {
            let (base, reference) = (medians[m * cfgs.len()], k);
            let row = BenchRow {
                scorer: named[k].0.clone(),
                keep: named[k].1.keep,
                batch: b,
                precision: clips[m].device.precision().name(),
                ms_median: medians[i],
                ratio: medians[i] / base,
                flop_ratio: flops[i],
                dispatches: counts[i].map(|c| c.0),
                submits: counts[i].map(|c| c.1),
                first_ms: first_ms[i],
                f32_ratio: medians[i] / medians[reference],
                cos_to_f32: min_cosine(&embeds[i], &embeds[reference], b),
                profile: profiles[i].take(),
            };
            progress(&format!(
                "batch {b} {} {} keep {:.2}: {:.1} ms/img, ratio {:.3} (FLOP bound {:.3})",
                row.precision, row.scorer, row.keep, row.ms_median, row.ratio, row.flop_ratio
            ));
            rows.push(row);
        }
    }
    Ok(rows)
}
