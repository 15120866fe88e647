//! Qwen2.5-VL: the tiny model and the 3B widths over whole generations, int8, and the
//! language-model pruning methods.

use super::*;

// ---- Qwen2.5-VL ---------------------------------------------------------------------------

fn qwen_greedy(
    m: &QwenVL,
    ids: &[u32],
    img: &effarch::models::qwen::processor::ImagePatches,
    prune: Option<&QwenPrune>,
    n: usize,
) -> (Vec<u32>, Vec<Vec<f32>>, Vec<u32>) {
    let mut pre = m.prefill(ids, img, prune, false).unwrap();
    let first = pre.logits.clone();
    let (tokens, steps) = greedy(n, first, |t| block_on(m.step_async(t, &mut pre.cache)).unwrap());
    (tokens, steps, pre.report.kept)
}

fn qwen_check(m: &QwenVL, fx: &Value, tol: f32) {
    let what = format!("{} qwen {}", m.device.name(), if fx.get("seed").is_some() { "3B widths" } else { "tiny" });
    let img = m.image(&std::fs::read(root().join(fx["image"].as_str().unwrap())).unwrap()).unwrap();
    assert_eq!(vec![1, img.grid_h as u32, img.grid_w as u32], u32s(&fx["grid"]), "{what}: image grid");
    let ids = m.prompt_ids(&QwenVL::chat_prompt("Describe the image."), img.tokens(2)).unwrap();
    assert_eq!(ids, u32s(&fx["input_ids"]), "{what}: prompt ids");
    let prune = QwenPrune { scorer: Scorer::KqNorm(KqWhich::Key), keep: 0.5, block: Some(3), llm_layer: None };
    for (run, p) in [("unpruned", None), ("pruned", Some(&prune))] {
        let want = &fx["runs"][run];
        let n = want["tokens"].as_array().unwrap().len();
        let (tokens, steps, kept) = qwen_greedy(m, &ids, &img, p, n);
        if p.is_some() {
            assert_eq!(kept, u32s(&fx["kept"]), "{what}: kept visual tokens");
        }
        check_steps(&format!("{what} {run}"), &tokens, &steps, want, tol);
        // The library's own generation loop gives the same tokens (checked on the CPU: on a
        // software GPU it would double the test's time for the same loop).
        if m.device.name() != "cpu" {
            continue;
        }
        let o = SampleOptions { max_new_tokens: n, eos: None, ..Default::default() };
        let r = m.generate(&img, "Describe the image.", p, &o, |_| {}).unwrap();
        let stop = r.tokens.len();
        assert_eq!(r.tokens, tokens[..stop], "{what} {run}: generate() differs from the step loop");
    }
}

fn qwen_tiny(device: &Device) -> QwenVL {
    QwenVL::load_dir(&root().join("tests/fixtures/qwen-tiny"), device).unwrap()
}

fn qwen_wide(fx: &Value, device: &Device) -> QwenVL {
    use effarch::models::qwen::{ProcessorConfig, QwenConfig};
    let w = seeded_weights(&manifest(fx), fx["seed"].as_u64().unwrap()).unwrap();
    let cfg = QwenConfig::from_json("qwen-wide config", &fx["config"].to_string()).unwrap();
    let proc = ProcessorConfig::from_json("qwen-wide preprocessor", &fx["preprocessor"].to_string()).unwrap();
    let tok = effarch::models::lm::ByteBpe::from_tokenizer_json(&fx["tokenizer"].to_string()).unwrap();
    QwenVL::load(cfg, proc, &w, Some(tok), device).unwrap()
}

/// One stage's hidden states against transformers' summary (every row's RMS, 256 values at
/// fixed positions): the largest difference relative to the stage's scale.
fn stage_error(got: &[f32], want: &Value) -> f32 {
    let shape: Vec<usize> = serde_json::from_value(want["shape"].clone()).unwrap();
    let (rows, cols) = (shape[0], shape[1]);
    assert_eq!(got.len(), rows * cols, "stage {} has {} values, transformers' {rows}×{cols}", want["name"], got.len());
    let rms: Vec<f32> = got.chunks(cols).map(|r| (r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / cols as f64).sqrt() as f32).collect();
    let sample: Vec<f32> = (0..256).map(|i| got[(i * 7919) % got.len()]).collect();
    let (want_rms, want_sample): (Vec<f32>, Vec<f32>) =
        (serde_json::from_value(want["rms"].clone()).unwrap(), serde_json::from_value(want["sample"].clone()).unwrap());
    let scale = want_rms.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    effarch::testing::max_abs_diff(&rms, &want_rms).max(effarch::testing::max_abs_diff(&sample, &want_sample)) / scale
}

