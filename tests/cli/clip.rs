//! `clip`, `bench clip|gemm`, `eval clip` and hub ids.

use super::*;

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
    // --profile times GPU kernels: on the CPU it is refused before any work.
    let bad = effarch(&["bench", "clip", "--device", "cpu", "--profile"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("--profile times GPU kernels"), "{err}");
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
    // Each x86 f32 kernel beside its instruction set's FMA ceiling (the portable, int8 and bf16
    // ones have none); every int8 kernel and bf16 engine this CPU has is timed too.
    let plain = |t: &serde_json::Value| !["portable", "int8", "bf16"].iter().any(|p| t["kernel"].as_str().unwrap().starts_with(p));
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

/// `eval clip --precision f32,int8,bf16`: one model per precision on every batch, f32's rows
/// first; each row names its precision, its top-1 agreement with f32's and its cos to f32's
/// embedding under the same method (f32's own: 1 and 1; int8/bf16 near but not equal to 1);
/// a single precision leaves those fields null.
#[test]
fn eval_clip_puts_precisions_side_by_side() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (clip, set) = (fixture_dir(), root.join("tests/fixtures/eval-tiny"));
    let (clip, set) = (clip.to_str().unwrap(), set.to_str().unwrap());
    let run = |precision: &str| {
        let a = ["eval", "clip", "--model", clip, "--data", set, "--keeps", "1,0.5", "--scorers", "kq-norm", "--precision", precision, "--json"];
        let o = effarch(&a);
        assert!(o.status.success(), "{a:?}: {}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).expect("one JSON object")
    };
    let side = run("int8,bf16");
    let rows = side["rows"].as_array().unwrap();
    let got: Vec<(&str, &str, f64)> =
        rows.iter().map(|r| (r["precision"].as_str().unwrap(), r["scorer"].as_str().unwrap(), r["keep"].as_f64().unwrap())).collect();
    assert_eq!(
        got,
        vec![
            ("f32", "unpruned", 1.0),
            ("f32", "kq-norm:key", 0.5),
            ("int8", "unpruned", 1.0),
            ("int8", "kq-norm:key", 0.5),
            ("bf16", "unpruned", 1.0),
            ("bf16", "kq-norm:key", 0.5)
        ]
    );
    let device = side["config"]["device"].as_str().unwrap();
    assert!(device.contains("int8") && device.contains("bf16"), "{device}");
    for r in &rows[..2] {
        assert_eq!((r["agree_f32"].as_f64(), r["cos_to_f32"].as_f64()), (Some(1.0), Some(1.0)), "{r}");
    }
    for r in &rows[2..] {
        let (agree, cos) = (r["agree_f32"].as_f64().unwrap(), r["cos_to_f32"].as_f64().unwrap());
        assert!((0.0..=1.0).contains(&agree), "{r}");
        assert!(cos > 0.99 && cos < 1.0, "{r}: the {} embedding is not f32's", r["precision"]);
    }
    // f32's rows equal a run of f32 alone, whose rows carry no precision columns.
    let alone = run("f32");
    for (a, b) in alone["rows"].as_array().unwrap().iter().zip(&rows[..2]) {
        assert_eq!((&a["top1"], &a["agree_top1"], &a["cos_to_unpruned"]), (&b["top1"], &b["agree_top1"], &b["cos_to_unpruned"]));
        assert!(a["precision"].is_null() && a["agree_f32"].is_null() && a["cos_to_f32"].is_null(), "{a}");
    }
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
