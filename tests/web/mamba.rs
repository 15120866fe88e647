//! Mamba in the browser: goldens, the session API, WebGPU, a vocabulary over the binding limit, the scaling bench.

use super::*;

/// The tiny Mamba LM against transformers' logits in the browser (wasm SIMD128 CPU path),
/// prefill then steps equal to the full pass, and the GPT-NeoX tokenizer.
#[wasm_bindgen_test]
async fn mamba_golden_in_browser() {
    setup().await;
    use effarch::models::lm::ByteBpe;
    use effarch::models::mamba::{MambaConfig, MambaLM};
    use effarch::weights::Weights;
    let cfg = MambaConfig::from_json("config.json", include_str!("../fixtures/mamba-tiny/config.json")).unwrap();
    let w = Weights::from_bytes("model.safetensors", include_bytes!("../fixtures/mamba-tiny/model.safetensors").to_vec()).unwrap();
    let m = MambaLM::load(cfg, &w, &Device::cpu()).unwrap();
    let exp = Weights::from_bytes("expected.safetensors", include_bytes!("../fixtures/mamba-tiny/expected.safetensors").to_vec()).unwrap();
    let shape = exp.info("input_ids").unwrap().shape.clone();
    let ids: Vec<Vec<u32>> = exp.get_f32("input_ids", &shape).unwrap().chunks(shape[1]).map(|r| r.iter().map(|&v| v as u32).collect()).collect();
    let want = exp.get_f32("logits", &exp.info("logits").unwrap().shape.clone()).unwrap();
    let out = m.forward(&ids, &mut m.new_state(ids.len()).unwrap(), 0.0).unwrap();
    let d = effarch::testing::max_abs_diff(&out.logits, &want);
    assert!(d <= 1e-4, "mamba logits max |Δ| {d}");
    let tok = ByteBpe::from_tokenizer_json(include_str!("../fixtures/mamba-tiny/tokenizer.json")).unwrap();
    let meta: serde_json::Value = serde_json::from_str(include_str!("../fixtures/mamba-tiny/expected.json")).unwrap();
    for case in meta["tokenized"].as_array().unwrap() {
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(tok.encode(case["text"].as_str().unwrap()).unwrap(), want);
    }
}

const MAMBA_CONFIG: &str = include_str!("../fixtures/mamba-tiny/config.json");
const MAMBA_WEIGHTS: &[u8] = include_bytes!("../fixtures/mamba-tiny/model.safetensors");
const MAMBA_TOKENIZER: &str = include_str!("../fixtures/mamba-tiny/tokenizer.json");

/// Runs `generate` on a session, collecting the streamed ids, skip rates and text pieces.
async fn mamba_generate(
    s: &effarch::web::mamba::MambaSession,
    prompt: &str,
    opts: &str,
) -> Result<(serde_json::Value, Vec<u32>, Vec<f64>, Vec<String>), String> {
    use std::{cell::RefCell, rc::Rc};
    use wasm_bindgen::JsCast;
    let seen = Rc::new(RefCell::new((Vec::new(), Vec::new(), Vec::new())));
    let seen2 = seen.clone();
    let cb = wasm_bindgen::closure::Closure::<dyn FnMut(u32, String, f64)>::new(move |id: u32, t: String, merged: f64| {
        let mut s = seen2.borrow_mut();
        s.0.push(id);
        s.1.push(merged);
        s.2.push(t);
    });
    let o = if opts.is_empty() { wasm_bindgen::JsValue::UNDEFINED } else { js_sys::JSON::parse(opts).unwrap() };
    let p = s.generate(prompt.to_string(), o, Some(cb.as_ref().unchecked_ref::<js_sys::Function>().clone()));
    let v = wasm_bindgen_futures::JsFuture::from(p).await.map_err(|e| String::from(js_sys::Error::from(e).message()))?;
    let (ids, merged, texts) = seen.borrow().clone();
    Ok((serde_wasm_bindgen::from_value(v).unwrap(), ids, merged, texts))
}

