//! The one seam between models and backends.
//!
//! Models hold [`Tensor`]s and call the ops below; they never name a backend. A tensor lives
//! on the [`Device`] it was made on, and every op dispatches on that. The op set is what the
//! models need and no more, so that a new backend (the wgpu one, a faster CPU kernel) is a
//! bounded amount of work that touches only this folder.
//!
//! Conventions: shapes are row-major, f32 activations; index tensors (`u32`) are made on the
//! host and uploaded, because the index math of pruning is shared by every backend.

pub(crate) mod cpu;
mod device;
pub mod gpu;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod hot;
mod linear_weight;
pub mod ssm;

pub use device::{auto_precision, block_on, block_on_for, cpu_pass, on_pool, on_this_thread, time_best, Choice, Device, Figure, Precision};
pub use gpu::GpuWeights;
pub use linear_weight::LinearWeight;

/// A `[n, k]` weight in the int8 scheme of `Precision::Int8` (symmetric per output channel):
/// its int8 values, row-major, and the `n` scales (`tensor/cpu/gemm/int8/`).
pub fn quantize_int8(w: &[f32], n: usize, k: usize) -> std::result::Result<(Vec<i8>, Vec<f32>), String> {
    cpu::gemm::int8::quantize_weight(w, n, k)
}

use crate::error::{Error, Result};
use gpu::{GpuContext, GpuDtype, GpuTensor};
use std::sync::Arc;

/// Activation functions named as in HF configs (`hidden_act`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    QuickGelu,
    Gelu,
    GeluTanh,
    Silu,
    /// ln(1 + eˣ), linear above 20 (transformers' threshold); Mamba's Δ.
    Softplus,
}

impl Activation {
    pub fn from_hf(name: &str) -> Result<Self> {
        Ok(match name {
            "quick_gelu" => Activation::QuickGelu,
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            "silu" | "swish" => Activation::Silu,
            other => return Err(Error::arg(format!("unsupported activation `{other}`"))),
        })
    }
}

/// A tensor on some device. Cloning is cheap (storage is shared).
#[derive(Clone, Debug)]
pub enum Tensor {
    Cpu(candle_core::Tensor),
    Gpu(Arc<GpuContext>, GpuTensor),
}

/// One op on either backend: `cpu` maps a candle tensor, `gpu` maps (context, GPU tensor).
macro_rules! unary {
    ($self:ident, $t:ident => $cpu:expr, $c:ident, $g:ident => $gpu:expr) => {
        match $self {
            Tensor::Cpu($t) => Ok(Tensor::Cpu($cpu?)),
            Tensor::Gpu($c, $g) => Ok(Tensor::Gpu($c.clone(), $gpu?)),
        }
    };
}

macro_rules! binary {
    ($a:ident, $b:ident, $x:ident, $y:ident => $cpu:expr, $c:ident, $gx:ident, $gy:ident => $gpu:expr) => {
        match ($a, $b) {
            (Tensor::Cpu($x), Tensor::Cpu($y)) => Ok(Tensor::Cpu($cpu?)),
            (Tensor::Gpu($c, $gx), Tensor::Gpu(_, $gy)) => Ok(Tensor::Gpu($c.clone(), $gpu?)),
            _ => Err(mixed()),
        }
    };
}

fn mixed() -> Error {
    Error::Backend("an op got tensors on different devices".into())
}

impl Tensor {
    // ---- creation and read-back -------------------------------------------------------
    pub fn from_f32(data: Vec<f32>, shape: &[usize], device: &Device) -> Result<Tensor> {
        check_len(data.len(), shape)?;
        match device {
            Device::Cpu(_) => Ok(Tensor::Cpu(candle_core::Tensor::from_vec(data, shape, &candle_core::Device::Cpu)?)),
            Device::Gpu(c) => Ok(Tensor::Gpu(c.clone(), c.upload(&data, shape)?)),
        }
    }

