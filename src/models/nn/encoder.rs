//! One pre-norm transformer encoder layer as in HF `CLIPEncoderLayer` (both CLIP towers, and
//! the attention baseline of the Mamba bench): x + Attn(LN₁(x)), then x + MLP(LN₂(x)). Q, K
//! and V are one fused matmul.

use super::{KvCache, Linear, NormedLinear};
use crate::error::{Error, Result};
use crate::prune::{AttnView, Scorer};
use crate::tensor::{Activation, Device, Tensor};
use crate::weights::Scope;

/// Shape of a layer, from the tower's config.
#[derive(Clone, Copy, Debug)]
pub struct LayerDims {
    pub hidden: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub eps: f64,
    pub act: Activation,
}

pub struct EncoderLayer {
    /// LN₁ and the fused Q, K, V projection.
    qkv: NormedLinear,
    out: Linear,
    /// LN₂ and the MLP's first projection.
    fc1: NormedLinear,
    fc2: Linear,
    dims: LayerDims,
}

/// What a pruning step inside a layer produced: kept positions `u32 [B, k]` and the scores.
pub struct Pruned {
    pub kept: Tensor,
    pub scores: Tensor,
}

impl EncoderLayer {
    pub fn load(s: &Scope, d: LayerDims, dev: &Device) -> Result<Self> {
        let h = d.hidden;
        let a = s.pp("self_attn");
        // Fuse q, k, v ([3h, h]) so the hot path is one large matmul instead of three.
        let mut w = Vec::with_capacity(3 * h * h);
        let mut b = Vec::with_capacity(3 * h);
        for p in ["q_proj", "k_proj", "v_proj"] {
            w.extend(a.pp(p).get_f32("weight", &[h, h])?);
            b.extend(a.pp(p).get_f32("bias", &[h])?);
        }
        Ok(EncoderLayer {
            qkv: NormedLinear::new(&s.pp("layer_norm1"), w, [3 * h, h], Some(b), d.eps, dev)?,
            out: Linear::load(&a.pp("out_proj"), h, h, true, dev)?,
            fc1: NormedLinear::load(&s.pp("layer_norm2"), &s.pp("mlp").pp("fc1"), d.intermediate, h, d.eps, dev)?,
            fc2: Linear::load(&s.pp("mlp").pp("fc2"), h, d.intermediate, true, dev)?,
            dims: d,
        })
    }

    pub fn forward(&self, x: &Tensor, causal: bool) -> Result<Tensor> {
        let (x, _) = self.attention(x, causal, None)?;
        self.mlp(&x)
    }

    /// Causal decoding with a KV cache: `x` `[B, L, h]` continues the tokens whose keys and
    /// values `cache` holds (L tokens at once only while the cache is empty, i.e. the prompt).
    /// The attention baseline of the Mamba scaling bench.
    pub fn forward_cached(&self, x: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let s = x.shape();
        let (b, n, h) = (s[0], s[1], s[2]);
        if !cache.is_empty() && n != 1 {
            return Err(Error::arg("a cached layer continues one token at a time"));
        }
        let heads = self.dims.heads;
        let hd = h / heads;
        let qkv = self.qkv.forward(x, None, None)?.reshape(&[b, n, 3, heads, hd])?.permute(&[2, 0, 3, 1, 4])?; // [3, B, H, L, d]
        let part = |i: usize| qkv.narrow(0, i, 1).and_then(|t| t.reshape(&[b, heads, n, hd]));
        let (q, k, v) = (part(0)?, part(1)?, part(2)?);
        let (k, v) = cache.append(k, v)?;
        let o = Tensor::attention(&q, &k, &v, n > 1)?.permute(&[0, 2, 1, 3])?.reshape(&[b, n, h])?;
        let x = self.out.forward_ex(&o, None, Some(x))?;
        self.mlp(&x)
    }

