//! `effarch bench qwen`: LLM prefill time against the visual-token keep ratio for Qwen2.5-VL
//! at full width (3B's sizes) with reduced depth (the whole vision tower, a few LM layers) and
//! deterministic random weights, one 448×448 image, all ratios interleaved in one process.
//! The vision tower's time is reported apart from the LLM prefill (pruning happens after it).

use super::{median, random_values};
use crate::error::{Error, Result};
use crate::models::qwen::processor::ImagePatches;
use crate::models::qwen::{ProcessorConfig, QwenConfig, QwenPrune, QwenVL};
use crate::prune::{KqWhich, Scorer};
use crate::tensor::Device;
use crate::weights::{serialize_f32, Weights};
use serde::Serialize;

#[derive(Clone, Debug)]
pub struct QwenBenchSpec {
    pub keeps: Vec<f32>,
    /// Image side in pixels (a multiple of 28).
    pub image: usize,
    pub vision_depth: usize,
    pub lm_layers: usize,
    pub iters: usize,
    /// Methods timed side by side at each keep < 1 (one unpruned baseline).
    pub methods: Vec<Scorer>,
    /// FastV's language-model layer.
    pub llm_layer: usize,
    /// Widths: (vision hidden, vision MLP, vision heads, text hidden, text MLP, heads, KV heads).
    pub widths: [usize; 7],
    /// A small vocabulary keeps the random model's memory down. `prefill_ms` includes the LM
    /// head on the last prompt position only (one row of `vocab`), so its share is small.
    pub vocab: usize,
    /// Tokens decoded (greedily) after each timed prefill: 0 times none.
    pub decode: usize,
    /// After the timed rounds, one prefill (and a decoding step) of each setting with the GPU
    /// profile on ([`QwenBenchRow::profile`]).
    pub profile: bool,
}

