//! `config.json` of HF `MambaForCausalLM` (e.g. `state-spaces/mamba-130m-hf`).

use crate::error::{Error, Result};
use serde::Deserialize;

#[derive(Clone, Debug)]
pub struct MambaConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub state_size: usize,
    pub num_hidden_layers: usize,
    pub intermediate_size: usize,
    pub conv_kernel: usize,
    pub time_step_rank: usize,
    pub layer_norm_epsilon: f32,
    pub use_bias: bool,
    pub use_conv_bias: bool,
    pub tie_word_embeddings: bool,
    pub eos_token_id: Option<u32>,
}

#[derive(Deserialize)]
struct Raw {
    model_type: Option<String>,
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    state_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    intermediate_size: Option<usize>,
    expand: Option<usize>,
    conv_kernel: Option<usize>,
    time_step_rank: Option<serde_json::Value>,
    layer_norm_epsilon: Option<f64>,
    use_bias: Option<bool>,
    use_conv_bias: Option<bool>,
    tie_word_embeddings: Option<bool>,
    eos_token_id: Option<serde_json::Value>,
}

impl MambaConfig {
    /// Parses `config.json`; `file` names it in errors. Defaults are transformers' `MambaConfig`.
    pub fn from_json(file: &str, json: &str) -> Result<MambaConfig> {
        let bad = |msg: String| Error::Config { file: file.to_string(), msg };
        let r: Raw = serde_json::from_str(json).map_err(|e| bad(format!("not valid JSON for a Mamba config: {e}")))?;
        if let Some(t) = &r.model_type {
            if t != "mamba" {
                return Err(bad(format!("model_type is `{t}`, expected `mamba` (MambaForCausalLM)")));
            }
        }
        let hidden = r.hidden_size.unwrap_or(768);
        let time_step_rank = match &r.time_step_rank {
            None => hidden.div_ceil(16),
            Some(serde_json::Value::String(s)) if s == "auto" => hidden.div_ceil(16),
            Some(v) => v.as_u64().ok_or_else(|| bad(format!("time_step_rank must be \"auto\" or a number, got {v}")))? as usize,
        };
        let eos = match &r.eos_token_id {
            Some(serde_json::Value::Array(a)) => a.first().and_then(|v| v.as_u64()),
            Some(v) => v.as_u64(),
            None => None,
        };
        let c = MambaConfig {
            vocab_size: r.vocab_size.unwrap_or(50280),
            hidden_size: hidden,
            state_size: r.state_size.unwrap_or(16),
            num_hidden_layers: r.num_hidden_layers.unwrap_or(32),
            intermediate_size: r.intermediate_size.unwrap_or(r.expand.unwrap_or(2) * hidden),
            conv_kernel: r.conv_kernel.unwrap_or(4),
            time_step_rank,
            layer_norm_epsilon: r.layer_norm_epsilon.unwrap_or(1e-5) as f32,
            use_bias: r.use_bias.unwrap_or(false),
            use_conv_bias: r.use_conv_bias.unwrap_or(true),
            tie_word_embeddings: r.tie_word_embeddings.unwrap_or(true),
            eos_token_id: eos.map(|v| v as u32),
        };
        for (name, v) in [
            ("vocab_size", c.vocab_size),
            ("hidden_size", c.hidden_size),
            ("state_size", c.state_size),
            ("num_hidden_layers", c.num_hidden_layers),
            ("intermediate_size", c.intermediate_size),
            ("conv_kernel", c.conv_kernel),
            ("time_step_rank", c.time_step_rank),
        ] {
            if v == 0 || v > 1 << 20 {
                return Err(bad(format!("{name} = {v} is out of range")));
            }
        }
        Ok(c)
    }
}
