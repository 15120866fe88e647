//! The CLI end to end on the tiny fixture: `--json` fields, the overlay, exit codes.
#![cfg(not(target_arch = "wasm32"))]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip-tiny")
}

fn effarch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_effarch")).args(args).output().expect("runs")
}

fn clip_args<'a>(extra: &[&'a str], image: &'a str, model: &'a str) -> Vec<&'a str> {
    let mut v = vec!["clip", "--model", model, "--image", image];
    v.extend_from_slice(extra);
    v
}

#[test]
fn clip_json_has_the_documented_fields() {
    let dir = fixture_dir();
    let (model, image) = (dir.to_str().unwrap(), dir.join("cat_300x257.png"));
    let overlay = std::env::temp_dir().join(format!("effarch-overlay-{}.png", std::process::id()));
    let out = effarch(&clip_args(
        &["--keep", "0.5", "--layer", "1", "--labels", "a photo of a cat,a dog", "--json", "--overlay", overlay.to_str().unwrap()],
        image.to_str().unwrap(),
        model,
    ));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["image_embeds"].as_array().unwrap().len(), 24);
    assert_eq!(v["kept"][0]["layer"], 1);
    assert_eq!(v["kept"][0]["indices"].as_array().unwrap().len(), 98);
    assert_eq!(v["tokens_per_layer"], serde_json::json!([197, 197, 99, 99]));
    assert!(v["timings_ms"]["total"].as_f64().unwrap() > 0.0);
    assert!(v["timings_ms"]["block_3"].as_f64().is_some());
    let probs: f64 = v["label_probs"].as_array().unwrap().iter().map(|p| p["prob"].as_f64().unwrap()).sum();
    assert!((probs - 1.0).abs() < 1e-5);
    let cos = v["cos_to_unpruned"].as_f64().unwrap();
    assert!(cos > -1.0 && cos < 1.0);
    let png = image::open(&overlay).expect("overlay written");
    assert_eq!((png.width(), png.height()), (448, 448));
    std::fs::remove_file(overlay).ok();
}

/// `--scorer tome`: the merge map in `groups`, the tokens per layer of the torch reference
/// (tests/fixtures/clip-tiny/tome.json, case keep 0.5), the coloured overlay, the text output.
#[test]
fn clip_tome_reports_its_merge_map_and_draws_the_groups() {
    let dir = fixture_dir();
    let (model, image) = (dir.to_str().unwrap(), dir.join("cat_300x257.png"));
    let overlay = std::env::temp_dir().join(format!("effarch-tome-{}.png", std::process::id()));
    let out = effarch(&clip_args(&["--scorer", "tome", "--keep", "0.5", "--json", "--overlay", overlay.to_str().unwrap()], image.to_str().unwrap(), model));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["scorer"], "tome");
    assert_eq!(v["tokens_per_layer"], serde_json::json!([197, 172, 147, 123]));
    let groups: Vec<u32> = serde_json::from_value(v["groups"].clone()).unwrap();
    assert_eq!(groups.len(), 196);
    assert_eq!(groups.iter().collect::<std::collections::BTreeSet<_>>().len(), 98, "196 patches in 98 tokens");
    assert!(groups.iter().all(|&g| (1..99).contains(&g)), "CLS (0) holds no patch");
    assert!(v["kept"].as_array().unwrap().is_empty());
    assert!(v["flops"].as_f64() < v["flops_unpruned"].as_f64());
    let png = image::open(&overlay).expect("overlay written").to_rgb8();
    assert_eq!((png.width(), png.height()), (448, 448));
    std::fs::remove_file(overlay).ok();

    let out = effarch(&clip_args(&["--scorer", "tome", "--tome-r", "8"], image.to_str().unwrap(), model));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("196 patches in 164 tokens"), "{text}");
}