impl Default for QwenBenchSpec {
    fn default() -> Self {
        // Qwen2.5-VL-3B-Instruct's widths.
        QwenBenchSpec {
            keeps: vec![1.0, 0.5, 0.25],
            image: 448,
            vision_depth: 32,
            lm_layers: 4,
            iters: 2,
            methods: vec![Scorer::KqNorm(KqWhich::Key)],
            llm_layer: crate::models::qwen::FASTV_LAYER,
            widths: [1280, 3420, 16, 2048, 11008, 16, 2],
            vocab: 2048,
            decode: 0,
            profile: false,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct QwenBenchRow {
    /// The pruning method ("unpruned" for the baseline).
    pub method: String,
    pub keep: f32,
    pub visual_tokens: usize,
    pub prompt_tokens: usize,
    pub vision_ms: f64,
    /// The language model over the prompt, including the LM head on its last position.
    pub prefill_ms: f64,
    /// prefill_ms over the unpruned run's (keep 1.0 is always timed, added when not listed).
    pub prefill_ratio: f64,
    /// Prompt tokens over the unpruned run's (the linear part of the cost; FastV's after its layer).
    pub token_ratio: f64,
    /// Tokens each language-model layer ran on.
    pub tokens_per_layer: Vec<usize>,
    /// The language model's prefill FLOPs over the unpruned run's: the bound for prefill_ratio.
    pub flops_ratio: f64,
    /// Greedy decoding after the prefill (with `decode` > 0), ms per token (median of the rounds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decode_ms_per_token: Option<f64>,
    /// With `profile`: one prefill, and one decoding step after it, timed per kernel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<crate::tensor::gpu::GpuProfile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decode_profile: Option<crate::tensor::gpu::GpuProfile>,
}

/// A Qwen2.5-VL of the spec's widths and depths with random weights (hub names).
pub fn random_qwen(spec: &QwenBenchSpec, device: &Device) -> Result<QwenVL> {
    let [vd, vi, vh, td, ti, th, tkv] = spec.widths;
    if spec.widths.contains(&0) || spec.vision_depth == 0 || spec.lm_layers == 0 {
        return Err(Error::arg(format!("widths {:?}, vision depth {} and LM layers {} must all be positive", spec.widths, spec.vision_depth, spec.lm_layers)));
    }
    // Qwen2.5-VL's vision tower: window attention, with full attention in every 8th block
    // (the 3B's `fullatt_block_indexes` 7, 15, 23, 31) and the last one.
    const FULL_ATTENTION_EVERY: usize = 8;
    let full: Vec<usize> = (0..spec.vision_depth).filter(|b| b % FULL_ATTENTION_EVERY == FULL_ATTENTION_EVERY - 1 || *b + 1 == spec.vision_depth).collect();
    // M-RoPE splits each head's rotary half-dimensions over (time, height, width): a quarter
    // to time, the rest halved between height and width (the 3B's [16, 24, 24] of 64).
    let hd = td / th;
    let s = hd / 2;
    let sec = [s / 4, (s - s / 4) / 2, s - s / 4 - (s - s / 4) / 2];
    // The special tokens sit at the top of the (shrunk) vocabulary, as the hub's do.
    let (image_pad, vision_start, vision_end) = (spec.vocab - 1, spec.vocab - 3, spec.vocab - 2);
    let cfg_json = serde_json::json!({
        "model_type": "qwen2_5_vl", "hidden_size": td, "intermediate_size": ti, "num_hidden_layers": spec.lm_layers,
        "num_attention_heads": th, "num_key_value_heads": tkv, "vocab_size": spec.vocab, "rms_norm_eps": 1e-6, "rope_theta": 1e6,
        "tie_word_embeddings": true, "image_token_id": image_pad, "vision_start_token_id": vision_start, "vision_end_token_id": vision_end,
        "eos_token_id": 0, "rope_scaling": {"type": "mrope", "mrope_section": sec},
        "vision_config": {"depth": spec.vision_depth, "hidden_size": vd, "intermediate_size": vi, "num_heads": vh, "out_hidden_size": td,
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112, "fullatt_block_indexes": full}
    });
    let cfg = QwenConfig::from_json("bench", &cfg_json.to_string())?;
    let mut t: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, ones: bool| {
        let n: usize = shape.iter().product();
        let seed = t.len() as u64 + 11;
        t.push((name, shape, if ones { vec![1.0; n] } else { random_values(n, seed, 0.02) }));
    };
    add("visual.patch_embed.proj.weight".into(), vec![vd, 3, 2, 14, 14], false);
    for b in 0..spec.vision_depth {
        let p = format!("visual.blocks.{b}");
        add(format!("{p}.norm1.weight"), vec![vd], true);
        add(format!("{p}.norm2.weight"), vec![vd], true);
        for (n, o, i) in [("attn.qkv", 3 * vd, vd), ("attn.proj", vd, vd), ("mlp.gate_proj", vi, vd), ("mlp.up_proj", vi, vd), ("mlp.down_proj", vd, vi)] {
            add(format!("{p}.{n}.weight"), vec![o, i], false);
            add(format!("{p}.{n}.bias"), vec![o], false);
        }
    }
    add("visual.merger.ln_q.weight".into(), vec![vd], true);
    for (n, o, i) in [("0", 4 * vd, 4 * vd), ("2", td, 4 * vd)] {
        add(format!("visual.merger.mlp.{n}.weight"), vec![o, i], false);
        add(format!("visual.merger.mlp.{n}.bias"), vec![o], false);
    }
    add("model.embed_tokens.weight".into(), vec![spec.vocab, td], false);
    add("model.norm.weight".into(), vec![td], true);
    for l in 0..spec.lm_layers {
        let p = format!("model.layers.{l}");
        add(format!("{p}.input_layernorm.weight"), vec![td], true);
        add(format!("{p}.post_attention_layernorm.weight"), vec![td], true);
        for (n, o, i, bias) in [("q_proj", td, td, true), ("k_proj", tkv * hd, td, true), ("v_proj", tkv * hd, td, true), ("o_proj", td, td, false)] {
            add(format!("{p}.self_attn.{n}.weight"), vec![o, i], false);
            if bias {
                add(format!("{p}.self_attn.{n}.bias"), vec![o], false);
            }
        }
        for (n, o, i) in [("gate_proj", ti, td), ("up_proj", ti, td), ("down_proj", td, ti)] {
            add(format!("{p}.mlp.{n}.weight"), vec![o, i], false);
        }
    }
    let w = Weights::from_bytes("random Qwen2.5-VL", serialize_f32(&t))?;
    drop(t);
    QwenVL::load(cfg, ProcessorConfig::default(), &w, None, device)
}

/// Times prefill at each keep ratio (vision and LLM apart); medians over `iters` rounds after
/// a warm-up, all ratios interleaved per round.
pub fn bench_qwen(spec: &QwenBenchSpec, device: &Device, mut progress: impl FnMut(&str)) -> Result<Vec<QwenBenchRow>> {
    if spec.keeps.is_empty() || spec.iters == 0 || spec.image % 28 != 0 || spec.image == 0 || spec.image > 2048 {
        return Err(Error::arg("the benchmark needs keep ratios, iterations ≥ 1 and an image side that is a positive multiple of 28 up to 2048"));
    }
    if let Some(k) = spec.keeps.iter().find(|&&k| !(k > 0.0 && k <= 1.0)) {
        return Err(Error::arg(format!("keep ratio {k} is outside (0, 1]")));
    }
    if spec.decode > 4096 {
        return Err(Error::arg(format!("--decode {} is over 4096 tokens", spec.decode)));
    }
    if spec.methods.is_empty() {
        return Err(Error::arg("the benchmark needs at least one method"));
    }
    // The unpruned baseline, then each method at each keep < 1.
    let mut settings: Vec<(String, Option<QwenPrune>)> = vec![("unpruned".into(), None)];
    for &method in &spec.methods {
        for &keep in spec.keeps.iter().filter(|&&k| k < 1.0) {
            settings.push((method.to_string(), Some(QwenPrune { scorer: method, keep, block: None, llm_layer: Some(spec.llm_layer) })));
        }
    }
    progress("building the random model …");
    let m = random_qwen(spec, device)?;
    for (_, p) in &settings {
        m.prune_plan(p.as_ref())?;
    }
    let g = spec.image / 14;
    let img = ImagePatches { pixels: random_values(g * g * 3 * 2 * 14 * 14, 3, 1.0), grid_h: g, grid_w: g };
    let n_vis = img.tokens(2);
    let pad = m.cfg.image_token_id;
    // A chat-like prompt: 20 text tokens, the image, 10 text tokens.
    let ids: Vec<u32> = (0..20u32).chain(std::iter::repeat_n(pad, n_vis)).chain(20..30).collect();
    type Times = (Vec<f64>, Vec<f64>, Option<crate::models::qwen::PrefillReport>, Vec<f64>);
    let mut times: Vec<Times> = vec![(Vec::new(), Vec::new(), None, Vec::new()); settings.len()];
    for round in 0..=spec.iters {
        for (i, (name, p)) in settings.iter().enumerate() {
            let mut pre = m.prefill(&ids, &img, p.as_ref(), false)?;
            let r = pre.report;
            if spec.decode > 0 {
                let mut token = crate::models::lm::argmax(&pre.logits) as u32;
                let t0 = crate::clock::now_ms();
                for _ in 0..spec.decode {
                    token = crate::models::lm::argmax(&crate::tensor::block_on(m.step_async(token, &mut pre.cache))?) as u32;
                }
                if round > 0 {
                    times[i].3.push((crate::clock::now_ms() - t0) / spec.decode as f64);
                }
            }
            if round > 0 {
                times[i].0.push(r.vision_ms);
                times[i].1.push(r.prefill_ms);
            }
            progress(&format!(
                "round {round}: {name} keep {}: {} visual tokens, vision {:.0} ms, LLM prefill {:.0} ms",
                p.as_ref().map_or(1.0, |p| p.keep),
                r.visual_tokens_after,
                r.vision_ms,
                r.prefill_ms
            ));
            times[i].2 = Some(r);
        }
    }
    let mut profiles = Vec::new();
    for (_, p) in settings.iter().filter(|_| spec.profile) {
        let mut pre = None;
        let prefill = crate::tensor::block_on(crate::bench::profiled(device, || async {
            pre = Some(m.prefill(&ids, &img, p.as_ref(), false)?);
            Ok(())
        }))?;
        let mut pre = pre.ok_or_else(|| Error::Backend("the profiled prefill did not run".into()))?;
        let token = crate::models::lm::argmax(&pre.logits) as u32;
        let step = crate::tensor::block_on(crate::bench::profiled(device, || async { m.step_async(token, &mut pre.cache).await.map(|_| ()) }))?;
        profiles.push((Some(prefill), Some(step)));
    }
    profiles.resize(settings.len(), (None, None));
    let base = median(times[0].1.clone());
    let base_tokens = times[0].2.as_ref().map_or(1, |r| r.prompt_tokens) as f64;
    settings
        .iter()
        .zip(times)
        .zip(profiles)
        .map(|(((name, p), (v, pt, r, dt)), (profile, decode_profile))| {
            let r = r.ok_or_else(|| Error::Backend("a benchmark setting did not run".into()))?;
            let pm = median(pt);
            Ok(QwenBenchRow {
                method: name.clone(),
                keep: p.as_ref().map_or(1.0, |p| p.keep),
                visual_tokens: r.visual_tokens_after,
                prompt_tokens: r.prompt_tokens,
                vision_ms: median(v),
                prefill_ms: pm,
                prefill_ratio: pm / base,
                token_ratio: r.prompt_tokens as f64 / base_tokens,
                tokens_per_layer: r.tokens_per_layer,
                flops_ratio: r.flops_ratio,
                decode_ms_per_token: (!dt.is_empty()).then(|| median(dt)),
                profile,
                decode_profile,
            })
        })
        .collect()
}
