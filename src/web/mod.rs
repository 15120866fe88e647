//! The wasm-bindgen API: what the page's worker (and any other page, via the npm package in
//! `pkg/`) calls. Errors come back as JS `Error`s with the core's message; nothing panics.

use crate::bench::{self, BenchSpec};
use crate::models::clip::{ClipConfig, ClipSession as CoreSession, RunOptions, Tokenizer};
use crate::prune::{PruneConfig, Scorer, COMPARE_SCORERS};
use crate::tensor::{Choice, Device, Figure};
use crate::weights::Weights;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;

pub mod mamba;

/// `initThreadPool(n)`: starts rayon's pool on `n` Web Workers (the threaded build only;
/// call it once, before any model runs, from a worker or a cross-origin-isolated page).
#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

/// Threads the CPU path runs on: the pool's size in the threaded build, else 1.
#[wasm_bindgen(js_name = cpuThreads)]
pub fn cpu_threads() -> usize {
    crate::tensor::cpu::simd::threads()
}

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

pub(crate) fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// A JS options object (`undefined` or `null` = every default) as `T`; a field of the wrong
/// type is an error that says so.
pub(crate) fn parse_options<T: serde::de::DeserializeOwned + Default>(v: JsValue) -> Result<T, JsError> {
    if v.is_undefined() || v.is_null() {
        Ok(T::default())
    } else {
        serde_wasm_bindgen::from_value(v).map_err(|e| js_err(format!("bad options: {e}")))
    }
}

