//! The wasm-bindgen API of the Mamba LM: load from bytes, encode/decode, generate with a
//! streaming callback. Runs where it is called; the page calls it from its worker.

use super::{describe_with, device_for, device_measured, js_err, parse_options, to_js, AutoChoice};
use crate::bench::mamba::{bench_mamba_async, bench_mamba_lm_async, MambaBenchSpec, MambaLmBenchSpec};
use crate::models::lm::{ByteBpe, SampleOptions, TextStream};
use crate::models::mamba::generate::generate_async;
use crate::models::mamba::quality::mrss_quality_async;
use crate::models::mamba::{probe_layer_ms, MambaConfig, MambaLM};
use crate::tensor::Device;
use crate::weights::Weights;
use serde::Deserialize;
use std::rc::Rc;
use wasm_bindgen::prelude::*;

/// A loaded Mamba LM, on the CPU (wasm SIMD128) or WebGPU.
#[wasm_bindgen]
pub struct MambaSession {
    inner: Rc<Inner>,
}

struct Inner {
    model: MambaLM,
    tok: Option<ByteBpe>,
    auto: Option<AutoChoice>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct JsGenerate {
    max_new_tokens: Option<usize>,
    temperature: Option<f32>,
    top_k: Option<usize>,
    top_p: Option<f32>,
    seed: Option<u64>,
    mrss_tau: Option<f32>,
}

#[wasm_bindgen]
impl MambaSession {
    /// A CPU session from `config.json` text, `model.safetensors` bytes, and `tokenizer.json`
    /// text (optional: without it prompts are token ids).
    #[wasm_bindgen(constructor)]
    pub fn new(config_json: &str, weights: Vec<u8>, tokenizer_json: Option<String>) -> Result<MambaSession, JsError> {
        let cfg = MambaConfig::from_json("config.json", config_json).map_err(js_err)?;
        let w = Weights::from_bytes("model.safetensors", weights).map_err(js_err)?;
        Self::build(cfg, &w, tokenizer_json, &Device::cpu(), None)
    }

    /// Like the constructor, on `backend`: "webgpu", "cpu", or "auto", which times one mixer
    /// block of this model per decoded token on each backend and takes the faster, never a
    /// software adapter; `choice()` and `device()` then give the figures. `precision`: "f32"
    /// (default), "int8", "bf16" (CPU) or "auto", as in `ClipSession.create`.
    pub async fn create(
        config_json: String,
        weights: Vec<u8>,
        tokenizer_json: Option<String>,
        backend: String,
        precision: Option<String>,
    ) -> Result<MambaSession, JsError> {
        let cfg = MambaConfig::from_json("config.json", &config_json).map_err(js_err)?;
        let w = Weights::from_bytes("model.safetensors", weights).map_err(js_err)?;
        let (device, auto) = device_measured(&backend, precision.as_deref(), |d| probe_layer_ms(&cfg, &w, d)).await?;
        let s = Self::build(cfg, &w, tokenizer_json, &device, auto)?;
        // An error here (a lost device) surfaces, with the fallback, in the first generation.
        let _ = s.inner.model.warm_up_async().await;
        Ok(s)
    }

    fn build(cfg: MambaConfig, w: &Weights, tokenizer_json: Option<String>, device: &Device, auto: Option<AutoChoice>) -> Result<MambaSession, JsError> {
        let tok = tokenizer_json.map(|t| ByteBpe::from_tokenizer_json(&t)).transpose().map_err(js_err)?;
        let model = MambaLM::load(cfg, w, device).map_err(js_err)?;
        Ok(MambaSession { inner: Rc::new(Inner { model, tok, auto }) })
    }

