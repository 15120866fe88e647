//! The one seam between models and backends.
//!
//! Models hold [`Tensor`]s and call the ops below; they never name a backend. A tensor lives
//! on the [`Device`] it was made on, and every op dispatches on that. The op set is what the
//! models need and no more, so that a new backend (the wgpu one, a faster CPU kernel) is a
//! bounded amount of work that touches only this folder.
//!
//! Conventions: shapes are row-major, f32 activations; index tensors (`u32`) are made on the
//! host and uploaded, because the index math of pruning is shared by every backend.

mod cpu;
pub mod gpu;
mod kernels;

use crate::error::{Error, Result};

/// Where tensors live and ops run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Device {
    /// candle-core on the host: gemm with AVX/FMA natively, SIMD128 in wasm.
    #[default]
    Cpu,
}

impl Device {
    /// The best device available here. Today that is the CPU; the GPU backend takes over
    /// when an adapter exists.
    pub fn best() -> Device {
        Device::Cpu
    }

    /// A short human-readable name for reports ("cpu (candle, avx2)").
    pub fn describe(&self) -> String {
        match self {
            Device::Cpu => format!("cpu (candle-core, {})", cpu::simd_name()),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
        }
    }
}

/// Activation functions named as in HF configs (`hidden_act`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    QuickGelu,
    Gelu,
    GeluTanh,
    Silu,
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
}

macro_rules! unary {
    ($self:ident, $t:ident => $e:expr) => {
        match $self {
            Tensor::Cpu($t) => Ok(Tensor::Cpu($e?)),
        }
    };
}

macro_rules! binary {
    ($a:ident, $b:ident, $x:ident, $y:ident => $e:expr) => {
        match ($a, $b) {
            (Tensor::Cpu($x), Tensor::Cpu($y)) => Ok(Tensor::Cpu($e?)),
        }
    };
}

impl Tensor {
    // ---- creation and read-back -------------------------------------------------------
    pub fn from_f32(data: Vec<f32>, shape: &[usize], device: &Device) -> Result<Tensor> {
        check_len(data.len(), shape)?;
        match device {
            Device::Cpu => Ok(Tensor::Cpu(candle_core::Tensor::from_vec(data, shape, &candle_core::Device::Cpu)?)),
        }
    }

    pub fn from_u32(data: Vec<u32>, shape: &[usize], device: &Device) -> Result<Tensor> {
        check_len(data.len(), shape)?;
        match device {
            Device::Cpu => Ok(Tensor::Cpu(candle_core::Tensor::from_vec(data, shape, &candle_core::Device::Cpu)?)),
        }
    }

    pub fn device(&self) -> Device {
        match self {
            Tensor::Cpu(_) => Device::Cpu,
        }
    }

    pub fn shape(&self) -> Vec<usize> {
        match self {
            Tensor::Cpu(t) => t.dims().to_vec(),
        }
    }

    pub fn dim(&self, i: usize) -> usize {
        self.shape().get(i).copied().unwrap_or(1)
    }

    /// All elements, row-major. On the GPU this is the one place that waits for the device.
    pub fn to_vec_f32(&self) -> Result<Vec<f32>> {
        match self {
            Tensor::Cpu(t) => Ok(t.flatten_all()?.to_vec1::<f32>()?),
        }
    }

