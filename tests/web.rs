//! The golden CLIP checks and the pruning checks inside a real browser (headless Chrome), on
//! the wasm SIMD128 CPU path and on WebGPU: `wasm-pack test --headless --chrome`; the same
//! file on the multi-threaded build (2 threads) with `scripts/test_wasm_threads.sh`.
#![cfg(target_arch = "wasm32")]

use effarch::tensor::Device;
use effarch::testing::ClipFixture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// Before each test: in the multi-threaded build (`--features threads`, scripts/test.sh runs
/// this file on it too), rayon's pool on 2 Web Workers, started once, before any kernel runs.
async fn setup() {
    #[cfg(feature = "threads")]
    {
        thread_local!(static STARTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
        if !STARTED.with(|s| s.replace(true)) {
            wasm_bindgen_futures::JsFuture::from(effarch::web::init_thread_pool(2)).await.expect("rayon's pool starts on 2 workers");
        }
        assert_eq!(effarch::web::cpu_threads(), 2);
        assert!(effarch::tensor::Device::cpu().describe().contains("2 threads"), "{}", effarch::tensor::Device::cpu().describe());
    }
}

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
    fixture_file!("tome.safetensors"),
    fixture_file!("tome.json"),
    fixture_file!("methods.safetensors"),
    fixture_file!("methods.json"),
    fixture_file!("cat_300x257.png"),
    fixture_file!("astro_grey_180x400.png"),
    fixture_file!("tiny_20x30.png"),
    fixture_file!("coffee_rgba_250.png"),
];

fn fixture() -> ClipFixture {
    ClipFixture::from_files(|n| {
        FILES.iter().find(|(name, _)| *name == n).map(|(_, b)| b.to_vec()).ok_or_else(|| effarch::Error::arg(format!("no embedded fixture {n}")))
    })
    .expect("fixture loads")
}

#[wasm_bindgen_test]
async fn simd128_is_enabled() {
    setup().await;
    assert!(Device::cpu().describe().contains("simd128"), "{}", Device::cpu().describe());
}

/// The page's Scorer menu and card titles come from the core (`pruningMethods`, `pruningMethod`),
/// and its keep counts from `nKeep`.
#[wasm_bindgen_test]
async fn the_wasm_api_lists_the_core_methods_and_keep_counts() {
    let v: serde_json::Value = serde_wasm_bindgen::from_value(effarch::web::pruning_methods().unwrap()).unwrap();
    let names: Vec<&str> = v.as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, effarch::prune::METHODS.iter().map(|m| m.name).collect::<Vec<_>>());
    assert!(v.as_array().unwrap().iter().all(|m| ["vision", "language"].contains(&m["tower"].as_str().unwrap()) && m["label"].is_string()));
    let m: serde_json::Value = serde_wasm_bindgen::from_value(effarch::web::pruning_method("kq-norm:key").unwrap()).unwrap();
    assert_eq!((m["name"].as_str(), m["short"].as_str()), (Some("kq-norm"), Some("kq-norm (‖key‖)")));
    let m: serde_json::Value = serde_wasm_bindgen::from_value(effarch::web::pruning_method("tome:8").unwrap()).unwrap();
    assert_eq!(m["short"].as_str(), Some("ToMe"));
    assert!(effarch::web::pruning_method("nope").is_err());
    assert_eq!((effarch::web::n_keep(0.5, 196), effarch::web::n_keep(0.3, 196), effarch::web::n_keep(0.01, 10)), (98, 59, 1));
}

#[wasm_bindgen_test]
async fn golden_clip_in_browser() {
    setup().await;
    let fx = fixture();
    let clip = fx.clip(&Device::cpu()).unwrap();
    for (name, d) in fx.check_preprocess(&clip).unwrap() {
        assert!(d <= 1e-5, "preprocess {name}: {d}");
    }
    for (name, d) in fx.check_towers(&clip).unwrap() {
        let tol = if name == "logits_per_image" { 1e-3 } else { 1e-4 };
        assert!(d <= tol, "{name}: max |Δ| {d} > {tol}");
    }
}

