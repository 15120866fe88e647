//! Golden-fixture checks shared by the native tests and the in-browser (wasm) tests, so that
//! both run the very same comparisons. The fixtures come from
//! `tests/fixtures/make_clip_fixtures.py` (HF transformers + a torch pruning reference).

use crate::clock::Timings;
use crate::error::{Error, Result};
use crate::models::clip::{Clip, ClipConfig, Tokenizer};
use crate::prune::{PruneConfig, Scorer};
use crate::tensor::{Device, Tensor};
use crate::weights::Weights;

/// The files of one fixture directory, as bytes.
pub struct ClipFixture {
    pub config: String,
    pub model: Vec<u8>,
    pub vocab: String,
    pub merges: String,
    pub expected: Weights,
    pub meta: serde_json::Value,
    /// ToMe's torch reference (`tests/fixtures/make_tome_fixtures.py`): tensors and cases.
    pub tome: Weights,
    pub tome_meta: serde_json::Value,
    /// DivPrune and VisionZip as their official code selects (`make_methods_fixtures.py`).
    pub methods: Weights,
    pub methods_meta: serde_json::Value,
    /// (file name, bytes) of the test images, in fixture order.
    pub images: Vec<(String, Vec<u8>)>,
}

pub use crate::num::max_abs_diff;

/// `v[key]` as a `T`, or an error naming the key: a fixture whose key was renamed or dropped
/// fails the test instead of reading as zero cases.
pub fn field<T: serde::de::DeserializeOwned>(v: &serde_json::Value, key: &str) -> Result<T> {
    let x = v.get(key).ok_or_else(|| Error::arg(format!("fixture: no `{key}`")))?;
    serde_json::from_value(x.clone()).map_err(|e| Error::arg(format!("fixture: `{key}`: {e}")))
}

/// [`field`] for a list of cases, which must not be empty.
pub fn cases(v: &serde_json::Value, key: &str) -> Result<Vec<serde_json::Value>> {
    let c: Vec<serde_json::Value> = field(v, key)?;
    if c.is_empty() {
        return Err(Error::arg(format!("fixture: `{key}` has no cases")));
    }
    Ok(c)
}

impl ClipFixture {
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_dir(dir: &std::path::Path) -> Result<Self> {
        Self::from_files(|n| std::fs::read(dir.join(n)).map_err(|e| Error::io(dir.join(n).display(), e)))
    }

    /// Builds the fixture from a reader of its files by name (disk natively, embedded bytes
    /// in the browser tests).
    pub fn from_files(read: impl Fn(&str) -> Result<Vec<u8>>) -> Result<Self> {
        let text = |n: &str| read(n).map(|b| String::from_utf8_lossy(&b).into_owned());
        let json = |n: &str| -> Result<serde_json::Value> { serde_json::from_str(&text(n)?).map_err(|e| Error::arg(format!("{n}: {e}"))) };
        let meta = json("expected.json")?;
        let names: Vec<String> = field(&meta, "images")?;
        if names.is_empty() {
            return Err(Error::arg("fixture: expected.json lists no images"));
        }
        let images = names.iter().map(|n| Ok((n.clone(), read(n)?))).collect::<Result<Vec<_>>>()?;
        Ok(ClipFixture {
            config: text("config.json")?,
            model: read("model.safetensors")?,
            vocab: text("vocab.json")?,
            merges: text("merges.txt")?,
            expected: Weights::from_bytes("expected.safetensors", read("expected.safetensors")?)?,
            meta,
            tome: Weights::from_bytes("tome.safetensors", read("tome.safetensors")?)?,
            tome_meta: json("tome.json")?,
            methods: Weights::from_bytes("methods.safetensors", read("methods.safetensors")?)?,
            methods_meta: json("methods.json")?,
            images,
        })
    }

    pub fn clip(&self, device: &Device) -> Result<Clip> {
        let cfg = ClipConfig::from_json("config.json", &self.config)?;
        let w = Weights::from_bytes("model.safetensors", self.model.clone())?;
        let mut clip = Clip::load(cfg, &w, device, true)?;
        // make_clip_fixtures.py preprocesses with transformers' PIL backend.
        clip.preprocess.resample = crate::image::Resample::Pil;
        clip.tokenizer = Some(Tokenizer::from_vocab_merges(&self.vocab, &self.merges)?);
        Ok(clip)
    }

