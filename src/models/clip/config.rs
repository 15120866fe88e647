//! `config.json` of a Hugging Face `CLIPModel`, with transformers' defaults for absent keys.

use crate::error::{Error, Result};
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
pub struct TextConfig {
    #[serde(default = "text_vocab")]
    pub vocab_size: usize,
    #[serde(default = "text_hidden")]
    pub hidden_size: usize,
    #[serde(default = "text_inter")]
    pub intermediate_size: usize,
    #[serde(default = "twelve")]
    pub num_hidden_layers: usize,
    #[serde(default = "eight")]
    pub num_attention_heads: usize,
    #[serde(default = "seventy_seven")]
    pub max_position_embeddings: usize,
    #[serde(default = "quick_gelu")]
    pub hidden_act: String,
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "two")]
    pub eos_token_id: u32,
}

#[derive(Clone, Debug, Deserialize)]
pub struct VisionConfig {
    #[serde(default = "vis_hidden")]
    pub hidden_size: usize,
    #[serde(default = "vis_inter")]
    pub intermediate_size: usize,
    #[serde(default = "twelve")]
    pub num_hidden_layers: usize,
    #[serde(default = "twelve")]
    pub num_attention_heads: usize,
    #[serde(default = "three")]
    pub num_channels: usize,
    #[serde(default = "two_two_four")]
    pub image_size: usize,
    #[serde(default = "thirty_two")]
    pub patch_size: usize,
    #[serde(default = "quick_gelu")]
    pub hidden_act: String,
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
}

/// As written in `config.json`; either tower's section may be absent there.
#[derive(Deserialize)]
struct RawConfig {
    #[serde(default, alias = "text_config_dict")]
    text_config: Option<TextConfig>,
    #[serde(default, alias = "vision_config_dict")]
    vision_config: Option<VisionConfig>,
    #[serde(default = "five_twelve")]
    projection_dim: usize,
}

#[derive(Clone, Debug)]
pub struct ClipConfig {
    pub text_config: TextConfig,
    pub vision_config: VisionConfig,
    pub projection_dim: usize,
}

fn text_vocab() -> usize {
    49408
}
fn text_hidden() -> usize {
    512
}
fn text_inter() -> usize {
    2048
}
fn vis_hidden() -> usize {
    768
}
fn vis_inter() -> usize {
    3072
}
fn twelve() -> usize {
    12
}
fn eight() -> usize {
    8
}
fn three() -> usize {
    3
}
fn two() -> u32 {
    2
}
fn seventy_seven() -> usize {
    77
}
fn two_two_four() -> usize {
    224
}
fn thirty_two() -> usize {
    32
}
fn five_twelve() -> usize {
    512
}
fn quick_gelu() -> String {
    "quick_gelu".into()
}
fn eps() -> f64 {
    1e-5
}

impl VisionConfig {
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
    pub fn num_patches(&self) -> usize {
        self.grid() * self.grid()
    }
}

impl ClipConfig {
    /// Parses `config.json`; `file` names it in errors.
    pub fn from_json(file: &str, json: &str) -> Result<ClipConfig> {
        let bad = |msg: String| Error::Config { file: file.to_string(), msg };
        let raw: RawConfig = serde_json::from_str(json).map_err(|e| bad(format!("not a CLIP config: {e}")))?;
        let Some(vision_config) = raw.vision_config else {
            return Err(bad("no `vision_config` (is this a CLIPModel config.json?)".into()));
        };
        let text_config = match raw.text_config {
            Some(t) => t,
            None => serde_json::from_str("{}").map_err(|e| bad(e.to_string()))?,
        };
        let c = ClipConfig { text_config, vision_config, projection_dim: raw.projection_dim };
        c.validate().map_err(bad)?;
        Ok(c)
    }

    pub fn vision(&self) -> &VisionConfig {
        &self.vision_config
    }

    pub fn text(&self) -> &TextConfig {
        &self.text_config
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let v = self.vision();
        let t = self.text();
        let checks = [
            (
                v.hidden_size > 0 && v.num_attention_heads > 0 && v.hidden_size % v.num_attention_heads == 0,
                format!("vision hidden_size {} is not a multiple of num_attention_heads {}", v.hidden_size, v.num_attention_heads),
            ),
            (
                v.patch_size > 0 && v.image_size >= v.patch_size && v.image_size % v.patch_size == 0,
                format!("vision image_size {} is not a multiple of patch_size {}", v.image_size, v.patch_size),
            ),
            (v.image_size <= 4096, format!("vision image_size {} is over the limit of 4096", v.image_size)),
            (v.num_hidden_layers <= 256 && t.num_hidden_layers <= 256, "more than 256 layers".to_string()),
            (
                t.hidden_size > 0 && t.num_attention_heads > 0 && t.hidden_size % t.num_attention_heads == 0,
                format!("text hidden_size {} is not a multiple of num_attention_heads {}", t.hidden_size, t.num_attention_heads),
            ),
            (self.projection_dim > 0, "projection_dim is 0".to_string()),
            (v.num_channels > 0, "num_channels is 0".to_string()),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, msg)) => Err(msg),
            None => Ok(()),
        }
    }

    /// `openai/clip-vit-base-patch16`'s shape (for benchmarks with random weights).
    pub fn vit_b16() -> ClipConfig {
        let vision_config = VisionConfig {
            hidden_size: vis_hidden(),
            intermediate_size: vis_inter(),
            num_hidden_layers: twelve(),
            num_attention_heads: twelve(),
            num_channels: three(),
            image_size: two_two_four(),
            patch_size: 16,
            hidden_act: quick_gelu(),
            layer_norm_eps: eps(),
        };
        let text_config = TextConfig {
            vocab_size: text_vocab(),
            hidden_size: text_hidden(),
            intermediate_size: text_inter(),
            num_hidden_layers: twelve(),
            num_attention_heads: eight(),
            max_position_embeddings: seventy_seven(),
            hidden_act: quick_gelu(),
            layer_norm_eps: eps(),
            eos_token_id: two(),
        };
        ClipConfig { text_config, vision_config, projection_dim: five_twelve() }
    }
}