#[wasm_bindgen_test]
async fn pruning_in_browser() {
    setup().await;
    let fx = fixture();
    let clip = fx.clip(&Device::cpu()).unwrap();
    let res = fx.check_pruning(&clip).unwrap();
    assert_eq!(res.len(), 8);
    for r in res {
        assert!(r.kept_equal, "{}: kept indices differ", r.name);
        assert!(r.scores <= 1e-4 && r.image_embeds <= 1e-4 && r.last_hidden_state <= 1e-4, "{r:?}");
    }
}

/// Token Merging in the browser: wasm CPU and WebGPU against the torch reference.
#[wasm_bindgen_test]
async fn tome_in_browser_and_on_webgpu() {
    setup().await;
    let fx = fixture();
    for (dev, tol) in [(Device::cpu(), 1e-4f32), (webgpu().await, 1e-3)] {
        let clip = fx.clip(&dev).unwrap();
        let res = fx.check_tome_async(&clip).await.unwrap();
        assert_eq!(res.len(), 4);
        for r in res {
            assert!(r.tokens_equal && r.groups_equal, "{}: {r:?}", dev.describe());
            assert!(r.image_embeds <= tol && r.last_hidden_state <= tol, "{}: {r:?}", dev.describe());
        }
    }
}

/// DivPrune and VisionZip in the browser, wasm CPU and WebGPU, against their official logic.
#[wasm_bindgen_test]
async fn divprune_and_visionzip_in_browser_and_on_webgpu() {
    setup().await;
    let fx = fixture();
    for (dev, tol) in [(Device::cpu(), 1e-4f32), (webgpu().await, 1e-3)] {
        let clip = fx.clip(&dev).unwrap();
        let res = fx.check_methods_async(&clip).await.unwrap();
        assert_eq!(res.len(), 5);
        for r in res {
            assert!(r.kept_equal && r.groups_equal, "{}: {r:?}", dev.describe());
            assert!(r.image_embeds <= tol && r.last_hidden_state <= tol, "{}: {r:?}", dev.describe());
        }
    }
}

/// JPEG decoding in the browser (the page decodes uploads in wasm) gives Pillow's pixels: the
/// four sample photos hash as in tests/fixtures/generation/pil-jpeg.json.
#[wasm_bindgen_test]
async fn jpeg_decoding_in_browser_matches_pillow() {
    setup().await;
    let fx: serde_json::Value = serde_json::from_str(include_str!("fixtures/generation/pil-jpeg.json")).unwrap();
    let samples: [(&str, &[u8]); 4] = [
        ("www/samples/astronaut.jpg", include_bytes!("../www/samples/astronaut.jpg")),
        ("www/samples/chelsea-cat.jpg", include_bytes!("../www/samples/chelsea-cat.jpg")),
        ("www/samples/coffee.jpg", include_bytes!("../www/samples/coffee.jpg")),
        ("www/samples/rocket.jpg", include_bytes!("../www/samples/rocket.jpg")),
    ];
    for (name, bytes) in samples {
        let want = fx["files"].as_array().unwrap().iter().find(|f| f["file"] == name).unwrap()["fnv1a64"].as_str().unwrap().to_string();
        let img = effarch::image::decode(bytes).unwrap();
        assert_eq!(format!("{:016x}", effarch::num::fnv1a64(img.as_raw())), want, "{name}: pixels differ from Pillow's");
    }
}

async fn run(s: &effarch::web::ClipSession, image: &[u8], opts: &str) -> Result<serde_json::Value, String> {
    let o = if opts.is_empty() { wasm_bindgen::JsValue::UNDEFINED } else { js_sys::JSON::parse(opts).unwrap() };
    match wasm_bindgen_futures::JsFuture::from(s.run(image.to_vec(), o)).await {
        Ok(v) => Ok(serde_wasm_bindgen::from_value(v).unwrap()),
        Err(e) => Err(js_sys::Error::from(e).message().into()),
    }
}

