//! The wasm-bindgen API of the Mamba LM: load from bytes, encode/decode, generate with a
//! streaming callback. Runs where it is called; the page calls it from its worker.

use super::{js_err, to_js};
use crate::models::mamba::generate::{generate, SampleOptions};
use crate::models::mamba::tokenizer::ByteBpe;
use crate::models::mamba::{MambaConfig, MambaLM};
use crate::tensor::Device;
use crate::weights::Weights;
use serde::Deserialize;
use wasm_bindgen::prelude::*;

/// A loaded Mamba LM (CPU: wasm SIMD128).
#[wasm_bindgen]
pub struct MambaSession {
    model: MambaLM,
    tok: Option<ByteBpe>,
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
    /// `config.json` text, `model.safetensors` bytes, and `tokenizer.json` text (optional:
    /// without it prompts are token ids).
    #[wasm_bindgen(constructor)]
    pub fn new(config_json: &str, weights: Vec<u8>, tokenizer_json: Option<String>) -> Result<MambaSession, JsError> {
        let cfg = MambaConfig::from_json("config.json", config_json).map_err(js_err)?;
        let w = Weights::from_bytes("model.safetensors", weights).map_err(js_err)?;
        let model = MambaLM::load(cfg, &w, &Device::Cpu).map_err(js_err)?;
        let tok = tokenizer_json.map(|t| ByteBpe::from_tokenizer_json(&t)).transpose().map_err(js_err)?;
        Ok(MambaSession { model, tok })
    }

    fn tokenizer(&self) -> Result<&ByteBpe, JsError> {
        self.tok.as_ref().ok_or_else(|| js_err("this model was loaded without tokenizer.json"))
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>, JsError> {
        self.tokenizer()?.encode(text).map_err(js_err)
    }

    pub fn decode(&self, ids: Vec<u32>) -> Result<String, JsError> {
        Ok(self.tokenizer()?.decode(&ids))
    }

    /// Generates after `prompt` (text), calling `onToken(id, text)` for each new token.
    /// Options: `{maxNewTokens, temperature, topK, topP, seed, mrssTau}`. Returns
    /// `{prompt_tokens, tokens, text, prefill_ms, decode_ms, tokens_per_s, mrss_merged, stopped_at_eos}`.
    pub fn generate(&self, prompt: &str, options: JsValue, on_token: Option<js_sys::Function>) -> Result<JsValue, JsError> {
        let o: JsGenerate = if options.is_undefined() || options.is_null() {
            JsGenerate::default()
        } else {
            serde_wasm_bindgen::from_value(options).map_err(|e| js_err(format!("bad options: {e}")))?
        };
        let d = SampleOptions::default();
        let opts = SampleOptions {
            temperature: o.temperature.unwrap_or(d.temperature),
            top_k: o.top_k.unwrap_or(d.top_k),
            top_p: o.top_p.unwrap_or(d.top_p),
            seed: o.seed.unwrap_or(d.seed),
            max_new_tokens: o.max_new_tokens.unwrap_or(d.max_new_tokens),
            eos: None,
            tau: o.mrss_tau.unwrap_or(0.0),
        };
        let tok = self.tokenizer()?;
        let ids = tok.encode(prompt).map_err(js_err)?;
        let report = generate(&self.model, &ids, &opts, |id| {
            if let Some(f) = &on_token {
                let _ = f.call2(&JsValue::NULL, &JsValue::from(id), &JsValue::from(tok.decode(&[id])));
            }
        })
        .map_err(js_err)?;
        let mut v = serde_json::to_value(&report).map_err(js_err)?;
        v["text"] = serde_json::json!(tok.decode(&report.tokens));
        to_js(&v)
    }

    pub fn device(&self) -> String {
        self.model.device().describe()
    }
}
