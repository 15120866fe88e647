//! Qwen2.5-VL against transformers' `Qwen2_5_VLForConditionalGeneration` on a tiny random
//! checkpoint in the hub layout (`tests/fixtures/make_qwen_fixtures.py`): processor grids,
//! pixel values, the vision tower, M-RoPE positions, logits; the pruned run against a torch
//! reference (same scorer, same p); the GPU against both; KV-cache decoding; bad input.

#![cfg(not(target_arch = "wasm32"))]

use effarch::models::qwen::processor::{preprocess, smart_resize, ImagePatches};
use effarch::models::qwen::{QwenPrune, QwenVL};
use effarch::prune::{KqWhich, Scorer};
use effarch::tensor::Device;
use effarch::testing::max_abs_diff;
use effarch::weights::Weights;
use std::path::Path;

fn dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/qwen-tiny"))
}

struct Expected {
    w: Weights,
    meta: serde_json::Value,
}

impl Expected {
    fn load() -> Expected {
        let meta = serde_json::from_str(&std::fs::read_to_string(dir().join("expected.json")).unwrap()).unwrap();
        Expected { w: Weights::from_file(&dir().join("expected.safetensors")).unwrap(), meta }
    }
    fn get(&self, name: &str) -> Vec<f32> {
        let shape = self.w.info(name).unwrap().shape.clone();
        self.w.get_f32(name, &shape).unwrap()
    }
    fn ids(&self, name: &str) -> Vec<u32> {
        self.get(name).iter().map(|&v| v as u32).collect()
    }
    fn image(&self) -> ImagePatches {
        let g = self.ids("image_grid_thw");
        ImagePatches { pixels: self.get("pixel_values"), grid_h: g[1] as usize, grid_w: g[2] as usize }
    }
    fn prune(&self) -> QwenPrune {
        QwenPrune {
            scorer: Scorer::KqNorm(KqWhich::Key),
            keep: self.meta["keep"].as_f64().unwrap() as f32,
            block: Some(self.meta["prune_block"].as_u64().unwrap() as usize),
            llm_layer: None,
        }
    }
}

#[test]
fn processor_matches_transformers() {
    let e = Expected::load();
    for g in e.meta["grids"].as_array().unwrap() {
        let u = |k: &str| g[k].as_u64().unwrap() as usize;
        let (h, w) = smart_resize(u("height"), u("width"), 28, u("min_pixels"), u("max_pixels")).unwrap();
        assert_eq!((h / 14, w / 14), (u("grid_h"), u("grid_w")), "{g}");
    }
    let m = QwenVL::load_dir(dir(), &Device::cpu()).unwrap();
    let img = image::open(dir().join("image_300x200.png")).unwrap().to_rgb8();
    let ours = preprocess(&img, &m.cfg.vision, &m.processor).unwrap();
    let want = e.image();
    assert_eq!((ours.grid_h, ours.grid_w), (want.grid_h, want.grid_w));
    let d = max_abs_diff(&ours.pixels, &want.pixels);
    println!("qwen pixel_values: max |Δ| = {d:e}");
    assert!(d <= 1e-4, "pixel values differ by {d}");
    // The tokenizer (Qwen2's pre-tokenizer, special tokens).
    let tok = m.tokenizer.as_ref().unwrap();
    for case in e.meta["tokenized"].as_array().unwrap() {
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(tok.encode(case["text"].as_str().unwrap()).unwrap(), want, "{}", case["text"]);
    }
    assert_eq!(m.prompt_ids(&QwenVL::chat_prompt("Describe the image."), ours.tokens(2)).unwrap(), e.ids("input_ids"));
}

