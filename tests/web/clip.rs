//! CLIP in the browser: goldens, pruning, ToMe, DivPrune/VisionZip, JPEG, the session API, WebGPU and int8.

use super::*;

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
    let fx: serde_json::Value = serde_json::from_str(include_str!("../fixtures/generation/pil-jpeg.json")).unwrap();
    let samples: [(&str, &[u8]); 4] = [
        ("www/samples/astronaut.jpg", include_bytes!("../../www/samples/astronaut.jpg")),
        ("www/samples/chelsea-cat.jpg", include_bytes!("../../www/samples/chelsea-cat.jpg")),
        ("www/samples/coffee.jpg", include_bytes!("../../www/samples/coffee.jpg")),
        ("www/samples/rocket.jpg", include_bytes!("../../www/samples/rocket.jpg")),
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
    let fx: serde_json::Value = serde_json::from_str(include_str!("../fixtures/generation/int8-linear.json")).unwrap();
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

/// Softmax on the CPU in wasm (the attention's row kernel, compiled for SIMD128): each row
/// equals the f64 formula to 1e-6 (the engine's exp is a polynomial within 1e-7 of libm's), on
/// widths with and without a remainder of four, including a row far below zero and one of
/// equal values.
#[wasm_bindgen_test]
async fn cpu_softmax_rows_equal_the_formula() {
    use effarch::tensor::Tensor;
    setup().await;
    let dev = Device::cpu();
    for &(rows, n) in &[(3, 197), (4, 7), (2, 1), (5, 64)] {
        let mut x = effarch::num::random_values(rows * n, 41, 8.0);
        x[..n].iter_mut().for_each(|v| *v -= 90.0);
        x[n..2 * n].iter_mut().for_each(|v| *v = 0.25);
        let got = Tensor::from_f32(x.clone(), &[rows, n], &dev).unwrap().softmax_last().unwrap().to_vec_f32().unwrap();
        for (r, (g, xr)) in got.chunks(n).zip(x.chunks(n)).enumerate() {
            let m = xr.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let s: f64 = xr.iter().map(|&v| (v as f64 - m).exp()).sum();
            for (j, (&g, &v)) in g.iter().zip(xr).enumerate() {
                let want = (v as f64 - m).exp() / s;
                assert!((g as f64 - want).abs() <= 1e-6, "rows {rows} n {n} [{r},{j}]: {g} vs {want}");
            }
        }
    }
}