pub(crate) fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsError> {
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

/// The device a model made now with backend "auto" would run on, e.g. "gpu (wgpu, SwiftShader
/// Device (Subzero), BrowserWebGpu, software adapter)" or "cpu (candle-core, wasm simd128)".
#[wasm_bindgen(js_name = defaultDevice)]
pub async fn default_device() -> String {
    Device::best_async().await.describe()
}

/// What backend "auto" picks and why: `{device, reason}`, with `reason` set when a software
/// WebGPU adapter (SwiftShader, a fallback adapter) was passed over for the CPU.
#[wasm_bindgen(js_name = autoChoice)]
pub async fn auto_choice() -> Result<JsValue, JsError> {
    #[derive(Serialize)]
    struct Auto {
        device: String,
        reason: Option<String>,
        /// The browser's GPU adapter ("SwiftShader Device (Subzero), software"), or null: the
        /// page keys its cache of measured choices by it.
        adapter: Option<String>,
    }
    // One adapter request for both answers.
    let gpu = crate::tensor::gpu::GpuContext::new().await;
    let adapter = gpu.as_ref().ok().map(|c| format!("{}{}", c.adapter.name, if c.adapter.software { ", software" } else { "" }));
    let (d, reason) = Device::by_rule(gpu, crate::tensor::Precision::F32);
    to_js(&Auto { device: d.describe(), reason, adapter })
}

/// Whether the CPU path is what this build runs without a GPU ("cpu (candle-core, wasm simd128)").
#[wasm_bindgen(js_name = cpuDevice)]
pub fn cpu_device() -> String {
    Device::cpu().describe()
}

/// The measured `auto` choice a session was made with, as the page and the npm package see it:
/// `{backend, reason, figures: [{backend, label, ms_per_layer, software, error}]}`.
#[derive(Serialize, Clone)]
pub(crate) struct AutoChoice {
    backend: &'static str,
    reason: String,
    figures: Vec<Figure>,
}

impl AutoChoice {
    fn new(c: &Choice) -> Self {
        AutoChoice { backend: if matches!(c.device, Device::Gpu(_)) { "webgpu" } else { "cpu" }, reason: c.reason.clone(), figures: c.figures.clone() }
    }
}

/// [`device_for`], except that `"auto"` chooses by measurement: `probe` times one layer of the
/// model about to be loaded on each backend ([`Device::choose_measured_at`]).
pub(crate) async fn device_measured<F, Fut>(backend: &str, precision: Option<&str>, probe: F) -> Result<(Device, Option<AutoChoice>), JsError>
where
    F: FnMut(Device) -> Fut,
    Fut: std::future::Future<Output = crate::Result<f64>>,
{
    match backend {
        "" | "auto" => {
            let c = Device::choose_measured_at(parse_precision(precision)?, probe).await;
            Ok((c.device.clone(), Some(AutoChoice::new(&c))))
        }
        other => Ok((device_for(other, precision).await?, None)),
    }
}

/// A precision from JS: `"f32"` (the default when absent), `"int8"`, `"bf16"` (the CPU only),
/// or `"auto"` (int8 where this build has a vector int8 kernel: [`crate::tensor::auto_precision`]).
pub(crate) fn parse_precision(p: Option<&str>) -> Result<crate::tensor::Precision, JsError> {
    match p.map(str::trim) {
        None | Some("") => Ok(crate::tensor::Precision::F32),
        Some("auto") => Ok(crate::tensor::auto_precision()),
        Some(s) => crate::tensor::Precision::parse(s).map_err(|e| js_err(format!("{e} (or auto)"))),
    }
}

/// A session's device description, with the figures behind a measured `auto` choice.
pub(crate) fn describe_with(device: &Device, auto: Option<&AutoChoice>) -> String {
    match auto {
        Some(a) => format!("{} (auto: {})", device.describe(), a.reason),
        None => device.describe(),
    }
}

/// `"auto"` (WebGPU when the browser has a hardware adapter, else the CPU), `"webgpu"` (an error
/// when there is no adapter) or `"cpu"`, with the linear layers in `precision`
/// ([`parse_precision`]: on WebGPU f32 or int8 weights; int8 on the CPU is the SIMD128 int8
/// kernel). `"cpu-int8"` (older links) is `"cpu"` in int8.
pub(crate) async fn device_for(backend: &str, precision: Option<&str>) -> Result<Device, JsError> {
    use crate::tensor::{gpu::GpuContext, Precision};
    let p = parse_precision(if backend == "cpu-int8" { Some("int8") } else { precision })?;
    match backend {
        "" | "auto" => Ok(Device::by_rule(GpuContext::new_with(Device::gpu_weights_for(p)).await, p).0),
        "webgpu" | "gpu" if p == Precision::Bf16 => Err(js_err("precision bf16 is a CPU precision; WebGPU holds f32 or int8 weights")),
        "webgpu" | "gpu" => Device::gpu_with(Device::gpu_weights_for(p)).await.map_err(js_err),
        "cpu" | "cpu-int8" => Ok(Device::cpu_with(p)),
        other => Err(js_err(format!("unknown backend `{other}` (auto, webgpu, cpu)"))),
    }
}

/// A loaded CLIP model. On WebGPU a failing device (lost, out of memory) makes the session
/// rebuild itself on the CPU; the report's `fallback` says why.
#[wasm_bindgen]
pub struct ClipSession {
    inner: Rc<RefCell<CoreSession>>,
    auto: Option<AutoChoice>,
    /// The zero-shot classifier of the last `evalBatch` (keyed by classes and templates).
    classifier: Rc<RefCell<Option<(String, Vec<f32>)>>>,
}

/// Options of an evaluation (`evalBatch`, `evalSummary`): `{classes, templates, keeps, scorers,
/// layers, seed}`.
#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct JsEvalOptions {
    classes: Vec<String>,
    #[serde(default = "default_templates")]
    templates: Vec<String>,
    keeps: Vec<f32>,
    scorers: Vec<String>,
    #[serde(default = "default_layers")]
    layers: Vec<usize>,
    #[serde(default)]
    seed: u64,
}

fn default_templates() -> Vec<String> {
    vec!["a photo of a {}.".into()]
}

fn default_layers() -> Vec<usize> {
    vec![1]
}

impl JsEvalOptions {
    fn parse(v: JsValue) -> Result<Self, JsError> {
        serde_wasm_bindgen::from_value(v).map_err(|e| JsError::new(&format!("evaluation options: {e}")))
    }
    fn methods(&self) -> crate::Result<Vec<crate::eval::Method>> {
        let scorers = self
            .scorers
            .iter()
            .map(|s| {
                let mut sc: Scorer = s.parse()?;
                if let Scorer::Random { seed } = &mut sc {
                    *seed = self.seed;
                }
                Ok(sc)
            })
            .collect::<crate::Result<Vec<_>>>()?;
        crate::eval::methods(&scorers, &self.keeps, &self.layers)
    }
}

