//! CLIP's vision tower (HF `CLIPVisionTransformer` + `visual_projection`) with optional
//! token pruning inside chosen layers.

use super::config::VisionConfig;
use crate::clock::Timings;
use crate::error::{Error, Result};
use crate::models::nn::{EncoderLayer, LayerDims, LayerNorm};
use crate::prune::{self, divprune, tome, visionzip, PruneConfig, PruneStep, Scorer};
use crate::tensor::{Activation, Device, LinearWeight, Tensor};
use crate::weights::Weights;

pub struct VisionModel {
    pub cfg: VisionConfig,
    patch_w: LinearWeight,
    class_emb: Tensor,
    pos_emb: Tensor,
    pre_ln: LayerNorm,
    layers: Vec<EncoderLayer>,
    post_ln: LayerNorm,
    proj: LinearWeight,
}

/// Everything one forward pass reports.
pub struct VisionOutput {
    /// `[B, tokens, hidden]` after the last layer (tokens shrink when pruned).
    pub last_hidden_state: Tensor,
    /// `[B, hidden]`: post-layernormed CLS.
    pub pooled: Tensor,
    /// `[B, projection_dim]`, not normalised.
    pub image_embeds: Tensor,
    pub steps: Vec<PruneStep>,
    /// ToMe and VisionZip only (empty otherwise): per image, the final token (1.., CLS is 0)
    /// that each original patch ended in — patches with the same value were merged into one
    /// token (VisionZip: only when it made contextual tokens).
    pub groups: Vec<Vec<u32>>,
    /// Scores of each step, `[B, tokens-1]`, for inspection and tests.
    pub scores: Vec<Tensor>,
    /// Tokens (CLS included) entering each layer.
    pub tokens_per_layer: Vec<usize>,
    /// FLOPs spent per image, and what the unpruned pass would spend.
    pub flops: f64,
    pub flops_unpruned: f64,
}

fn layer_dims(cfg: &VisionConfig) -> Result<LayerDims> {
    Ok(LayerDims {
        hidden: cfg.hidden_size,
        intermediate: cfg.intermediate_size,
        heads: cfg.num_attention_heads,
        eps: cfg.layer_norm_eps,
        act: Activation::from_hf(&cfg.hidden_act)?,
    })
}

/// Milliseconds one encoder layer of the tower in `w` takes on `dev` for one unpruned image
/// (layer 0's weights, a fixed input, the fastest of a few runs after a warm-up), for
/// choosing a backend by measurement.
pub async fn probe_layer_ms(w: &Weights, cfg: &VisionConfig, dev: Device) -> Result<f64> {
    let layer = EncoderLayer::load(&w.pp("vision_model").pp("encoder.layers").pp(0), layer_dims(cfg)?, &dev)?;
    let (n, h) = (cfg.num_patches() + 1, cfg.hidden_size);
    let x = Tensor::from_f32(crate::num::random_values(n * h, 7, 1.0), &[1, n, h], &dev)?;
    let (layer, x) = (&layer, &x);
    crate::tensor::time_best(move || async move { layer.forward(x, false)?.narrow(1, 0, 1)?.to_vec_f32_async().await.map(|_| ()) }, 3, 250.0).await
}

/// What [`VisionModel::forward_many_async`] returns; every list in the configs' order.
pub struct ManyOutput {
    pub outs: Vec<VisionOutput>,
    /// ms of the shared path (embedding and unpruned layers) each pass started from.
    pub before: Vec<f64>,
    /// ms of each pass's own layers after that.
    pub own: Vec<f64>,
    /// ms of the whole shared path, each layer counted once.
    pub shared_ms: f64,
}

impl ManyOutput {
    /// What pass `i` alone takes: its shared path and its own layers.
    pub fn pass_ms(&self, i: usize) -> f64 {
        self.before[i] + self.own[i]
    }

    /// The comparison's passes as run: the shared path once, every pass's own layers.
    pub fn passes_ms(&self) -> f64 {
        self.shared_ms + self.own.iter().sum::<f64>()
    }