/// One image of the 3B-widths fixture (weights at a trained model's scale): the grid, the
/// prompt ids, every stage of the unpruned prefill, and both runs (unpruned, pruned at keep
/// 0.5) over 16 steps, each step's logits within `tol` of their scale with transformers'
/// tokens fed back (so every step is compared even after a near-tie), and our greedy choice
/// equal to transformers' at every step whose margin is clear of the tolerance.
fn qwen_wide_case(m: &QwenVL, case: &Value, tol: f32, pruned: bool) -> String {
    let what = format!("{} qwen 3B widths {}", m.device.name(), case["image"].as_str().unwrap());
    let img = m.image(&std::fs::read(root().join(case["image"].as_str().unwrap())).unwrap()).unwrap();
    assert_eq!(vec![1, img.grid_h as u32, img.grid_w as u32], u32s(&case["grid"]), "{what}: image grid");
    let ids = m.prompt_ids(&QwenVL::chat_prompt("Describe the image."), img.tokens(2)).unwrap();
    assert_eq!(ids, u32s(&case["input_ids"]), "{what}: prompt ids");
    let prune = QwenPrune { scorer: Scorer::KqNorm(KqWhich::Key), keep: 0.5, block: Some(3), llm_layer: None };
    let mut line = String::new();
    let runs: &[(&str, Option<&QwenPrune>)] = if pruned { &[("unpruned", None), ("pruned", Some(&prune))] } else { &[("unpruned", None)] };
    for &(run, p) in runs {
        let want = &case["runs"][run];
        let want_tokens = u32s(&want["tokens"]);
        let logits: Vec<Vec<f32>> = serde_json::from_value(want["logits"].clone()).unwrap();
        let margins: Vec<f32> = serde_json::from_value(want["margins"].clone()).unwrap();
        assert!(want_tokens.len() == 16 && logits.len() == 16 && margins.len() == 16, "{what} {run}: 16 steps in the fixture");
        let (mut pre, stages) = effarch::probe::capture(|| m.prefill(&ids, &img, p, false).unwrap());
        if p.is_none() {
            let want_stages = case["stages"].as_array().unwrap();
            let names: Vec<&str> = stages.iter().map(|(n, _)| n.as_str()).collect();
            let want_names: Vec<&str> = want_stages.iter().map(|s| s["name"].as_str().unwrap()).collect();
            assert_eq!(names, want_names, "{what}: stages recorded");
            for ((name, t), w) in stages.iter().zip(want_stages) {
                let e = stage_error(&t.to_vec_f32().unwrap(), w);
                assert!(e <= tol, "{what}: stage {name} differs from transformers' by {e:.2e} of its scale (> {tol})");
            }
            line += &format!("stages ok ({}); ", stages.len());
        } else {
            assert_eq!(pre.report.kept, u32s(&case["kept"]), "{what}: kept visual tokens");
        }
        let mut ours_tokens = Vec::new();
        let mut worst = 0f32;
        let mut step_logits = std::mem::take(&mut pre.logits);
        for (i, want_logits) in logits.iter().enumerate() {
            let scale = want_logits.iter().fold(0f32, |m, v| m.max(v.abs())).max(1.0);
            let rel = effarch::testing::max_abs_diff(&step_logits, want_logits) / scale;
            worst = worst.max(rel);
            assert!(rel <= tol, "{what} {run}: step {i} logits differ by {rel:.2e} of their scale (> {tol})");
            let ours = argmax(&step_logits);
            ours_tokens.push(ours);
            if margins[i] > 4.0 * tol * scale {
                assert_eq!(ours, want_tokens[i], "{what} {run}: greedy token {i} differs (margin {})", margins[i]);
            }
            if i + 1 < logits.len() {
                step_logits = block_on(m.step_async(want_tokens[i], &mut pre.cache)).unwrap();
            }
        }
        line += &format!("{run} worst step {worst:.1e} tokens {ours_tokens:?}; ");
    }
    println!("{what}: {line}");
    line
}

#[test]
fn qwen_tiny_generation_matches_transformers_cpu() {
    qwen_check(&qwen_tiny(&Device::cpu()), &fixture("qwen-tiny"), 1e-4);
}

#[test]
fn qwen_tiny_generation_matches_transformers_gpu() {
    qwen_check(&qwen_tiny(&gpu()), &fixture("qwen-tiny"), 1e-3);
}

