//! The golden CLIP checks and a pruning check inside a real browser (headless Chrome) on the
//! wasm SIMD128 CPU path: `wasm-pack test --headless --chrome`.
#![cfg(target_arch = "wasm32")]

use effarch::testing::ClipFixture;
use effarch::tensor::Device;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

macro_rules! fixture_file {
    ($n:literal) => {
        ($n, include_bytes!(concat!("fixtures/clip-tiny/", $n)).as_slice())
    };
}

const FILES: &[(&str, &[u8])] = &[
    fixture_file!("config.json"),
    fixture_file!("model.safetensors"),
    fixture_file!("vocab.json"),
    fixture_file!("merges.txt"),
    fixture_file!("expected.safetensors"),
    fixture_file!("expected.json"),
    fixture_file!("cat_300x257.png"),
    fixture_file!("astro_grey_180x400.png"),
    fixture_file!("tiny_20x30.png"),
    fixture_file!("coffee_rgba_250.png"),
];

fn fixture() -> ClipFixture {
    ClipFixture::from_files(|n| {
        FILES
            .iter()
            .find(|(name, _)| *name == n)
            .map(|(_, b)| b.to_vec())
            .ok_or_else(|| effarch::Error::arg(format!("no embedded fixture {n}")))
    })
    .expect("fixture loads")
}

#[wasm_bindgen_test]
fn simd128_is_enabled() {
    assert!(Device::Cpu.describe().contains("simd128"), "{}", Device::Cpu.describe());
}

#[wasm_bindgen_test]
fn golden_clip_in_browser() {
    let fx = fixture();
    let clip = fx.clip(&Device::Cpu).unwrap();
    for (name, d) in fx.check_preprocess(&clip).unwrap() {
        assert!(d <= 1e-5, "preprocess {name}: {d}");
    }
    for (name, d) in fx.check_towers(&clip).unwrap() {
        let tol = if name == "logits_per_image" { 1e-3 } else { 1e-4 };
        assert!(d <= tol, "{name}: max |Δ| {d} > {tol}");
    }
}

#[wasm_bindgen_test]
fn pruning_in_browser() {
    let fx = fixture();
    let clip = fx.clip(&Device::Cpu).unwrap();
    let res = fx.check_pruning(&clip).unwrap();
    assert_eq!(res.len(), 8);
    for r in res {
        assert!(r.kept_equal, "{}: kept indices differ", r.name);
        assert!(r.scores <= 1e-4 && r.image_embeds <= 1e-4 && r.last_hidden_state <= 1e-4, "{r:?}");
    }
}

#[wasm_bindgen_test]
fn session_api_reports_kept_patches_and_rejects_bad_input() {
    use wasm_bindgen::JsValue;
    let fx = fixture();
    let mut s = effarch::web::ClipSession::new(&fx.config, fx.model.clone(), true).unwrap();
    s.set_tokenizer(&fx.vocab, &fx.merges).unwrap();
    let opts = js_sys::JSON::parse(r#"{"keep": 0.5, "scorer": "kq-norm", "layers": [1], "labels": ["a cat", "a dog"]}"#).unwrap();
    let r = s.run(&fx.images[0].1, opts).unwrap();
    let v: serde_json::Value = serde_wasm_bindgen::from_value(r).unwrap();
    assert_eq!(v["kept"][0]["indices"].as_array().unwrap().len(), 98);
    assert!(v["timings_ms"]["total"].as_f64().unwrap() > 0.0);
    assert_eq!(v["label_probs"].as_array().unwrap().len(), 2);
    let bad = js_sys::JSON::parse(r#"{"keep": 0}"#).unwrap();
    assert!(s.run(&fx.images[0].1, bad).is_err());
    assert!(s.run(b"not an image", JsValue::UNDEFINED).is_err());
}

/// The first GPU kernel on the browser's WebGPU (SwiftShader in CI). No adapter fails.
#[wasm_bindgen_test]
async fn gpu_linear_on_webgpu_matches_cpu() {
    use effarch::tensor::gpu::{linear::linear, GpuContext};
    use effarch::tensor::Tensor;
    let ctx = GpuContext::new().await.expect("a WebGPU adapter (Chrome with --enable-unsafe-webgpu)");
    let (m, k, n) = (197usize, 96usize, 130usize);
    let xv: Vec<f32> = (0..m * k).map(|i| ((i * 31 % 97) as f32 - 48.0) / 50.0).collect();
    let wv: Vec<f32> = (0..n * k).map(|i| ((i * 17 % 89) as f32 - 44.0) / 45.0).collect();
    let bv: Vec<f32> = (0..n).map(|i| i as f32 / 10.0).collect();
    let want = Tensor::from_f32(xv.clone(), &[m, k], &Device::Cpu)
        .unwrap()
        .linear(&Tensor::from_f32(wv.clone(), &[n, k], &Device::Cpu).unwrap(), Some(&Tensor::from_f32(bv.clone(), &[n], &Device::Cpu).unwrap()))
        .unwrap()
        .to_vec_f32()
        .unwrap();
    let y = linear(&ctx, &ctx.upload(&xv, &[m, k]).unwrap(), &ctx.upload(&wv, &[n, k]).unwrap(), Some(&ctx.upload(&bv, &[n]).unwrap())).unwrap();
    let got = ctx.read(&y).await.unwrap();
    let d = effarch::testing::max_abs_diff(&got, &want);
    assert!(d < 1e-3, "max |Δ| {d} on {:?}", ctx.adapter);
}
