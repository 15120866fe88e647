//! `config.json` and `preprocessor_config.json` of Qwen2.5-VL (`Qwen/Qwen2.5-VL-3B-Instruct`
//! and the 7B): the hub's flat format (text fields at the top, `rope_scaling.mrope_section`)
//! and transformers 5's (`text_config`, `rope_parameters`) are both read.

use crate::error::{Error, Result};
use serde_json::Value;

#[derive(Clone, Debug)]
pub struct VisionConfig {
    pub depth: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_heads: usize,
    pub in_channels: usize,
    pub patch_size: usize,
    pub temporal_patch_size: usize,
    pub spatial_merge_size: usize,
    /// Pixels per window side (112: 8 patches, 4 merge units).
    pub window_size: usize,
    pub fullatt_block_indexes: Vec<usize>,
    pub out_hidden_size: usize,
    pub rope_theta: f32,
}

/// The largest attention window (pixels a side) a config may ask for.
pub const MAX_WINDOW_SIZE: usize = 4096;

impl VisionConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }
    /// Merge units per window side.
    pub fn window_units(&self) -> usize {
        (self.window_size / self.spatial_merge_size / self.patch_size).max(1)
    }
}

#[derive(Clone, Debug)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    /// Frequencies of each head's half given to the t, h and w position axes.
    pub mrope_section: [usize; 3],
    pub tie_word_embeddings: bool,
    /// The context length (positions) the model was trained for.
    pub max_position_embeddings: usize,
}

impl TextConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

#[derive(Clone, Debug)]
pub struct QwenConfig {
    pub vision: VisionConfig,
    pub text: TextConfig,
    pub image_token_id: u32,
    pub eos_token_ids: Vec<u32>,
}

fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

impl QwenConfig {
    pub fn from_json(file: &str, json: &str) -> Result<QwenConfig> {
        let bad = |m: String| Error::Config { file: file.to_string(), msg: m };
        let v: Value = serde_json::from_str(json).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let mt = v.get("model_type").and_then(Value::as_str).unwrap_or("");
        if mt != "qwen2_5_vl" {
            return Err(bad(format!("model_type is `{mt}`, expected `qwen2_5_vl` (a Qwen2.5-VL checkpoint)")));
        }
        let t = v.get("text_config").filter(|t| t.get("hidden_size").is_some()).unwrap_or(&v);
        let vc = v.get("vision_config").ok_or_else(|| bad("no vision_config".into()))?;
        let int = |o: &Value, k: &str, d: Option<usize>| -> Result<usize> {
            match (num(o, k), d) {
                (Some(x), _) if x >= 0.0 && x.fract() == 0.0 && x <= (1u64 << 24) as f64 => Ok(x as usize),
                (Some(x), _) => Err(bad(format!("{k} = {x} is out of range"))),
                (None, Some(d)) => Ok(d),
                (None, None) => Err(bad(format!("missing `{k}`"))),
            }
        };
        let rope = t.get("rope_parameters").or_else(|| t.get("rope_scaling")).or_else(|| v.get("rope_scaling"));
        let section: Vec<usize> = rope
            .and_then(|r| r.get("mrope_section"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_u64).map(|x| x as usize).collect())
            .unwrap_or_else(|| vec![16, 24, 24]);
        let theta = rope.and_then(|r| num(r, "rope_theta")).or_else(|| num(t, "rope_theta")).unwrap_or(1_000_000.0) as f32;
        let heads = int(t, "num_attention_heads", None)?;
        let text = TextConfig {
            vocab_size: int(t, "vocab_size", None)?,
            hidden_size: int(t, "hidden_size", None)?,
            intermediate_size: int(t, "intermediate_size", None)?,
            num_hidden_layers: int(t, "num_hidden_layers", None)?,
            num_attention_heads: heads,
            num_key_value_heads: int(t, "num_key_value_heads", Some(heads))?,
            rms_norm_eps: num(t, "rms_norm_eps").unwrap_or(1e-6) as f32,
            rope_theta: theta,
            mrope_section: match section[..] {
                [a, b, c] => [a, b, c],
                _ => return Err(bad(format!("mrope_section {section:?} must have three entries"))),
            },
            tie_word_embeddings: v.get("tie_word_embeddings").or_else(|| t.get("tie_word_embeddings")).and_then(Value::as_bool).unwrap_or(false),
            // The 3B's and 7B's value when a config leaves it out.
            max_position_embeddings: int(t, "max_position_embeddings", Some(128_000))?,
        };
        let vision = VisionConfig {
            depth: int(vc, "depth", None)?,
            hidden_size: int(vc, "hidden_size", None)?,
            intermediate_size: int(vc, "intermediate_size", None)?,
            num_heads: int(vc, "num_heads", None)?,
            in_channels: int(vc, "in_chans", Some(3)).and_then(|d| int(vc, "in_channels", Some(d)))?,
            patch_size: int(vc, "patch_size", Some(14))?,
            temporal_patch_size: int(vc, "temporal_patch_size", Some(2))?,
            spatial_merge_size: int(vc, "spatial_merge_size", Some(2))?,
            window_size: int(vc, "window_size", Some(112))?,
            fullatt_block_indexes: vc
                .get("fullatt_block_indexes")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_u64).map(|x| x as usize).collect())
                .unwrap_or_else(|| vec![7, 15, 23, 31]),
            out_hidden_size: int(vc, "out_hidden_size", Some(text.hidden_size))?,
            rope_theta: vc.get("rope_parameters").and_then(|r| num(r, "rope_theta")).unwrap_or(10_000.0) as f32,
        };
        let id = |k: &str| -> Result<u32> { Ok(int(&v, k, None).or_else(|_| int(t, k, None))? as u32) };
        let eos: Vec<u32> = match v.get("eos_token_id").or_else(|| t.get("eos_token_id")) {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_u64).map(|x| x as u32).collect(),
            Some(x) => x.as_u64().map(|x| vec![x as u32]).unwrap_or_default(),
            None => vec![],
        };
        let c = QwenConfig { image_token_id: id("image_token_id")?, eos_token_ids: eos, vision, text };
        c.validate().map_err(bad)?;
        Ok(c)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let (v, t) = (&self.vision, &self.text);
        for (name, x) in [
            ("vision depth", v.depth),
            ("vision hidden_size", v.hidden_size),
            ("vision num_heads", v.num_heads),
            ("patch_size", v.patch_size),
            ("temporal_patch_size", v.temporal_patch_size),
            ("spatial_merge_size", v.spatial_merge_size),
            ("vocab_size", t.vocab_size),
            ("hidden_size", t.hidden_size),
            ("num_hidden_layers", t.num_hidden_layers),
            ("num_attention_heads", t.num_attention_heads),
            ("num_key_value_heads", t.num_key_value_heads),
        ] {
            if x == 0 {
                return Err(format!("{name} is 0"));
            }
        }
        if v.hidden_size % v.num_heads != 0 || v.head_dim() % 4 != 0 {
            return Err(format!("vision hidden_size {} over {} heads must give a head size divisible by 4", v.hidden_size, v.num_heads));
        }
        if t.hidden_size % t.num_attention_heads != 0 || t.head_dim() % 2 != 0 || t.num_attention_heads % t.num_key_value_heads != 0 {
            return Err(format!("hidden_size {} / {} heads / {} key-value heads do not divide", t.hidden_size, t.num_attention_heads, t.num_key_value_heads));
        }
        if self.text.mrope_section.iter().sum::<usize>() != t.head_dim() / 2 {
            return Err(format!("mrope_section {:?} must sum to half the head size ({})", t.mrope_section, t.head_dim() / 2));
        }
        // Nothing ties the window to a weight's shape (Qwen2.5-VL: 112 px).
        if v.window_size > MAX_WINDOW_SIZE {
            return Err(format!("vision window_size {} is over the limit of {MAX_WINDOW_SIZE} px", v.window_size));
        }
        if let Some(&b) = v.fullatt_block_indexes.iter().find(|&&b| b >= v.depth) {
            return Err(format!("fullatt_block_indexes has block {b} of a {}-block tower", v.depth));
        }
        Ok(())
    }
}

