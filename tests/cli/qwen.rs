//! `qwen` and `eval qwen`.

use super::*;

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
    assert!(rows.iter().all(|r| r.get("profile").is_none() && r.get("decode_ms_per_token").is_none()), "{v}");
}

/// `bench qwen --device gpu --profile --decode N`: every row has a decode time and two GPU
/// profiles (the prefill, a decoding step) whose kernels account for every dispatch; on the CPU
/// `--profile` is refused with a message naming the GPU.
#[test]
fn bench_qwen_profile_on_the_gpu() {
    let args =
        ["bench", "qwen", "--image", "56", "--vision-depth", "1", "--lm-layers", "1", "--iters", "1", "--keeps", "1,0.5", "--widths", "32,48,2,64,96,4,2"];
    let v = effarch_json(&[&args[..], &["--decode", "2", "--device", "gpu", "--profile", "--json"]].concat());
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for r in rows {
        assert!(r["decode_ms_per_token"].as_f64().is_some_and(|d| d > 0.0), "{r}");
        check_profile(&r["profile"], "linear");
        check_profile(&r["decode_profile"], "linear");
    }
    let out = effarch(&[&args[..], &["--decode", "100000"]].concat());
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--decode 100000"));
    let out = effarch(&[&args[..], &["--device", "cpu", "--profile"]].concat());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--profile times GPU kernels"), "{err}");
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