    /// The layer with a pruning step between attention and MLP (EViT's placement): the
    /// attention sees every token and provides the scores; the MLP runs on the kept ones.
    pub fn forward_pruned(&self, x: &Tensor, scorer: &Scorer, keep: usize, step: usize) -> Result<(Tensor, Pruned)> {
        let (x, pruned) = self.attention(x, false, Some((scorer, keep, step)))?;
        let p = pruned.ok_or_else(|| Error::Backend("pruning step produced no selection".into()))?;
        let b = x.dim(0)?;
        let h = x.dim(2)?;
        let cls = x.narrow(1, 0, 1)?;
        let patches = x.narrow(1, 1, x.dim(1)? - 1)?.gather_rows(&p.kept)?;
        let x = Tensor::cat(&[&cls, &patches], 1)?;
        debug_assert_eq!(x.shape(), vec![b, keep + 1, h]);
        Ok((self.mlp(&x)?, p))
    }

    /// The attention half of the layer, with ToMe's proportional attention when tokens have
    /// `sizes` (`[B, N]`): `x + Attn(LN₁(x))` and the fused QKV projection `[B, N, 3h]` it ran
    /// on (ToMe matches on its keys).
    pub fn attend(&self, x: &Tensor, sizes: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        self.attend_ex(x, false, sizes)
    }

    fn attend_ex(&self, x: &Tensor, causal: bool, sizes: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let qkv = self.qkv.forward(x, None, None)?; // [B, N, 3h] = [B, N, 3, H, d]
        let o = Tensor::attention_packed_sized(&qkv, self.dims.heads, causal, sizes)?;
        // x + out(o), the residual added in the projection's epilogue.
        Ok((self.out.forward_ex(&o, None, Some(x))?, qkv))
    }

    pub fn heads(&self) -> usize {
        self.dims.heads
    }

    fn attention(&self, x: &Tensor, causal: bool, select: Option<(&Scorer, usize, usize)>) -> Result<(Tensor, Option<Pruned>)> {
        let (x, qkv) = self.attend_ex(x, causal, None)?;
        let pruned = match select {
            None => None,
            Some((scorer, keep, step)) => {
                let (q, k, qh, kh) = self.split_qk(&qkv)?;
                let scores = scorer.score(&AttnView { q: &q, k: &k, qh: &qh, kh: &kh }, step)?;
                Some(Pruned { kept: scores.topk_indices(keep)?, scores })
            }
        };
        Ok((x, pruned))
    }

    /// Queries and keys of a fused `[B, N, 3h]` QKV projection: `[B, N, h]` each, and split
    /// into heads, `[B, H, N, d]`.
    fn split_qk(&self, qkv: &Tensor) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
        let s = qkv.shape();
        let (b, n, h, heads) = (s[0], s[1], self.dims.hidden, self.dims.heads);
        let (q, k) = (qkv.narrow(2, 0, h)?, qkv.narrow(2, h, h)?);
        let split = |t: &Tensor| t.reshape(&[b, n, heads, h / heads])?.permute(&[0, 2, 1, 3]);
        let (qh, kh) = (split(&q)?, split(&k)?);
        Ok((q, k, qh, kh))
    }

    /// Attention from CLS to each patch, averaged over heads, `[B, N-1]`, from the layer's
    /// fused QKV projection (as [`EncoderLayer::attend`] returns it).
    pub fn cls_attention(&self, qkv: &Tensor) -> Result<Tensor> {
        let (_, _, qh, kh) = self.split_qk(qkv)?;
        Tensor::cls_attention(&qh, &kh)
    }

    /// The MLP half: `x + MLP(LN₂(x))`.
    pub fn mlp(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.fc1.forward(x, Some(self.dims.act), None)?;
        self.fc2.forward_ex(&y, None, Some(x))
    }

    /// Multiply-adds ×2 of this layer for `n` tokens at attention and `m` at the MLP.
    pub fn flops(&self, n: usize, m: usize) -> f64 {
        let (h, i) = (self.dims.hidden as f64, self.dims.intermediate as f64);
        let (n, m) = (n as f64, m as f64);
        2.0 * (n * h * 3.0 * h + 2.0 * n * n * h + n * h * h + 2.0 * m * h * i)
    }
}