    /// An expected tensor's values and shape.
    pub fn expect(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let shape = self.expected.info(name).map(|i| i.shape.clone()).ok_or_else(|| Error::arg(format!("no expected `{name}`")))?;
        Ok((self.expected.get_f32(name, &shape)?, shape))
    }

    pub fn expect_tensor(&self, name: &str, device: &Device) -> Result<Tensor> {
        let (v, s) = self.expect(name)?;
        Tensor::from_f32(v, &s, device)
    }

    /// `(name, max |Δ|)` for preprocessing of the lossless test images.
    pub fn check_preprocess(&self, clip: &Clip) -> Result<Vec<(String, f32)>> {
        let (want, shape) = self.expect("pixel_values")?;
        let per = shape[1..].iter().product::<usize>();
        self.images
            .iter()
            .enumerate()
            .map(|(i, (name, bytes))| {
                let got = clip.preprocess.pixel_values(&crate::image::decode(bytes)?);
                Ok((name.clone(), max_abs_diff(&got, &want[i * per..(i + 1) * per])))
            })
            .collect()
    }

    /// `(name, max |Δ|)` of the unpruned vision outputs and the text tower.
    pub fn check_towers(&self, clip: &Clip) -> Result<Vec<(String, f32)>> {
        crate::tensor::block_on(self.check_towers_async(clip))
    }

    pub async fn check_towers_async(&self, clip: &Clip) -> Result<Vec<(String, f32)>> {
        let dev = &clip.device;
        let pv = self.expect_tensor("pixel_values", dev)?;
        let out = clip.vision.forward_async(&pv, None, &mut Timings::start()).await?;
        let mut res = Vec::new();
        for (name, t) in [("vision_last_hidden_state", &out.last_hidden_state), ("vision_pooled", &out.pooled), ("image_embeds", &out.image_embeds)] {
            res.push((name.to_string(), max_abs_diff(&t.to_vec_f32_async().await?, &self.expect(name)?.0)));
        }
        let labels: Vec<String> = field(&self.meta, "labels")?;
        let want_ids: Vec<Vec<u32>> = field(&self.meta, "input_ids")?;
        let ids = clip.tokenize(&labels)?;
        if labels.is_empty() || ids.len() != want_ids.len() {
            return Err(Error::arg(format!("fixture: {} labels, {} token rows, {} expected rows", labels.len(), ids.len(), want_ids.len())));
        }
        res.push(("input_ids (mismatching rows)".into(), ids.iter().zip(&want_ids).filter(|(a, b)| a != b).count() as f32));
        let text = clip.encode_text(&labels)?;
        let t = text.to_vec_f32_async().await?;
        res.push(("text_embeds".into(), max_abs_diff(&t, &self.expect("text_embeds")?.0)));
        let img = out.image_embeds.to_vec_f32_async().await?;
        let d = out.image_embeds.dim(1)?;
        let scale = clip.logit_scale.exp();
        let logits: Vec<f32> = img.chunks(d).flat_map(|a| t.chunks(d).map(move |b| scale * crate::models::clip::cosine(a, b))).collect();
        res.push(("logits_per_image".into(), max_abs_diff(&logits, &self.expect("logits_per_image")?.0)));
        Ok(res)
    }

    /// Each pruning case of the fixture: max |Δ| of scores and outputs, and whether the kept
    /// indices equal the torch reference's.
    pub fn check_pruning(&self, clip: &Clip) -> Result<Vec<PruneCaseResult>> {
        crate::tensor::block_on(self.check_pruning_async(clip))
    }