/// The rows of an evaluation from its per-image results (`evalBatch`'s, gathered), with the
/// CSV and the latency-vs-accuracy chart (SVG): `{rows, csv, svg}`.
#[wasm_bindgen(js_name = evalSummary)]
pub fn eval_summary(results: JsValue, options: JsValue, title: String) -> Result<JsValue, JsError> {
    let opts = JsEvalOptions::parse(options)?;
    let methods = opts.methods().map_err(js_err)?;
    let results: Vec<crate::eval::ImageResult> = serde_wasm_bindgen::from_value(results).map_err(|e| JsError::new(&format!("evaluation results: {e}")))?;
    if let Some(r) = results.iter().find(|r| r.outcomes.len() != methods.len()) {
        return Err(JsError::new(&format!("{}: {} outcomes for {} methods", r.path, r.outcomes.len(), methods.len())));
    }
    let rows = crate::eval::summarize(&methods, &results);
    #[derive(Serialize)]
    struct Summary {
        rows: Vec<crate::eval::EvalRow>,
        csv: String,
        svg: String,
    }
    to_js(&Summary { csv: crate::eval::csv(&rows), svg: crate::eval::svg(&rows, &title), rows })
}

#[wasm_bindgen]
impl ClipSession {
    /// A CPU session. `config_json`: the text of `config.json`; `weights`: `model.safetensors`
    /// (whole, or only the tensors needed). `withText` loads the text tower for labels.
    #[wasm_bindgen(constructor)]
    pub fn new(config_json: &str, weights: Vec<u8>, with_text: bool) -> Result<ClipSession, JsError> {
        Self::build(config_json, weights, with_text, &Device::cpu())
    }

    /// Like the constructor, on `backend`: "webgpu", "cpu", or "auto", which times one encoder
    /// layer of this model on each backend (WebGPU, the CPU) and takes the faster, never a
    /// software adapter; `choice()` and `device()` then give the figures. `precision`: "f32"
    /// (default), "int8" (int8 linear weights: on the CPU with per-row int8 activations, on
    /// WebGPU dequantised in the kernel), "bf16" (CPU) or "auto"; `precision()` says which.
    pub async fn create(config_json: String, weights: Vec<u8>, with_text: bool, backend: String, precision: Option<String>) -> Result<ClipSession, JsError> {
        let cfg = ClipConfig::from_json("config.json", &config_json).map_err(js_err)?;
        let w = Weights::from_bytes("model.safetensors", weights).map_err(js_err)?;
        let vcfg = cfg.vision().clone();
        let (device, auto) = device_measured(&backend, precision.as_deref(), |d| crate::models::clip::vision::probe_layer_ms(&w, &vcfg, d)).await?;
        let s = CoreSession::new(cfg, w, &device, with_text).map_err(js_err)?;
        // An error here (a lost device) surfaces, with the fallback, in the first run instead.
        let _ = s.clip.warm_up_async().await;
        Ok(ClipSession { inner: Rc::new(RefCell::new(s)), auto, classifier: Rc::default() })
    }

    /// Loads `config.json` and `model.safetensors` (and, with `withText`, `vocab.json` and
    /// `merges.txt`) from a folder URL, e.g. `https://huggingface.co/openai/clip-vit-base-patch16/resolve/main`.
    /// Downloads the whole checkpoint; the demo page's loader fetches only the needed tensors.
    #[wasm_bindgen(js_name = fromUrl)]
    pub async fn from_url(base_url: String, with_text: bool, backend: String, precision: Option<String>) -> Result<ClipSession, JsError> {
        let base = base_url.trim_end_matches('/');
        let config = String::from_utf8_lossy(&fetch_bytes(&format!("{base}/config.json")).await?).into_owned();
        let weights = fetch_bytes(&format!("{base}/model.safetensors")).await?;
        let s = Self::create(config, weights, with_text, backend, precision).await?;
        if with_text {
            let vocab = fetch_bytes(&format!("{base}/vocab.json")).await?;
            let merges = fetch_bytes(&format!("{base}/merges.txt")).await?;
            s.set_tokenizer(&String::from_utf8_lossy(&vocab), &String::from_utf8_lossy(&merges))?;
        }
        Ok(s)
    }

    fn build(config_json: &str, weights: Vec<u8>, with_text: bool, device: &Device) -> Result<ClipSession, JsError> {
        let cfg = ClipConfig::from_json("config.json", config_json).map_err(js_err)?;
        let w = Weights::from_bytes("model.safetensors", weights).map_err(js_err)?;
        let s = CoreSession::new(cfg, w, device, with_text).map_err(js_err)?;
        Ok(ClipSession { inner: Rc::new(RefCell::new(s)), auto: None, classifier: Rc::default() })
    }

