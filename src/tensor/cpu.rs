//! CPU backend: candle-core tensors. Ops candle already has are called directly from
//! `mod.rs`; the ones here need a little composition or host-side index work.

use super::Activation;
use candle_core::{DType, Result, Tensor, D};

pub(crate) fn simd_name() -> &'static str {
    #[cfg(target_arch = "wasm32")]
    {
        if cfg!(target_feature = "simd128") {
            "wasm simd128"
        } else {
            "wasm scalar"
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            "avx512"
        } else if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            "avx2+fma"
        } else {
            "sse"
        }
    }
    #[cfg(not(any(target_arch = "wasm32", target_arch = "x86_64")))]
    {
        "native"
    }
}

/// `x @ wᵀ + b`. The leading dims are folded into one so that gemm sees a single large
/// matrix (one call, packed once) instead of a batch of small ones.
pub(crate) fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let (lead, k) = dims.split_at(dims.len().saturating_sub(1));
    let m: usize = lead.iter().product();
    let x2 = x.reshape((m, k.first().copied().unwrap_or(1)))?;
    let mut y = x2.matmul(&w.t()?)?;
    if let Some(b) = b {
        y = y.broadcast_add(b)?;
    }
    let mut out = lead.to_vec();
    out.push(w.dim(0)?);
    y.reshape(out)
}

pub(crate) fn act(x: &Tensor, a: Activation) -> Result<Tensor> {
    match a {
        // CLIP's x·σ(1.702x) (Hendrycks & Gimpel's sigmoid approximation of GELU).
        Activation::QuickGelu => x.mul(&candle_nn::ops::sigmoid(&x.affine(1.702, 0.0)?)?),
        Activation::Gelu => x.gelu_erf(),
        Activation::GeluTanh => x.gelu(),
        Activation::Silu => x.silu(),
    }
}

pub(crate) fn attention(q: &Tensor, k: &Tensor, v: &Tensor, causal: bool) -> Result<Tensor> {
    let d = q.dim(D::Minus1)?;
    let scale = 1.0 / (d as f64).sqrt();
    let mut s = (q.matmul(&k.t()?)? * scale)?;
    if causal {
        let n = q.dim(D::Minus2)?;
        let m = k.dim(D::Minus2)?;
        s = s.broadcast_add(&causal_mask(n, m, q.device())?)?;
    }
    candle_nn::ops::softmax_last_dim(&s)?.matmul(v)
}

/// Additive mask: query i (of the last n) may see keys 0..=i+(m-n).
fn causal_mask(n: usize, m: usize, dev: &candle_core::Device) -> Result<Tensor> {
    let off = m.saturating_sub(n);
    let mask: Vec<f32> = (0..n)
        .flat_map(|i| (0..m).map(move |j| if j <= i + off { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Tensor::from_vec(mask, (n, m), dev)
}

pub(crate) fn cls_attention(q: &Tensor, k: &Tensor) -> Result<Tensor> {
    let d = q.dim(D::Minus1)?;
    let n = k.dim(D::Minus2)?;
    let q0 = q.narrow(2, 0, 1)?;
    let s = (q0.matmul(&k.t()?)? * (1.0 / (d as f64).sqrt()))?;
    let p = candle_nn::ops::softmax_last_dim(&s)?; // [B, H, 1, N]
    p.squeeze(2)?.mean(1)?.narrow(1, 1, n - 1)
}

pub(crate) fn topk_indices(scores: &Tensor, k: usize) -> Result<Tensor> {
    let (b, n) = scores.dims2()?;
    if k == 0 || k > n {
        candle_core::bail!("top-k: k = {k} outside 1..={n}");
    }
    let rows = scores.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let mut out = Vec::with_capacity(b * k);
    for row in rows {
        out.extend(crate::prune::top_k_ascending(&row, k));
    }
    Tensor::from_vec(out, (b, k), scores.device())
}

pub(crate) fn gather_rows(x: &Tensor, idx: &Tensor) -> Result<Tensor> {
    let (b, n, d) = x.dims3()?;
    let (bi, k) = idx.dims2()?;
    if bi != b {
        candle_core::bail!("gather_rows: {b} rows of data but {bi} rows of indices");
    }
    let host = idx.to_vec2::<u32>()?;
    let mut flat = Vec::with_capacity(b * k);
    for (row, ids) in host.iter().enumerate() {
        for &i in ids {
            if i as usize >= n {
                candle_core::bail!("gather_rows: index {i} out of range 0..{n}");
            }
            flat.push((row * n) as u32 + i);
        }
    }
    let flat = Tensor::from_vec(flat, b * k, x.device())?;
    x.reshape((b * n, d))?.index_select(&flat, 0)?.reshape((b, k, d))
}

pub(crate) fn embedding(table: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let (v, d) = table.dims2()?;
    let flat = ids.flatten_all()?;
    if let Some(bad) = flat.to_vec1::<u32>()?.into_iter().find(|&i| i as usize >= v) {
        candle_core::bail!("embedding: id {bad} out of range 0..{v}");
    }
    let mut shape = ids.dims().to_vec();
    shape.push(d);
    table.index_select(&flat, 0)?.reshape(shape)
}