    pub async fn check_pruning_async(&self, clip: &Clip) -> Result<Vec<PruneCaseResult>> {
        let pv = self.expect_tensor("pixel_values", &clip.device)?;
        let cases = cases(&self.meta, "cases")?;
        let mut out = Vec::new();
        for (ci, c) in cases.iter().enumerate() {
            let scorer_name: String = field(c, "scorer")?;
            let mut scorer: Scorer = scorer_name.parse()?;
            if let Scorer::Random { seed } = &mut scorer {
                *seed = field(c, "seed")?;
            }
            let layers: Vec<usize> = field(c, "layers")?;
            let keep: f32 = field(c, "keep")?;
            let cfg = PruneConfig::new(scorer, keep, layers)?;
            let r = clip.vision.forward_async(&pv, Some(&cfg), &mut Timings::start()).await?;
            let want_kept: Vec<Vec<Vec<u32>>> = field::<Vec<serde_json::Value>>(c, "kept")?.iter().map(|s| field(s, "indices")).collect::<Result<_>>()?;
            let got_kept: Vec<Vec<Vec<u32>>> = r.steps.iter().map(|s| s.kept.clone()).collect();
            let mut score_delta = 0f32;
            let mut flip = None;
            for (si, s) in r.scores.iter().enumerate() {
                let want_scores = self.expect(&format!("case{ci}.step{si}.scores"))?.0;
                let got_scores = s.to_vec_f32_async().await?;
                score_delta = score_delta.max(max_abs_diff(&got_scores, &want_scores));
                if flip.is_none() && got_kept.get(si) != want_kept.get(si) {
                    let prev = si.checked_sub(1).and_then(|p| want_kept.get(p));
                    let margin = flip_margin(&want_scores, want_kept.get(si), got_kept.get(si), prev);
                    flip = Some((margin, max_abs_diff(&got_scores, &want_scores)));
                }
            }
            out.push(PruneCaseResult {
                name: format!("case{ci} {scorer_name} keep={keep} layers={:?}", cfg.layers),
                kept_equal: got_kept == want_kept,
                scores: score_delta,
                flip,
                image_embeds: max_abs_diff(&r.image_embeds.to_vec_f32_async().await?, &self.expect(&format!("case{ci}.image_embeds"))?.0),
                last_hidden_state: max_abs_diff(&r.last_hidden_state.to_vec_f32_async().await?, &self.expect(&format!("case{ci}.last_hidden_state"))?.0),
            });
        }
        Ok(out)
    }
}

/// One ToMe case against the torch reference.
#[derive(Debug)]
pub struct TomeCaseResult {
    pub name: String,
    /// Tokens entering each layer and the final count equal the reference's.
    pub tokens_equal: bool,
    /// Every patch ended in the same token as in the reference (the merge map).
    pub groups_equal: bool,
    pub image_embeds: f32,
    pub last_hidden_state: f32,
}

impl ClipFixture {
    /// Each ToMe case of `tome.json` (by `keep` or a fixed `r`) on the fixture's pixels.
    pub async fn check_tome_async(&self, clip: &Clip) -> Result<Vec<TomeCaseResult>> {
        let pv = self.expect_tensor("pixel_values", &clip.device)?;
        let mut out = Vec::new();
        for (ci, c) in cases(&self.tome_meta, "cases")?.iter().enumerate() {
            // A case gives either r (keep null) or keep (r null); both keys must be there.
            let r: Option<usize> = field(c, "r")?;
            let keep: f32 = field::<Option<f32>>(c, "keep")?.unwrap_or(1.0);
            let cfg = PruneConfig::new(Scorer::Tome { r }, keep, vec![0])?;
            let o = clip.vision.forward_async(&pv, Some(&cfg), &mut Timings::start()).await?;
            let want_tokens: Vec<usize> = field(c, "tokens_per_layer")?;
            let want_groups: Vec<Vec<u32>> = field(c, "groups")?;
            let tensor = |n: &str| -> Result<Vec<f32>> {
                let name = format!("tome{ci}.{n}");
                let shape = self.tome.info(&name).map(|i| i.shape.clone()).ok_or_else(|| Error::arg(format!("no `{name}` in tome.safetensors")))?;
                self.tome.get_f32(&name, &shape)
            };
            out.push(TomeCaseResult {
                name: format!("tome{ci} {cfg_s} keep={keep}", cfg_s = cfg.scorer),
                tokens_equal: o.tokens_per_layer == want_tokens && o.last_hidden_state.dim(1)? as u64 == field::<u64>(c, "final_tokens")?,
                groups_equal: o.groups == want_groups,
                image_embeds: max_abs_diff(&o.image_embeds.to_vec_f32_async().await?, &tensor("image_embeds")?),
                last_hidden_state: max_abs_diff(&o.last_hidden_state.to_vec_f32_async().await?, &tensor("last_hidden_state")?),
            });
        }
        Ok(out)
    }
}