    /// Adds CLIP's tokenizer from `vocab.json` and `merges.txt`.
    #[wasm_bindgen(js_name = setTokenizer)]
    pub fn set_tokenizer(&self, vocab_json: &str, merges_txt: &str) -> Result<(), JsError> {
        let tok = Tokenizer::from_vocab_merges(vocab_json, merges_txt).map_err(js_err)?;
        self.inner.try_borrow_mut().map_err(|_| busy())?.clip.tokenizer = Some(tok);
        Ok(())
    }

    /// Runs one encoded image (PNG/JPEG/…); resolves to the report: `image_embeds`, `kept`,
    /// `tokens_per_layer`, `timings_ms`, `cos_to_unpruned`, `label_probs`, `flops`,
    /// `device`, `fallback`. Options: `{keep, scorer, layers, seed, labels, compareUnpruned}`.
    #[wasm_bindgen(unchecked_return_type = "Promise<RunReport>")]
    pub fn run(&self, image: Vec<u8>, #[wasm_bindgen(unchecked_param_type = "RunOptions | undefined")] options: JsValue) -> js_sys::Promise {
        let inner = self.inner.clone();
        let opts = run_options(options);
        wasm_bindgen_futures::future_to_promise(async move {
            let opts = opts.map_err(JsValue::from)?;
            let mut s = inner.try_borrow_mut().map_err(|_| JsValue::from(busy()))?;
            opts.prune.as_ref().map_or(Ok(()), |p| p.validate(s.clip.vision.num_layers())).map_err(|e| JsValue::from(js_err(e)))?;
            let report = s.run_async(&image, &opts).await.map_err(|e| JsValue::from(js_err(e)))?;
            to_js(&report).map_err(JsValue::from)
        })
    }

    /// Every method on one image at one keep, for a side-by-side view: resolves to a
    /// `CompareReport` (per method: kept patches, merge map, tokens, cos-sim to the unpruned
    /// embedding, FLOP ratio, label probabilities, ms). The patch embedding and the layers
    /// before the earliest pruning layer run once for all. Options: `{keep, layers, scorers,
    /// seed, labels}`; `scorers` defaults to every CLIP method (`COMPARE_SCORERS`).
    #[wasm_bindgen(unchecked_return_type = "Promise<CompareReport>")]
    pub fn compare(&self, image: Vec<u8>, #[wasm_bindgen(unchecked_param_type = "CompareOptions | undefined")] options: JsValue) -> js_sys::Promise {
        let inner = self.inner.clone();
        let opts = compare_options(options);
        wasm_bindgen_futures::future_to_promise(async move {
            let err = |e: crate::Error| JsValue::from(js_err(e));
            let (methods, labels) = opts.map_err(JsValue::from)?;
            let mut s = inner.try_borrow_mut().map_err(|_| JsValue::from(busy()))?;
            for p in &methods {
                p.validate(s.clip.vision.num_layers()).map_err(err)?;
            }
            let report = s.compare_async(&image, &methods, &labels).await.map_err(err)?;
            to_js(&report).map_err(JsValue::from)
        })
    }