#[test]
fn clip_keep_one_matches_transformers_embedding() {
    let dir = fixture_dir();
    let image = dir.join("cat_300x257.png");
    let out = effarch(&clip_args(&["--keep", "1", "--json"], image.to_str().unwrap(), dir.to_str().unwrap()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let got: Vec<f32> = serde_json::from_value(v["image_embeds"].clone()).unwrap();
    let fx = effarch::testing::ClipFixture::from_dir(&dir).unwrap();
    let (want, _) = fx.expect("image_embeds").unwrap();
    let d = effarch::testing::max_abs_diff(&got, &want[..24]);
    assert!(d <= 1e-4, "max |Δ| {d}");
    assert_eq!(v["cos_to_unpruned"], 1.0);
}

#[test]
fn clip_text_output_and_errors() {
    let dir = fixture_dir();
    let image = dir.join("coffee_rgba_250.png");
    let (m, i) = (dir.to_str().unwrap(), image.to_str().unwrap());
    let out = effarch(&clip_args(&["--keep", "0.3", "--scorer", "cls-attn", "--layer", "0,2"], i, m));
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("cos-sim to unpruned") && text.contains("layer  2: kept"), "{text}");

    for (args, needle) in [
        (vec!["--keep", "0"], "keep ratio"),
        (vec!["--keep", "1.5"], "keep ratio"),
        (vec!["--layer", "4"], "out of range"),
        (vec!["--labels", " , "], "empty"),
        (vec!["--scorer", "magic"], "unknown scorer"),
        (vec!["--scorer", "tome", "--tome-r", "99"], "--tome-r 99 is more than one layer can merge: 98"),
        (vec!["--scorer", "kq-norm", "--tome-r", "4"], "--tome-r applies to --scorer tome"),
    ] {
        let out = effarch(&clip_args(&args, i, m));
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let out = effarch(&clip_args(&[], "/nonexistent/cat.png", m));
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("/nonexistent/cat.png"));
    let out = effarch(&clip_args(&[], i, "not a model"));
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not a model"));
    let out = effarch(&clip_args(&[], m, m));
    assert!(!out.status.success(), "a directory is not an image");
}

#[test]
fn bench_json_rows() {
    let out = effarch(&["bench", "clip", "--keeps", "1,0.5", "--batches", "1", "--iters", "1", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        for k in ["keep", "batch", "ms_median", "ratio", "flop_ratio"] {
            assert!(r.get(k).is_some(), "missing {k}");
        }
        assert!(r["ms_median"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(rows[0]["ratio"], 1.0);
    let fr = rows[1]["flop_ratio"].as_f64().unwrap();
    assert!(fr > 0.5 && fr < 0.6, "keep 0.5 at layer 1 of 12: {fr}");
    let bad = effarch(&["bench", "clip", "--keeps", "0", "--json"]);
    assert!(!bad.status.success());
    // Both precisions side by side: int8 rows beside f32's, its embeddings near f32's.
    let out = effarch(&["bench", "clip", "--keeps", "1", "--batches", "1", "--iters", "1", "--precision", "int8", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let precisions: Vec<&str> = rows.iter().map(|r| r["precision"].as_str().unwrap()).collect();
    assert_eq!(precisions, ["f32", "int8"], "f32 is always timed first");
    assert_eq!(rows[0]["cos_to_f32"], 1.0);
    let c = rows[1]["cos_to_f32"].as_f64().unwrap();
    assert!(c > 0.999 && c < 1.0, "int8 cos to f32 {c}");
    // The GPU holds f32 or int8 weights (timed in the model tests: a whole ViT-B/16 on a
    // software adapter takes minutes); bf16 there, or int8 with f16 weights, is named as an error.
    for (dev, p) in [("gpu", "bf16"), ("gpu-f16", "int8")] {
        let out = effarch(&["bench", "clip", "--device", dev, "--precision", p, "--json"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(&format!("--precision {p} on --device {dev}")), "{dev} {p}: {err}");
    }
}

#[test]
fn bench_gemm_json_times_every_kernel_and_a_bad_peer_is_named() {
    let out = effarch(&["bench", "gemm", "--iters", "1", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tiles = v["tiles"].as_array().unwrap();
    assert!(tiles.iter().any(|t| t["kernel"].as_str().unwrap().starts_with("portable")), "{tiles:?}");
    assert!(tiles.iter().all(|t| t["gflops"].as_f64().unwrap() > 0.0 && t["mr"].as_u64().unwrap() > 0));
    // Each x86 f32 kernel beside its instruction set's FMA ceiling (the portable and the int8
    // ones have none); every int8 kernel this CPU has is timed too.
    let plain = |t: &serde_json::Value| !t["kernel"].as_str().unwrap().starts_with("portable") && !t["kernel"].as_str().unwrap().starts_with("int8");
    assert!(tiles.iter().all(|t| t["peak_gflops"].as_f64().is_some_and(|p| p > 0.0) == plain(t)), "{tiles:?}");
    assert!(tiles.iter().any(|t| t["kernel"].as_str().unwrap() == "int8 portable 4x8"), "{tiles:?}");
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), tiles.len() * 8, "every kernel on every shape");
    for r in rows {
        for k in ["shape", "m", "n", "k", "kernel", "gflops", "gemm_crate_gflops", "ratio"] {
            assert!(r.get(k).is_some(), "missing {k}");
        }
    }
    let bad = effarch(&["bench", "clip", "--peer", "onnx", "--json"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("--peer onnx"));
    if !cfg!(feature = "peer-candle") {
        let off = effarch(&["bench", "clip", "--peer", "candle", "--batches", "1", "--keeps", "1", "--iters", "1", "--device", "cpu"]);
        assert!(!off.status.success() && String::from_utf8_lossy(&off.stderr).contains("--features peer-candle"));
    }
}

#[test]
fn clip_finds_a_hub_id_in_the_hf_cache() {
    // The hub cache layout: models--ORG--NAME/{refs/main, snapshots/REV/...}
    let cache = std::env::temp_dir().join(format!("effarch-hf-cache-{}", std::process::id()));
    let snap = cache.join("models--tiny--clip/snapshots/0123abcd");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(cache.join("models--tiny--clip/refs")).unwrap();
    std::fs::write(cache.join("models--tiny--clip/refs/main"), "0123abcd").unwrap();
    for f in ["config.json", "model.safetensors", "vocab.json", "merges.txt"] {
        std::fs::copy(fixture_dir().join(f), snap.join(f)).unwrap();
    }
    let image = fixture_dir().join("tiny_20x30.png");
    let out = Command::new(env!("CARGO_BIN_EXE_effarch"))
        .args(["clip", "--model", "tiny/clip", "--image", image.to_str().unwrap(), "--labels", "a cat,a dog", "--json"])
        .env("HF_HUB_CACHE", &cache)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&cache).ok();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["label_probs"].as_array().unwrap().len(), 2);
}

#[test]
fn mamba_generates_with_json_fields_and_rejects_bad_input() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mamba-tiny");
    let model = dir.to_str().unwrap();
    let out = effarch(&["mamba", "--model", model, "--prompt", "Hello world", "--max-new-tokens", "6", "--mrss-tau", "0.05", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in ["prompt_tokens", "tokens", "text", "prefill_ms", "decode_ms", "tokens_per_s", "mrss_merged", "mrss_tau", "stopped_at_eos", "device"] {
        assert!(v.get(k).is_some(), "missing {k}: {v}");
    }
    assert!(v["prompt_tokens"].as_u64().unwrap() > 0 && v["tokens"].as_array().unwrap().len() <= 6);
    assert!(v["mrss_merged"].as_f64().unwrap() > 0.0);
    let q = &v["mrss_quality"];
    for k in [
        "merged_fraction",
        "saved_fraction",
        "max_abs_logit_error",
        "rel_logit_error",
        "mean_kl",
        "top1_agreement",
        "perplexity_full",
        "perplexity_mrss",
        "time_ratio",
    ] {
        assert!(q[k].as_f64().is_some_and(f64::is_finite), "mrss_quality.{k}: {q}");
    }
    assert!((0.0..=1.0).contains(&q["top1_agreement"].as_f64().unwrap()) && q["mean_kl"].as_f64().unwrap() >= 0.0, "{q}");
    // Text mode streams the prompt and the continuation.
    let out = effarch(&["mamba", "--model", model, "--prompt", "Hello", "--max-new-tokens", "3"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("Hello"));
    for (args, want) in [
        (vec!["--prompt", ""], "empty"),
        (vec!["--prompt-ids", "1,99999"], "99999"),
        (vec!["--prompt", "x", "--mrss-tau", "-1"], "tau"),
        (vec!["--prompt", "x", "--top-p", "0"], "top_p"),
    ] {
        let mut a = vec!["mamba", "--model", model];
        a.extend(args);
        let out = effarch(&a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "{a:?}: {err}");
    }
}

#[test]
fn bench_mamba_json_rows_and_exponents() {
    let out = effarch(&["bench", "mamba", "--ns", "64,128", "--iters", "1", "--steps", "2", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for r in rows {
        for k in ["n", "mamba_prefill_ms", "attn_prefill_ms", "mamba_decode_ms", "attn_decode_ms"] {
            assert!(r[k].as_f64().is_some_and(|x| x > 0.0), "{k}: {r}");
        }
    }
    for k in ["mamba_prefill", "attn_prefill", "mamba_decode", "attn_decode"] {
        assert!(v["exponents"][k].as_f64().is_some_and(f64::is_finite), "{k}: {v}");
    }
}

/// `bench mamba-lm` on the tiny checkpoint: a row per (τ, prompt length), rates that agree
/// with their times, the scan's share inside the step's time, and MRSS merging only with τ > 0.
#[test]
fn bench_mamba_lm_rows_per_tau_and_prompt() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mamba-tiny");
    let out = effarch(&[
        "bench",
        "mamba-lm",
        "--model",
        dir.to_str().unwrap(),
        "--prompt-lens",
        "8,32",
        "--decode",
        "4",
        "--iters",
        "1",
        "--mrss-tau",
        "0,0.5",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{v}");
    for r in rows {
        let f = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k}: {r}"));
        let n = f("prompt_tokens");
        assert!((f("prefill_tokens_per_s") - n / f("prefill_ms") * 1e3).abs() < 1e-6 * f("prefill_tokens_per_s"), "{r}");
        assert!((f("decode_tokens_per_s") * f("decode_ms_per_token") - 1e3).abs() < 1e-6, "{r}");
        assert!(f("prefill_scan_ms") > 0.0 && f("prefill_scan_ms") <= f("prefill_ms"), "{r}");
        assert!(f("decode_scan_ms_per_token") >= 0.0 && f("decode_scan_ms_per_token") <= f("decode_ms_per_token"), "{r}");
        if f("mrss_tau") == 0.0 {
            assert_eq!(f("prefill_merged"), 0.0, "{r}");
        } else {
            assert!(f("prefill_merged") > 0.0, "τ 0.5 merges on the tiny model: {r}");
        }
    }
}

#[test]
fn mamba_on_gpu_generates_what_the_cpu_does_and_benches() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mamba-tiny");
    let model = dir.to_str().unwrap();
    let run = |device: &str| {
        let out = effarch(&["mamba", "--model", model, "--prompt", "Hello world", "--max-new-tokens", "6", "--device", device, "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let (g, c) = (run("gpu"), run("cpu"));
    assert!(g["device"].as_str().unwrap().starts_with("gpu"), "{g}");
    assert_eq!(g["tokens"], c["tokens"]);
    let out = effarch(&["bench", "mamba", "--ns", "32,64", "--iters", "1", "--steps", "2", "--hidden", "64", "--device", "gpu", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["device"].as_str().unwrap().starts_with("gpu"), "{v}");
    assert!(v["rows"].as_array().unwrap().iter().all(|r| r["mamba_prefill_ms"].as_f64().is_some_and(|x| x > 0.0)), "{v}");
    // The GPU's two scan kernels side by side, equal outputs; the CPU is refused by name.
    let out = effarch(&["bench", "scan", "--lens", "70,300", "--channels", "20", "--iters", "1", "--device", "gpu", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    for r in rows {
        assert!(r["sequential_ms"].as_f64().unwrap() > 0.0 && r["chunked_ms"].as_f64().unwrap() > 0.0 && r["speedup"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["max_abs_diff"].as_f64().unwrap() < 1e-4 && r["wide_chunks"].as_u64().unwrap() >= 1, "{r}");
    }
    let out = effarch(&["bench", "scan", "--device", "gpu", "--lens", "4000000000"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("storage buffer limit"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = effarch(&["bench", "scan", "--device", "cpu"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--device gpu"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn qwen_describes_with_and_without_pruning_and_rejects_bad_input() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen-tiny");
    let (model, image) = (dir.to_str().unwrap().to_string(), dir.join("image_300x200.png").to_str().unwrap().to_string());
    let out = effarch(&["qwen", "--model", &model, "--image", &image, "--keep", "0.5", "--max-new-tokens", "4", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "unpruned, then pruned: {v}");
    // transformers' image-token count and the torch reference's kept count at p = 0.5.
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let n = meta["n_image_tokens"].as_u64().unwrap();
    let kept = effarch::weights::Weights::from_file(&dir.join("expected.safetensors")).unwrap().info("pruned_kept").unwrap().shape[0] as u64;
    assert_eq!((runs[0]["visual_tokens_after"].as_u64(), runs[1]["visual_tokens_after"].as_u64()), (Some(n), Some(kept)));
    for r in runs {
        for k in ["keep", "visual_tokens_before", "kept", "prompt_tokens", "vision_ms", "prefill_ms", "tokens", "text", "decode_ms", "tokens_per_s"] {
            assert!(r.get(k).is_some(), "missing {k}: {r}");
        }
    }
    // Text mode streams and prints the summary.
    let out = effarch(&["qwen", "--model", &model, "--image", &image, "--max-new-tokens", "2", "--device", "gpu"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("visual tokens {n} → {n}")));
    // Limits from the fixture's own config.
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let (ctx, depth) = (cfg["max_position_embeddings"].as_u64().unwrap(), cfg["vision_config"]["depth"].as_u64().unwrap());
    let (too_many, ctx_msg, depth_msg) = ((ctx + 1).to_string(), format!("context of {ctx}"), format!("scoring block 999 of a {depth}-block"));
    let tiny = std::env::temp_dir().join(format!("effarch-tiny-{}.png", std::process::id()));
    image::RgbImage::new(20, 20).save(&tiny).unwrap();
    for (args, want) in [
        (vec!["--image", &image, "--keep", "0"], "keep"),
        (vec!["--image", tiny.to_str().unwrap()], "too small"),
        (vec!["--image", &image, "--scorer", "cls-attn", "--keep", "0.5"], "CLS"),
        (vec!["--image", &image, "--method", "visionzip", "--keep", "0.5"], "CLS"),
        (vec!["--image", &image, "--method", "fastv", "--keep", "0.5", "--llm-layer", "2"], "--llm-layer 2"),
        (vec!["--image", "/nonexistent.png"], "nonexistent.png"),
        (vec!["--image", &image, "--keep", "0.5", "--block", "999"], &depth_msg),
        (vec!["--image", &image, "--max-prompt-tokens", "10"], "over the limit of 10"),
        (vec!["--image", &image, "--max-new-tokens", &too_many], &ctx_msg),
    ] {
        let mut a = vec!["qwen", "--model", &model];
        a.extend(args);
        let out = effarch(&a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "{a:?}: {err}");
        // Checked before any work: nothing was generated or printed first.
        assert!(out.stdout.is_empty() && err.lines().count() == 1, "{a:?}: output before the error: {err}");
    }
    std::fs::remove_file(&tiny).ok();
    // FastV inside the language model, from the CLI: tokens per LM layer drop after layer 1.
    let out =
        effarch(&["qwen", "--model", &model, "--image", &image, "--keep", "0.5", "--method", "fastv", "--llm-layer", "1", "--max-new-tokens", "2", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tpl: Vec<u64> = serde_json::from_value(v["runs"][1]["tokens_per_layer"].clone()).unwrap();
    let (before, after) = (v["runs"][1]["visual_tokens_before"].as_u64().unwrap(), v["runs"][1]["visual_tokens_after"].as_u64().unwrap());
    assert_eq!((v["scorer"].as_str(), tpl[0] - tpl[1]), (Some("fastv"), before - after), "{v}");
    assert!(v["runs"][1]["flops_ratio"].as_f64().unwrap() < 1.0 && (v["runs"][0]["flops_ratio"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    let out = effarch(&[
        "bench",
        "qwen",
        "--image",
        "112",
        "--vision-depth",
        "2",
        "--lm-layers",
        "2",
        "--llm-layer",
        "1",
        "--iters",
        "1",
        "--widths",
        "32,48,2,64,96,4,2",
        "--methods",
        "kq-norm,random,divprune,fastv,dart",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let methods: Vec<&str> = v["rows"].as_array().unwrap().iter().map(|r| r["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["unpruned", "kq-norm:key", "kq-norm:key", "random", "random", "divprune", "divprune", "fastv", "fastv", "dart", "dart"]);
    let out =
        effarch(&["bench", "qwen", "--image", "112", "--vision-depth", "2", "--lm-layers", "1", "--iters", "1", "--widths", "32,48,2,64,96,4,2", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v["rows"].as_array().unwrap();
    // A 112-px image is (112 / 28)² merged tokens; keep 1, 0.5, 0.25 of them.
    let n = (112usize / 28).pow(2);
    let want: Vec<u64> = [1.0f32, 0.5, 0.25].iter().map(|&p| effarch::prune::n_keep(p, n) as u64).collect();
    assert_eq!(rows.iter().map(|r| r["visual_tokens"].as_u64().unwrap()).collect::<Vec<_>>(), want);
    assert!(rows.iter().all(|r| r["prefill_ms"].as_f64().is_some_and(|x| x > 0.0) && r["vision_ms"].as_f64().is_some_and(|x| x > 0.0)), "{v}");
}

/// Every command validates its arguments before any model work: a bad one fails with one
/// error line naming it, and nothing else is printed first.
#[test]
fn every_command_rejects_bad_arguments_before_any_output() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let clip = fixture_dir();
    let img = clip.join("cat_300x257.png");
    let mamba = root.join("tests/fixtures/mamba-tiny");
    let (clip, img, mamba) = (clip.to_str().unwrap(), img.to_str().unwrap(), mamba.to_str().unwrap());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["clip", "--model", clip, "--image", img, "--keep", "1.5"], "keep"),
        (vec!["clip", "--model", clip, "--image", img, "--labels", " , "], "labels"),
        (vec!["clip", "--model", clip, "--image", img, "--layer", "99"], "99"),
        (vec!["mamba", "--model", mamba, "--prompt", "hi", "--temperature", "-1"], "temperature"),
        (vec!["mamba", "--model", mamba, "--prompt", "hi", "--mrss-tau", "-0.5"], "tau"),
        (vec!["mamba", "--model", mamba, "--prompt-ids", "999999"], "999999"),
        (vec!["bench", "clip", "--keeps", "0"], "keep"),
        (vec!["bench", "clip", "--batches", "0"], "batch"),
        (vec!["bench", "mamba", "--ns", "0"], "0"),
        (vec!["bench", "mamba-lm", "--model", mamba, "--prompt-lens", "0"], "prompt length 0"),
        (vec!["bench", "mamba-lm", "--model", mamba, "--mrss-tau", "-1"], "tau"),
        (vec!["bench", "qwen", "--widths", "1,2"], "widths"),
        (vec!["eval", "clip", "--model", clip, "--data", "/nonexistent/set"], "/nonexistent/set"),
        (vec!["eval", "clip", "--model", clip, "--data", clip], "no images found"),
        (vec!["eval", "clip", "--model", clip, "--data", clip, "--keeps", "0"], "--keeps"),
        (vec!["eval", "clip", "--model", clip, "--data", clip, "--resume"], "--out"),
        (vec!["eval", "clip", "--model", clip, "--data", clip, "--scorers", "bogus"], "bogus"),
        (vec!["eval", "clip", "--model", clip, "--data", clip, "--scorers", "tome:8"], "use `tome`"),
    ];
    for (args, want) in cases {
        let out = effarch(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(out.stdout.is_empty() && err.trim_end().lines().count() == 1, "{args:?}: output before the error: {err}");
    }
}

/// Probing adapters on a machine without a GPU (or without XDG_RUNTIME_DIR) prints nothing of
/// the drivers' on a good run; `--verbose` is the way to see it.
#[test]
fn device_probing_is_quiet() {
    let mamba = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mamba-tiny");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_effarch"))
        .args(["mamba", "--model", mamba.to_str().unwrap(), "--prompt", "Hi", "--max-new-tokens", "2", "--device", "auto", "--json"])
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.trim().is_empty(), "a good run printed to stderr: {err}");
}

/// A JSON value's shape: objects keep their keys in order, arrays show their first element,
/// leaves become their type.
fn shape(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value as V;
    match v {
        V::Object(m) => V::Object(m.iter().map(|(k, x)| (k.clone(), shape(x))).collect()),
        V::Array(a) => V::Array(a.iter().take(1).map(shape).collect()),
        V::Number(_) => "number".into(),
        V::String(_) => "string".into(),
        V::Bool(_) => "bool".into(),
        V::Null => "null".into(),
    }
}

/// The `--json` outputs are an interface: every command's fields, their order and types are
/// pinned in `tests/fixtures/cli_json_shapes.json` (`EFFARCH_BLESS_SHAPES=1` rewrites it after
/// a deliberate change).
#[test]
fn json_outputs_keep_their_fields() {
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let p = |d: &str| fx.join(d).to_str().unwrap().to_string();
    let (clip, mamba, qwen) = (p("clip-tiny"), p("mamba-tiny"), p("qwen-tiny"));
    let (cat, pic) = (p("clip-tiny/cat_300x257.png"), p("qwen-tiny/image_300x200.png"));
    let evalset = p("eval-tiny");
    let questions = fx.join("qwen-tiny/questions.jsonl").to_str().unwrap().to_string();
    let qdir = std::env::temp_dir().join(format!("effarch-shapes-q-{}", std::process::id())).to_str().unwrap().to_string();
    let runs: Vec<(&str, Vec<&str>)> = vec![
        ("quantize", vec!["quantize", "--model", &clip, "--out", &qdir, "--json"]),
        ("clip", vec!["clip", "--model", &clip, "--image", &cat, "--keep", "0.5", "--labels", "a cat,a dog", "--device", "cpu", "--json"]),
        ("mamba_mrss", vec!["mamba", "--model", &mamba, "--prompt", "Hello world", "--max-new-tokens", "4", "--mrss-tau", "0.05", "--device", "cpu", "--json"]),
        ("mamba_ids", vec!["mamba", "--model", &mamba, "--prompt-ids", "1,2,3", "--max-new-tokens", "3", "--device", "cpu", "--json"]),
        ("qwen", vec!["qwen", "--model", &qwen, "--image", &pic, "--keep", "0.5", "--max-new-tokens", "3", "--device", "cpu", "--json"]),
        ("bench_clip", vec!["bench", "clip", "--keeps", "1,0.5", "--batches", "1", "--iters", "1", "--device", "cpu", "--json"]),
        ("bench_mamba", vec!["bench", "mamba", "--ns", "32,64", "--iters", "1", "--steps", "2", "--hidden", "64", "--device", "cpu", "--json"]),
        ("bench_mamba_lm", vec!["bench", "mamba-lm", "--model", &mamba, "--prompt-lens", "8", "--decode", "2", "--iters", "1", "--json"]),
        ("eval_clip", vec!["eval", "clip", "--model", &clip, "--data", &evalset, "--keeps", "1,0.5", "--scorers", "kq-norm", "--device", "cpu", "--json"]),
        (
            "eval_qwen",
            vec![
                "eval",
                "qwen",
                "--model",
                &qwen,
                "--data",
                &questions,
                "--keeps",
                "1,0.5",
                "--methods",
                "fastv",
                "--llm-layer",
                "1",
                "--max-new-tokens",
                "2",
                "--json",
            ],
        ),
        (
            "bench_qwen",
            vec!["bench", "qwen", "--image", "112", "--vision-depth", "2", "--lm-layers", "1", "--iters", "1", "--widths", "32,48,2,64,96,4,2", "--json"],
        ),
    ];
    let mut got = serde_json::Map::new();
    for (name, args) in runs {
        let out = effarch(&args);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{name}: not one JSON object: {e}"));
        got.insert(name.into(), shape(&v));
    }
    std::fs::remove_dir_all(&qdir).ok();
    let got = serde_json::Value::Object(got);
    let path = fx.join("cli_json_shapes.json");
    if std::env::var_os("EFFARCH_BLESS_SHAPES").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
    }
    let want: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("pinned shapes")).unwrap();
    for (name, w) in want.as_object().unwrap() {
        assert_eq!(&got[name], w, "`{name} --json` changed shape");
    }
    assert_eq!(got.as_object().unwrap().len(), want.as_object().unwrap().len());
}

/// `eval qwen` over the shipped question set (tests/fixtures/qwen-tiny/questions.jsonl): a row
/// per method and keep after the unpruned one, accuracies in [0, 1], the unpruned row agreeing
/// with itself, the three files; a bad line is an error naming the file and line.
#[test]
fn eval_qwen_answers_per_method_and_writes_its_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen-tiny");
    let out_dir = std::env::temp_dir().join(format!("effarch-evalq-{}", std::process::id()));
    let (model, data, out) = (dir.to_str().unwrap(), dir.join("questions.jsonl"), out_dir.to_str().unwrap());
    let o = effarch(&["eval", "qwen", "--model", model, "--data", data.to_str().unwrap(), "--llm-layer", "1", "--max-new-tokens", "3", "--out", out, "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = v["rows"].as_array().unwrap();
    let methods: Vec<(&str, f64)> = rows.iter().map(|r| (r["method"].as_str().unwrap(), r["keep"].as_f64().unwrap())).collect();
    assert_eq!(methods.len(), 1 + 5 * 2, "{methods:?}");
    assert_eq!(methods[0], ("unpruned", 1.0));
    assert!(methods.iter().any(|m| *m == ("fastv", 0.25)) && methods.iter().any(|m| *m == ("divprune", 0.5)) && methods.iter().any(|m| *m == ("dart", 0.5)));
    assert_eq!((rows[0]["agree"].as_f64(), v["questions"].as_u64()), (Some(1.0), Some(3)));
    for r in rows {
        for k in ["exact", "contains", "agree"] {
            assert!((0.0..=1.0).contains(&r[k].as_f64().unwrap()), "{k}: {r}");
        }
        assert!(r["prefill_ms"].as_f64().unwrap() > 0.0 && r["flops_ratio"].as_f64().unwrap() <= 1.0 + 1e-9, "{r}");
    }
    assert_eq!(v["answers"].as_array().unwrap().len(), 3);
    for f in ["results.json", "results.csv", "accuracy_vs_prefill.svg"] {
        assert!(out_dir.join(f).is_file(), "{f}");
    }
    assert_eq!(std::fs::read_to_string(out_dir.join("results.csv")).unwrap().lines().count(), 12);
    std::fs::remove_dir_all(&out_dir).ok();
    let bad = std::env::temp_dir().join(format!("effarch-badq-{}.jsonl", std::process::id()));
    std::fs::write(&bad, "{\"image\": \"x.png\", \"question\": \"q?\", \"answers\": [\"a\"]}\n{\"image\": \"x.png\", \"question\": \"q?\"}\n").unwrap();
    let o = effarch(&["eval", "qwen", "--model", model, "--data", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains(&format!("{}:2", bad.display())) && err.contains("answers"), "{err}");
    std::fs::remove_file(&bad).ok();
    // An answer longer than the model's context is refused, naming the image.
    let o = effarch(&["eval", "qwen", "--model", model, "--data", data.to_str().unwrap(), "--llm-layer", "1", "--max-new-tokens", "100000000"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("image_300x200.png") && err.contains("context"), "{err}");
}

/// `eval clip` over the shipped labelled set (ImageFolder and the same set as a CSV): a row per
/// method with accuracies in [0, 1], the unpruned row agreeing with itself, the three output
/// files, and `--resume` reading every image from the cache instead of running it again.
#[test]
fn eval_clip_sweeps_writes_its_files_and_resumes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let clip = fixture_dir();
    let set = root.join("tests/fixtures/eval-tiny");
    let out = std::env::temp_dir().join(format!("effarch-eval-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let (clip, set_s, out_s) = (clip.to_str().unwrap(), set.to_str().unwrap(), out.to_str().unwrap());
    fn eval_args<'a>(clip: &'a str, data: &'a str, out_s: &'a str, resume: bool) -> Vec<&'a str> {
        let mut v = vec![
            "eval",
            "clip",
            "--model",
            clip,
            "--data",
            data,
            "--keeps",
            "1,0.7,0.5",
            "--scorers",
            "kq-norm,random,tome",
            "--batch",
            "3",
            "--template",
            "a photo of a {}.",
            "--template",
            "a picture of the {}.",
            "--device",
            "cpu",
            "--out",
            out_s,
            "--json",
        ];
        if resume {
            v.push("--resume");
        }
        v
    }
    let run = |a: Vec<&str>| {
        let o = effarch(&a);
        assert!(o.status.success(), "{a:?}: {}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).expect("one JSON object")
    };
    let first = run(eval_args(clip, set_s, out_s, false));
    assert_eq!(first["config"]["images"], 20);
    assert_eq!(first["config"]["classes"], 4);
    assert_eq!(first["config"]["resumed"], 0);
    let rows = first["rows"].as_array().unwrap();
    let names: Vec<(String, f64)> =
        rows.iter().map(|r| (r["scorer"].as_str().unwrap().to_string(), (r["keep"].as_f64().unwrap() * 100.0).round() / 100.0)).collect();
    assert_eq!(
        names,
        vec![
            ("unpruned".into(), 1.0),
            ("kq-norm:key".into(), 0.7),
            ("kq-norm:key".into(), 0.5),
            ("random".into(), 0.7),
            ("random".into(), 0.5),
            ("tome".into(), 0.7),
            ("tome".into(), 0.5)
        ]
    );
    for r in rows {
        for k in ["top1", "top5", "agree_top1", "cos_to_unpruned", "flops_ratio"] {
            let v = r[k].as_f64().unwrap();
            assert!((0.0..=1.0 + 1e-6).contains(&v), "{k} = {v} in {r}");
        }
        assert!(r["top5"].as_f64() >= r["top1"].as_f64() && r["ms_per_img"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert_eq!((rows[0]["agree_top1"].as_f64(), rows[0]["cos_to_unpruned"].as_f64().map(|c| (c - 1.0).abs() < 1e-6)), (Some(1.0), Some(true)));
    assert!(rows[2]["flops_ratio"].as_f64() < rows[1]["flops_ratio"].as_f64());
    let svg = std::fs::read_to_string(out.join("latency_vs_accuracy.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.matches("<polyline").count() == 6, "{svg}");
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 8, "{csv}");
    // ToMe at keep 0.5 leaves as many tokens as pruning does, merged over every layer rather
    // than dropped at layer 1: more FLOPs than pruning at the same keep, fewer than unpruned.
    assert!(rows[6]["flops_ratio"].as_f64() > rows[2]["flops_ratio"].as_f64() && rows[6]["flops_ratio"].as_f64() < Some(1.0));
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(saved["rows"], first["rows"]);

    // Interrupted after 7 images: the cache keeps them (the last line cut short is dropped) and
    // --resume runs only the rest; accuracies and agreement are those of the full run.
    let cache = out.join("cache.jsonl");
    let text = std::fs::read_to_string(&cache).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 21, "settings line + 20 images");
    std::fs::write(&cache, format!("{}\n{}", lines[..8].join("\n"), &lines[8][..lines[8].len() / 2])).unwrap();
    let resumed = run(eval_args(clip, set_s, out_s, true));
    assert_eq!(resumed["config"]["resumed"], 7);
    assert_eq!(resumed["config"]["images"], 20);
    for (a, b) in resumed["rows"].as_array().unwrap().iter().zip(rows) {
        for k in ["top1", "top5", "agree_top1"] {
            assert_eq!(a[k], b[k], "{k} after --resume");
        }
    }
    assert_eq!(std::fs::read_to_string(&cache).unwrap().lines().count(), 21);

    // The same set as path,label lines gives the same accuracies.
    let csv_set = set.join("labels.csv");
    let from_csv = run(eval_args(clip, csv_set.to_str().unwrap(), out_s, false));
    for (a, b) in from_csv["rows"].as_array().unwrap().iter().zip(rows) {
        assert_eq!((&a["top1"], &a["top5"]), (&b["top1"], &b["top5"]));
    }
    // Other settings than the cache's: --resume refuses, naming the cache.
    let mut other = eval_args(clip, set_s, out_s, true);
    other[7] = "1,0.3";
    let o = effarch(&other);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("cache.jsonl"), "{}", String::from_utf8_lossy(&o.stderr));
    let _ = std::fs::remove_dir_all(&out);
}

/// `effarch quantize`: the tiny CLIP in the hub layout with int8 linear weights (same names plus
/// `<name>_scale`, `quantization_config` in config.json), smaller, and loadable: at
/// `--precision int8` it gives the embeddings the f32 checkpoint gives at int8 (the weights
/// quantise back to the same values), and it runs at f32 on the dequantised weights.
#[test]
fn quantize_writes_an_int8_checkpoint_that_loads_like_any_other() {
    let dir = fixture_dir();
    let out_dir = std::env::temp_dir().join(format!("effarch-quantized-{}", std::process::id()));
    let out = effarch(&["quantize", "--model", dir.to_str().unwrap(), "--out", out_dir.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["precision"], "int8");
    // (The fixture folder's other .safetensors files hold expected outputs: no linear weights.)
    let model = v["files"].as_array().unwrap().iter().find(|f| f["file"] == "model.safetensors").unwrap();
    let (bytes_in, bytes_out) = (model["bytes_in"].as_f64().unwrap(), model["bytes_out"].as_f64().unwrap());
    assert!(bytes_out < 0.7 * bytes_in, "{bytes_out} of {bytes_in} bytes (the tiny model's token embedding stays f32)");
    assert!(model["quantized"].as_u64().unwrap() >= 8, "{v}");
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["quantization_config"]["quant_method"], "effarch-int8");
    assert!(out_dir.join("vocab.json").exists(), "the other files are copied");
    let image = dir.join("cat_300x257.png");
    let embeds = |model: &Path, precision: &str| -> Vec<f64> {
        let o = effarch(&clip_args(&["--keep", "1", "--json", "--precision", precision, "--device", "cpu"], image.to_str().unwrap(), model.to_str().unwrap()));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        serde_json::from_value(v["image_embeds"].clone()).unwrap()
    };
    let cos = |a: &[f64], b: &[f64]| {
        a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / (a.iter().map(|x| x * x).sum::<f64>() * b.iter().map(|x| x * x).sum::<f64>()).sqrt()
    };
    let (orig, quant) = (embeds(&dir, "int8"), embeds(&out_dir, "int8"));
    assert!(cos(&orig, &quant) > 0.99999, "int8 on the quantised checkpoint: cos {}", cos(&orig, &quant));
    let f32_on_int8 = embeds(&out_dir, "f32");
    assert!(cos(&orig, &f32_on_int8) > 0.99, "f32 on the dequantised weights: cos {}", cos(&orig, &f32_on_int8));
    let twice = effarch(&["quantize", "--model", out_dir.to_str().unwrap(), "--out", std::env::temp_dir().join("effarch-q2").to_str().unwrap()]);
    assert!(!twice.status.success() && String::from_utf8_lossy(&twice.stderr).contains("already int8"));
    let bf16 = effarch(&["quantize", "--model", dir.to_str().unwrap(), "--precision", "bf16", "--out", out_dir.to_str().unwrap()]);
    assert!(!bf16.status.success() && String::from_utf8_lossy(&bf16.stderr).contains("--precision bf16"));
    std::fs::remove_dir_all(&out_dir).ok();
}
