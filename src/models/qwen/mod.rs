//! Qwen2.5-VL (`Qwen/Qwen2.5-VL-3B-Instruct`, the 7B) through the same tensor seam as CLIP and
//! Mamba, with visual-token pruning: merged visual tokens (2×2 units) are scored by the L2 norm
//! of their keys (or queries) at a full-attention vision block, the top p are kept, the rest
//! never reach the language model, and each kept token keeps its original M-RoPE position ids.
//!
//! Native builds load from disk (`load_dir`: sharded safetensors with
//! `model.safetensors.index.json`, or one file); nothing else here is native-only.

#[cfg(not(target_arch = "wasm32"))]
mod checkpoint;
pub mod config;
pub mod processor;
pub mod text;
pub mod vision;
mod warm_up;

use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::models::lm::{decode, ByteBpe, SampleOptions, Step};
use crate::prune::{divprune, n_keep, random_scores, top_k_ascending, Scorer};
use crate::tensor::{Device, Tensor};
use crate::weights::Weights;
#[cfg(not(target_arch = "wasm32"))]
pub use checkpoint::{load_checkpoint, shard_names};
pub use config::{ProcessorConfig, QwenConfig};
use processor::ImagePatches;
use serde::Serialize;
use text::{KvCache, TextModel};
use vision::VisionTower;

pub const IMAGE_PAD: &str = "<|image_pad|>";
/// Prompt tokens the language model runs at once in a prefill (the default of
/// [`QwenVL::prefill_chunk`]).
pub const LM_PREFILL_CHUNK: usize = 512;

pub struct QwenVL {
    pub cfg: QwenConfig,
    pub processor: ProcessorConfig,
    pub vision: VisionTower,
    pub text: TextModel,
    pub tokenizer: Option<ByteBpe>,
    pub device: Device,
    /// Prompt tokens the language model runs at once in a prefill ([`LM_PREFILL_CHUNK`]).
    pub prefill_chunk: usize,
}

/// Visual-token pruning settings.
#[derive(Clone, Debug)]
pub struct QwenPrune {
    pub scorer: Scorer,
    /// Fraction of visual tokens kept, in (0, 1].
    pub keep: f32,
    /// The vision block whose projections score the tokens (default: the last full-attention one).
    pub block: Option<usize>,
    /// FastV: the language-model layer K at which visual tokens are dropped (layers 0..K run
    /// on every token, the attention of layer K−1 ranks them, layers K.. run on the kept).
    /// Default [`FASTV_LAYER`].
    pub llm_layer: Option<usize>,
}

impl QwenPrune {
    /// `scorer` keeping `keep` of the visual tokens, every other setting at its default.
    pub fn new(scorer: Scorer, keep: f32) -> QwenPrune {
        QwenPrune { scorer, keep, block: None, llm_layer: None }
    }
}

/// FastV's default layer: after the second decoder layer, as the paper.
pub const FASTV_LAYER: usize = 2;

/// What a prefill did.
#[derive(Clone, Debug, Serialize)]
pub struct PrefillReport {
    pub visual_tokens_before: usize,
    pub visual_tokens_after: usize,
    /// Kept merge units, ascending (row-major over the merged grid).
    pub kept: Vec<u32>,
    pub prompt_tokens: usize,
    /// Tokens each language-model layer ran on (FastV: all before its layer, the kept after).
    pub tokens_per_layer: Vec<usize>,
    /// The language model's prefill FLOPs over the unpruned prompt's.
    pub flops_ratio: f64,
    pub vision_ms: f64,
    pub prefill_ms: f64,
}

/// The state after a prefill: the cache and the last position's logits.
pub struct Prefilled {
    pub cache: KvCache,
    /// `[V]` of the last prompt token.
    pub logits: Vec<f32>,
    /// `[L', V]` for every prompt token run (with `all_logits`).
    pub all_logits: Option<Vec<f32>>,
    /// The 3-axis position ids of the tokens run.
    pub positions: [Vec<u32>; 3],
    pub report: PrefillReport,
}

#[derive(Clone, Debug, Serialize)]
pub struct GenerateReport {
    pub prefill: PrefillReport,
    pub tokens: Vec<u32>,
    pub text: String,
    pub decode_ms: f64,
    pub tokens_per_s: f64,
    pub stopped_at_eos: bool,
}