    /// Zero-shot evaluation of a batch of encoded images (`labels[i]` indexes
    /// `options.classes`) under every method of `options` (the unpruned model first, then each
    /// scorer at each keep < 1): resolves to one `{path, label, outcomes: [{top5, cos, ms,
    /// flops_ratio}]}` per image, which `evalSummary` turns into rows. Needs the text tower.
    #[wasm_bindgen(js_name = evalBatch)]
    pub fn eval_batch(&self, images: Vec<js_sys::Uint8Array>, labels: Vec<u32>, names: Vec<String>, options: JsValue) -> js_sys::Promise {
        let (inner, cache) = (self.inner.clone(), self.classifier.clone());
        let opts = JsEvalOptions::parse(options);
        wasm_bindgen_futures::future_to_promise(async move {
            let err = |e: crate::Error| JsValue::from(js_err(e));
            let opts = opts.map_err(JsValue::from)?;
            if images.len() != labels.len() || images.len() != names.len() {
                return Err(JsValue::from(JsError::new(&format!("{} images, {} labels, {} names", images.len(), labels.len(), names.len()))));
            }
            if let Some(l) = labels.iter().find(|&&l| l as usize >= opts.classes.len()) {
                return Err(JsValue::from(JsError::new(&format!("label {l} for {} classes", opts.classes.len()))));
            }
            let methods = opts.methods().map_err(err)?;
            let s = inner.try_borrow().map_err(|_| JsValue::from(busy()))?;
            for m in &methods {
                if let Some(p) = &m.prune {
                    p.validate(s.clip.vision.num_layers()).map_err(err)?;
                }
            }
            let key = format!("{:?}|{:?}", opts.classes, opts.templates);
            let cached = cache.borrow().as_ref().filter(|(k, _)| *k == key).map(|(_, c)| c.clone());
            let classifier = match cached {
                Some(c) => c,
                None => {
                    let c = crate::eval::text_classifier_async(&s.clip, &opts.classes, &opts.templates).await.map_err(err)?;
                    *cache.borrow_mut() = Some((key, c.clone()));
                    c
                }
            };
            let mut decoded = Vec::with_capacity(images.len());
            for (bytes, name) in images.iter().zip(&names) {
                decoded.push(crate::image::decode(&bytes.to_vec()).map_err(|e| JsValue::from(JsError::new(&format!("{name}: {e}"))))?);
            }
            let outcomes = crate::eval::run_batch_async(&s.clip, &decoded, &methods, &classifier).await.map_err(err)?;
            let results: Vec<crate::eval::ImageResult> = outcomes
                .into_iter()
                .zip(labels.iter().zip(names))
                .map(|(outcomes, (&label, path))| crate::eval::ImageResult { path, label: label as usize, outcomes })
                .collect();
            to_js(&results).map_err(JsValue::from)
        })
    }

    /// The device the model runs on now, e.g. "gpu (wgpu, …, BrowserWebGpu)", and after a
    /// measured `auto` choice the figures behind it ("… (auto: WebGPU (…): 2.1 ms/layer, CPU
    /// (…): 40.2 ms/layer → WebGPU)").
    pub fn device(&self) -> String {
        self.inner.try_borrow().map(|s| describe_with(&s.clip.device, self.auto.as_ref())).unwrap_or_else(|_| "busy".into())
    }

    /// The measured `auto` choice this session was made with, or undefined when a backend was
    /// named: `{backend, reason, figures: [{backend, label, ms_per_layer, software, error}]}`.
    #[wasm_bindgen(unchecked_return_type = "AutoChoice | undefined")]
    pub fn choice(&self) -> Result<JsValue, JsError> {
        self.auto.as_ref().map_or(Ok(JsValue::UNDEFINED), to_js)
    }

    /// Why the session left the GPU, if it did.
    pub fn fallback(&self) -> Option<String> {
        self.inner.try_borrow().ok().and_then(|s| s.fallback().map(str::to_string))
    }

    /// The precision the linear layers run in: "f32", "int8" or "bf16".
    pub fn precision(&self) -> String {
        self.inner.try_borrow().map(|s| s.clip.device.precision().name().to_string()).unwrap_or_else(|_| "busy".into())
    }

    #[wasm_bindgen(js_name = numLayers)]
    pub fn num_layers(&self) -> usize {
        self.inner.try_borrow().map(|s| s.clip.vision.num_layers()).unwrap_or(0)
    }

    pub fn grid(&self) -> usize {
        self.inner.try_borrow().map(|s| s.clip.config.vision().grid()).unwrap_or(0)
    }

    /// Test hook: makes the next GPU op fail as a lost device would.
    #[doc(hidden)]
    #[wasm_bindgen(js_name = simulateDeviceLoss)]
    pub fn simulate_device_loss(&self) {
        if let Ok(s) = self.inner.try_borrow() {
            if let Device::Gpu(c) = &s.clip.device {
                c.inject_error("device lost (simulated)");
            }
        }
    }
}

/// A safetensors file (a whole checkpoint, or the page loader's group of tensors) with its
/// linear weights in int8, as `effarch quantize` writes them (same names, `<name>_scale`): the
/// page keeps this in its cache, so later visits read a quarter of the f32 bytes. A file
/// that is already int8 is an error that says so.
#[wasm_bindgen(js_name = quantizeCheckpoint)]
pub fn quantize_checkpoint(bytes: Vec<u8>) -> Result<Vec<u8>, JsError> {
    let w = Weights::from_bytes("model.safetensors", bytes).map_err(js_err)?;
    Ok(crate::quantize::quantize_checkpoint(&w).map_err(js_err)?.0)
}

