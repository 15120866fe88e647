//! The Qwen2 decoder of Qwen2.5-VL: RMSNorm, grouped-query attention with q/k/v biases and
//! M-RoPE (each head's frequencies split over the t, h, w position axes by `mrope_section`),
//! SwiGLU MLP, a KV cache per layer, tied or separate LM head.

use super::config::TextConfig;
use crate::error::{Error, Result};
use crate::models::nn::{Embedding, KvCache as LayerCache, Linear, RmsNorm};
use crate::tensor::{Activation, Device, LinearWeight, Tensor};
use crate::weights::Scope;

struct Layer {
    input_norm: RmsNorm,
    post_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    gate: Linear,
    up: Linear,
    down: Linear,
}

pub struct TextModel {
    pub cfg: TextConfig,
    embed: Embedding,
    layers: Vec<Layer>,
    norm: RmsNorm,
    lm_head: LinearWeight,
    device: Device,
}

/// Keys and values `[1, KV heads, T, d]` of every layer, and the next position id. Layers
/// may hold different token counts: after FastV the layers before the pruning layer keep every
/// prompt token, the later ones the kept tokens only.
#[derive(Clone, Default)]
pub struct KvCache {
    layers: Vec<LayerCache>,
    /// The position id (all three axes) of the next token.
    pub next_pos: u32,
}

impl KvCache {
    /// Tokens each layer's cache holds.
    pub fn tokens_per_layer(&self) -> Vec<usize> {
        self.layers.iter().map(LayerCache::len).collect()
    }

    /// Layer `l`'s keys `[1, KV heads, T, d]` (M-RoPE applied), if it has run.
    pub fn keys(&self, l: usize) -> Option<&Tensor> {
        self.layers.get(l).and_then(LayerCache::keys)
    }
}