    pub fn from_u32(data: Vec<u32>, shape: &[usize], device: &Device) -> Result<Tensor> {
        check_len(data.len(), shape)?;
        match device {
            Device::Cpu(_) => Ok(Tensor::Cpu(candle_core::Tensor::from_vec(data, shape, &candle_core::Device::Cpu)?)),
            Device::Gpu(c) => Ok(Tensor::Gpu(c.clone(), c.upload_u32(&data, shape)?)),
        }
    }

    pub fn device(&self) -> Device {
        match self {
            Tensor::Cpu(_) => Device::cpu(),
            Tensor::Gpu(c, _) => Device::Gpu(c.clone()),
        }
    }

    pub fn shape(&self) -> Vec<usize> {
        match self {
            Tensor::Cpu(t) => t.dims().to_vec(),
            Tensor::Gpu(_, g) => g.shape.clone(),
        }
    }

    /// The size of axis `i`; an axis the tensor does not have is an error naming its shape.
    pub fn dim(&self, i: usize) -> Result<usize> {
        let s = self.shape();
        s.get(i).copied().ok_or_else(|| Error::arg(format!("axis {i} of a tensor of shape {s:?}")))
    }

    /// All elements, row-major. On the GPU this waits for the device natively; in the browser
    /// a GPU tensor cannot be waited on synchronously, so this errors there: use
    /// [`Tensor::to_vec_f32_async`].
    pub fn to_vec_f32(&self) -> Result<Vec<f32>> {
        block_on(self.to_vec_f32_async())
    }

    /// Read-back that works everywhere (awaits the GPU's buffer mapping).
    pub async fn to_vec_f32_async(&self) -> Result<Vec<f32>> {
        match self {
            Tensor::Cpu(t) => Ok(t.flatten_all()?.to_vec1::<f32>()?),
            Tensor::Gpu(c, g) => c.read(g).await,
        }
    }