/// One DivPrune or VisionZip case against the official selection logic.
#[derive(Debug)]
pub struct MethodCaseResult {
    pub name: String,
    /// Kept patches of every step, and tokens after the last layer, equal the reference's.
    pub kept_equal: bool,
    /// VisionZip's merge map (each patch's final token) equals the reference's.
    pub groups_equal: bool,
    pub image_embeds: f32,
    pub last_hidden_state: f32,
}

impl ClipFixture {
    /// Each case of `methods.json` on the fixture's pixels.
    pub async fn check_methods_async(&self, clip: &Clip) -> Result<Vec<MethodCaseResult>> {
        let pv = self.expect_tensor("pixel_values", &clip.device)?;
        let mut out = Vec::new();
        for (ci, c) in cases(&self.methods_meta, "cases")?.iter().enumerate() {
            let method: String = field(c, "method")?;
            let (keep, layers): (f32, Vec<usize>) = (field(c, "keep")?, field(c, "layers")?);
            let cfg = PruneConfig::new(method.parse()?, keep, layers)?;
            let o = clip.vision.forward_async(&pv, Some(&cfg), &mut Timings::start()).await?;
            let want_kept: Vec<Vec<Vec<u32>>> = field::<Vec<serde_json::Value>>(c, "kept")?.iter().map(|s| field(s, "indices")).collect::<Result<_>>()?;
            let got_kept: Vec<Vec<Vec<u32>>> = o.steps.iter().map(|s| s.kept.clone()).collect();
            let tensor = |n: &str| -> Result<Vec<f32>> {
                let name = format!("m{ci}.{n}");
                let shape = self.methods.info(&name).map(|i| i.shape.clone()).ok_or_else(|| Error::arg(format!("no `{name}` in methods.safetensors")))?;
                self.methods.get_f32(&name, &shape)
            };
            out.push(MethodCaseResult {
                name: format!("{method} keep={keep} layers={:?}", cfg.layers),
                kept_equal: got_kept == want_kept && o.last_hidden_state.dim(1)? as u64 == field::<u64>(c, "tokens")?,
                groups_equal: o.groups == field::<Vec<Vec<u32>>>(c, "groups")?,
                image_embeds: max_abs_diff(&o.image_embeds.to_vec_f32_async().await?, &tensor("image_embeds")?),
                last_hidden_state: max_abs_diff(&o.last_hidden_state.to_vec_f32_async().await?, &tensor("last_hidden_state")?),
            });
        }
        Ok(out)
    }
}

/// Every scorer at keep 0.4 in layers 0 and 2 on two models (the CPU and the GPU one):
/// `(scorer, kept steps equal)`. The same fixture pixels go to both.
pub async fn compare_scorers_async(fx: &ClipFixture, a: &Clip, b: &Clip) -> Result<Vec<(String, bool)>> {
    let (pa, pb) = (fx.expect_tensor("pixel_values", &a.device)?, fx.expect_tensor("pixel_values", &b.device)?);
    let mut out = Vec::new();
    for scorer in ["kq-norm:key", "kq-norm:query", "kq-norm:both", "cls-attn", "random", "divprune", "visionzip"] {
        // VisionZip compresses once.
        let layers = if scorer == "visionzip" { vec![2] } else { vec![0, 2] };
        let cfg = PruneConfig::new(scorer.parse()?, 0.4, layers)?;
        let x = a.vision.forward_async(&pa, Some(&cfg), &mut Timings::start()).await?;
        let y = b.vision.forward_async(&pb, Some(&cfg), &mut Timings::start()).await?;
        out.push((scorer.to_string(), x.steps == y.steps && x.groups == y.groups && !x.steps.is_empty()));
    }
    Ok(out)
}