/// Whether `quantizeCheckpoint` (and `precision: "int8"`) stores this tensor in int8: a 2-D
/// `*.weight` of a linear layer, not an embedding table. The page sizes its int8 download with it.
#[wasm_bindgen(js_name = isLinearWeight)]
pub fn is_linear_weight(name: &str, shape: Vec<usize>) -> bool {
    crate::quantize::is_linear_weight(name, &shape)
}

/// `fetch(url)` → bytes, from the page or a worker; HTTP errors name the URL and status.
async fn fetch_bytes(url: &str) -> Result<Vec<u8>, JsError> {
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;
    let fail = |what: &str| js_err(format!("{url}: {what}"));
    let global = js_sys::global();
    let fetch = js_sys::Reflect::get(&global, &"fetch".into()).ok().and_then(|f| f.dyn_into::<js_sys::Function>().ok()).ok_or_else(|| fail("no fetch here"))?;
    let promise = fetch.call1(&global, &url.into()).map_err(|_| fail("fetch failed"))?.dyn_into::<js_sys::Promise>().map_err(|_| fail("fetch failed"))?;
    let resp = JsFuture::from(promise).await.map_err(|e| fail(&format!("could not reach the host ({})", js_sys::Error::from(e).message())))?;
    let field = |k: &str| js_sys::Reflect::get(&resp, &k.into()).unwrap_or(JsValue::UNDEFINED);
    if field("ok").as_bool() != Some(true) {
        return Err(fail(&format!("HTTP {}", field("status").as_f64().unwrap_or(0.0))));
    }
    let read = field("arrayBuffer").dyn_into::<js_sys::Function>().map_err(|_| fail("no body"))?;
    let buf = read.call0(&resp).map_err(|_| fail("no body"))?.dyn_into::<js_sys::Promise>().map_err(|_| fail("no body"))?;
    let buf = JsFuture::from(buf).await.map_err(|_| fail("reading the body failed"))?;
    Ok(js_sys::Uint8Array::new(&buf).to_vec())
}

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** Options of one run. Every field is optional. */
export interface RunOptions {
  /** Fraction of patch tokens kept at each pruning layer, in (0, 1]. Default 1. */
  keep?: number;
  /** "kq-norm" (= "kq-norm:key"), "kq-norm:query", "kq-norm:both", "cls-attn", "random",
   *  "divprune" (DivPrune: the most diverse tokens), "visionzip" (VisionZip: dominant tokens
   *  plus merged contextual ones; one layer), or "tome" (Token Merging: merges as many tokens
   *  in all as `keep` prunes, in every layer). */
  scorer?: string;
  /** 0-based encoder layers to prune in (several = progressive). Default [1]. */
  layers?: number[];
  /** Seed of the "random" scorer. */
  seed?: number;
  /** Zero-shot labels (needs the text tower and a tokenizer). */
  labels?: string[];
  /** Also run unpruned for cos-sim and label comparison. Default true. */
  compareUnpruned?: boolean;
}

/** Options of a comparison (`compare`). Every field is optional. */
export interface CompareOptions {
  /** Fraction of patch tokens kept, as in RunOptions. Default 0.5. */
  keep?: number;
  /** Pruning layers, as in RunOptions (VisionZip compresses once, at the first, to about
   *  the same final count). Default [1]. */
  layers?: number[];
  /** Methods by RunOptions' scorer names. Default: kq-norm, cls-attn, random, tome,
   *  divprune, visionzip. */
  scorers?: string[];
  seed?: number;
  labels?: string[];
}

/** One method of a comparison. */
export interface MethodReport {
  scorer: string;
  keep: number;
  kept: { layer: number; indices: number[] }[];
  /** ToMe and VisionZip: each patch's final token, as in RunReport; else null. */
  groups: number[] | null;
  /** Tokens (CLS included) after the last layer. */
  tokens: number;
  cos_to_unpruned: number;
  flops_ratio: number;
  label_probs: { label: string; prob: number }[] | null;
  /** This method alone: the shared path up to its pruning layer plus its own layers (ms). */
  ms: number;
}

