//! What every command shares: arguments checked before any output, quiet device probing, and
//! the `--json` shapes pinned.

use super::*;

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
