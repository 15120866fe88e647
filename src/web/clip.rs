//! `ClipSession`: a loaded CLIP model, its runs, comparisons and evaluation batches; and the
//! page's int8 checkpoint helpers.

use super::eval::JsEvalOptions;
use super::{busy, describe_with, device_measured, fetch_bytes, js_err, parse_options, to_js, AutoChoice};
use crate::models::clip::{ClipConfig, ClipSession as CoreSession, RunOptions, Tokenizer};
use crate::prune::{compared_methods, PruneConfig, Scorer};
use crate::tensor::Device;
use crate::weights::Weights;
use serde::Deserialize;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;

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

pub(crate) fn prune_config(keep: Option<f32>, scorer: Option<&str>, layers: Option<Vec<usize>>, seed: Option<u64>) -> crate::Result<PruneConfig> {
    let mut s: Scorer = scorer.unwrap_or("kq-norm").parse()?;
    if let Scorer::Random { seed: sd } = &mut s {
        *sd = seed.unwrap_or(0);
    }
    PruneConfig::new(s, keep.unwrap_or(1.0), layers.unwrap_or_else(|| vec![1]))
}
#[wasm_bindgen]
pub struct ClipSession {
    inner: Rc<RefCell<CoreSession>>,
    auto: Option<AutoChoice>,
    /// The zero-shot classifier of the last `evalBatch` (keyed by classes and templates).
    classifier: Rc<RefCell<Option<(String, Vec<f32>)>>>,
}

/// Options of an evaluation (`evalBatch`, `evalSummary`): `{classes, templates, keeps, scorers,
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
    /// seed, labels}`; `scorers` defaults to every CLIP method (`prune::compared_methods`).
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

/// Every pruning method as the page lists it (`prune::METHODS`): `[{name, label, short, tower,
/// compared}]`, `tower` "vision" or "language", `compared` in the default comparison set.
#[wasm_bindgen(js_name = pruningMethods, unchecked_return_type = "PruningMethod[]")]
pub fn pruning_methods() -> Result<JsValue, JsError> {
    to_js(&crate::prune::METHODS)
}

/// The entry of `pruningMethods()` that a scorer name (as `scorer` takes it, aliases and
/// `tome:R` included, or as a report writes it) stands for; an unknown name is an error.
#[wasm_bindgen(js_name = pruningMethod, unchecked_return_type = "PruningMethod")]
pub fn pruning_method(name: &str) -> Result<JsValue, JsError> {
    let s: Scorer = name.parse().map_err(js_err)?;
    to_js(s.method())
}

/// The patches a pruning step at `keep` leaves of `n`: round(keep·n), at least one
/// (`prune::n_keep`, the rule every backend and report uses).
#[wasm_bindgen(js_name = nKeep)]
pub fn n_keep(keep: f32, n: usize) -> usize {
    crate::prune::n_keep(keep, n)
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
    let names = o.scorers.unwrap_or_else(|| compared_methods().into_iter().map(String::from).collect());
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