impl QwenVL {
    pub fn load(cfg: QwenConfig, processor: ProcessorConfig, w: &Weights, tokenizer: Option<ByteBpe>, device: &Device) -> Result<QwenVL> {
        // The hub layout (`visual.*`, `model.*`) or transformers 5's (`model.visual.*`, `model.language_model.*`).
        let (vis, lm) = if w.contains("visual.patch_embed.proj.weight") { ("visual", "model") } else { ("model.visual", "model.language_model") };
        let vision = VisionTower::load(&cfg.vision, &w.pp(vis), device)?;
        let head = w.contains("lm_head.weight").then(|| w.pp("lm_head"));
        if !cfg.text.tie_word_embeddings && head.is_none() {
            return Err(Error::MissingTensor { file: w.file().to_string(), name: "lm_head.weight".into() });
        }
        let text = TextModel::load(&cfg.text, &w.pp(lm), head.as_ref(), device)?;
        if cfg.vision.out_hidden_size != cfg.text.hidden_size {
            return Err(Error::arg(format!("vision out_hidden_size {} ≠ text hidden_size {}", cfg.vision.out_hidden_size, cfg.text.hidden_size)));
        }
        let model = QwenVL { cfg, processor, vision, text, tokenizer, device: device.clone(), prefill_chunk: LM_PREFILL_CHUNK };
        // The GPU's pipelines compiled now, from what the warm-up dispatches, not in the first request.
        device.compile_by_recording(|| crate::tensor::block_on(model.warm_up()))?;
        Ok(model)
    }

