//! CLIP's text tower (HF `CLIPTextTransformer` + `text_projection`): causal encoder, pooled
//! at the end-of-text token.

use super::config::TextConfig;
use crate::error::{Error, Result};
use crate::models::nn::{EncoderLayer, LayerDims, LayerNorm};
use crate::tensor::{Activation, Device, LinearWeight, Tensor};
use crate::weights::Weights;

pub struct TextModel {
    pub cfg: TextConfig,
    tok_emb: Tensor,
    pos_emb: Tensor,
    layers: Vec<EncoderLayer>,
    final_ln: LayerNorm,
    proj: LinearWeight,
    device: Device,
}

impl TextModel {
    pub fn load(w: &Weights, cfg: &TextConfig, projection_dim: usize, dev: &Device) -> Result<Self> {
        let t = w.pp("text_model");
        let h = cfg.hidden_size;
        let dims = LayerDims {
            hidden: h,
            intermediate: cfg.intermediate_size,
            heads: cfg.num_attention_heads,
            eps: cfg.layer_norm_eps,
            act: Activation::from_hf(&cfg.hidden_act)?,
        };
        let layers = (0..cfg.num_hidden_layers).map(|i| EncoderLayer::load(&t.pp("encoder.layers").pp(i), dims, dev)).collect::<Result<Vec<_>>>()?;
        Ok(TextModel {
            cfg: cfg.clone(),
            tok_emb: t.pp("embeddings.token_embedding").get("weight", &[cfg.vocab_size, h], dev)?,
            pos_emb: t.pp("embeddings.position_embedding").get("weight", &[cfg.max_position_embeddings, h], dev)?,
            layers,
            final_ln: LayerNorm::load(&t.pp("final_layer_norm"), h, cfg.layer_norm_eps, dev)?,
            proj: w.pp("text_projection").get_linear("weight", [projection_dim, h], dev)?,
            device: dev.clone(),
        })
    }

    /// Where each sequence is pooled: transformers' rule. Configs with the legacy
    /// `eos_token_id == 2` (the OpenAI checkpoints) pool at the largest id, others at the
    /// first `eos_token_id`.
    pub fn pool_positions(&self, ids: &[Vec<u32>]) -> Vec<u32> {
        ids.iter()
            .map(|row| {
                let pos = if self.cfg.eos_token_id == 2 {
                    row.iter().enumerate().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0))).map(|(i, _)| i)
                } else {
                    row.iter().position(|&t| t == self.cfg.eos_token_id)
                };
                pos.unwrap_or(row.len().saturating_sub(1)) as u32
            })
            .collect()
    }

    /// Token ids (each row with its start and end tokens) to `(last_hidden_state [B, L, h],
    /// text_embeds [B, projection_dim])`. Rows are right-padded with `pad`; the causal mask
    /// keeps padding out of every pooled position.
    pub fn forward(&self, ids: &[Vec<u32>], pad: u32) -> Result<(Tensor, Tensor)> {
        let len = ids.iter().map(|r| r.len()).max().unwrap_or(0);
        if ids.is_empty() || len == 0 {
            return Err(Error::arg("no text to encode"));
        }
        if len > self.cfg.max_position_embeddings {
            return Err(Error::arg(format!("text is {len} tokens; the model takes at most {}", self.cfg.max_position_embeddings)));
        }
        if let Some(bad) = ids.iter().flatten().find(|&&t| t as usize >= self.cfg.vocab_size) {
            return Err(Error::arg(format!("token id {bad} is outside the vocabulary of {}", self.cfg.vocab_size)));
        }
        let b = ids.len();
        let flat: Vec<u32> = ids.iter().flat_map(|r| r.iter().copied().chain(std::iter::repeat(pad)).take(len)).collect();
        let ids_t = Tensor::from_u32(flat, &[b, len], &self.device)?;
        let mut x = self.tok_emb.embedding(&ids_t)?.add(&self.pos_emb.narrow(0, 0, len)?)?;
        for layer in &self.layers {
            x = layer.forward(&x, true)?;
        }
        let x = self.final_ln.forward(&x)?;
        let pos = Tensor::from_u32(self.pool_positions(ids), &[b, 1], &self.device)?;
        let pooled = x.gather_rows(&pos)?.reshape(&[b, self.cfg.hidden_size])?;
        Ok((x, self.proj.forward(&pooled, None)?))
    }
}