    // ---- layout ------------------------------------------------------------------------
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        unary!(self, t => t.reshape(shape), _c, g => {
            check_len(g.len(), shape).map(|_| GpuTensor { shape: shape.to_vec(), ..g.clone() })
        })
    }

    /// Reorder dimensions; the result is contiguous.
    pub fn permute(&self, dims: &[usize]) -> Result<Tensor> {
        unary!(self, t => t.permute(dims).and_then(|t| t.contiguous()), c, g => gpu::copy::permute(c, g, dims))
    }

    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Tensor> {
        unary!(self, t => t.narrow(dim, start, len).and_then(|t| t.contiguous()), c, g => gpu::copy::narrow(c, g, dim, start, len))
    }

    pub fn cat(parts: &[&Tensor], dim: usize) -> Result<Tensor> {
        match parts.first() {
            None => Err(Error::arg("cat of no tensors")),
            Some(Tensor::Cpu(_)) => {
                let cpu = parts
                    .iter()
                    .map(|p| match p {
                        Tensor::Cpu(t) => Ok(t),
                        _ => Err(mixed()),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Tensor::Cpu(candle_core::Tensor::cat(&cpu, dim)?))
            }
            Some(Tensor::Gpu(c, _)) => {
                let g = parts
                    .iter()
                    .map(|p| match p {
                        Tensor::Gpu(_, g) => Ok(g),
                        _ => Err(mixed()),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Tensor::Gpu(c.clone(), gpu::copy::cat(c, &g, dim)?))
            }
        }
    }

    /// `[B, C, H, W]` images to `[B, (H/p)(W/p), C·p·p]` patch rows, so that a conv with
    /// kernel = stride = p becomes one matmul.
    pub fn patchify(&self, p: usize) -> Result<Tensor> {
        let s = self.shape();
        let [b, c, h, w] = s[..] else {
            return Err(Error::arg(format!("patchify expects [B, C, H, W], got {s:?}")));
        };
        if p == 0 || h % p != 0 || w % p != 0 {
            return Err(Error::arg(format!("image {h}x{w} is not a multiple of patch size {p}")));
        }
        self.reshape(&[b, c, h / p, p, w / p, p])?.permute(&[0, 2, 4, 1, 3, 5])?.reshape(&[b, (h / p) * (w / p), c * p * p])
    }

    // ---- arithmetic --------------------------------------------------------------------
    /// `x @ wᵀ + b` with `w` in the HF `[out, in]` layout, over any leading dims.
    pub fn linear(&self, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        match (self, w, b) {
            (Tensor::Cpu(x), Tensor::Cpu(w), None) => Ok(Tensor::Cpu(cpu::linear(x, w, None)?)),
            (Tensor::Cpu(x), Tensor::Cpu(w), Some(Tensor::Cpu(b))) => Ok(Tensor::Cpu(cpu::linear(x, w, Some(b))?)),
            (Tensor::Gpu(c, x), Tensor::Gpu(_, w), None) => Ok(Tensor::Gpu(c.clone(), gpu::linear::linear(c, x, w, None)?)),
            (Tensor::Gpu(c, x), Tensor::Gpu(_, w), Some(Tensor::Gpu(_, b))) => Ok(Tensor::Gpu(c.clone(), gpu::linear::linear(c, x, w, Some(b))?)),
            _ => Err(mixed()),
        }
    }

    /// `act(x @ wᵀ + b) + res` (`res` shaped like the output): on the GPU one pass whose
    /// epilogue applies the bias, the activation and the residual in registers; on the CPU the
    /// same three steps after the product.
    pub fn linear_ex(&self, w: &Tensor, b: Option<&Tensor>, act: Option<Activation>, res: Option<&Tensor>) -> Result<Tensor> {
        if let (Tensor::Gpu(c, x), Tensor::Gpu(_, w)) = (self, w) {
            let bg = match b {
                Some(Tensor::Gpu(_, b)) => Some(b),
                None => None,
                Some(_) => return Err(mixed()),
            };
            let rg = match res {
                Some(Tensor::Gpu(_, r)) => Some(r),
                None => None,
                Some(_) => return Err(mixed()),
            };
            return Ok(Tensor::Gpu(c.clone(), gpu::linear::linear_ex(c, x, w, bg, act, rg)?));
        }
        self.linear(w, b)?.epilogue(act, res)
    }

    /// `act(norm(self) @ wᵀ + b) + res`, `norm` a LayerNorm without its affine part (the row
    /// less its mean, over its std with `eps`): the product of a LayerNorm folded into the
    /// weight (`w·diag(γ)`, `b + w·β`; `colsum` holds `w`'s row sums). On a GPU one pass
    /// (the kernel sums x's rows while it stages them); on the CPU the norm, then the product.
    #[allow(clippy::too_many_arguments)]
    pub fn linear_normed(&self, w: &Tensor, colsum: &Tensor, b: &Tensor, eps: f32, act: Option<Activation>, res: Option<&Tensor>) -> Result<Tensor> {
        if let (Tensor::Gpu(c, x), Tensor::Gpu(_, w), Tensor::Gpu(_, cs), Tensor::Gpu(_, bg)) = (self, w, colsum, b) {
            let rg = match res {
                Some(Tensor::Gpu(_, r)) => Some(r),
                None => None,
                Some(_) => return Err(mixed()),
            };
            return Ok(Tensor::Gpu(c.clone(), gpu::linear::linear_normed(c, x, w, cs, bg, eps, act, rg)?));
        }
        self.normalize(eps)?.linear_ex(w, Some(b), act, res)
    }

    /// LayerNorm without its weight and bias over the last dim: each row less its mean, over
    /// its std with `eps` (what a LayerNorm folded into the next product leaves to do).
    pub fn normalize(&self, eps: f32) -> Result<Tensor> {
        match self {
            Tensor::Cpu(x) => {
                let k = x.dims().last().copied().unwrap_or(0);
                let (ones, zeros) =
                    (candle_core::Tensor::ones(k, candle_core::DType::F32, x.device())?, candle_core::Tensor::zeros(k, candle_core::DType::F32, x.device())?);
                Ok(Tensor::Cpu(cpu::layer_norm(x, &ones, &zeros, eps)?))
            }
            Tensor::Gpu(c, g) => Ok(Tensor::Gpu(c.clone(), gpu::rows::rows(c, g, None, gpu::rows::RowOp::Normalize { eps })?)),
        }
    }

    /// `act(self) + res`, as separate ops: the unfused form of [`Tensor::linear_ex`]'s epilogue.
    pub(crate) fn epilogue(self, act: Option<Activation>, res: Option<&Tensor>) -> Result<Tensor> {
        let y = match act {
            Some(a) => self.act(a)?,
            None => self,
        };
        match res {
            Some(r) => y.add(r),
            None => Ok(y),
        }
    }

    /// Batched matmul over leading dims: `[.., m, k] @ [.., k, n]`.
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        match (self, rhs) {
            (Tensor::Cpu(a), Tensor::Cpu(b)) => Ok(Tensor::Cpu(a.matmul(b)?)),
            (Tensor::Gpu(c, a), Tensor::Gpu(_, b)) => Ok(Tensor::Gpu(c.clone(), gpu::linear::matmul(c, a, b)?)),
            _ => Err(mixed()),
        }
    }

    /// Element-wise sum; `rhs` may have fewer leading dims (broadcast from the right).
    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        binary!(self, rhs, a, b => a.broadcast_add(b), c, a, b => gpu::elementwise::elementwise(c, a, Some(b), gpu::elementwise::Op::Add))
    }

    pub fn mul(&self, rhs: &Tensor) -> Result<Tensor> {
        binary!(self, rhs, a, b => a.broadcast_mul(b), c, a, b => gpu::elementwise::elementwise(c, a, Some(b), gpu::elementwise::Op::Mul))
    }

    pub fn scale(&self, s: f32) -> Result<Tensor> {
        unary!(self, t => t.affine(s as f64, 0.0), c, g => gpu::elementwise::elementwise(c, g, None, gpu::elementwise::Op::Scale(s)))
    }

    pub fn layer_norm(&self, w: &Tensor, b: &Tensor, eps: f32) -> Result<Tensor> {
        match (self, w, b) {
            (Tensor::Cpu(x), Tensor::Cpu(w), Tensor::Cpu(b)) => Ok(Tensor::Cpu(cpu::layer_norm(x, w, b, eps)?)),
            (Tensor::Gpu(c, x), Tensor::Gpu(_, w), Tensor::Gpu(_, b)) => {
                Ok(Tensor::Gpu(c.clone(), gpu::rows::rows(c, x, Some((w, b)), gpu::rows::RowOp::LayerNorm { eps })?))
            }
            _ => Err(mixed()),
        }
    }

    pub fn softmax_last(&self) -> Result<Tensor> {
        unary!(self, t => cpu::softmax_last(t), c, g => gpu::rows::rows(c, g, None, gpu::rows::RowOp::Softmax))
    }

    pub fn act(&self, a: Activation) -> Result<Tensor> {
        use gpu::elementwise::Op;
        unary!(self, t => cpu::act(t, a), c, g => match a {
            Activation::QuickGelu => gpu::elementwise::elementwise(c, g, None, Op::QuickGelu),
            Activation::Silu => gpu::elementwise::elementwise(c, g, None, Op::Silu),
            Activation::Softplus => gpu::elementwise::elementwise(c, g, None, Op::Softplus),
            Activation::GeluTanh => gpu::elementwise::elementwise(c, g, None, Op::GeluTanh),
            Activation::Gelu => gpu::elementwise::elementwise(c, g, None, Op::Gelu),
        })
    }

    /// Rotary position embedding ("rotate half"): `self` `[N, H, d]`, `cos`/`sin` `[N, d/2]`
    /// (the angles of the pairs (i, i + d/2) per token).
    pub fn rope(&self, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        match (self, cos, sin) {
            (Tensor::Cpu(x), Tensor::Cpu(c), Tensor::Cpu(s)) => Ok(Tensor::Cpu(cpu::rope(x, c, s)?)),
            (Tensor::Gpu(ctx, x), Tensor::Gpu(_, c), Tensor::Gpu(_, s)) => Ok(Tensor::Gpu(ctx.clone(), gpu::rope::rope(ctx, x, c, s)?)),
            _ => Err(mixed()),
        }
    }

    /// x / rms(x) · w over the last dim (`w` `[n]`), as transformers' RMSNorm (in f32).
    pub fn rms_norm(&self, w: &Tensor, eps: f32) -> Result<Tensor> {
        binary!(self, w, x, w => candle_nn::ops::rms_norm(&x.contiguous()?, w, eps), c, x, w => gpu::rows::rows(c, x, Some((w, w)), gpu::rows::RowOp::RmsNorm { eps }))
    }

    /// Scaled dot-product attention on `[B, H, N, d]` heads; `causal` masks the future. Keys
    /// and values may have fewer heads G (dividing H): grouped-query attention, query head h
    /// reading key/value head h / (H / G).
    pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, causal: bool) -> Result<Tensor> {
        match (q, k, v) {
            (Tensor::Cpu(q), Tensor::Cpu(k), Tensor::Cpu(v)) => Ok(Tensor::Cpu(cpu::attention(q, k, v, causal)?)),
            (Tensor::Gpu(c, q), Tensor::Gpu(_, k), Tensor::Gpu(_, v)) => Ok(Tensor::Gpu(c.clone(), gpu::attention::attention(c, q, k, v, causal)?)),
            _ => Err(mixed()),
        }
    }

    /// Self-attention straight from a fused `[B, N, 3·H·d]` QKV projection (q, k, v each
    /// `[H, d]` per token): `[B, N, H·d]`, heads already merged. Saves the head split copies.
    pub fn attention_packed(qkv: &Tensor, heads: usize, causal: bool) -> Result<Tensor> {
        unary!(qkv, t => cpu::attention_packed(t, heads, causal, &[]), c, g => gpu::attention::attention_packed(c, g, heads, causal, None))
    }

    /// [`Tensor::attention_packed`] with ToMe's proportional attention: `sizes` `[B, N]` (the
    /// patches each token holds) adds ln(size) to every query's logit of each key.
    pub fn attention_packed_sized(qkv: &Tensor, heads: usize, causal: bool, sizes: Option<&Tensor>) -> Result<Tensor> {
        match (qkv, sizes) {
            (_, None) => Self::attention_packed(qkv, heads, causal),
            (Tensor::Cpu(t), Some(Tensor::Cpu(s))) => {
                let bias: Vec<f32> = s.flatten_all()?.to_vec1::<f32>()?.iter().map(|v| v.ln()).collect();
                Ok(Tensor::Cpu(cpu::attention_packed(t, heads, causal, &bias)?))
            }
            (Tensor::Gpu(c, g), Some(Tensor::Gpu(_, s))) => Ok(Tensor::Gpu(c.clone(), gpu::attention::attention_packed(c, g, heads, causal, Some(s))?)),
            _ => Err(mixed()),
        }
    }

    /// Token Merging's bipartite soft matching (`prune::tome`) on the keys of a fused
    /// `[B, t, 3·H·d]` QKV projection, merging `r` tokens (1 ≤ r ≤ `max_merge(t)`): each
    /// token's index after the merge, `u32 [B, t]`. On the GPU nothing is read back.
    pub fn tome_match(qkv: &Tensor, heads: usize, r: usize) -> Result<Tensor> {
        unary!(qkv, t => cpu::tome::tome_match(t, heads, r), c, g => gpu::tome::tome_match(c, g, heads, r))
    }

    /// The size-weighted merge of `x [B, t, C]` with token `sizes [B, t]` into `n_out` tokens by
    /// `dest` (from [`Tensor::tome_match`]): `([B, n_out, C], sizes [B, n_out])`.
    pub fn tome_merge(x: &Tensor, sizes: &Tensor, dest: &Tensor, n_out: usize) -> Result<(Tensor, Tensor)> {
        match (x, sizes, dest) {
            (Tensor::Cpu(x), Tensor::Cpu(s), Tensor::Cpu(d)) => {
                let (y, s) = cpu::tome::tome_merge(x, s, d, n_out)?;
                Ok((Tensor::Cpu(y), Tensor::Cpu(s)))
            }
            (Tensor::Gpu(c, x), Tensor::Gpu(_, s), Tensor::Gpu(_, d)) => {
                let (y, s) = gpu::tome::tome_merge(c, x, s, d, n_out)?;
                Ok((Tensor::Gpu(c.clone(), y), Tensor::Gpu(c.clone(), s)))
            }
            _ => Err(mixed()),
        }
    }

    /// Attention paid by token 0 (CLS) to tokens 1.., averaged over heads: `[B, N-1]`.
    /// `q`, `k`: `[B, H, N, d]`.
    pub fn cls_attention(q: &Tensor, k: &Tensor) -> Result<Tensor> {
        match (q, k) {
            (Tensor::Cpu(q), Tensor::Cpu(k)) => Ok(Tensor::Cpu(cpu::cls_attention(q, k)?)),
            (Tensor::Gpu(c, q), Tensor::Gpu(_, k)) => Ok(Tensor::Gpu(c.clone(), gpu::attention::cls_attention(c, q, k)?)),
            _ => Err(mixed()),
        }
    }

    // ---- selection ---------------------------------------------------------------------
    /// L2 norm over the last dim: `[.., D] -> [..]`.
    pub fn row_norms(&self) -> Result<Tensor> {
        unary!(self, t => t.sqr().and_then(|s| s.sum(candle_core::D::Minus1)).and_then(|s| s.sqrt()),
            c, g => gpu::rows::rows(c, g, None, gpu::rows::RowOp::L2Norm))
    }

    /// Per row of `[B, N]` scores, the `k` largest (ties: lower index first), returned in
    /// ascending index order as `u32 [B, k]`. On the GPU no score leaves the device.
    pub fn topk_indices(&self, k: usize) -> Result<Tensor> {
        unary!(self, t => cpu::topk_indices(t, k), c, g => gpu::select::topk_indices(c, g, k))
    }

    /// Rows of `[B, N, D]` picked per batch item by `u32 [B, K]` indices: `[B, K, D]`.
    pub fn gather_rows(&self, idx: &Tensor) -> Result<Tensor> {
        binary!(self, idx, x, i => cpu::gather_rows(x, i), c, x, i => gpu::select::gather_rows(c, x, i))
    }

    /// Rows of a `[V, D]` table picked by `u32` ids of any shape: `[.., D]`. Ids must be
    /// below V (the CPU checks; the GPU clamps, so models check ids on the host).
    pub fn embedding(&self, ids: &Tensor) -> Result<Tensor> {
        binary!(self, ids, table, ids => cpu::embedding(table, ids), c, t, i => gpu::select::embedding(c, t, i))
    }

    /// Read back `u32` indices (kept-token lists for reports).
    pub fn to_vec_u32(&self) -> Result<Vec<u32>> {
        block_on(self.to_vec_u32_async())
    }

    pub async fn to_vec_u32_async(&self) -> Result<Vec<u32>> {
        match self {
            Tensor::Cpu(t) => Ok(t.flatten_all()?.to_vec1::<u32>()?),
            Tensor::Gpu(c, g) if g.dtype == GpuDtype::U32 => c.read_u32(g).await,
            Tensor::Gpu(..) => Err(Error::Backend("to_vec_u32 of an f32 tensor".into())),
        }
    }
}

fn check_len(len: usize, shape: &[usize]) -> Result<()> {
    let want: usize = shape.iter().product();
    if want != len {
        return Err(Error::arg(format!("{len} values do not fill shape {shape:?} ({want})")));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