    /// Loads a directory in the hub layout: `config.json`, `model.safetensors.index.json` and
    /// its shards (or `model.safetensors`), `tokenizer.json` and `preprocessor_config.json`
    /// when present.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_dir(dir: &std::path::Path, device: &Device) -> Result<QwenVL> {
        let read = |name: &str| -> Result<String> {
            let p = dir.join(name);
            std::fs::read_to_string(&p).map_err(|e| Error::io(p.display(), e))
        };
        let cfg = QwenConfig::from_json(&dir.join("config.json").display().to_string(), &read("config.json")?)?;
        let processor = if dir.join("preprocessor_config.json").exists() {
            ProcessorConfig::from_json("preprocessor_config.json", &read("preprocessor_config.json")?)?
        } else {
            ProcessorConfig::default()
        };
        let tokenizer = if dir.join("tokenizer.json").exists() { Some(ByteBpe::from_tokenizer_json(&read("tokenizer.json")?)?) } else { None };
        let w = load_checkpoint(dir)?;
        QwenVL::load(cfg, processor, &w, tokenizer, device)
    }

    /// The chat template for one image and one user message, with a single image placeholder
    /// (expanded to one pad token per visual token by [`QwenVL::prompt_ids`]).
    pub fn chat_prompt(user: &str) -> String {
        format!("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|>{IMAGE_PAD}<|vision_end|>{user}<|im_end|>\n<|im_start|>assistant\n")
    }

    /// Token ids of `text` with its one image placeholder repeated `n_visual` times.
    pub fn prompt_ids(&self, text: &str, n_visual: usize) -> Result<Vec<u32>> {
        let tok = self.tokenizer.as_ref().ok_or_else(|| Error::arg("this model was loaded without tokenizer.json"))?;
        let ids = tok.encode(text)?;
        let pad = self.cfg.image_token_id;
        let at: Vec<usize> = ids.iter().enumerate().filter(|(_, &t)| t == pad).map(|(i, _)| i).collect();
        match at.len() {
            0 => Err(Error::arg(format!("the prompt has no {IMAGE_PAD} placeholder for the image"))),
            1 => {
                let mut out = ids[..at[0]].to_vec();
                out.extend(std::iter::repeat_n(pad, n_visual));
                out.extend_from_slice(&ids[at[0] + 1..]);
                Ok(out)
            }
            n => Err(Error::arg(format!("the prompt has {n} image placeholders; one image takes exactly one"))),
        }
    }

    /// Checks pruning settings against this model (keep in (0, 1], the scoring block inside
    /// the vision tower, a scorer this tower has) before any work; returns the block and
    /// projection that score the units, when a scorer needs them.
    pub fn prune_plan(&self, prune: Option<&QwenPrune>) -> Result<Option<(usize, crate::prune::KqWhich)>> {
        let Some(p) = prune else { return Ok(None) };
        let v = &self.cfg.vision;
        if !(p.keep > 0.0 && p.keep <= 1.0) {
            return Err(Error::arg(format!("keep must be in (0, 1], got {}", p.keep)));
        }
        let block = p.block.or_else(|| v.fullatt_block_indexes.last().copied()).unwrap_or(v.depth.saturating_sub(1));
        if block >= v.depth {
            return Err(Error::arg(format!("scoring block {block} of a {}-block vision tower (blocks 0..={})", v.depth, v.depth.saturating_sub(1))));
        }
        match p.scorer {
            Scorer::KqNorm(w) if p.keep < 1.0 => Ok(Some((block, w))),
            Scorer::ClsAttn => Err(Error::arg("cls-attn needs a CLS token; Qwen2.5-VL's vision tower has none (use kq-norm or random)")),
            Scorer::Tome { .. } => {
                Err(Error::arg("tome (token merging) is implemented for CLIP's vision tower only; for Qwen2.5-VL use kq-norm, random or divprune"))
            }
            Scorer::VisionZip => {
                Err(Error::arg("visionzip ranks by the attention from CLS; Qwen2.5-VL's vision tower has none (use kq-norm, random, divprune or fastv)"))
            }
            Scorer::FastV | Scorer::Dart => {
                let depth = self.text.num_layers();
                match p.llm_layer.unwrap_or(FASTV_LAYER) {
                    k if k == 0 || k >= depth => Err(Error::arg(format!(
                        "--llm-layer {k}: {} drops tokens after a layer of the language model's {depth} (1..={}), so that layers before it see every token and layers after run on fewer",
                        p.scorer,
                        depth.saturating_sub(1)
                    ))),
                    _ => Ok(None),
                }
            }
            _ => Ok(None),
        }
    }

    /// Checks a request's size before any work: at most `max_prompt_tokens` prompt tokens
    /// (the error gives the KV cache they would take), and prompt plus new tokens within the
    /// model's context.
    pub fn check_lengths(&self, prompt_tokens: usize, max_new_tokens: usize, max_prompt_tokens: usize) -> Result<()> {
        let gib = |b: usize| b as f64 / (1u64 << 30) as f64;
        if prompt_tokens > max_prompt_tokens {
            return Err(Error::arg(format!(
                "the prompt is {prompt_tokens} tokens, over the limit of {max_prompt_tokens} (--max-prompt-tokens; its KV cache alone would take {:.1} GiB)",
                gib(self.text.kv_bytes(prompt_tokens))
            )));
        }
        let ctx = self.cfg.text.max_position_embeddings;
        if prompt_tokens + max_new_tokens > ctx {
            return Err(Error::arg(format!(
                "{prompt_tokens} prompt tokens + {max_new_tokens} new tokens exceed the model's context of {ctx} (max_position_embeddings)"
            )));
        }
        Ok(())
    }

    /// Preprocesses an encoded image (PNG, JPEG, …).
    pub fn image(&self, bytes: &[u8]) -> Result<ImagePatches> {
        processor::preprocess(&crate::image::decode(bytes)?, &self.cfg.vision, &self.processor)
    }

    /// transformers' `get_rope_index` for one image: text positions count up on all three axes;
    /// the image's units take (start, start + row, start + column); text after the image
    /// resumes at start + max(rows, columns).
    pub fn positions(&self, ids: &[u32], grid_h: usize, grid_w: usize) -> [Vec<u32>; 3] {
        let m = self.cfg.vision.spatial_merge_size;
        let (lh, lw) = (grid_h / m, grid_w / m);
        let mut pos: [Vec<u32>; 3] = [Vec::with_capacity(ids.len()), Vec::with_capacity(ids.len()), Vec::with_capacity(ids.len())];
        let mut cur = 0u32;
        let mut i = 0;
        while i < ids.len() {
            if ids[i] == self.cfg.image_token_id {
                let start = cur;
                for u in 0..lh * lw {
                    pos[0].push(start);
                    pos[1].push(start + (u / lw) as u32);
                    pos[2].push(start + (u % lw) as u32);
                }
                i += lh * lw;
                cur = start + lh.max(lw) as u32;
            } else {
                for p in pos.iter_mut() {
                    p.push(cur);
                }
                cur += 1;
                i += 1;
            }
        }
        for p in pos.iter_mut() {
            p.truncate(ids.len());
        }
        pos
    }

    /// Runs the vision tower, prunes the visual tokens (with `prune`), and prefills the
    /// language model on `ids` (one pad token per visual token). `all_logits` also returns the
    /// logits of every prompt token run.
    pub async fn prefill_async(&self, ids: &[u32], img: &ImagePatches, prune: Option<&QwenPrune>, all_logits: bool) -> Result<Prefilled> {
        let v = &self.cfg.vision;
        let m = v.spatial_merge_size;
        let n_units = img.tokens(m);
        let pad = self.cfg.image_token_id;
        let first = ids.iter().position(|&t| t == pad).ok_or_else(|| Error::arg(format!("the prompt has no {IMAGE_PAD} placeholder for the image")))?;
        let count = ids.iter().filter(|&&t| t == pad).count();
        if count != n_units || ids[first..first + count].iter().any(|&t| t != pad) {
            return Err(Error::arg(format!("the prompt has {count} image pad tokens; the image needs {n_units} in one run")));
        }
        let score = self.prune_plan(prune)?;
        let t0 = now_ms();
        let out = self.vision.forward_async(img, score).await?;
        // FastV and DART prune inside the language model: every visual token enters it.
        let fastv = prune.filter(|p| p.keep < 1.0 && p.scorer.in_language_model());
        let kept: Vec<u32> = match prune {
            _ if fastv.is_some() => (0..n_units as u32).collect(),
            // DivPrune as its paper runs it in LLaVA: on the visual tokens the LM receives.
            Some(p) if p.keep < 1.0 && p.scorer == Scorer::DivPrune => {
                let units = out.embeds.reshape(&[1, n_units, v.out_hidden_size])?;
                divprune::select_async(&units, n_keep(p.keep, n_units)).await?.0.to_vec_u32_async().await?
            }
            Some(p) if p.keep < 1.0 => {
                let scores = match (p.scorer, &out.unit_scores) {
                    (Scorer::Random { seed }, _) => random_scores(seed, 0, 1, n_units),
                    (_, Some(s)) => s.clone(),
                    _ => return Err(Error::arg("no scores for pruning")),
                };
                top_k_ascending(&scores, n_keep(p.keep, n_units))
            }
            _ => (0..n_units as u32).collect(),
        };
        let embeds = if kept.len() == n_units {
            out.embeds
        } else {
            let idx = Tensor::from_u32(kept.clone(), &[1, kept.len()], &self.device)?;
            out.embeds.reshape(&[1, n_units, v.out_hidden_size])?.gather_rows(&idx)?.reshape(&[kept.len(), v.out_hidden_size])?
        };
        // Sync so the vision time is the vision tower's (the GPU queues otherwise).
        if matches!(self.device, Device::Gpu(_)) {
            embeds.narrow(0, 0, 1)?.to_vec_f32_async().await?;
        }
        let vision_ms = now_ms() - t0;
        // The LLM input: text before, kept visual tokens, text after; positions gathered.
        let full_pos = self.positions(ids, img.grid_h, img.grid_w);
        let keep_tok: Vec<usize> = (0..first).chain(kept.iter().map(|&u| first + u as usize)).chain(first + n_units..ids.len()).collect();
        let positions = [0, 1, 2].map(|a| keep_tok.iter().map(|&i| full_pos[a][i]).collect::<Vec<u32>>());
        let t1 = now_ms();
        let mut parts = Vec::new();
        if first > 0 {
            parts.push(self.text.embed(&ids[..first])?);
        }
        parts.push(embeds);
        if first + n_units < ids.len() {
            parts.push(self.text.embed(&ids[first + n_units..])?);
        }
        let mut x = Tensor::cat(&parts.iter().collect::<Vec<_>>(), 0)?;
        let mut positions = positions;
        // The language model in chunks of LM_PREFILL_CHUNK tokens: attention scores and MLP
        // activations stay O(chunk) whatever the prompt's length; the LM head runs on every
        // row when they are asked for, else on the last.
        let mut cache = KvCache::default();
        let depth = self.text.num_layers();
        let chunk = self.prefill_chunk.max(1);
        let full_len = x.dim(0)?;
        let mut from = 0;
        let mut kept = kept;
        let mut tokens_per_layer = Vec::with_capacity(depth);
        if let Some(p) = fastv {
            // Layers 0..K on every token; layer K−1 ranks the visual tokens (FastV: the attention
            // they receive; DART: duplication with pivot tokens); the others are dropped from
            // the hidden rows and positions, and layers K.. run on the rest (the caches of 0..K
            // keep every token).
            let k_layer = p.llm_layer.unwrap_or(FASTV_LAYER);
            let k_keep = n_keep(p.keep, n_units);
            let x_in = self.run_chunks(&x, &positions, &mut cache, 0..k_layer - 1)?;
            let xk;
            if p.scorer == Scorer::Dart {
                xk = self.run_chunks(&x_in, &positions, &mut cache, k_layer - 1..k_layer)?;
                let keys = cache.keys(k_layer - 1).ok_or_else(|| Error::Backend("dart: no keys for its layer".into()))?;
                let (kv, h) = (keys.to_vec_f32_async().await?, self.cfg.text.hidden_size);
                // L1 norm of each token's keys over all heads ([1, KV heads, T, d] on the device).
                let d = self.cfg.text.head_dim();
                let mut l1 = vec![0f32; full_len];
                for (i, v) in kv.iter().enumerate() {
                    l1[(i / d) % full_len] += v.abs();
                }
                let normed = self.text.normed(&xk)?.to_vec_f32_async().await?;
                kept = crate::prune::dart::select(&l1, &normed, h, first, n_units, k_keep)?;
            } else {
                let received = self.text.attention_received_async(k_layer - 1, &x_in, &positions, chunk).await?;
                xk = self.run_chunks(&x_in, &positions, &mut cache, k_layer - 1..k_layer)?;
                kept = top_k_ascending(&received[first..first + n_units], k_keep);
            }
            let rows: Vec<u32> = (0..first as u32).chain(kept.iter().map(|&u| first as u32 + u)).chain((first + n_units) as u32..full_len as u32).collect();
            positions = [0, 1, 2].map(|a| rows.iter().map(|&i| positions[a][i as usize]).collect::<Vec<u32>>());
            let idx = Tensor::from_u32(rows.clone(), &[1, rows.len()], &self.device)?;
            x = xk.reshape(&[1, full_len, self.cfg.text.hidden_size])?.gather_rows(&idx)?.reshape(&[rows.len(), self.cfg.text.hidden_size])?;
            tokens_per_layer.extend(std::iter::repeat_n(full_len, k_layer));
            from = k_layer;
        }
        let len = x.dim(0)?;
        tokens_per_layer.resize(depth, len);
        let flops: f64 = tokens_per_layer.iter().map(|&t| self.text.layer_flops(t, t)).sum();
        let flops_ratio = flops / (depth as f64 * self.text.layer_flops(ids.len(), ids.len()));
        let v = self.cfg.text.vocab_size;
        let mut all = if all_logits { Some(Vec::with_capacity(len * v)) } else { None };
        let mut last = Vec::new();
        for start in (0..len).step_by(chunk) {
            let n = chunk.min(len - start);
            let pos = [0, 1, 2].map(|a| positions[a][start..start + n].to_vec());
            let h = self.text.forward_layers(&x.narrow(0, start, n)?, &pos, &mut cache, from..depth)?;
            let h = self.text.final_norm(&h)?;
            if let Some(all) = all.as_mut() {
                all.extend(self.text.logits(&h)?.to_vec_f32_async().await?);
            } else if start + n == len {
                last = self.text.logits(&h.narrow(0, n - 1, 1)?)?.to_vec_f32_async().await?;
            }
        }
        if let Some(all) = &all {
            last = all[(len - 1) * v..].to_vec();
        }
        crate::error::check_finite("the prompt's logits", &last)?;
        let prefill_ms = now_ms() - t1;
        cache.next_pos = full_pos.iter().flat_map(|p| p.iter().copied()).max().map_or(0, |m| m + 1);
        let report = PrefillReport {
            visual_tokens_before: n_units,
            visual_tokens_after: kept.len(),
            kept,
            prompt_tokens: len,
            tokens_per_layer,
            flops_ratio,
            vision_ms,
            prefill_ms,
        };
        Ok(Prefilled { cache, logits: last, all_logits: all, positions, report })
    }

    /// Rows `x` `[L, H]` at `positions` through `layers` of the language model in chunks of
    /// [`QwenVL::prefill_chunk`] (the cache grows by L in each of those layers): `[L, H]`.
    fn run_chunks(&self, x: &Tensor, positions: &[Vec<u32>; 3], cache: &mut KvCache, layers: std::ops::Range<usize>) -> Result<Tensor> {
        let len = x.dim(0)?;
        let chunk = self.prefill_chunk.max(1);
        let mut rows = Vec::with_capacity(len.div_ceil(chunk));
        for start in (0..len).step_by(chunk) {
            let n = chunk.min(len - start);
            let pos = [0, 1, 2].map(|a| positions[a][start..start + n].to_vec());
            rows.push(self.text.forward_layers(&x.narrow(0, start, n)?, &pos, cache, layers.clone())?);
        }
        Tensor::cat(&rows.iter().collect::<Vec<_>>(), 0)
    }

    /// One decoding step: the logits after `token`.
    pub async fn step_async(&self, token: u32, cache: &mut KvCache) -> Result<Vec<f32>> {
        let p = cache.next_pos;
        // On the CPU (each op eager) the step runs as one pass inside the pool with its workers
        // kept awake between its products ([`crate::tensor::cpu_pass`]).
        let logits = crate::tensor::cpu_pass(&self.device, || -> Result<Tensor> {
            let x = self.text.embed(&[token])?;
            let h = self.text.forward(&x, &[vec![p], vec![p], vec![p]], cache)?;
            self.text.logits(&h)
        })?;
        cache.next_pos += 1;
        let logits = logits.to_vec_f32_async().await?;
        crate::error::check_finite("the step's logits", &logits)?;
        Ok(logits)
    }

    /// Describes `image` for `user` (the chat template applied), streaming each new token.
    pub async fn generate_async(
        &self,
        img: &ImagePatches,
        user: &str,
        prune: Option<&QwenPrune>,
        o: &SampleOptions,
        mut on_token: impl FnMut(u32),
    ) -> Result<GenerateReport> {
        o.validate()?;
        let ids = self.prompt_ids(&Self::chat_prompt(user), img.tokens(self.cfg.vision.spatial_merge_size))?;
        let mut pre = self.prefill_async(&ids, img, prune, false).await?;
        // Stop tokens: the config's, and the chat's end-of-turn / end-of-text tokens.
        let mut stops = self.cfg.eos_token_ids.clone();
        if let Some(t) = &self.tokenizer {
            stops.extend(["<|im_end|>", "<|endoftext|>"].iter().filter_map(|s| t.token_id(s)));
        }
        stops.extend(o.eos);
        let logits = std::mem::take(&mut pre.logits);
        let mut s = Stepper { model: self, cache: pre.cache };
        let d = decode(&mut s, logits, o, &stops, |t, _| on_token(t)).await?;
        let text = self.tokenizer.as_ref().map(|t| t.decode(&d.tokens)).unwrap_or_default();
        Ok(GenerateReport {
            prefill: pre.report,
            tokens_per_s: d.tokens_per_s,
            tokens: d.tokens,
            text,
            decode_ms: d.decode_ms,
            stopped_at_eos: d.stopped_at_eos,
        })
    }

    pub fn generate(&self, img: &ImagePatches, user: &str, prune: Option<&QwenPrune>, o: &SampleOptions, on_token: impl FnMut(u32)) -> Result<GenerateReport> {
        crate::tensor::block_on(self.generate_async(img, user, prune, o, on_token))
    }

    pub fn prefill(&self, ids: &[u32], img: &ImagePatches, prune: Option<&QwenPrune>, all_logits: bool) -> Result<Prefilled> {
        crate::tensor::block_on_for([&self.device], self.prefill_async(ids, img, prune, all_logits))
    }
}

/// The model with one conversation's cache: what the decode loop steps.
struct Stepper<'a> {
    model: &'a QwenVL,
    cache: KvCache,
}

impl Step for Stepper<'_> {
    async fn step(&mut self, token: u32) -> Result<Vec<f32>> {
        self.model.step_async(token, &mut self.cache).await
    }
}