    /// The precision the linear layers run in: "f32", "int8" or "bf16".
    pub fn precision(&self) -> String {
        self.inner.model.device().precision().name().to_string()
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>, JsError> {
        self.inner.tokenizer()?.encode(text).map_err(js_err)
    }

    pub fn decode(&self, ids: Vec<u32>) -> Result<String, JsError> {
        Ok(self.inner.tokenizer()?.decode(&ids))
    }

    /// Generates after `prompt` (text), calling `onToken(id, text, mrssMerged)` for each new
    /// token (`text`: the characters it completes, empty while a character split over tokens is
    /// unfinished, so the pieces joined are the text; `mrssMerged`: the fraction of state
    /// updates merged so far). Options:
    /// `{maxNewTokens, temperature, topK, topP, seed, mrssTau}`. Resolves to
    /// `{prompt_tokens, tokens, text, prefill_ms, decode_ms, tokens_per_s, mrss_merged, stopped_at_eos, device}`,
    /// and with `mrssTau > 0` `mrss_quality` (MRSS against the full scan on the prompt and the
    /// generated text: top-1 agreement, mean KL, logit errors, perplexities, time ratio).
    pub fn generate(&self, prompt: String, options: JsValue, on_token: Option<js_sys::Function>) -> js_sys::Promise {
        let inner = self.inner.clone();
        let o: Result<JsGenerate, JsError> = parse_options(options);
        wasm_bindgen_futures::future_to_promise(async move {
            let o = o?;
            let d = SampleOptions::default();
            let opts = SampleOptions {
                temperature: o.temperature.unwrap_or(d.temperature),
                top_k: o.top_k.unwrap_or(d.top_k),
                top_p: o.top_p.unwrap_or(d.top_p),
                seed: o.seed.unwrap_or(d.seed),
                max_new_tokens: o.max_new_tokens.unwrap_or(d.max_new_tokens),
                eos: None,
            };
            let tau = o.mrss_tau.unwrap_or(0.0);
            let tok = inner.tokenizer()?;
            let ids = tok.encode(&prompt).map_err(js_err)?;
            // A character split over tokens comes with its last token (never as U+FFFD parts).
            let mut stream = TextStream::default();
            let report = generate_async(&inner.model, &ids, &opts, tau, |id, stats| {
                if let Some(f) = &on_token {
                    let _ = f.call3(&JsValue::NULL, &JsValue::from(id), &JsValue::from(stream.push(tok, id)), &JsValue::from(stats.merged_fraction()));
                }
            })
            .await
            .map_err(js_err)?;
            let mut v = serde_json::to_value(&report).map_err(js_err)?;
            if tau > 0.0 {
                // MRSS's cost against the full scan on the prompt and the generated text.
                let all: Vec<u32> = ids.iter().chain(&report.tokens).copied().collect();
                v["mrss_quality"] = serde_json::json!(mrss_quality_async(&inner.model, &all, tau).await.map_err(js_err)?);
            }
            v["text"] = serde_json::json!(tok.decode(&report.tokens));
            v["device"] = serde_json::json!(inner.model.device().describe());
            Ok(to_js(&v)?)
        })
    }

    /// Prefill and decode speed of this model, as `effarch bench mamba-lm` measures it natively:
    /// `{promptLens: [512], decode: 64, iters: 2, mrssTau: [0]}` → `{device, rows: [{mrss_tau,
    /// prompt_tokens, prefill_ms, prefill_tokens_per_s, prefill_scan_ms, decode_tokens,
    /// decode_ms_per_token, decode_tokens_per_s, decode_scan_ms_per_token, prefill_merged,
    /// decode_merged}]}`.
    pub async fn bench(&self, options: JsValue) -> Result<JsValue, JsError> {
        #[derive(Deserialize, Default)]
        #[serde(rename_all = "camelCase", default)]
        struct O {
            prompt_lens: Option<Vec<usize>>,
            decode: Option<usize>,
            iters: Option<usize>,
            mrss_tau: Option<Vec<f32>>,
        }
        let o: O = parse_options(options)?;
        let spec = MambaLmBenchSpec {
            prompt_lens: o.prompt_lens.unwrap_or_else(|| vec![512]),
            decode: o.decode.unwrap_or(64),
            iters: o.iters.unwrap_or(2),
            taus: o.mrss_tau.unwrap_or_else(|| vec![0.0]),
            profile: false,
        };
        let model = &self.inner.model;
        let rows = bench_mamba_lm_async(model, &spec, |_| {}).await.map_err(js_err)?;
        to_js(&serde_json::json!({"device": model.device().describe(), "rows": rows}))
    }

    /// The device, with the figures behind a measured `auto` choice.
    pub fn device(&self) -> String {
        describe_with(self.inner.model.device(), self.inner.auto.as_ref())
    }

    /// The measured `auto` choice this session was made with, or undefined when a backend was
    /// named (see `ClipSession.choice`).
    #[wasm_bindgen(unchecked_return_type = "AutoChoice | undefined")]
    pub fn choice(&self) -> Result<JsValue, JsError> {
        self.inner.auto.as_ref().map_or(Ok(JsValue::UNDEFINED), to_js)
    }
}

impl Inner {
    fn tokenizer(&self) -> Result<&ByteBpe, JsError> {
        self.tok.as_ref().ok_or_else(|| js_err("this model was loaded without tokenizer.json"))
    }
}

/// The driver of `effarch bench mamba`: one Mamba block against one attention block of width
/// `hidden`, `{ns, steps, iters, hidden, backend}` → `{device, rows: [{n, mamba_prefill_ms,
/// attn_prefill_ms, mamba_decode_ms, attn_decode_ms}], exponents}`.
#[wasm_bindgen(js_name = benchMamba)]
pub async fn bench_mamba(options: JsValue) -> Result<JsValue, JsError> {
    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct O {
        ns: Option<Vec<usize>>,
        steps: Option<usize>,
        iters: Option<usize>,
        hidden: Option<usize>,
        backend: Option<String>,
    }
    let o: O = parse_options(options)?;
    let d = MambaBenchSpec::default();
    let spec =
        MambaBenchSpec { ns: o.ns.unwrap_or(d.ns), steps: o.steps.unwrap_or(d.steps), iters: o.iters.unwrap_or(1), hidden: o.hidden.unwrap_or(d.hidden) };
    let device = device_for(o.backend.as_deref().unwrap_or("auto"), None).await?;
    let (rows, e) = bench_mamba_async(&spec, &device, |_| {}).await.map_err(js_err)?;
    to_js(&serde_json::json!({"device": device.describe(), "hidden": spec.hidden, "rows": rows, "exponents": e}))
}