/// Runs the golden checks on `device` with tolerance `tol`; returns the worst differences.
fn golden(device: &Device, tol: f32) {
    let e = Expected::load();
    let mut m = QwenVL::load_dir(dir(), device).unwrap();
    // On the GPU, the load compiled every pipeline this whole check runs (by recording the
    // model's warm-up): counted here, compared at the end.
    let pipelines = || if let Device::Gpu(c) = device { c.pipeline_count() } else { 0 };
    let loaded = pipelines();
    assert_eq!(loaded > 0, device.name() == "gpu");
    if let Device::Gpu(c) = device {
        // The warm-up the load recorded runs without error (a failing one would compile less).
        c.compile_by_recording(|| effarch::tensor::block_on(m.warm_up())).1.unwrap();
        assert_eq!(pipelines(), loaded);
    }
    let (ids, img) = (e.ids("input_ids"), e.image());
    let name = device.name();
    // Positions.
    let pos = m.positions(&ids, img.grid_h, img.grid_w);
    let want_pos = e.ids("position_ids");
    let l = ids.len();
    for a in 0..3 {
        assert_eq!(pos[a], want_pos[a * l..(a + 1) * l], "position axis {a}");
    }
    // The vision tower alone.
    let out = effarch::tensor::block_on(m.vision.forward_async(&img, None)).unwrap();
    let d = max_abs_diff(&out.embeds.to_vec_f32().unwrap(), &e.get("image_embeds"));
    println!("{name} qwen image_embeds: max |Δ| = {d:e}");
    assert!(d <= tol, "{name} image embeds {d}");
    // Logits of the whole prompt.
    let pre = m.prefill(&ids, &img, None, true).unwrap();
    let d = max_abs_diff(pre.all_logits.as_ref().unwrap(), &e.get("logits"));
    println!("{name} qwen logits: max |Δ| = {d:e}");
    assert!(d <= tol, "{name} logits {d}");
    assert_eq!(pre.report.visual_tokens_before, pre.report.visual_tokens_after);
    // A long prompt runs in chunks (here of 7 tokens): the same logits and the same cache.
    m.prefill_chunk = 7;
    let chunked = m.prefill(&ids, &img, None, true).unwrap();
    let d = max_abs_diff(chunked.all_logits.as_ref().unwrap(), &e.get("logits"));
    println!("{name} qwen logits, prefill in chunks of 7: max |Δ| = {d:e}");
    assert!(d <= tol, "{name} chunked logits {d}");
    let (mut c1, mut c2) = (pre.cache.clone(), chunked.cache.clone());
    let s1 = effarch::tensor::block_on(m.step_async(5, &mut c1)).unwrap();
    let s2 = effarch::tensor::block_on(m.step_async(5, &mut c2)).unwrap();
    assert!(max_abs_diff(&s1, &s2) <= tol, "{name}: a step after a chunked prefill differs");
    m.prefill_chunk = effarch::models::qwen::LM_PREFILL_CHUNK;
    // The pruned run against the torch reference.
    let p = m.prefill(&ids, &img, Some(&e.prune()), true).unwrap();
    assert_eq!(p.report.kept, e.ids("pruned_kept"), "{name}: kept units differ from the torch reference");
    let want_pp = e.ids("pruned_position_ids");
    let lp = p.positions[0].len();
    for a in 0..3 {
        assert_eq!(p.positions[a], want_pp[a * lp..(a + 1) * lp], "pruned position axis {a}");
    }
    let d = max_abs_diff(p.all_logits.as_ref().unwrap(), &e.get("pruned_logits"));
    println!("{name} qwen pruned ({} of {} visual tokens): logits max |Δ| = {d:e}", p.report.visual_tokens_after, p.report.visual_tokens_before);
    assert!(d <= tol, "{name} pruned logits {d}");
    // DivPrune among the merged visual tokens, against its official selection logic on
    // transformers' image embeddings, and FastV inside transformers' language model
    // (make_methods_fixtures.py): kept units, and FastV's logits of every kept row.
    let methods: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir().join("methods.json")).unwrap()).unwrap();
    let mw = Weights::from_file(&dir().join("methods.safetensors")).unwrap();
    let cases = methods["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    for (ci, c) in cases.iter().enumerate() {
        let keep = c["keep"].as_f64().unwrap() as f32;
        let method: Scorer = c["method"].as_str().unwrap().parse().unwrap();
        let want: Vec<u32> = serde_json::from_value(c["kept"].clone()).unwrap();
        let llm_layer = c.get("llm_layer").and_then(|v| v.as_u64()).map(|v| v as usize);
        let p = m.prefill(&ids, &img, Some(&QwenPrune { scorer: method, keep, block: None, llm_layer }), true).unwrap();
        assert_eq!(p.report.kept, want, "{name}: {method} kept other units than its official logic");
        let logits = format!("c{ci}.logits");
        // The language-model methods have their logits in the fixture; a missing entry fails.
        let d = match mw.info(&logits) {
            Some(i) => max_abs_diff(p.all_logits.as_ref().unwrap(), &mw.get_f32(&logits, &i.shape.clone()).unwrap()),
            None if method.in_language_model() => panic!("no `{logits}` in methods.safetensors for {method}"),
            None => 0.0,
        };
        println!(
            "{name} qwen {method} keep {keep}: {} of {} units equal to the reference; tokens per LM layer {:?}, FLOPs {:.3}; logits max |Δ| {d:e}",
            p.report.kept.len(),
            p.report.visual_tokens_before,
            p.report.tokens_per_layer,
            p.report.flops_ratio
        );
        assert!(d <= tol, "{name}: {method} logits {d}");
        if method.in_language_model() {
            let n = ids.len();
            assert_eq!(p.report.tokens_per_layer, vec![n, n - (p.report.visual_tokens_before - want.len())]);
            assert!(p.report.flops_ratio < 1.0 && p.report.flops_ratio > 0.4, "{}", p.report.flops_ratio);
            // Decoding continues from both caches (all tokens before layer K, the kept after).
            let mut c = p.cache.clone();
            let s = effarch::tensor::block_on(m.step_async(5, &mut c)).unwrap();
            assert!(s.iter().all(|v| v.is_finite()));
            assert_eq!(c.tokens_per_layer(), vec![n + 1, p.report.tokens_per_layer[1] + 1]);
        }
    }
    // KV-cache decoding equals one pass over the longer sequence.
    let v = m.cfg.text.vocab_size;
    let mut cache = pre.cache.clone();
    let mut ids2 = ids.clone();
    let mut worst = 0f32;
    let mut step_logits = Vec::new();
    for t in [5u32, 77, 200] {
        step_logits.push(effarch::tensor::block_on(m.step_async(t, &mut cache)).unwrap());
        ids2.push(t);
    }
    let full = m.prefill(&ids2, &img, None, true).unwrap();
    let all = full.all_logits.unwrap();
    for (i, s) in step_logits.iter().enumerate() {
        let row = l + i;
        worst = worst.max(max_abs_diff(s, &all[row * v..(row + 1) * v]));
    }
    println!("{name} qwen prefill + steps vs one pass: max |Δ| = {worst:e}");
    assert!(worst <= tol, "{name} steps {worst}");
    assert_eq!(pipelines(), loaded, "{name}: a run compiled pipelines the load did not");
}