/// `preprocessor_config.json`: the resize bounds and normalisation.
#[derive(Clone, Debug)]
pub struct ProcessorConfig {
    pub min_pixels: usize,
    pub max_pixels: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Whose resize to reproduce (transformers' torchvision backend unless the config names
    /// the PIL processor).
    pub resample: crate::image::Resample,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        ProcessorConfig {
            min_pixels: 56 * 56,
            max_pixels: 28 * 28 * 1280,
            mean: crate::image::OPENAI_CLIP_MEAN,
            std: crate::image::OPENAI_CLIP_STD,
            resample: crate::image::Resample::default(),
        }
    }
}

impl ProcessorConfig {
    pub fn from_json(file: &str, json: &str) -> Result<ProcessorConfig> {
        let bad = |m: String| Error::Config { file: file.to_string(), msg: m };
        let v: Value = serde_json::from_str(json).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let d = ProcessorConfig::default();
        let size = v.get("size");
        let pick = |a: &str, b: &str| num(&v, a).or_else(|| size.and_then(|s| num(s, b)));
        let three = |k: &str, d: [f32; 3]| -> Result<[f32; 3]> {
            match v.get(k).and_then(Value::as_array) {
                Some(a) if a.len() == 3 => Ok([0, 1, 2].map(|i| a[i].as_f64().unwrap_or(0.0) as f32)),
                Some(a) => Err(bad(format!("{k} has {} values, expected 3", a.len()))),
                None => Ok(d),
            }
        };
        let c = ProcessorConfig {
            min_pixels: pick("min_pixels", "shortest_edge").map_or(d.min_pixels, |x| x as usize),
            max_pixels: pick("max_pixels", "longest_edge").map_or(d.max_pixels, |x| x as usize),
            mean: three("image_mean", d.mean)?,
            resample: crate::image::Resample::from_config(&v),
            std: three("image_std", d.std)?,
        };
        if c.min_pixels == 0 || c.max_pixels < c.min_pixels || c.std.iter().any(|&s| s <= 0.0) {
            return Err(bad(format!("min_pixels {} / max_pixels {} / image_std {:?} are not usable", c.min_pixels, c.max_pixels, c.std)));
        }
        Ok(c)
    }
}