    /// The same passes one after another, each from scratch.
    pub fn sequential_ms(&self) -> f64 {
        (0..self.outs.len()).map(|i| self.pass_ms(i)).sum()
    }
}

/// The tokens after the first `layer` layers of an unpruned pass, with the FLOPs and token
/// counts spent on them: where a pass continues (shared by the methods of a comparison).
#[derive(Clone)]
struct Prefix {
    x: Tensor,
    layer: usize,
    flops: f64,
    flops_unpruned: f64,
    tokens: Vec<usize>,
}

impl Prefix {
    /// Right after the embedding (its FLOPs counted).
    fn start(x: &Tensor, m: &VisionModel) -> Prefix {
        let c = &m.cfg;
        let f = 2.0 * (c.num_patches() * c.num_channels * c.patch_size.pow(2) * c.hidden_size) as f64;
        Prefix { x: x.clone(), layer: 0, flops: f, flops_unpruned: f, tokens: Vec::new() }
    }

    /// One more unpruned layer (layer `i`, which must be `self.layer`).
    fn then(self, m: &VisionModel, i: usize) -> Result<Prefix> {
        let l = &m.layers[i];
        let n = self.x.dim(1)?;
        let f = l.flops(n, n);
        let mut tokens = self.tokens;
        tokens.push(n);
        Ok(Prefix { x: l.forward(&self.x, false)?, layer: i + 1, flops: self.flops + f, flops_unpruned: self.flops_unpruned + f, tokens })
    }
}

/// ToMe's state through a pass: merges per layer, each token's size (patches it holds; none
/// until the first merge, so a pass that merges nothing is the plain tower), and each merge's
/// destinations (kept on the device, read once at the end for the merge map).
struct Merging {
    merges: Vec<usize>,
    sizes: Option<Tensor>,
    dests: Vec<(Tensor, usize)>,
}

impl Merging {
    /// One layer with merging between its attention and its MLP, recorded without a read-back;
    /// the layer's FLOPs per image.
    fn layer(&mut self, layer: &EncoderLayer, x: &Tensor, i: usize) -> Result<(Tensor, f64)> {
        let s = x.shape();
        let (b, t, h) = (s[0], s[1], s[2]);
        let (y, qkv) = layer.attend(x, self.sizes.as_ref())?;
        let r = self.merges.get(i).copied().unwrap_or(0).min(tome::max_merge(t));
        if r == 0 {
            return Ok((layer.mlp(&y)?, layer.flops(t, t)));
        }
        let dest = Tensor::tome_match(&qkv, layer.heads(), r)?;
        let n_out = t - r;
        let sizes = match self.sizes.take() {
            Some(s) => s,
            None => Tensor::from_f32(vec![1.0; b * t], &[b, t], &x.device())?,
        };
        let (y, sizes) = Tensor::tome_merge(&y, &sizes, &dest, n_out)?;
        self.sizes = Some(sizes);
        self.dests.push((dest, t));
        // The method's own cost beside the layer's: the similarities of the matching and one
        // weighted add per merged value.
        let d = h / layer.heads();
        let flops = layer.flops(t, n_out) + 2.0 * ((t / 2) * t.div_ceil(2) * d + t * h) as f64;
        Ok((layer.mlp(&y)?, flops))
    }

    /// For each image, the token (1.., CLS is 0) each of the `np` patches ended in.
    async fn groups(&self, b: usize, np: usize) -> Result<Vec<Vec<u32>>> {
        let mut groups: Vec<Vec<u32>> = vec![(1..=np as u32).collect(); b];
        for (dest, t) in &self.dests {
            let d = dest.to_vec_u32_async().await?;
            for (img, g) in groups.iter_mut().enumerate() {
                for p in g.iter_mut() {
                    *p = *d.get(img * t + *p as usize).ok_or_else(|| Error::Backend("ToMe destination out of range".into()))?;
                }
            }
        }
        Ok(groups)
    }
}