#[derive(Debug)]
pub struct PruneCaseResult {
    pub name: String,
    pub kept_equal: bool,
    pub scores: f32,
    /// At the first step whose kept tokens differ from the reference's: how far the reference
    /// scores of the tokens that changed sides lie from the reference's cut (its lowest kept
    /// score), and that step's max |Δ| of scores. A flip within twice the score error is a
    /// near-tie that rounding decided, not a bug.
    pub flip: Option<(f32, f32)>,
    pub image_embeds: f32,
    pub last_hidden_state: f32,
}

/// One tensor of a seeded checkpoint (`tests/fixtures/make_generation_fixtures.py`).
#[derive(Clone, Debug, serde::Deserialize)]
pub struct SeededTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub mean: f64,
    pub std: f64,
    /// Non-zero: Mamba's A_log, `ln(1 + i mod alog_n)` instead of `mean`.
    #[serde(default)]
    pub alog_n: usize,
}

/// The values of one seeded tensor, bit for bit those of the fixture script: value i is
/// `mean + std·√3·r` with r uniform in [-1, 1) from splitmix64(fnv1a64(name) ^ seed, i + 1),
/// computed in f64 and rounded to f32.
pub fn seeded_values(t: &SeededTensor, seed: u64) -> Vec<f32> {
    let n: usize = t.shape.iter().product();
    let s = crate::num::fnv1a64(t.name.as_bytes()) ^ seed;
    let amp = t.std * 3f64.sqrt();
    (0..n)
        .map(|i| {
            // The (i + 1)-th output of splitmix64 from state s, reached directly.
            let mut state = s.wrapping_add((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let z = crate::num::splitmix64(&mut state);
            let r = (z >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0;
            let base = if t.alog_n > 0 { ((i % t.alog_n) as f64).ln_1p() } else { t.mean };
            (base + amp * r) as f32
        })
        .collect()
}

/// A safetensors checkpoint (f32, hub names) made from a seed and a manifest: real-width
/// models for the tests without committing gigabytes.
pub fn seeded_weights(manifest: &[SeededTensor], seed: u64) -> Result<Weights> {
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = manifest.iter().map(|t| (t.name.clone(), t.shape.clone(), seeded_values(t, seed))).collect();
    Weights::from_bytes("seeded.safetensors", crate::weights::serialize_f32(&tensors))
}

/// How far the reference `scores` (`[B, tokens - 1]`, this step's tokens in order) of the
/// tokens kept by one side only lie from the reference's cut, over the batch; `prev`: the
/// kept tokens (original patch indices) of the step before, which both sides share, that map
/// original indices to this step's positions. Infinite when something cannot be placed.
fn flip_margin(scores: &[f32], want: Option<&Vec<Vec<u32>>>, got: Option<&Vec<Vec<u32>>>, prev: Option<&Vec<Vec<u32>>>) -> f32 {
    let (Some(want), Some(got)) = (want, got) else { return f32::INFINITY };
    let per = scores.len() / want.len().max(1);
    let mut margin = 0f32;
    for (b, (w, g)) in want.iter().zip(got).enumerate() {
        let pos = |t: u32| -> Option<usize> {
            match prev {
                None => Some(t as usize),
                Some(p) => p.get(b)?.iter().position(|&x| x == t),
            }
        };
        let score = |t: u32| pos(t).and_then(|i| scores.get(b * per + i).copied());
        let Some(cut) = w.iter().map(|&t| score(t)).collect::<Option<Vec<f32>>>().and_then(|v| v.into_iter().reduce(f32::min)) else { return f32::INFINITY };
        for &t in w.iter().filter(|t| !g.contains(t)).chain(g.iter().filter(|t| !w.contains(t))) {
            margin = margin.max(score(t).map_or(f32::INFINITY, |s| (s - cut).abs()));
        }
    }
    margin
}