    // ---- layout ------------------------------------------------------------------------
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        unary!(self, t => t.reshape(shape))
    }

    /// Reorder dimensions; the result is contiguous.
    pub fn permute(&self, dims: &[usize]) -> Result<Tensor> {
        unary!(self, t => t.permute(dims).and_then(|t| t.contiguous()))
    }

    pub fn narrow(&self, dim: usize, start: usize, len: usize) -> Result<Tensor> {
        unary!(self, t => t.narrow(dim, start, len).and_then(|t| t.contiguous()))
    }

    pub fn cat(parts: &[&Tensor], dim: usize) -> Result<Tensor> {
        let mut cpu = Vec::with_capacity(parts.len());
        for p in parts {
            match p {
                Tensor::Cpu(t) => cpu.push(t),
            }
        }
        Ok(Tensor::Cpu(candle_core::Tensor::cat(&cpu, dim)?))
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
        self.reshape(&[b, c, h / p, p, w / p, p])?
            .permute(&[0, 2, 4, 1, 3, 5])?
            .reshape(&[b, (h / p) * (w / p), c * p * p])
    }

    // ---- arithmetic --------------------------------------------------------------------
    /// `x @ wᵀ + b` with `w` in the HF `[out, in]` layout, over any leading dims.
    pub fn linear(&self, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        match (self, w, b) {
            (Tensor::Cpu(x), Tensor::Cpu(w), None) => Ok(Tensor::Cpu(cpu::linear(x, w, None)?)),
            (Tensor::Cpu(x), Tensor::Cpu(w), Some(Tensor::Cpu(b))) => Ok(Tensor::Cpu(cpu::linear(x, w, Some(b))?)),
        }
    }

    /// Batched matmul over leading dims: `[.., m, k] @ [.., k, n]`.
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        binary!(self, rhs, a, b => a.matmul(b))
    }

    /// Element-wise sum; `rhs` may have fewer leading dims (broadcast from the right).
    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        binary!(self, rhs, a, b => a.broadcast_add(b))
    }

    pub fn mul(&self, rhs: &Tensor) -> Result<Tensor> {
        binary!(self, rhs, a, b => a.broadcast_mul(b))
    }

    pub fn scale(&self, s: f32) -> Result<Tensor> {
        unary!(self, t => t.affine(s as f64, 0.0))
    }

    pub fn layer_norm(&self, w: &Tensor, b: &Tensor, eps: f32) -> Result<Tensor> {
        match (self, w, b) {
            (Tensor::Cpu(x), Tensor::Cpu(w), Tensor::Cpu(b)) => Ok(Tensor::Cpu(candle_nn::ops::layer_norm(x, w, b, eps)?)),
        }
    }

    pub fn softmax_last(&self) -> Result<Tensor> {
        unary!(self, t => cpu::softmax_last(t))
    }

    pub fn act(&self, a: Activation) -> Result<Tensor> {
        unary!(self, t => cpu::act(t, a))
    }

    /// Scaled dot-product attention on `[B, H, N, d]` heads; `causal` masks the future.
    pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, causal: bool) -> Result<Tensor> {
        match (q, k, v) {
            (Tensor::Cpu(q), Tensor::Cpu(k), Tensor::Cpu(v)) => Ok(Tensor::Cpu(cpu::attention(q, k, v, causal)?)),
        }
    }

    /// Self-attention straight from a fused `[B, N, 3·H·d]` QKV projection (q, k, v each
    /// `[H, d]` per token): `[B, N, H·d]`, heads already merged. Saves the head split copies.
    pub fn attention_packed(qkv: &Tensor, heads: usize, causal: bool) -> Result<Tensor> {
        unary!(qkv, t => cpu::attention_packed(t, heads, causal))
    }

    /// Attention paid by token 0 (CLS) to tokens 1.., averaged over heads: `[B, N-1]`.
    pub fn cls_attention(q: &Tensor, k: &Tensor) -> Result<Tensor> {
        match (q, k) {
            (Tensor::Cpu(q), Tensor::Cpu(k)) => Ok(Tensor::Cpu(cpu::cls_attention(q, k)?)),
        }
    }

    // ---- selection ---------------------------------------------------------------------
    /// L2 norm over the last dim: `[.., D] -> [..]`.
    pub fn row_norms(&self) -> Result<Tensor> {
        unary!(self, t => t.sqr().and_then(|s| s.sum(candle_core::D::Minus1)).and_then(|s| s.sqrt()))
    }

    /// Per row of `[B, N]` scores, the `k` largest (ties: lower index first), returned in
    /// ascending index order as `u32 [B, k]`.
    pub fn topk_indices(&self, k: usize) -> Result<Tensor> {
        unary!(self, t => cpu::topk_indices(t, k))
    }

    /// Rows of `[B, N, D]` picked per batch item by `u32 [B, K]` indices: `[B, K, D]`.
    pub fn gather_rows(&self, idx: &Tensor) -> Result<Tensor> {
        binary!(self, idx, x, i => cpu::gather_rows(x, i))
    }

    /// Rows of a `[V, D]` table picked by `u32` ids of any shape: `[.., D]`.
    pub fn embedding(&self, ids: &Tensor) -> Result<Tensor> {
        binary!(self, ids, table, ids => cpu::embedding(table, ids))
    }

    /// Read back `u32` indices (kept-token lists for reports).
    pub fn to_vec_u32(&self) -> Result<Vec<u32>> {
        match self {
            Tensor::Cpu(t) => Ok(t.flatten_all()?.to_vec1::<u32>()?),
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
