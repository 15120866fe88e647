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
pub mod ssm;

use crate::error::{Error, Result};
use gpu::{GpuContext, GpuDtype, GpuTensor};
use std::sync::Arc;

/// Where tensors live and ops run.
#[derive(Clone, Debug, Default)]
pub enum Device {
    /// candle-core on the host: gemm with AVX/FMA natively, SIMD128 in wasm.
    #[default]
    Cpu,
    /// wgpu with our WGSL kernels: Vulkan/Metal/DX12 natively, WebGPU in the browser.
    Gpu(Arc<GpuContext>),
}

impl PartialEq for Device {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Device::Cpu, Device::Cpu) => true,
            (Device::Gpu(a), Device::Gpu(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Device {
    /// The device to run on when the user has not chosen: the GPU when an adapter exists,
    /// else the CPU. Natively a software adapter (llvmpipe/lavapipe, WARP) is passed over, as
    /// our CPU kernels are far faster than it; in the browser any WebGPU adapter is taken, so
    /// the page shows the WebGPU path wherever the browser has one. [`Device::describe`] says
    /// which adapter was picked and whether it is a software one.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn best() -> Device {
        pollster::block_on(Self::best_async())
    }

    pub async fn best_async() -> Device {
        match GpuContext::new().await {
            Ok(c) if !(c.adapter.software && cfg!(not(target_arch = "wasm32"))) => Device::Gpu(c),
            _ => Device::Cpu,
        }
    }

    /// A GPU device on the first adapter; an error (naming why) when there is none.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn gpu() -> Result<Device> {
        Ok(Device::Gpu(GpuContext::new_blocking()?))
    }

    pub async fn gpu_async() -> Result<Device> {
        Ok(Device::Gpu(GpuContext::new().await?))
    }

    /// A GPU device that stores linear weights as f16 (`f16 = true`) or f32.
    pub async fn gpu_with(f16: bool) -> Result<Device> {
        Ok(Device::Gpu(GpuContext::new_with(f16).await?))
    }

    /// A short human-readable name for reports ("cpu (candle-core, avx2+fma)").
    pub fn describe(&self) -> String {
        match self {
            Device::Cpu => format!("cpu (candle-core, {})", cpu::simd_name()),
            Device::Gpu(c) => format!(
                "gpu (wgpu, {}, {}{}{})",
                c.adapter.name,
                c.adapter.backend,
                if c.adapter.software { ", software adapter" } else { "" },
                if c.f16_weights { ", f16 weights" } else { "" }
            ),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Gpu(_) => "gpu",
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
            Device::Cpu => Ok(Tensor::Cpu(candle_core::Tensor::from_vec(data, shape, &candle_core::Device::Cpu)?)),
            Device::Gpu(c) => Ok(Tensor::Gpu(c.clone(), c.upload(&data, shape)?)),
        }
    }

    pub fn from_u32(data: Vec<u32>, shape: &[usize], device: &Device) -> Result<Tensor> {
        check_len(data.len(), shape)?;
        match device {
            Device::Cpu => Ok(Tensor::Cpu(candle_core::Tensor::from_vec(data, shape, &candle_core::Device::Cpu)?)),
            Device::Gpu(c) => Ok(Tensor::Gpu(c.clone(), c.upload_u32(&data, shape)?)),
        }
    }

    pub fn device(&self) -> Device {
        match self {
            Tensor::Cpu(_) => Device::Cpu,
            Tensor::Gpu(c, _) => Device::Gpu(c.clone()),
        }
    }

    pub fn shape(&self) -> Vec<usize> {
        match self {
            Tensor::Cpu(t) => t.dims().to_vec(),
            Tensor::Gpu(_, g) => g.shape.clone(),
        }
    }

    pub fn dim(&self, i: usize) -> usize {
        self.shape().get(i).copied().unwrap_or(1)
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

    /// Batched matmul over leading dims: `[.., m, k] @ [.., k, n]`.
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        match (self, rhs) {
            (Tensor::Cpu(a), Tensor::Cpu(b)) => Ok(Tensor::Cpu(a.matmul(b)?)),
            (Tensor::Gpu(c, a), Tensor::Gpu(..)) => {
                let r = rhs.shape().len();
                if r < 2 {
                    return Err(Error::arg(format!("matmul: rhs {:?} needs 2+ dims", rhs.shape())));
                }
                let mut perm: Vec<usize> = (0..r).collect();
                perm.swap(r - 2, r - 1);
                let Tensor::Gpu(_, bt) = rhs.permute(&perm)? else {
                    return Err(mixed());
                };
                Ok(Tensor::Gpu(c.clone(), gpu::linear::matmul_nt(c, a, &bt)?))
            }
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
            (Tensor::Cpu(x), Tensor::Cpu(w), Tensor::Cpu(b)) => Ok(Tensor::Cpu(candle_nn::ops::layer_norm(x, w, b, eps)?)),
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
        unary!(qkv, t => cpu::attention_packed(t, heads, causal), c, g => gpu::attention::attention_packed(c, g, heads, causal))
    }

    /// Attention paid by token 0 (CLS) to tokens 1.., averaged over heads: `[B, N-1]`.
    /// `q`, `k`: `[B, H, N, d]`.
    pub fn cls_attention(q: &Tensor, k: &Tensor) -> Result<Tensor> {
        match (q, k) {
            (Tensor::Cpu(q), Tensor::Cpu(k)) => Ok(Tensor::Cpu(cpu::cls_attention(q, k)?)),
            (Tensor::Gpu(c, _), Tensor::Gpu(_, kg)) => {
                let &[b, h, n, d] = &q.shape()[..] else {
                    return Err(Error::arg(format!("cls_attention: q {:?} must be [B, H, N, d]", q.shape())));
                };
                if n < 2 {
                    return Err(Error::arg("cls_attention needs CLS and at least one patch"));
                }
                let Tensor::Gpu(_, q0) = q.narrow(2, 0, 1)? else {
                    return Err(mixed());
                };
                let scores = Tensor::Gpu(c.clone(), gpu::linear::matmul_nt(c, &q0, kg)?).scale(1.0 / (d as f32).sqrt())?;
                let probs = scores.softmax_last()?.reshape(&[b, h, n])?.permute(&[0, 2, 1])?;
                let Tensor::Gpu(_, pg) = probs else {
                    return Err(mixed());
                };
                Tensor::Gpu(c.clone(), gpu::rows::rows(c, &pg, None, gpu::rows::RowOp::Mean)?).narrow(1, 1, n - 1)
            }
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

/// A linear layer's `[out, in]` weight (HF layout), stored for the device it lives on: one
/// tensor (f32, or packed f16 on a GPU context made with f16 weights), or, when the weight is
/// larger than the GPU's storage-buffer binding limit, blocks of output rows that each fit,
/// run one linear per block and concatenated (the adapter's limits are respected by splitting
/// the work, not by failing).
#[derive(Clone, Debug)]
pub struct LinearWeight {
    parts: Vec<Tensor>,
}

impl LinearWeight {
    pub fn new(data: Vec<f32>, shape: [usize; 2], device: &Device) -> Result<LinearWeight> {
        let [out, inp] = shape;
        if data.len() != out * inp {
            return Err(Error::arg(format!("linear weight: {} values for [{out}, {inp}]", data.len())));
        }
        let Device::Gpu(c) = device else {
            return Ok(LinearWeight { parts: vec![Tensor::from_f32(data, &shape, device)?] });
        };
        let f16 = c.f16_weights && inp % 2 == 0;
        let row_bytes = (inp * if f16 { 2 } else { 4 }).max(1) as u64;
        let rows = (c.max_binding() / row_bytes).max(1) as usize;
        let parts = data
            .chunks((rows * inp).max(1))
            .map(|d| {
                let s = [d.len() / inp.max(1), inp];
                let g = if f16 { c.upload_f16(d, &s)? } else { c.upload(d, &s)? };
                Ok(Tensor::Gpu(c.clone(), g))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(LinearWeight { parts })
    }

    /// A weight kept in half precision at rest on the CPU (`bits`: the little-endian f16 or
    /// bf16 values); multiplied in f32 block by block. On a GPU it is converted (f32, or the
    /// context's f16 storage).
    pub fn from_half(bits: &[u8], bf16: bool, shape: [usize; 2], device: &Device) -> Result<LinearWeight> {
        let [out, inp] = shape;
        if bits.len() != out * inp * 2 {
            return Err(Error::arg(format!("linear weight: {} bytes for half [{out}, {inp}]", bits.len())));
        }
        let cpu = &candle_core::Device::Cpu;
        let t = match (device, bf16) {
            (Device::Cpu, true) => {
                candle_core::Tensor::from_vec(bits.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]])).collect::<Vec<_>>(), &shape, cpu)?
            }
            (Device::Cpu, false) => {
                candle_core::Tensor::from_vec(bits.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]])).collect::<Vec<_>>(), &shape, cpu)?
            }
            (Device::Gpu(_), _) => {
                let f: Vec<f32> = if bf16 {
                    bits.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
                } else {
                    bits.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
                };
                return LinearWeight::new(f, shape, device);
            }
        };
        Ok(LinearWeight { parts: vec![Tensor::Cpu(t)] })
    }

    /// Whether the weight is held in half precision (f16/bf16 at rest on the CPU, or packed
    /// f16 on a GPU context with f16 weights).
    pub fn is_half(&self) -> bool {
        self.parts.iter().all(|p| match p {
            Tensor::Cpu(t) => matches!(t.dtype(), candle_core::DType::BF16 | candle_core::DType::F16),
            Tensor::Gpu(_, g) => g.dtype == GpuDtype::F16,
        })
    }

    /// [`LinearWeight::forward`] on `rows` host rows (read back to the host): for models whose
    /// glue between projections runs on host slices.
    pub fn forward_rows(&self, x: Vec<f32>, rows: usize, b: Option<&Tensor>, device: &Device) -> Result<Vec<f32>> {
        let k = x.len() / rows.max(1);
        self.forward(&Tensor::from_f32(x, &[rows, k], device)?, b)?.to_vec_f32()
    }

    /// Number of row blocks (1 unless the weight had to be split).
    pub fn blocks(&self) -> usize {
        self.parts.len()
    }

    /// `x @ wᵀ + b` over any leading dims.
    pub fn forward(&self, x: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        if let [w] = &self.parts[..] {
            return x.linear(w, b);
        }
        let mut outs = Vec::with_capacity(self.parts.len());
        let mut start = 0;
        for w in &self.parts {
            let n = w.dim(0);
            let bias = b.map(|b| b.narrow(0, start, n)).transpose()?;
            outs.push(x.linear(w, bias.as_ref())?);
            start += n;
        }
        let last = x.shape().len().saturating_sub(1);
        Tensor::cat(&outs.iter().collect::<Vec<_>>(), last)
    }
}

/// Runs model code written once as `async` (it awaits only read-backs) to completion from
/// synchronous code. Natively this waits for the device. In the browser nothing may block:
/// a CPU future is ready on its first poll, and one still waiting for WebGPU is an error
/// that points to the async API.
pub fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        pollster::block_on(f)
    }
    #[cfg(target_arch = "wasm32")]
    {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(r) => r,
            std::task::Poll::Pending => {
                Err(Error::Backend("WebGPU results are read back asynchronously in the browser: use the async API (e.g. Clip::run_async)".into()))
            }
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