impl VisionModel {
    pub fn load(w: &Weights, cfg: &VisionConfig, projection_dim: usize, dev: &Device) -> Result<Self> {
        let v = w.pp("vision_model");
        let (h, p, c) = (cfg.hidden_size, cfg.patch_size, cfg.num_channels);
        let e = v.pp("embeddings");
        let patch_w = LinearWeight::new_unquantized(e.pp("patch_embedding").get_f32("weight", &[h, c, p, p])?, [h, c * p * p], dev)?;
        let dims = layer_dims(cfg)?;
        let layers = (0..cfg.num_hidden_layers).map(|i| EncoderLayer::load(&v.pp("encoder.layers").pp(i), dims, dev)).collect::<Result<Vec<_>>>()?;
        Ok(VisionModel {
            cfg: cfg.clone(),
            patch_w,
            class_emb: e.get("class_embedding", &[h], dev)?.reshape(&[1, 1, h])?,
            pos_emb: e.pp("position_embedding").get("weight", &[cfg.num_patches() + 1, h], dev)?,
            pre_ln: LayerNorm::load(&v.pp("pre_layrnorm"), h, cfg.layer_norm_eps, dev)?,
            layers,
            post_ln: LayerNorm::load(&v.pp("post_layernorm"), h, cfg.layer_norm_eps, dev)?,
            proj: w.pp("visual_projection").get_linear("weight", [projection_dim, h], dev)?,
        })
    }

    /// `pixel_values`: `[B, C, S, S]` as made by [`crate::image::ClipPreprocess`].
    pub fn forward(&self, pixel_values: &Tensor, prune: Option<&PruneConfig>, t: &mut Timings) -> Result<VisionOutput> {
        crate::tensor::block_on_for([&pixel_values.device()], self.forward_async(pixel_values, prune, t))
    }

    /// The forward pass, written once: the whole pass is recorded without waiting for the
    /// device; the kept indices are read back (awaited) once at the end (DivPrune and VisionZip
    /// also read back their layer's features to choose on the host).
    pub async fn forward_async(&self, pixel_values: &Tensor, prune: Option<&PruneConfig>, t: &mut Timings) -> Result<VisionOutput> {
        let x = self.embed(pixel_values, prune.into_iter())?;
        t.lap("patch_embed");
        self.encode_from(Prefix::start(&x, self), prune, t).await
    }

    /// Several methods on the same images (`None`: the unpruned pass), sharing the work they
    /// have in common: the patch embedding, and each unpruned layer before a method's first
    /// pruning layer runs once for all the methods that prune later (ToMe merges from layer 0,
    /// so it shares the embedding only). Returns the outputs in `configs` order, each with the
    /// FLOPs of the whole pass it stands for, and the times (device work awaited in each part).
    pub async fn forward_many_async(&self, pixel_values: &Tensor, configs: &[Option<PruneConfig>]) -> Result<ManyOutput> {
        let t0 = crate::clock::now_ms();
        let x = self.embed(pixel_values, configs.iter().flatten())?;
        let depth = self.layers.len();
        // Where each pass leaves the unpruned path; passes run in that order while one prefix
        // advances, so each layer before a pruning layer runs once for all.
        let starts = configs
            .iter()
            .map(|c| match c {
                Some(p) if p.tome_schedule(self.cfg.num_patches(), depth)?.is_some() => Ok(0),
                Some(p) if !p.is_identity() => Ok(p.layers.first().copied().unwrap_or(depth)),
                _ => Ok(depth),
            })
            .collect::<Result<Vec<usize>>>()?;
        let mut order: Vec<usize> = (0..configs.len()).collect();
        order.sort_by_key(|&i| starts[i]);
        let mut prefix = Prefix::start(&x, self);
        prefix.x.narrow(1, 0, 1)?.to_vec_f32_async().await?;
        // ms of the unpruned path so far: embedding, then each prefix layer as it runs.
        let mut path_ms = crate::clock::now_ms() - t0;
        let n = configs.len();
        let (mut outs, mut before, mut own): (Vec<Option<VisionOutput>>, _, _) = ((0..n).map(|_| None).collect(), vec![0.0; n], vec![0.0; n]);
        for i in order {
            let t1 = crate::clock::now_ms();
            while prefix.layer < starts[i] {
                let l = prefix.layer;
                prefix = prefix.then(self, l)?;
            }
            prefix.x.narrow(1, 0, 1)?.to_vec_f32_async().await?;
            let t2 = crate::clock::now_ms();
            path_ms += t2 - t1;
            before[i] = path_ms;
            let o = self.encode_from(prefix.clone(), configs[i].as_ref(), &mut Timings::start()).await?;
            o.image_embeds.to_vec_f32_async().await?;
            own[i] = crate::clock::now_ms() - t2;
            outs[i] = Some(o);
        }
        let outs = outs.into_iter().map(|o| o.ok_or_else(|| Error::Backend("a compared pass did not run".into()))).collect::<Result<Vec<_>>>()?;
        Ok(ManyOutput { outs, before, own, shared_ms: path_ms })
    }