/** Every method on one image at one keep. */
export interface CompareReport {
  grid: number;
  num_patches: number;
  methods: MethodReport[];
  label_probs_unpruned: { label: string; prob: number }[] | null;
  /** The unpruned pass alone, the unpruned path shared by the methods (each layer once),
   *  the whole comparison (decode and text tower included), its vision passes (the shared
   *  path once), and the same passes one after another from scratch (ms). */
  unpruned_ms: number;
  shared_ms: number;
  total_ms: number;
  passes_ms: number;
  sequential_ms: number;
  device: string;
  fallback: string | null;
}

/** One backend's figure in a measured `auto` choice. */
export interface AutoFigure {
  /** "webgpu" or "cpu". */
  backend: string;
  /** e.g. "WebGPU (NVIDIA GeForce RTX 4070)" or "CPU (wasm simd128, 1 thread)". */
  label: string;
  /** One layer of the loaded model on this backend (ms), or null when the probe failed. */
  ms_per_layer: number | null;
  /** A software adapter (SwiftShader, a fallback adapter): measured, never picked. */
  software: boolean;
  error: string | null;
}

/** What backend "auto" took and why. */
export interface AutoChoice {
  /** "webgpu" or "cpu". */
  backend: string;
  /** One line: "WebGPU (…): 14.0 ms/layer, CPU (…): 41.0 ms/layer → WebGPU". */
  reason: string;
  figures: AutoFigure[];
}

/** What one run reports (the same fields as `effarch clip --json`). */
export interface RunReport {
  /** Projected image embedding (not normalised). */
  image_embeds: number[];
  embed_norm: number;
  cos_to_unpruned: number | null;
  /** Patch grid side (14 for ViT-B/16 at 224 px) and patch count. */
  grid: number;
  num_patches: number;
  /** Kept patch indices (row-major over the grid) after each pruning step. */
  kept: { layer: number; indices: number[] }[];
  /** ToMe and VisionZip: for each patch, the token (1.., CLS is 0) it ended in; else null. */
  groups: number[] | null;
  /** Tokens (CLS included) entering each layer. */
  tokens_per_layer: number[];
  flops: number;
  flops_unpruned: number;
  /** decode, text, preprocess, patch_embed, block_0 …, sync, head, readback, total (the one
   *  pass reported), compare (the unpruned comparison pass after it; 0 when none) (ms). */
  timings_ms: Record<string, number>;
  label_probs: { label: string; prob: number }[] | null;
  label_probs_unpruned: { label: string; prob: number }[] | null;
  /** e.g. "gpu (wgpu, google swiftshader, BrowserWebGpu, software adapter)". */
  device: string;
  /** Why the run left the GPU for the CPU, if it did. */
  fallback: string | null;
}
"#;

fn busy() -> JsError {
    js_err("the model is busy with another run; wait for it to finish")
}

fn run_options(options: JsValue) -> Result<RunOptions, JsError> {
    let o: JsRunOptions = parse_options(options)?;
    let prune = prune_config(o.keep, o.scorer.as_deref(), o.layers, o.seed).map_err(js_err)?;
    Ok(RunOptions { prune: Some(prune), labels: o.labels.unwrap_or_default(), compare_unpruned: o.compare_unpruned.unwrap_or(true) })
}

fn compare_options(options: JsValue) -> Result<(Vec<PruneConfig>, Vec<String>), JsError> {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct O {
        keep: Option<f32>,
        layers: Option<Vec<usize>>,
        scorers: Option<Vec<String>>,
        seed: Option<u64>,
        labels: Option<Vec<String>>,
    }
    let o: O = parse_options(options)?;
    let names = o.scorers.unwrap_or_else(|| COMPARE_SCORERS.iter().map(|s| s.to_string()).collect());
    let layers = o.layers.unwrap_or_else(|| vec![1]);
    let methods = names
        .iter()
        .map(|n| {
            let mut sc: Scorer = n.parse()?;
            if let Scorer::Random { seed } = &mut sc {
                *seed = o.seed.unwrap_or(0);
            }
            PruneConfig::for_comparison(sc, o.keep.unwrap_or(0.5), &layers)
        })
        .collect::<crate::Result<Vec<_>>>()
        .map_err(js_err)?;
    Ok((methods, o.labels.unwrap_or_default()))
}

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
    };
    let device = device_for(o.backend.as_deref().unwrap_or("auto"), o.precision.as_deref()).await?;
    let model = bench::random_vit_b16(&device).map_err(js_err)?;
    to_js(&bench::bench_clip_async(&model, &spec, |_| {}).await.map_err(js_err)?)
}
