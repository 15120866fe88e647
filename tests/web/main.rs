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
pub(crate) async fn setup() {
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
        ($n, include_bytes!(concat!("../fixtures/clip-tiny/", $n)).as_slice())
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

pub(crate) fn fixture() -> ClipFixture {
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

/// The context for WebGPU tests. No adapter fails the test: it never passes by skipping.
pub(crate) async fn webgpu() -> Device {
    Device::gpu_async().await.expect("a WebGPU adapter (Chrome with --enable-unsafe-webgpu, see webdriver.json)")
}

mod clip;
mod mamba;