#[test]
fn cpu_matches_transformers() {
    golden(&Device::cpu(), 1e-4);
}

#[test]
fn gpu_matches_transformers() {
    let gpu = Device::gpu().expect("a GPU adapter (scripts/setup.sh installs mesa-vulkan-drivers)");
    println!("device: {}", gpu.describe());
    golden(&gpu, 1e-3);
}

#[test]
fn generation_streams_and_pruning_reports_counts() {
    use effarch::models::lm::SampleOptions;
    let m = QwenVL::load_dir(dir(), &Device::cpu()).unwrap();
    let img = m.image(&std::fs::read(dir().join("image_300x200.png")).unwrap()).unwrap();
    let o = SampleOptions { max_new_tokens: 6, eos: Some(u32::MAX), ..Default::default() };
    let mut seen = Vec::new();
    let r = m.generate(&img, "Describe the image.", None, &o, |t| seen.push(t)).unwrap();
    assert_eq!(seen, r.tokens);
    assert!(!r.tokens.is_empty() && r.tokens.len() <= 6);
    let p = QwenPrune { scorer: Scorer::KqNorm(KqWhich::Key), keep: 0.25, block: None, llm_layer: None };
    let r2 = m.generate(&img, "Describe the image.", Some(&p), &o, |_| {}).unwrap();
    // transformers' count of image tokens for this image, and our keep rule.
    let n = Expected::load().meta["n_image_tokens"].as_u64().unwrap() as usize;
    let k = effarch::prune::n_keep(0.25, n);
    assert_eq!((r2.prefill.visual_tokens_before, r2.prefill.visual_tokens_after), (n, k));
    assert_eq!(r2.prefill.prompt_tokens, r.prefill.prompt_tokens - (n - k));
}

