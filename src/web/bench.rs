//! Benchmarks in the browser: the micro-kernel table and CLIP timings per setting.

use super::clip::prune_config;
use super::{device_for, js_err, parse_options, to_js};
use crate::bench::{self, BenchSpec};
use serde::Deserialize;
use wasm_bindgen::prelude::*;

/// The micro-kernel table of `effarch bench gemm` for this build (wasm SIMD128 and the
/// portable kernel, one thread each): `[{kernel, mr, nr, gflops, peak_gflops}]`.
#[wasm_bindgen(js_name = benchGemm)]
pub fn bench_gemm() -> Result<JsValue, JsError> {
    to_js(&bench::gemm::micro_kernels(300.0, |_| {}))
}

/// The benchmark driver of `effarch bench clip`, on a random full-size ViT-B/16:
/// `{keeps, batches, iters, scorer, layers, backend, precision}` → `[{scorer, keep, batch, precision, ms_median, ratio, flop_ratio, first_ms, f32_ratio, cos_to_f32}]`.
#[wasm_bindgen(js_name = benchClip)]
pub async fn bench_clip(options: JsValue) -> Result<JsValue, JsError> {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct O {
        keeps: Option<Vec<f32>>,
        batches: Option<Vec<usize>>,
        iters: Option<usize>,
        scorer: Option<String>,
        layers: Option<Vec<usize>>,
        backend: Option<String>,
        precision: Option<String>,
    }
    let o: O = parse_options(options)?;
    let d = BenchSpec::default();
    let probe = prune_config(Some(1.0), o.scorer.as_deref(), o.layers.clone(), None).map_err(js_err)?;
    let spec = BenchSpec {
        keeps: o.keeps.unwrap_or(d.keeps),
        batches: o.batches.unwrap_or_else(|| vec![1]),
        iters: o.iters.unwrap_or(3),
        scorers: vec![probe.scorer],
        layers: probe.layers,
        profile: false,
    };
    let device = device_for(o.backend.as_deref().unwrap_or("auto"), o.precision.as_deref()).await?;
    let model = bench::random_vit_b16(&device).map_err(js_err)?;
    to_js(&bench::bench_clip_async(&model, &spec, |_| {}).await.map_err(js_err)?)
}