#[wasm_bindgen_test]
async fn session_api_reports_kept_patches_and_rejects_bad_input() {
    setup().await;
    let fx = fixture();
    let s = effarch::web::ClipSession::new(&fx.config, fx.model.clone(), true).unwrap();
    s.set_tokenizer(&fx.vocab, &fx.merges).unwrap();
    let v = run(&s, &fx.images[0].1, r#"{"keep": 0.5, "scorer": "kq-norm", "layers": [1], "labels": ["a cat", "a dog"]}"#).await.unwrap();
    assert_eq!(v["kept"][0]["indices"].as_array().unwrap().len(), 98);
    assert!(v["timings_ms"]["total"].as_f64().unwrap() > 0.0);
    assert_eq!(v["label_probs"].as_array().unwrap().len(), 2);
    let e = run(&s, &fx.images[0].1, r#"{"keep": 0}"#).await.unwrap_err();
    assert!(e.contains("keep"), "{e}");
    let e = run(&s, b"not an image", "").await.unwrap_err();
    assert!(e.contains("image"), "{e}");
    // The session still works after the errors.
    assert!(run(&s, &fx.images[1].1, "").await.is_ok());
}

/// The context for WebGPU tests. No adapter fails the test: it never passes by skipping.
async fn webgpu() -> Device {
    Device::gpu_async().await.expect("a WebGPU adapter (Chrome with --enable-unsafe-webgpu, see webdriver.json)")
}

/// The whole CLIP golden test with every op on WebGPU (SwiftShader in CI), read back async.
#[wasm_bindgen_test]
async fn golden_clip_on_webgpu() {
    setup().await;
    let fx = fixture();
    let gpu = webgpu().await;
    let clip = fx.clip(&gpu).unwrap();
    for (name, d) in fx.check_towers_async(&clip).await.unwrap() {
        console_log!("webgpu {name}: max |Δ| = {d:e} ({})", gpu.describe());
        assert!(d <= 1e-3, "webgpu {name}: max |Δ| {d} > 1e-3 on {}", gpu.describe());
    }
}

/// The pruning cases on WebGPU equal the torch reference, and every scorer keeps the same
/// tokens as the CPU path.
#[wasm_bindgen_test]
async fn pruning_on_webgpu_matches_reference_and_cpu() {
    setup().await;
    let fx = fixture();
    let gpu = webgpu().await;
    let clip = fx.clip(&gpu).unwrap();
    let res = fx.check_pruning_async(&clip).await.unwrap();
    assert_eq!(res.len(), 8);
    for r in res {
        assert!(r.kept_equal, "webgpu {}: kept indices differ", r.name);
        assert!(r.scores <= 1e-3 && r.image_embeds <= 1e-3 && r.last_hidden_state <= 1e-3, "{r:?}");
    }
    let cpu = fx.clip(&Device::cpu()).unwrap();
    for (scorer, equal) in effarch::testing::compare_scorers_async(&fx, &cpu, &clip).await.unwrap() {
        assert!(equal, "{scorer}: WebGPU kept other tokens than the CPU");
    }
}

/// The page's API on WebGPU: runs there, and a lost device falls back to the CPU with a message.
#[wasm_bindgen_test]
async fn session_on_webgpu_falls_back_to_cpu_when_the_device_is_lost() {
    setup().await;
    let fx = fixture();
    webgpu().await;
    let s = effarch::web::ClipSession::create(fx.config.clone(), fx.model.clone(), false, "webgpu".into(), None).await.unwrap();
    assert!(s.device().starts_with("gpu"), "{}", s.device());
    let a = run(&s, &fx.images[0].1, r#"{"keep": 0.5}"#).await.unwrap();
    assert!(a["fallback"].is_null() && a["device"].as_str().unwrap().contains("WebGpu"), "{a}");
    s.simulate_device_loss();
    let b = run(&s, &fx.images[0].1, r#"{"keep": 0.5}"#).await.unwrap();
    assert!(b["fallback"].as_str().unwrap().contains("device lost"), "{b}");
    assert!(s.device().starts_with("cpu"), "{}", s.device());
    assert_eq!(a["kept"], b["kept"]);
}

/// `precision: "int8"` through the page's API on WebGPU (int8 weights in GPU memory, unpacked
/// in the linear kernel) and on the CPU (the SIMD128 int8 kernel): both say int8, their
/// embeddings sit near the f32 session's (cos ≥ 0.999) without being f32's, and a lost device
/// falls back to the CPU in int8.
#[wasm_bindgen_test]
async fn int8_sessions_on_webgpu_and_the_cpu_stay_near_f32() {
    setup().await;
    let fx = fixture();
    webgpu().await;
    let img = &fx.images[0].1;
    let make =
        |backend: &str, p: Option<&str>| effarch::web::ClipSession::create(fx.config.clone(), fx.model.clone(), false, backend.into(), p.map(String::from));
    let f32s = make("cpu", None).await.unwrap();
    assert_eq!(f32s.precision(), "f32");
    let want = run(&f32s, img, r#"{"keep": 1}"#).await.unwrap();
    let embeds = |v: &serde_json::Value| -> Vec<f32> { serde_json::from_value(v["image_embeds"].clone()).unwrap() };
    for backend in ["webgpu", "cpu"] {
        let s = make(backend, Some("int8")).await.unwrap();
        assert_eq!(s.precision(), "int8", "{backend}");
        assert!(s.device().contains(if backend == "webgpu" { "int8 weights" } else { "int8 wasm simd128" }), "{}", s.device());
        let got = run(&s, img, r#"{"keep": 1}"#).await.unwrap();
        let c = effarch::num::cosine(&embeds(&got), &embeds(&want));
        assert!(c >= 0.999 && c < 1.0 - 1e-9, "{backend} int8: cos to f32 {c}");
        if backend == "webgpu" {
            s.simulate_device_loss();
            let b = run(&s, img, r#"{"keep": 1}"#).await.unwrap();
            assert!(b["fallback"].as_str().unwrap().contains("device lost"), "{b}");
            assert_eq!(s.precision(), "int8");
            assert!(s.device().contains("int8 wasm simd128"), "{}", s.device());
        }
    }
    assert!(make("webgpu", Some("bf16")).await.is_err());
    assert!(make("cpu", Some("int4")).await.is_err());
}

/// int8 weights on WebGPU (`GpuDtype::I8`: per-row scales, then int8 quads unpacked with shifts
/// in the tiled kernel): on every case of the numpy reference's `int8-linear.json`, the
/// product equals x · (q · scale)ᵀ + b computed on the CPU in f32 from the same int8 weights
/// (the scheme's weights; activations stay f32 on the GPU), within f32 summation order.
#[wasm_bindgen_test]
async fn int8_weights_on_webgpu_equal_the_dequantised_product() {
    use effarch::tensor::{gpu::GpuWeights, LinearWeight, Tensor};
    setup().await;
    let gpu = Device::gpu_with(GpuWeights::Int8).await.expect("a WebGPU adapter (Chrome with --enable-unsafe-webgpu)");
    let fx: serde_json::Value = serde_json::from_str(include_str!("fixtures/generation/int8-linear.json")).unwrap();
    let f = |c: &serde_json::Value, key: &str| -> Vec<f32> { c[key].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect() };
    let mut tested = 0;
    for c in fx["cases"].as_array().unwrap() {
        let (m, k, n) = (c["m"].as_u64().unwrap() as usize, c["k"].as_u64().unwrap() as usize, c["n"].as_u64().unwrap() as usize);
        if k % 4 != 0 {
            continue; // int8 storage needs K a multiple of 4 (every model's widths are); f32 otherwise
        }
        let w = LinearWeight::new(f(c, "w"), [n, k], &gpu).unwrap();
        assert!(w.is_int8(), "m{m} k{k} n{n}");
        let deq = LinearWeight::stored_values(&f(c, "w"), [n, k], &gpu).unwrap();
        let cpu = |v: Vec<f32>, s: &[usize]| Tensor::from_f32(v, s, &Device::cpu()).unwrap();
        let want = cpu(f(c, "x"), &[m, k]).linear(&cpu(deq, &[n, k]), Some(&cpu(f(c, "b"), &[n]))).unwrap().to_vec_f32().unwrap();
        let got = w
            .forward(&Tensor::from_f32(f(c, "x"), &[m, k], &gpu).unwrap(), Some(&Tensor::from_f32(f(c, "b"), &[n], &gpu).unwrap()))
            .unwrap()
            .to_vec_f32_async()
            .await
            .unwrap();
        let scale = want.iter().fold(1f32, |a, v| a.max(v.abs()));
        let d = effarch::testing::max_abs_diff(&got, &want) / scale;
        assert!(d <= 1e-5, "int8 weights on WebGPU, m{m} k{k} n{n}: max |Δ| {d} of scale");
        tested += 1;
    }
    assert!(tested >= 2, "{tested} cases with K a multiple of 4");
}

/// The first GPU kernel on the browser's WebGPU (SwiftShader in CI). No adapter fails.
#[wasm_bindgen_test]
async fn gpu_linear_on_webgpu_matches_cpu() {
    setup().await;
    use effarch::tensor::gpu::{linear::linear, GpuContext};
    use effarch::tensor::Tensor;
    let ctx = GpuContext::new().await.expect("a WebGPU adapter (Chrome with --enable-unsafe-webgpu)");
    let (m, k, n) = (197usize, 96usize, 130usize);
    let xv: Vec<f32> = (0..m * k).map(|i| ((i * 31 % 97) as f32 - 48.0) / 50.0).collect();
    let wv: Vec<f32> = (0..n * k).map(|i| ((i * 17 % 89) as f32 - 44.0) / 45.0).collect();
    let bv: Vec<f32> = (0..n).map(|i| i as f32 / 10.0).collect();
    let want = Tensor::from_f32(xv.clone(), &[m, k], &Device::cpu())
        .unwrap()
        .linear(&Tensor::from_f32(wv.clone(), &[n, k], &Device::cpu()).unwrap(), Some(&Tensor::from_f32(bv.clone(), &[n], &Device::cpu()).unwrap()))
        .unwrap()
        .to_vec_f32()
        .unwrap();
    let y = linear(&ctx, &ctx.upload(&xv, &[m, k]).unwrap(), &ctx.upload(&wv, &[n, k]).unwrap(), Some(&ctx.upload(&bv, &[n]).unwrap())).unwrap();
    let got = ctx.read(&y).await.unwrap();
    let d = effarch::testing::max_abs_diff(&got, &want);
    assert!(d < 1e-3, "max |Δ| {d} on {:?}", ctx.adapter);
}

/// The tiny Mamba LM against transformers' logits in the browser (wasm SIMD128 CPU path),
/// prefill then steps equal to the full pass, and the GPT-NeoX tokenizer.
#[wasm_bindgen_test]
async fn mamba_golden_in_browser() {
    setup().await;
    use effarch::models::lm::ByteBpe;
    use effarch::models::mamba::{MambaConfig, MambaLM};
    use effarch::weights::Weights;
    let cfg = MambaConfig::from_json("config.json", include_str!("fixtures/mamba-tiny/config.json")).unwrap();
    let w = Weights::from_bytes("model.safetensors", include_bytes!("fixtures/mamba-tiny/model.safetensors").to_vec()).unwrap();
    let m = MambaLM::load(cfg, &w, &Device::cpu()).unwrap();
    let exp = Weights::from_bytes("expected.safetensors", include_bytes!("fixtures/mamba-tiny/expected.safetensors").to_vec()).unwrap();
    let shape = exp.info("input_ids").unwrap().shape.clone();
    let ids: Vec<Vec<u32>> = exp.get_f32("input_ids", &shape).unwrap().chunks(shape[1]).map(|r| r.iter().map(|&v| v as u32).collect()).collect();
    let want = exp.get_f32("logits", &exp.info("logits").unwrap().shape.clone()).unwrap();
    let out = m.forward(&ids, &mut m.new_state(ids.len()).unwrap(), 0.0).unwrap();
    let d = effarch::testing::max_abs_diff(&out.logits, &want);
    assert!(d <= 1e-4, "mamba logits max |Δ| {d}");
    let tok = ByteBpe::from_tokenizer_json(include_str!("fixtures/mamba-tiny/tokenizer.json")).unwrap();
    let meta: serde_json::Value = serde_json::from_str(include_str!("fixtures/mamba-tiny/expected.json")).unwrap();
    for case in meta["tokenized"].as_array().unwrap() {
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(tok.encode(case["text"].as_str().unwrap()).unwrap(), want);
    }
}

const MAMBA_CONFIG: &str = include_str!("fixtures/mamba-tiny/config.json");
const MAMBA_WEIGHTS: &[u8] = include_bytes!("fixtures/mamba-tiny/model.safetensors");
const MAMBA_TOKENIZER: &str = include_str!("fixtures/mamba-tiny/tokenizer.json");

/// Runs `generate` on a session, collecting the streamed ids and skip rates.
async fn mamba_generate(s: &effarch::web::mamba::MambaSession, prompt: &str, opts: &str) -> Result<(serde_json::Value, Vec<u32>, Vec<f64>), String> {
    use std::{cell::RefCell, rc::Rc};
    use wasm_bindgen::JsCast;
    let seen = Rc::new(RefCell::new((Vec::new(), Vec::new())));
    let seen2 = seen.clone();
    let cb = wasm_bindgen::closure::Closure::<dyn FnMut(u32, String, f64)>::new(move |id: u32, _t: String, merged: f64| {
        let mut s = seen2.borrow_mut();
        s.0.push(id);
        s.1.push(merged);
    });
    let o = if opts.is_empty() { wasm_bindgen::JsValue::UNDEFINED } else { js_sys::JSON::parse(opts).unwrap() };
    let p = s.generate(prompt.to_string(), o, Some(cb.as_ref().unchecked_ref::<js_sys::Function>().clone()));
    let v = wasm_bindgen_futures::JsFuture::from(p).await.map_err(|e| String::from(js_sys::Error::from(e).message()))?;
    let (ids, merged) = seen.borrow().clone();
    Ok((serde_wasm_bindgen::from_value(v).unwrap(), ids, merged))
}

/// The Mamba API the page's worker uses: greedy generation streams each token (with the MRSS
/// skip rate so far) to the callback; bad input is an error and the session goes on.
#[wasm_bindgen_test]
async fn mamba_session_generates_and_streams() {
    setup().await;
    let s = effarch::web::mamba::MambaSession::new(MAMBA_CONFIG, MAMBA_WEIGHTS.to_vec(), Some(MAMBA_TOKENIZER.to_string())).unwrap();
    let (v, ids, merged) = mamba_generate(&s, "Hello world", r#"{"maxNewTokens": 5, "mrssTau": 0.05}"#).await.unwrap();
    let tokens: Vec<u32> = serde_json::from_value(v["tokens"].clone()).unwrap();
    assert!(!tokens.is_empty() && tokens.len() <= 5);
    assert_eq!(ids, tokens);
    assert!(merged.iter().all(|&m| m > 0.0 && m < 1.0), "{merged:?}");
    assert!(v["mrss_quality"]["top1_agreement"].as_f64().is_some_and(|a| (0.0..=1.0).contains(&a)), "{v}");
    assert_eq!(v["text"].as_str().unwrap(), s.decode(tokens).unwrap());
    assert!(mamba_generate(&s, "", "").await.unwrap_err().contains("empty"));
    assert!(mamba_generate(&s, "x", r#"{"mrssTau": -1}"#).await.unwrap_err().contains("tau"));
    assert!(mamba_generate(&s, "Hello", "").await.is_ok());
}

/// The tiny Mamba LM with every op on WebGPU (SwiftShader in CI): logits against
/// transformers' ≤ 1e-3, the session's greedy tokens equal to the CPU's, MRSS counts within 1%.
#[wasm_bindgen_test]
async fn mamba_on_webgpu_matches_transformers_and_cpu() {
    setup().await;
    use effarch::models::mamba::{Logits, MambaConfig, MambaLM};
    use effarch::weights::Weights;
    let gpu = webgpu().await;
    let w = Weights::from_bytes("model.safetensors", MAMBA_WEIGHTS.to_vec()).unwrap();
    let m = MambaLM::load(MambaConfig::from_json("config.json", MAMBA_CONFIG).unwrap(), &w, &gpu).unwrap();
    let exp = Weights::from_bytes("expected.safetensors", include_bytes!("fixtures/mamba-tiny/expected.safetensors").to_vec()).unwrap();
    let shape = exp.info("input_ids").unwrap().shape.clone();
    let ids: Vec<Vec<u32>> = exp.get_f32("input_ids", &shape).unwrap().chunks(shape[1]).map(|r| r.iter().map(|&v| v as u32).collect()).collect();
    let want = exp.get_f32("logits", &exp.info("logits").unwrap().shape.clone()).unwrap();
    let out = m.forward_async(&ids, &mut m.new_state(ids.len()).unwrap(), 0.0, Logits::All).await.unwrap();
    let d = effarch::testing::max_abs_diff(&out.logits, &want);
    assert!(d <= 1e-3, "mamba logits on WebGPU: max |Δ| {d}");
    let cpu = MambaLM::load(MambaConfig::from_json("config.json", MAMBA_CONFIG).unwrap(), &w, &Device::cpu()).unwrap();
    let (g, c) = (
        m.forward_async(&ids, &mut m.new_state(2).unwrap(), 0.05, Logits::All).await.unwrap(),
        cpu.forward_async(&ids, &mut cpu.new_state(2).unwrap(), 0.05, Logits::All).await.unwrap(),
    );
    assert_eq!(g.stats.updates, c.stats.updates);
    assert!(g.stats.merged > 0 && (g.stats.merged as f64 - c.stats.merged as f64).abs() <= 0.01 * c.stats.merged as f64, "{:?} vs {:?}", g.stats, c.stats);
    let gs = effarch::web::mamba::MambaSession::create(MAMBA_CONFIG.into(), MAMBA_WEIGHTS.to_vec(), Some(MAMBA_TOKENIZER.into()), "webgpu".into(), None)
        .await
        .unwrap();
    assert!(gs.device().starts_with("gpu"), "{}", gs.device());
    let cs = effarch::web::mamba::MambaSession::new(MAMBA_CONFIG, MAMBA_WEIGHTS.to_vec(), Some(MAMBA_TOKENIZER.to_string())).unwrap();
    let (gv, gids, _) = mamba_generate(&gs, "Hello world", r#"{"maxNewTokens": 6}"#).await.unwrap();
    let (cv, _, _) = mamba_generate(&cs, "Hello world", r#"{"maxNewTokens": 6}"#).await.unwrap();
    assert_eq!(gv["tokens"], cv["tokens"]);
    assert_eq!(gids.len(), 6);
}

/// A vocabulary over the adapter's storage-binding limit (WebGPU's default 128 MiB is less
/// than mamba-130m's 154 MB table), lowered here below the tiny table's 38 KB: the same logits
/// as the CPU.
#[wasm_bindgen_test]
async fn mamba_vocabulary_over_the_binding_limit_on_webgpu() {
    setup().await;
    use effarch::models::mamba::{Logits, MambaConfig, MambaLM};
    use effarch::weights::Weights;
    let gpu = webgpu().await;
    let Device::Gpu(ctx) = &gpu else { unreachable!() };
    ctx.set_binding_limit(16 << 10);
    assert!(ctx.upload(&[0.0; 300 * 32], &[300, 32]).is_err(), "the table must exceed the lowered limit");
    let w = Weights::from_bytes("model.safetensors", MAMBA_WEIGHTS.to_vec()).unwrap();
    let cfg = || MambaConfig::from_json("config.json", MAMBA_CONFIG).unwrap();
    let (m, cpu) = (MambaLM::load(cfg(), &w, &gpu).unwrap(), MambaLM::load(cfg(), &w, &Device::cpu()).unwrap());
    let ids = vec![vec![5u32, 17, 42, 7, 299]];
    let g = m.forward_async(&ids, &mut m.new_state(1).unwrap(), 0.0, Logits::All).await.unwrap();
    let c = cpu.forward_async(&ids, &mut cpu.new_state(1).unwrap(), 0.0, Logits::All).await.unwrap();
    ctx.set_binding_limit(0);
    let d = effarch::testing::max_abs_diff(&g.logits, &c.logits);
    assert!(g.logits.len() == 5 * 300 && d <= 1e-4, "logits on WebGPU with a 16 KiB binding limit: max |Δ| {d}");
}

/// The page's scaling chart runs this: both blocks on WebGPU, every time positive.
#[wasm_bindgen_test]
async fn bench_mamba_runs_on_webgpu() {
    setup().await;
    let o = js_sys::JSON::parse(r#"{"ns": [16, 32], "steps": 2, "iters": 1, "hidden": 32, "backend": "webgpu"}"#).unwrap();
    let v: serde_json::Value = serde_wasm_bindgen::from_value(effarch::web::mamba::bench_mamba(o).await.unwrap()).unwrap();
    assert!(v["device"].as_str().unwrap().starts_with("gpu"), "{v}");
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for r in rows {
        for k in ["mamba_prefill_ms", "attn_prefill_ms", "mamba_decode_ms", "attn_decode_ms"] {
            assert!(r[k].as_f64().is_some_and(|x| x > 0.0), "{k}: {r}");
        }
    }
}

/// The relaxed-SIMD build (scripts/test_wasm_threads.sh runs this suite on it) says so and
/// multiplies with the relaxed f32 micro-kernel, on which every golden of this suite passes.
#[cfg(target_feature = "relaxed-simd")]
#[wasm_bindgen_test]
async fn the_relaxed_build_runs_the_relaxed_f32_kernel() {
    setup().await;
    assert!(Device::cpu().describe().contains("wasm simd128+relaxed"), "{}", Device::cpu().describe());
    let tiles = effarch::bench::gemm::micro_kernels(20.0, |_| {});
    assert!(tiles.iter().any(|t| t.kernel == "wasm simd128+relaxed 4x8" && t.gflops > 0.0), "{:?}", tiles.iter().map(|t| &t.kernel).collect::<Vec<_>>());
}

/// `--precision int8` in wasm: the SIMD128 int8 kernel (`i32x4.dot_i16x8_s`) behind every
/// linear layer equals the numpy reference of the scheme (scripts/int8_reference.py) bit for
/// bit on every case of `int8-linear.json`, and reports itself in the device's name.
#[wasm_bindgen_test]
async fn int8_linear_in_wasm_equals_the_numpy_reference() {
    use effarch::tensor::{LinearWeight, Precision, Tensor};
    setup().await;
    let dev = Device::cpu_with(Precision::Int8);
    assert!(dev.describe().contains("int8 wasm simd128"), "{}", dev.describe());
    let fx: serde_json::Value = serde_json::from_str(include_str!("fixtures/generation/int8-linear.json")).unwrap();
    let cases = fx["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    let f = |c: &serde_json::Value, key: &str| -> Vec<f32> { c[key].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect() };
    for c in cases {
        let (m, k, n) = (c["m"].as_u64().unwrap() as usize, c["k"].as_u64().unwrap() as usize, c["n"].as_u64().unwrap() as usize);
        let w = LinearWeight::new(f(c, "w"), [n, k], &dev).unwrap();
        assert!(w.is_int8());
        let x = Tensor::from_f32(f(c, "x"), &[m, k], &dev).unwrap();
        let b = Tensor::from_f32(f(c, "b"), &[n], &dev).unwrap();
        let got = w.forward(&x, Some(&b)).unwrap().to_vec_f32().unwrap();
        assert_eq!(got, f(c, "y"), "m{m} k{k} n{n}");
    }
}