/// The Mamba API the page's worker uses: greedy generation streams each token (with the MRSS
/// skip rate so far) to the callback; bad input is an error and the session goes on.
#[wasm_bindgen_test]
async fn mamba_session_generates_and_streams() {
    setup().await;
    let s = effarch::web::mamba::MambaSession::new(MAMBA_CONFIG, MAMBA_WEIGHTS.to_vec(), Some(MAMBA_TOKENIZER.to_string())).unwrap();
    let (v, ids, merged, _) = mamba_generate(&s, "Hello world", r#"{"maxNewTokens": 5, "mrssTau": 0.05}"#).await.unwrap();
    let tokens: Vec<u32> = serde_json::from_value(v["tokens"].clone()).unwrap();
    assert!(!tokens.is_empty() && tokens.len() <= 5);
    assert_eq!(ids, tokens);
    assert!(merged.iter().all(|&m| m > 0.0 && m < 1.0), "{merged:?}");
    assert!(v["mrss_quality"]["top1_agreement"].as_f64().is_some_and(|a| (0.0..=1.0).contains(&a)), "{v}");
    assert_eq!(v["text"].as_str().unwrap(), s.decode(tokens).unwrap());
    assert!(mamba_generate(&s, "", "").await.unwrap_err().contains("empty"));
    assert!(mamba_generate(&s, "x", r#"{"mrssTau": -1}"#).await.unwrap_err().contains("tau"));
    assert!(mamba_generate(&s, "Hello", "").await.is_ok());
    // The streamed pieces join to the text, a character split over byte tokens coming whole
    // with its last token (the tiny model samples random bytes; the premise is checked).
    let (v, _, _, texts) = mamba_generate(&s, "Hello", r#"{"maxNewTokens": 24, "temperature": 1.5, "seed": 1}"#).await.unwrap();
    let text = v["text"].as_str().unwrap();
    assert!(text.chars().any(|c| !c.is_ascii() && c != char::REPLACEMENT_CHARACTER), "no multi-byte character in {text:?}");
    assert_eq!(texts.concat(), text);
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
    let exp = Weights::from_bytes("expected.safetensors", include_bytes!("../fixtures/mamba-tiny/expected.safetensors").to_vec()).unwrap();
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
    let (gv, gids, _, _) = mamba_generate(&gs, "Hello world", r#"{"maxNewTokens": 6}"#).await.unwrap();
    let (cv, _, _, _) = mamba_generate(&cs, "Hello world", r#"{"maxNewTokens": 6}"#).await.unwrap();
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

/// `--precision int8` in wasm: the SIMD128 int8 kernel (`i32x4.dot_i16x8_s`; in the
/// relaxed-SIMD build `i32x4.relaxed_dot_i8x16_i7x16_add_s` on u7 activations) behind every
/// linear layer equals the numpy reference of its scheme (scripts/int8_reference.py: `y`, or
/// `y7` for the relaxed kernel) bit for bit on every case of `int8-linear.json` (so do the
/// SIMD128 quantisers of the rows: one value off changes a sum), and reports itself in the
/// device's name; so does every other int8 kernel of the build (the relaxed build's two forms
/// of the dot product, of which a timing picks one, SIMD128 and portable).
#[wasm_bindgen_test]
async fn int8_linear_in_wasm_equals_the_numpy_reference() {
    use effarch::tensor::{LinearWeight, Precision, Tensor};
    setup().await;
    let dev = Device::cpu_with(Precision::Int8);
    let relaxed = cfg!(target_feature = "relaxed-simd");
    let name = if relaxed { "int8 wasm simd128+relaxed dot_i8x16_i7x16" } else { "int8 wasm simd128 dot_i16x8" };
    assert!(dev.describe().contains(name), "{}", dev.describe());
    let fx: serde_json::Value = serde_json::from_str(include_str!("../fixtures/generation/int8-linear.json")).unwrap();
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
        assert_eq!(got, f(c, if relaxed { "y7" } else { "y" }), "m{m} k{k} n{n}");
        // Every kernel of the build, not only the one picked (the relaxed build times its two
        // forms of the dot product at start-up): each equals its scheme's reference.
        let all = effarch::bench::gemm::int8_products(&f(c, "x"), &f(c, "w"), &f(c, "b"), m, k, n).unwrap();
        let names: Vec<&str> = all.iter().map(|(name, _)| name.as_str()).collect();
        let want: &[&str] = if relaxed {
            &["dot_i8x16_i7x16_add 4x8", "dot_i8x16_i7x16 + dot_i16x8 4x8", "simd128 dot_i16x8", "portable"]
        } else {
            &["simd128 dot_i16x8", "portable"]
        };
        assert_eq!(names.len(), want.len(), "{names:?}");
        for (name, y) in &all {
            assert_eq!(y, &f(c, if name.contains("7-bit") { "y7" } else { "y" }), "{name}: m{m} k{k} n{n}");
        }
        for w in want {
            assert!(names.iter().any(|n| n.contains(w)), "{w} not among {names:?}");
        }
    }
    // Odd depths in quads and pairs (the two-step kernel's unrolled loop has a tail): the
    // kernels of one scheme give the same values bit for bit.
    for &(m, k, n) in &[(6, 20, 13), (5, 44, 8), (9, 6, 17)] {
        let (x, w, b) = (effarch::num::random_values(m * k, 31, 2.0), effarch::num::random_values(n * k, 32, 0.3), effarch::num::random_values(n, 33, 0.5));
        let all = effarch::bench::gemm::int8_products(&x, &w, &b, m, k, n).unwrap();
        for seven in [false, true] {
            let same: Vec<_> = all.iter().filter(|(name, _)| name.contains("7-bit") == seven).collect();
            for (name, y) in same.iter().skip(1) {
                assert_eq!(y, &same[0].1, "{name} against {}: m{m} k{k} n{n}", same[0].0);
            }
        }
    }
}

/// The int8 epilogue with QuickGELU and a residual (CLIP's MLP; in wasm whole 8-column tiles
/// take a SIMD128 path of their own) equals the formula `x / (1 + exp(−1.702 x)) + res`
/// applied to the same product without them (to 1e-6: the engine's exp is a polynomial within
/// 1e-7 of libm's), on widths with and without a partial last tile.
#[wasm_bindgen_test]
async fn int8_epilogue_with_quick_gelu_equals_the_formula() {
    use effarch::tensor::{Activation, LinearWeight, Precision, Tensor};
    setup().await;
    let dev = Device::cpu_with(Precision::Int8);
    for &(m, k, n) in &[(5, 64, 24), (9, 96, 37), (4, 768, 8)] {
        let x = effarch::num::random_values(m * k, 21, 2.0);
        let w = LinearWeight::new(effarch::num::random_values(n * k, 22, 0.2), [n, k], &dev).unwrap();
        assert!(w.is_int8());
        let b = Tensor::from_f32(effarch::num::random_values(n, 23, 0.5), &[n], &dev).unwrap();
        let res = effarch::num::random_values(m * n, 24, 1.0);
        let x = Tensor::from_f32(x, &[m, k], &dev).unwrap();
        let lin = w.forward(&x, Some(&b)).unwrap().to_vec_f32().unwrap();
        let r = Tensor::from_f32(res.clone(), &[m, n], &dev).unwrap();
        let got = w.forward_ex(&x, Some(&b), Some(Activation::QuickGelu), Some(&r)).unwrap().to_vec_f32().unwrap();
        for (i, ((&g, &l), &r)) in got.iter().zip(&lin).zip(&res).enumerate() {
            let want = l / (1.0 + (-1.702 * l).exp()) + r;
            assert!((g - want).abs() <= 1e-6 * want.abs().max(1.0), "m{m} k{k} n{n} at {i}: {g} vs {want}");
        }
        assert!(lin.iter().any(|&v| v < -1.0) && lin.iter().any(|&v| v > 1.0), "the products span GELU's bend");
    }
}

/// A decoding step's products have one row, which the SIMD128 kernel runs as its own case
/// (eight running sums over four k steps): equal to a plain f64 sum to f32 rounding, on
/// depths with and without a remainder of four, with and without a bias, next to the same
/// weights with three rows (the general tile).
#[wasm_bindgen_test]
async fn one_row_f32_products_equal_the_plain_sum() {
    use effarch::tensor::{LinearWeight, Tensor};
    setup().await;
    let dev = Device::cpu();
    for &(m, k, n, biased) in &[(1, 7, 9, true), (1, 768, 40, true), (1, 768, 40, false), (3, 768, 40, true), (1, 1538, 17, false)] {
        let x = effarch::num::random_values(m * k, 5, 1.0);
        let w = effarch::num::random_values(n * k, 6, 0.05);
        let b = if biased { effarch::num::random_values(n, 7, 0.1) } else { vec![0.0; n] };
        let lw = LinearWeight::new(w.clone(), [n, k], &dev).unwrap();
        let bias = biased.then(|| Tensor::from_f32(b.clone(), &[n], &dev).unwrap());
        let got = lw.forward(&Tensor::from_f32(x.clone(), &[m, k], &dev).unwrap(), bias.as_ref()).unwrap().to_vec_f32().unwrap();
        for i in 0..m {
            for j in 0..n {
                let (mut want, mut mag) = (b[j] as f64, b[j].abs() as f64);
                for p in 0..k {
                    want += x[i * k + p] as f64 * w[j * k + p] as f64;
                    mag += (x[i * k + p] * w[j * k + p]).abs() as f64;
                }
                let d = (got[i * n + j] as f64 - want).abs();
                assert!(d <= 1e-6 * mag + 1e-7, "m{m} k{k} n{n} [{i},{j}]: {} vs {want} (|terms| {mag})", got[i * n + j]);
            }
        }
    }
}