/// M-RoPE's cos/sin `[L, d/2]` for 3-axis position ids `pos[axis][l]`.
pub fn mrope_tables(pos: &[Vec<u32>; 3], cfg: &TextConfig) -> (Vec<f32>, Vec<f32>) {
    let half = cfg.head_dim() / 2;
    let inv: Vec<f64> = (0..half).map(|j| 1.0 / (cfg.rope_theta as f64).powf((2 * j) as f64 / cfg.head_dim() as f64)).collect();
    let [s0, s1, _] = cfg.mrope_section;
    let axis = |j: usize| {
        if j < s0 {
            0
        } else if j < s0 + s1 {
            1
        } else {
            2
        }
    };
    let len = pos[0].len();
    let (mut cos, mut sin) = (Vec::with_capacity(len * half), Vec::with_capacity(len * half));
    for l in 0..len {
        for (j, &f) in inv.iter().enumerate() {
            // f32 like transformers: position · inv_freq in f32, then cos/sin.
            let a = pos[axis(j)][l] as f32 * f as f32;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    (cos, sin)
}

impl TextModel {
    /// Bytes the KV cache takes for `tokens` tokens (f32 keys and values, every layer).
    pub fn kv_bytes(&self, tokens: usize) -> usize {
        let c = &self.cfg;
        c.num_hidden_layers * 2 * tokens * c.num_key_value_heads * c.head_dim() * 4
    }

    pub fn load(cfg: &TextConfig, model: &Scope, lm_head: Option<&Scope>, device: &Device) -> Result<TextModel> {
        let (h, i, hd) = (cfg.hidden_size, cfg.intermediate_size, cfg.head_dim());
        let (qd, kvd) = (cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd);
        let embed_host = model.pp("embed_tokens").get_f32("weight", &[cfg.vocab_size, h])?;
        let lm_head = match lm_head {
            Some(s) if !cfg.tie_word_embeddings => s.get_linear("weight", [cfg.vocab_size, h], device)?,
            _ => model.pp("embed_tokens").get_linear("weight", [cfg.vocab_size, h], device)?,
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|l| {
                let s = model.pp("layers").pp(l);
                let (a, m) = (s.pp("self_attn"), s.pp("mlp"));
                Ok(Layer {
                    input_norm: RmsNorm::load(&s.pp("input_layernorm"), h, cfg.rms_norm_eps, device)?,
                    post_norm: RmsNorm::load(&s.pp("post_attention_layernorm"), h, cfg.rms_norm_eps, device)?,
                    q: Linear::load(&a.pp("q_proj"), qd, h, true, device)?,
                    k: Linear::load(&a.pp("k_proj"), kvd, h, true, device)?,
                    v: Linear::load(&a.pp("v_proj"), kvd, h, true, device)?,
                    o: Linear::load(&a.pp("o_proj"), h, qd, false, device)?,
                    gate: Linear::load(&m.pp("gate_proj"), i, h, false, device)?,
                    up: Linear::load(&m.pp("up_proj"), i, h, false, device)?,
                    down: Linear::load(&m.pp("down_proj"), h, i, false, device)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TextModel {
            embed: Embedding::new(embed_host, cfg.vocab_size, h, device)?,
            norm: RmsNorm::load(&model.pp("norm"), h, cfg.rms_norm_eps, device)?,
            layers,
            lm_head,
            cfg: cfg.clone(),
            device: device.clone(),
        })
    }

    /// Token embeddings `[n, H]` (ids are checked against the vocabulary).
    pub fn embed(&self, ids: &[u32]) -> Result<Tensor> {
        self.embed.forward(ids)
    }

    /// Runs `x` `[L, H]` (embeddings) at 3-axis positions `pos` after the tokens in `cache`
    /// (which grows by L): a whole prompt, a chunk of one, or one decoding step. Returns the
    /// final-norm hidden states `[L, H]`.
    pub fn forward(&self, x: &Tensor, pos: &[Vec<u32>; 3], cache: &mut KvCache) -> Result<Tensor> {
        let x = self.forward_layers(x, pos, cache, 0..self.layers.len())?;
        self.final_norm(&x)
    }

    /// The final RMSNorm applied to rows of another layer, recording nothing (DART compares
    /// the final-normed hidden states after its layer).
    pub fn normed(&self, x: &Tensor) -> Result<Tensor> {
        self.norm.forward(x)
    }

    /// The final RMSNorm of hidden rows `[n, H]` (after the last layer).
    pub fn final_norm(&self, x: &Tensor) -> Result<Tensor> {
        let out = self.norm.forward(x)?;
        crate::probe::record(|| "lm.norm".into(), &out);
        Ok(out)
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// M-RoPE's cos and sin `[L, d/2]` on the device.
    fn rope_tables(&self, pos: &[Vec<u32>; 3], len: usize) -> Result<(Tensor, Tensor)> {
        if pos.iter().any(|p| p.len() != len) {
            return Err(Error::arg(format!("{len} tokens but position ids of {:?}", pos.iter().map(Vec::len).collect::<Vec<_>>())));
        }
        let hd = self.cfg.head_dim();
        let (cos, sin) = mrope_tables(pos, &self.cfg);
        Ok((Tensor::from_f32(cos, &[len, hd / 2], &self.device)?, Tensor::from_f32(sin, &[len, hd / 2], &self.device)?))
    }

    /// Queries `[1, heads, L, d]` and keys `[1, KV heads, L, d]` of layer `l` for its
    /// input-normed rows `h` `[L, H]`, M-RoPE applied.
    fn qk(&self, l: &Layer, h: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<(Tensor, Tensor)> {
        let c = &self.cfg;
        let (len, hd) = (h.dim(0)?, c.head_dim());
        let heads = |t: Tensor, n: usize| t.reshape(&[len, n, hd])?.rope(cos, sin)?.permute(&[1, 0, 2])?.reshape(&[1, n, len, hd]);
        Ok((heads(l.q.forward(h)?, c.num_attention_heads)?, heads(l.k.forward(h)?, c.num_key_value_heads)?))
    }

    /// FastV's ranking at layer `li`: for each of the whole prompt's tokens `x` `[L, H]` (the
    /// layer's input rows, at positions `pos`), the causal attention it receives in that layer,
    /// averaged over heads and over the L query positions. Queries run in blocks of `chunk`
    /// rows, so the probabilities held at once are heads × chunk × L.
    pub async fn attention_received_async(&self, li: usize, x: &Tensor, pos: &[Vec<u32>; 3], chunk: usize) -> Result<Vec<f32>> {
        let c = &self.cfg;
        let (len, hd, nh, nkv) = (x.dim(0)?, c.head_dim(), c.num_attention_heads, c.num_key_value_heads);
        let (cos, sin) = self.rope_tables(pos, len)?;
        let l = self.layers.get(li).ok_or_else(|| Error::arg(format!("layer {li} of {}", self.layers.len())))?;
        let (q, k) = self.qk(l, &l.input_norm.forward(x)?, &cos, &sin)?;
        // Each key/value head serves nh / nkv query heads: keys repeated per query head.
        let group = nh / nkv.max(1);
        let k = k.reshape(&[nkv, 1, len, hd])?;
        let k = Tensor::cat(&vec![&k; group], 1)?.reshape(&[nh, len, hd])?.permute(&[0, 2, 1])?; // [nh, d, L]
        let q = q.reshape(&[nh, len, hd])?;
        let scale = 1.0 / (hd as f32).sqrt();
        let mut received = vec![0f64; len];
        let chunk = chunk.max(1);
        for start in (0..len).step_by(chunk) {
            let n = chunk.min(len - start);
            // Causal: query row start + i sees keys 0..=start + i.
            let mask: Vec<f32> = (0..n).flat_map(|i| (0..len).map(move |j| if j <= start + i { 0.0 } else { f32::NEG_INFINITY })).collect();
            let logits = q.narrow(1, start, n)?.matmul(&k)?.scale(scale)?.add(&Tensor::from_f32(mask, &[n, len], &self.device)?)?;
            let probs = logits.softmax_last()?; // [nh, n, L]
            let sums = Tensor::from_f32(vec![1.0; nh * n], &[nh, 1, n], &self.device)?.matmul(&probs)?.to_vec_f32_async().await?; // [nh, 1, L]
            for (j, r) in received.iter_mut().enumerate() {
                *r += (0..nh).map(|h| sums[h * len + j] as f64).sum::<f64>();
            }
        }
        Ok(received.iter().map(|&r| (r / (nh * len) as f64) as f32).collect())
    }

    /// Runs `x` `[L, H]` through the layers in `layers` (the next ones of `cache`), without
    /// the final norm: the hidden rows `[L, H]` after the last of them.
    pub fn forward_layers(&self, x: &Tensor, pos: &[Vec<u32>; 3], cache: &mut KvCache, layers: std::ops::Range<usize>) -> Result<Tensor> {
        let c = &self.cfg;
        let (len, hd, nh, nkv) = (x.dim(0)?, c.head_dim(), c.num_attention_heads, c.num_key_value_heads);
        if layers.end > self.layers.len() {
            return Err(Error::arg(format!("layers {layers:?} of a {}-layer language model", self.layers.len())));
        }
        let (cos, sin) = self.rope_tables(pos, len)?;
        cache.layers.resize_with(self.layers.len(), LayerCache::default);
        let mut x = x.clone();
        for li in layers {
            let (l, lc) = (&self.layers[li], &mut cache.layers[li]);
            let h = l.input_norm.forward(&x)?;
            let (q, k) = self.qk(l, &h, &cos, &sin)?;
            let v = l.v.forward(&h)?.reshape(&[len, nkv, hd])?.permute(&[1, 0, 2])?.reshape(&[1, nkv, len, hd])?;
            let (k, v) = lc.append(k, v)?;
            // Grouped-query attention: each key/value head serves nh / nkv query heads.
            // Causal over the new rows (a prefill chunk after the cached ones masks only the future).
            let o = Tensor::attention(&q, &k, &v, len > 1)?;
            let o = o.reshape(&[nh, len, hd])?.permute(&[1, 0, 2])?.reshape(&[len, nh * hd])?;
            // Residuals and the gate's SiLU in the projections' epilogues.
            x = l.o.forward_ex(&o, None, Some(&x))?;
            let h = l.post_norm.forward(&x)?;
            x = l.down.forward_ex(&l.gate.forward_ex(&h, Some(Activation::Silu), None)?.mul(&l.up.forward(&h)?)?, None, Some(&x))?;
            crate::probe::record(|| format!("lm.layer{li}"), &x);
        }
        Ok(x)
    }

    /// Multiply-adds ×2 of one decoder layer for `n` new tokens attending to `ctx` tokens.
    pub fn layer_flops(&self, n: usize, ctx: usize) -> f64 {
        let c = &self.cfg;
        let (h, i, hd) = (c.hidden_size as f64, c.intermediate_size as f64, c.head_dim() as f64);
        let (qd, kvd) = (c.num_attention_heads as f64 * hd, c.num_key_value_heads as f64 * hd);
        let n = n as f64;
        2.0 * n * (h * (qd + 2.0 * kvd) + qd * h + 3.0 * h * i) + 2.0 * 2.0 * n * ctx as f64 * qd
    }

    /// Logits `[n, V]` of hidden rows `[n, H]`.
    pub fn logits(&self, h: &Tensor) -> Result<Tensor> {
        self.lm_head.forward(h, None)
    }

    /// Whether the projections are held in half precision.
    pub fn is_half(&self) -> bool {
        self.lm_head.is_half() && self.layers.iter().all(|l| l.q.is_half() && l.down.is_half())
    }
}