    /// Checks the input and the settings, and embeds: patches, CLS, positions, pre-LayerNorm.
    fn embed<'a>(&self, pixel_values: &Tensor, configs: impl Iterator<Item = &'a PruneConfig>) -> Result<Tensor> {
        let (s, c) = (self.cfg.image_size, self.cfg.num_channels);
        let shape = pixel_values.shape();
        if shape.len() != 4 || shape[1] != c || shape[2] != s || shape[3] != s {
            return Err(Error::arg(format!("pixel_values must be [B, {c}, {s}, {s}], got {shape:?}")));
        }
        for p in configs {
            if p.scorer.in_language_model() {
                return Err(Error::arg(format!("{} prunes inside a language model (Qwen2.5-VL's); CLIP's vision tower has none", p.scorer)));
            }
            p.validate(self.layers.len())?;
            p.tome_schedule(self.cfg.num_patches(), self.layers.len())?;
        }
        let b = shape[0];
        let patches = self.patch_w.forward(&pixel_values.patchify(self.cfg.patch_size)?, None)?;
        let cls = Tensor::cat(&vec![&self.class_emb; b], 0)?;
        let x = Tensor::cat(&[&cls, &patches], 1)?.add(&self.pos_emb)?;
        self.pre_ln.forward(&x)
    }

    /// The layers from `from.layer` on, pruning or merging as `prune` says (its layers before
    /// `from.layer` must already be behind: the prefix ran them unpruned).
    async fn encode_from(&self, from: Prefix, prune: Option<&PruneConfig>, t: &mut Timings) -> Result<VisionOutput> {
        let Prefix { x, layer: start, mut flops, mut flops_unpruned, mut tokens } = from;
        let b = x.dim(0)?;
        let np = self.cfg.num_patches();
        let schedule = match prune {
            Some(p) => p.tome_schedule(np, self.layers.len())?,
            None => None,
        };
        if let Some(p) = prune.filter(|p| !p.is_identity()) {
            let first = if schedule.is_some() { 0 } else { p.layers.first().copied().unwrap_or(0) };
            if first < start {
                return Err(Error::Backend(format!("{}: prunes at layer {first}, before the shared prefix's end ({start})", p.scorer)));
            }
        }
        // keep = 1 runs the unpruned path (bit-identical) and reports every patch as kept.
        let identity_steps: Vec<PruneStep> = match prune {
            Some(p) if p.is_identity() && schedule.is_none() => {
                p.layers.iter().map(|&l| PruneStep { layer: l, kept: vec![(0..np as u32).collect(); b] }).collect()
            }
            _ => Vec::new(),
        };
        let prune = prune.filter(|p| !p.is_identity() && schedule.is_none());
        let mut tome = schedule.map(|merges| Merging { merges, sizes: None, dests: Vec::new() });
        let mut x = x;

        // Kept positions stay on the device during the pass (no per-step read-back, so a GPU
        // pass is recorded in one go); they are mapped to grid indices at the end.
        let mut selections: Vec<(usize, Tensor, usize)> = Vec::new();
        // VisionZip's merge map (one step only), per image.
        let mut zipped: Option<Vec<Vec<u32>>> = None;
        let h = self.cfg.hidden_size;
        let mut scores = Vec::new();
        for (i, layer) in self.layers.iter().enumerate().skip(start) {
            let n = x.dim(1)?;
            tokens.push(n);
            flops_unpruned += layer.flops(np + 1, np + 1);
            if let Some(m) = tome.as_mut() {
                let (y, f) = m.layer(layer, &x, i)?;
                (x, flops) = (y, flops + f);
                t.lap(&format!("block_{i}"));
                continue;
            }
            match prune.filter(|p| p.layers.contains(&i)) {
                Some(p) if p.scorer.selects_on_host() => {
                    let k = prune::n_keep(p.keep, n - 1);
                    let (y, qkv) = layer.attend(&x, None)?;
                    let patches = y.narrow(1, 1, n - 1)?;
                    let (y, kept, kk, sc, extra) = match p.scorer {
                        Scorer::VisionZip => {
                            let cls_attn = layer.cls_attention(&qkv)?;
                            let z = visionzip::compress_async(&y, &qkv.narrow(2, h, h)?, &cls_attn, layer.heads(), k).await?;
                            let kk = z.dominant.dim(1)?;
                            if z.plans.iter().any(|pl| !pl.targets.is_empty()) {
                                zipped = Some(z.plans.iter().map(|pl| pl.groups.clone()).collect());
                            }
                            (z.x, z.dominant, kk, z.scores, z.flops)
                        }
                        _ => {
                            let (kept, sc, f) = divprune::select_async(&patches, k).await?;
                            let y = Tensor::cat(&[&y.narrow(1, 0, 1)?, &patches.gather_rows(&kept)?], 1)?;
                            (y, kept, k, sc, f)
                        }
                    };
                    selections.push((i, kept, kk));
                    scores.push(sc);
                    flops += layer.flops(n, k + 1) + extra;
                    x = layer.mlp(&y)?;
                }
                Some(p) => {
                    let k = prune::n_keep(p.keep, n - 1);
                    let (y, sel) = layer.forward_pruned(&x, &p.scorer, k, selections.len())?;
                    selections.push((i, sel.kept, k));
                    scores.push(sel.scores);
                    flops += layer.flops(n, k + 1);
                    x = y;
                }
                None => {
                    flops += layer.flops(n, n);
                    x = layer.forward(&x, false)?;
                }
            }
            t.lap(&format!("block_{i}"));
        }
        // The first wait for the device (GPU): the blocks above only recorded their work.
        let mut steps = identity_steps;
        let mut orig: Vec<Vec<u32>> = vec![(0..np as u32).collect(); b];
        for (layer, kept, k) in selections {
            orig = prune::compose(&orig, &kept.to_vec_u32_async().await?, k)?;
            steps.push(PruneStep { layer, kept: orig.clone() });
        }
        let groups = match (&tome, zipped) {
            (Some(m), _) => m.groups(b, np).await?,
            (None, Some(z)) => z,
            (None, None) => Vec::new(),
        };
        if !steps.is_empty() || !groups.is_empty() {
            t.lap("sync");
        }
        let pooled = self.post_ln.forward(&x.narrow(1, 0, 1)?.reshape(&[b, h])?)?;
        let image_embeds = self.proj.forward(&pooled, None)?;
        let head = 2.0 * (h * self.proj.out_features()) as f64;
        t.lap("head");
        Ok(VisionOutput {
            last_hidden_state: x,
            pooled,
            image_embeds,
            steps,
            groups,
            scores,
            tokens_per_layer: tokens,
            flops: flops + head,
            flops_unpruned: flops_unpruned + head,
        })
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }
}