#[test]
fn bad_input_names_what_is_wrong() {
    let e = Expected::load();
    let m = QwenVL::load_dir(dir(), &Device::cpu()).unwrap();
    let (ids, img) = (e.ids("input_ids"), e.image());
    for keep in [0.0f32, -0.5, 1.5, f32::NAN] {
        let p = QwenPrune { scorer: Scorer::KqNorm(KqWhich::Key), keep, block: None, llm_layer: None };
        let err = m.prefill(&ids, &img, Some(&p), false).err().unwrap().to_string();
        assert!(err.contains("keep"), "{keep}: {err}");
    }
    // FastV's layer must leave layers on both sides.
    for k in [0usize, 2, 9] {
        let p = QwenPrune { scorer: Scorer::FastV, keep: 0.5, block: None, llm_layer: Some(k) };
        let err = m.prefill(&ids, &img, Some(&p), false).err().unwrap().to_string();
        assert!(err.contains(&format!("--llm-layer {k}")) && err.contains("1..=1"), "{err}");
    }
    for scorer in [Scorer::ClsAttn, Scorer::VisionZip] {
        let p = QwenPrune { scorer, keep: 0.5, block: None, llm_layer: None };
        let err = m.prefill(&ids, &img, Some(&p), false).err().unwrap().to_string();
        assert!(err.contains("CLS") && err.contains(&scorer.to_string()), "{err}");
    }
    // A prompt without the image placeholder.
    let err = m.prompt_ids("Describe the image.", 77).unwrap_err().to_string();
    assert!(err.contains("<|image_pad|>"), "{err}");
    let no_img: Vec<u32> = ids.iter().copied().filter(|&t| t != m.cfg.image_token_id).collect();
    assert!(m.prefill(&no_img, &img, None, false).err().unwrap().to_string().contains("placeholder"));
    // Too small and too elongated images.
    let tiny = image::RgbImage::new(20, 300);
    assert!(preprocess(&tiny, &m.cfg.vision, &m.processor).unwrap_err().to_string().contains("too small"));
    let thin = image::RgbImage::new(30, 8000);
    assert!(preprocess(&thin, &m.cfg.vision, &m.processor).unwrap_err().to_string().contains("aspect ratio"));
    // A missing shard.
    let tmp = std::env::temp_dir().join(format!("effarch-qwen-missing-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    for f in ["config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors", "tokenizer.json"] {
        std::fs::copy(dir().join(f), tmp.join(f)).unwrap();
    }
    let err = QwenVL::load_dir(&tmp, &Device::cpu()).err().unwrap().to_string();
    assert!(err.contains("model-00002-of-00002.safetensors"), "{err}");
    // A truncated shard.
    let shard = std::fs::read(dir().join("model-00002-of-00002.safetensors")).unwrap();
    std::fs::write(tmp.join("model-00002-of-00002.safetensors"), &shard[..shard.len() / 2]).unwrap();
    let err = QwenVL::load_dir(&tmp, &Device::cpu()).err().unwrap().to_string();
    assert!(err.contains("model-00002-of-00002.safetensors") && err.contains("truncated"), "{err}");
    // A window past the limit (no weight's shape bounds it).
    let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir().join("config.json")).unwrap()).unwrap();
    cfg["vision_config"]["window_size"] = 1_000_000.into();
    let err = effarch::models::qwen::QwenConfig::from_json("config.json", &cfg.to_string()).unwrap_err().to_string();
    assert!(err.contains("config.json") && err.contains("window_size 1000000") && err.contains("4096"), "{err}");
    // A corrupt image.
    assert!(m.image(b"not an image at all").unwrap_err().to_string().starts_with("image:"));
    std::fs::remove_dir_all(&tmp).ok();
    // A checkpoint of another model.
    let err = effarch::models::qwen::QwenConfig::from_json("config.json", r#"{"model_type": "clip"}"#).unwrap_err().to_string();
    assert!(err.contains("qwen2_5_vl"), "{err}");
}

/// bf16 checkpoints stay bf16 on the CPU (half the memory) with f32 math: the logits equal
/// those of the same bf16 values loaded as f32, and stay near the f32 checkpoint's.
#[test]
fn bf16_weights_stay_half_on_the_cpu() {
    use effarch::weights::{serialize, Dtype};
    let e = Expected::load();
    let src = effarch::models::qwen::load_checkpoint(dir()).unwrap();
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = src
        .names()
        .map(|n| {
            let shape = src.info(n).unwrap().shape.clone();
            (n.to_string(), shape.clone(), src.get_f32(n, &shape).unwrap())
        })
        .collect();
    let tmp = std::env::temp_dir().join(format!("effarch-qwen-bf16-{}", std::process::id()));
    let (half_dir, f32_dir) = (tmp.join("bf16"), tmp.join("f32"));
    for (d, dtype) in [(&half_dir, Dtype::BF16), (&f32_dir, Dtype::F32)] {
        std::fs::create_dir_all(d).unwrap();
        for f in ["config.json", "tokenizer.json", "preprocessor_config.json"] {
            std::fs::copy(dir().join(f), d.join(f)).unwrap();
        }
        // The f32 copy holds the bf16-rounded values.
        let rounded: Vec<_> = tensors.iter().map(|(n, s, v)| (n.clone(), s.clone(), v.iter().map(|&x| half::bf16::from_f32(x).to_f32()).collect())).collect();
        std::fs::write(d.join("model.safetensors"), serialize(&rounded, dtype)).unwrap();
    }
    let (h, f) = (QwenVL::load_dir(&half_dir, &Device::cpu()).unwrap(), QwenVL::load_dir(&f32_dir, &Device::cpu()).unwrap());
    assert!(h.text.is_half() && !f.text.is_half(), "bf16 weights are kept in half precision on the CPU");
    let (ids, img) = (e.ids("input_ids"), e.image());
    let (a, b) = (h.prefill(&ids, &img, None, true).unwrap().all_logits.unwrap(), f.prefill(&ids, &img, None, true).unwrap().all_logits.unwrap());
    let d = max_abs_diff(&a, &b);
    let drift = max_abs_diff(&a, &e.get("logits"));
    println!("bf16 at rest vs the same values in f32: max |Δ| = {d:e}; vs the f32 checkpoint: {drift:e}");
    assert!(d <= 1e-4, "{d}");
    assert!(drift <= 0.05, "{drift}");
    std::fs::remove_dir_all(&tmp).ok();
}