fn qwen_wide_cases(fx: &Value) -> &Vec<Value> {
    let cases = fx["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5, "image cases in qwen-wide.json");
    cases
}

#[test]
fn qwen_3b_widths_trained_scale_matches_transformers_cpu() {
    let fx = fixture("qwen-wide");
    let m = qwen_wide(&fx, &Device::cpu());
    for case in qwen_wide_cases(&fx) {
        qwen_wide_case(&m, case, 1e-4, true);
    }
    // The library's own generation loop gives transformers' tokens (one image).
    let case = &qwen_wide_cases(&fx)[0];
    let img = m.image(&std::fs::read(root().join(case["image"].as_str().unwrap())).unwrap()).unwrap();
    let o = SampleOptions { max_new_tokens: 16, eos: None, ..Default::default() };
    let r = m.generate(&img, "Describe the image.", None, &o, |_| {}).unwrap();
    assert_eq!(r.tokens, u32s(&case["runs"]["unpruned"]["tokens"])[..r.tokens.len()], "generate() differs from transformers'");
}

/// On a software adapter the 3B widths take minutes an image, so CI runs the smallest image
/// (224 × 224, the unpruned run: every stage and 16 steps; the pruned path's GPU ops are
/// checked on the tiny model); `EFFARCH_QWEN_GPU_CASES=all` runs all five, pruned too.
#[test]
fn qwen_3b_widths_trained_scale_matches_transformers_gpu() {
    let fx = fixture("qwen-wide");
    let m = qwen_wide(&fx, &gpu());
    let all = std::env::var("EFFARCH_QWEN_GPU_CASES").is_ok_and(|v| v == "all");
    let cases = qwen_wide_cases(&fx);
    for case in if all { &cases[..] } else { &cases[..1] } {
        qwen_wide_case(&m, case, 1e-3, all);
    }
}

/// `--precision int8` reaches Qwen's vision tower and language model (every linear layer but
/// the patch embedding): at 3B widths with trained-scale weights, the prefill's logits against
/// transformers' f32 ones, unpruned, on the first image.
#[test]
fn qwen_3b_widths_int8_logits_stay_near_f32() {
    use effarch::tensor::Precision;
    let fx = fixture("qwen-wide");
    let m = qwen_wide(&fx, &Device::cpu_with(Precision::Int8));
    let case = &qwen_wide_cases(&fx)[0];
    let img = m.image(&std::fs::read(root().join(case["image"].as_str().unwrap())).unwrap()).unwrap();
    let ids = m.prompt_ids(&QwenVL::chat_prompt("Describe the image."), img.tokens(2)).unwrap();
    let pre = m.prefill(&ids, &img, None, false).unwrap();
    let want: Vec<Vec<f32>> = serde_json::from_value(case["runs"]["unpruned"]["logits"].clone()).unwrap();
    let (c, rel) =
        (effarch::num::cosine(&pre.logits, &want[0]), effarch::testing::max_abs_diff(&pre.logits, &want[0]) / want[0].iter().fold(0f32, |m, v| m.max(v.abs())));
    println!("qwen 3B widths int8: first-step logits cos to transformers f32 {c:.6}, max |Δ| {rel:.1e} of scale");
    assert!(c >= 0.999, "int8 logits cos to f32 {c:.6}");
    assert!(rel > 1e-4, "int8 logits are within {rel:.1e} of f32's: is int8 running?");
}

/// DivPrune, FastV and DART at Qwen2.5-VL-3B's widths with trained-like magnitudes (the
/// qwen-wide model, its first image) against their selection run in transformers layer by
/// layer (`make_methods_fixtures.py`, fixture qwen-wide-methods): kept units equal, and for the
/// two language-model methods the prefill's last rows of logits within 1e-4 of their scale.
#[test]
fn qwen_methods_at_3b_widths_match_transformers() {
    let (fx, mf) = (fixture("qwen-wide"), fixture("qwen-wide-methods"));
    assert_eq!(fx["seed"], mf["seed"]);
    let m = qwen_wide(&fx, &Device::cpu());
    let img = m.image(&std::fs::read(root().join(mf["image"].as_str().unwrap())).unwrap()).unwrap();
    let ids = m.prompt_ids(&QwenVL::chat_prompt("Describe the image."), img.tokens(m.cfg.vision.spatial_merge_size)).unwrap();
    let cases = mf["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    let v = m.cfg.text.vocab_size;
    for c in cases {
        let method: Scorer = c["method"].as_str().unwrap().parse().unwrap();
        let keep = c["keep"].as_f64().unwrap() as f32;
        let p = QwenPrune { scorer: method, keep, block: None, llm_layer: c["llm_layer"].as_u64().map(|k| k as usize) };
        let pre = m.prefill(&ids, &img, Some(&p), true).unwrap();
        assert_eq!(pre.report.kept, u32s(&c["kept"]), "{method} keep {keep}: kept units");
        let mut rel = 0f32;
        assert_eq!(c["last_logits"].is_array(), method.in_language_model(), "{method}: the fixture's logits");
        if let Some(rows) = c["last_logits"].as_array() {
            let want: Vec<f32> = rows.iter().flat_map(|r| serde_json::from_value::<Vec<f32>>(r.clone()).unwrap()).collect();
            let all = pre.all_logits.as_ref().unwrap();
            let got = &all[all.len() - want.len()..];
            assert_eq!(want.len(), 4 * v);
            rel = effarch::testing::max_abs_diff(got, &want) / want.iter().fold(0f32, |a, x| a.max(x.abs()));
        }
        println!(
            "qwen 3B widths {method} keep {keep}: {} of {} units equal to transformers', tokens per LM layer {:?}, logits max |Δ| {rel:.1e} of scale",
            pre.report.kept.len(),
            pre.report.visual_tokens_before,
            pre.report.tokens_per_layer
        );
        assert!(rel <= 1e-4, "{method} keep {keep}: logits {rel:.2e} of their scale from transformers'");
    }
}
