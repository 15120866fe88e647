//! The wasm-bindgen API: what the page's worker (and any other page, via the npm package in
//! `pkg/`) calls. Errors come back as JS `Error`s with the core's message; nothing panics.

use crate::bench::{self, BenchSpec};
use crate::models::clip::{Clip, ClipConfig, RunOptions, Tokenizer};
use crate::prune::{PruneConfig, Scorer};
use crate::tensor::Device;
use crate::weights::{Header, Weights};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsError> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(js_err)
}

/// Options of one run, as a plain JS object: `{keep, scorer, layers, seed, labels, compareUnpruned}`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JsRunOptions {
    keep: Option<f32>,
    scorer: Option<String>,
    layers: Option<Vec<usize>>,
    seed: Option<u64>,
    labels: Option<Vec<String>>,
    compare_unpruned: Option<bool>,
}

fn prune_config(keep: Option<f32>, scorer: Option<&str>, layers: Option<Vec<usize>>, seed: Option<u64>) -> crate::Result<PruneConfig> {
    let mut s: Scorer = scorer.unwrap_or("kq-norm").parse()?;
    if let Scorer::Random { seed: sd } = &mut s {
        *sd = seed.unwrap_or(0);
    }
    PruneConfig::new(s, keep.unwrap_or(1.0), layers.unwrap_or_else(|| vec![1]))
}

/// The device a model made now would run on, e.g. "cpu (candle-core, wasm simd128)".
#[wasm_bindgen(js_name = defaultDevice)]
pub fn default_device() -> String {
    Device::best().describe()
}

/// A loaded CLIP model.
#[wasm_bindgen]
pub struct ClipSession {
    clip: Clip,
}

#[wasm_bindgen]
impl ClipSession {
    /// `config_json`: the text of `config.json`; `weights`: `model.safetensors` (whole, or
    /// only the tensors needed, see `fromParts`). `withText` loads the text tower for labels.
    #[wasm_bindgen(constructor)]
    pub fn new(config_json: &str, weights: Vec<u8>, with_text: bool) -> Result<ClipSession, JsError> {
        let cfg = ClipConfig::from_json("config.json", config_json).map_err(js_err)?;
        let w = Weights::from_bytes("model.safetensors", weights).map_err(js_err)?;
        let clip = Clip::load(cfg, &w, &Device::best(), with_text).map_err(js_err)?;
        Ok(ClipSession { clip })
    }

    /// Adds CLIP's tokenizer from `vocab.json` and `merges.txt`.
    #[wasm_bindgen(js_name = setTokenizer)]
    pub fn set_tokenizer(&mut self, vocab_json: &str, merges_txt: &str) -> Result<(), JsError> {
        self.clip.tokenizer = Some(Tokenizer::from_vocab_merges(vocab_json, merges_txt).map_err(js_err)?);
        Ok(())
    }

    /// Runs one encoded image (PNG/JPEG/…) and returns the report: `image_embeds`, `kept`,
    /// `tokens_per_layer`, `timings_ms`, `cos_to_unpruned`, `label_probs`, `flops`, ….
    pub fn run(&self, image: &[u8], options: JsValue) -> Result<JsValue, JsError> {
        let o: JsRunOptions = if options.is_undefined() || options.is_null() {
            JsRunOptions::default()
        } else {
            serde_wasm_bindgen::from_value(options).map_err(|e| js_err(format!("bad options: {e}")))?
        };
        let prune = prune_config(o.keep, o.scorer.as_deref(), o.layers, o.seed).map_err(js_err)?;
        prune.validate(self.clip.vision.num_layers()).map_err(js_err)?;
        let opts = RunOptions {
            prune: Some(prune),
            labels: o.labels.unwrap_or_default(),
            compare_unpruned: o.compare_unpruned.unwrap_or(true),
        };
        to_js(&self.clip.run(image, &opts).map_err(js_err)?)
    }

    /// The device the model runs on, e.g. "cpu (candle-core, wasm simd128)".
    pub fn device(&self) -> String {
        self.clip.device.describe()
    }

    #[wasm_bindgen(js_name = numLayers)]
    pub fn num_layers(&self) -> usize {
        self.clip.vision.num_layers()
    }

    pub fn grid(&self) -> usize {
        self.clip.config.vision().grid()
    }
}

/// Reads a safetensors header from the first bytes of a file (fetched with a range request):
/// returns `{headerLength}` when `prefix` is too short for the whole header, else
/// `{headerLength, tensors: {name: {dtype, shape, start, end}}}` with absolute byte ranges.
#[wasm_bindgen(js_name = parseSafetensorsHeader)]
pub fn parse_safetensors_header(prefix: &[u8]) -> Result<JsValue, JsError> {
    #[derive(Serialize)]
    struct Entry {
        shape: Vec<usize>,
        start: usize,
        end: usize,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Out {
        header_length: u64,
        tensors: Option<std::collections::BTreeMap<String, Entry>>,
    }
    let n = Header::header_len("model.safetensors", prefix, None).map_err(js_err)?;
    let Some(json) = prefix.get(8..8 + n as usize) else {
        return to_js(&Out { header_length: n, tensors: None });
    };
    let h = Header::parse("model.safetensors", json, None).map_err(js_err)?;
    let base = 8 + n as usize;
    let tensors = h
        .tensors
        .into_iter()
        .map(|(k, v)| (k, Entry { shape: v.shape, start: base + v.start, end: base + v.end }))
        .collect();
    to_js(&Out { header_length: n, tensors: Some(tensors) })
}

/// The benchmark driver of `effarch bench clip`, on a random full-size ViT-B/16:
/// `{keeps, batches, iters, scorer, layers}` → `[{keep, batch, ms_median, ratio, flop_ratio}]`.
#[wasm_bindgen(js_name = benchClip)]
pub fn bench_clip(options: JsValue) -> Result<JsValue, JsError> {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct O {
        keeps: Option<Vec<f32>>,
        batches: Option<Vec<usize>>,
        iters: Option<usize>,
        scorer: Option<String>,
        layers: Option<Vec<usize>>,
    }
    let o: O = if options.is_undefined() || options.is_null() {
        O::default()
    } else {
        serde_wasm_bindgen::from_value(options).map_err(|e| js_err(format!("bad options: {e}")))?
    };
    let d = BenchSpec::default();
    let probe = prune_config(Some(1.0), o.scorer.as_deref(), o.layers.clone(), None).map_err(js_err)?;
    let spec = BenchSpec {
        keeps: o.keeps.unwrap_or(d.keeps),
        batches: o.batches.unwrap_or_else(|| vec![1]),
        iters: o.iters.unwrap_or(3),
        scorer: probe.scorer,
        layers: probe.layers,
    };
    let model = bench::random_vit_b16(&Device::best()).map_err(js_err)?;
    to_js(&bench::bench_clip(&model, &spec, |_| {}).map_err(js_err)?)
}
