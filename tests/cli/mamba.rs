//! `mamba` and `bench mamba|mamba-lm|scan`.

use super::*;

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
    // Text mode streams the prompt and the continuation: the same text as `--json` gives, a
    // character split over tokens printed whole (the tiny model's random bytes split many, and
    // printing each token on its own gave a U+FFFD per part).
    let gen = ["mamba", "--model", model, "--prompt", "Hello", "--max-new-tokens", "24", "--temperature", "1.5", "--seed", "1"];
    let text = effarch_json(&[&gen[..], &["--json"]].concat())["text"].as_str().unwrap().to_string();
    // The premise: a character made of several byte tokens (the fixture's 300 tokens are the
    // 256 bytes, ASCII merges and one added token).
    assert!(text.chars().any(|c| !c.is_ascii() && c != char::REPLACEMENT_CHARACTER), "no multi-byte character in {text:?}");
    let out = effarch(&gen);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("Hello{text}\n"));
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
    // The tiny checkpoint on the GPU with --profile: the prefill's and a step's kernels.
    let args = ["bench", "mamba-lm", "--prompt-lens", "8", "--decode", "2", "--iters", "1", "--device", "gpu", "--profile", "--json", "--model"];
    let v = effarch_json(&[&args[..], &[dir.to_str().unwrap()]].concat());
    for key in ["prefill_profile", "decode_profile"] {
        check_profile(&v["rows"][0][key], "ssm");
    }
    // `--model random`: mamba-130m's depth and widths, nothing read from disk.
    let v = effarch_json(&["bench", "mamba-lm", "--model", "random", "--prompt-lens", "4", "--decode", "1", "--iters", "1", "--json"]);
    assert!(v["rows"][0]["decode_tokens_per_s"].as_f64().is_some_and(|t| t > 0.0), "{v}");
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
        assert!(r["max_abs_diff"].as_f64().unwrap() < 1e-4 && r["wide_chunks"].as_u64().unwrap() >= 1 && r["fine_chunks"].as_u64().unwrap() >= 1, "{r}");
    }
    let out = effarch(&["bench", "scan", "--device", "gpu", "--lens", "4000000000"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("storage buffer limit"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = effarch(&["bench", "scan", "--device", "cpu"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--device gpu"), "{}", String::from_utf8_lossy(&out.stderr));
}
