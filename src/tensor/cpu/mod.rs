//! CPU backend: candle-core tensors. Simple ops are candle's own (called from `mod.rs`); the
//! hot ones run ours through candle's custom-op hooks: the GEMM engine (`gemm/`), the row
//! kernels (`row_ops.rs`), attention (`attention.rs`), the scan loops (`scan.rs`) and Token
//! Merging's matching (`tome.rs`), on the shared SIMD helpers of `simd.rs`.

pub(crate) mod aligned;
pub mod attention;
pub mod gemm;
pub mod row_ops;
pub mod scan;
pub(crate) mod scratch;
pub mod simd;
pub mod tome;

use super::Activation;
use attention::{AttnDims, HeadLayout};
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor, D};

pub(crate) fn simd_name() -> &'static str {
    #[cfg(target_arch = "wasm32")]
    {
        if cfg!(target_feature = "relaxed-simd") {
            "wasm simd128+relaxed"
        } else if cfg!(target_feature = "simd128") {
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

/// The f32 elements of a contiguous tensor's storage.
fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { bail!("{what}: expected f32 data") };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => bail!("{what}: expected a contiguous tensor"),
    }
}

struct Linear;

impl Linear {
    fn run(x: (&CpuStorage, &Layout), w: (&CpuStorage, &Layout), b: Option<(&CpuStorage, &Layout)>) -> Result<(CpuStorage, Shape)> {
        let dims = x.1.dims();
        let k = *dims.last().unwrap_or(&1);
        let m = x.1.shape().elem_count() / k.max(1);
        let (n, wk) = w.1.shape().dims2()?;
        if wk != k {
            bail!("linear: input has {k} features but the weight is [{n}, {wk}]");
        }
        if let Some((_, bl)) = b {
            if bl.shape().elem_count() != n {
                bail!("linear: bias has {} values for {n} outputs", bl.shape().elem_count());
            }
        }
        let bias = match b {
            Some((s, l)) => Some(slice(s, l, "linear bias")?),
            None => None,
        };
        let xs = slice(x.0, x.1, "linear input")?;
        let Some((a, z)) = w.1.contiguous_offsets() else { bail!("linear weight: expected a contiguous tensor") };
        let kern = gemm::MicroKernel::best();
        let p = match w.0 {
            CpuStorage::BF16(v) => gemm::PackedWeight::pack_half(gemm::HalfSlice::Bf16(&v[a..z]), n, k, kern),
            CpuStorage::F16(v) => gemm::PackedWeight::pack_half(gemm::HalfSlice::F16(&v[a..z]), n, k, kern),
            _ => gemm::PackedWeight::pack(slice(w.0, w.1, "linear weight")?, n, k, kern),
        }
        .map_err(candle_core::Error::msg)?;
        let y = p.matmul_new(xs, m, k, gemm::Epilogue { bias, ..Default::default() }).map_err(candle_core::Error::msg)?;
        let mut out = dims.to_vec();
        if let Some(last) = out.last_mut() {
            *last = n;
        }
        Ok((CpuStorage::F32(y), Shape::from(out)))
    }
}

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "effarch-linear"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        Linear::run((s1, l1), (s2, l2), None)
    }
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "effarch-linear-bias"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        Linear::run((s1, l1), (s2, l2), Some((s3, l3)))
    }
}

/// `x @ wᵀ + b` over any leading dims for a weight that was not packed at load
/// (`LinearWeight` packs its own once): the GEMM engine, the weight packed per call.
pub(crate) fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    match b {
        Some(b) => x.apply_op3_no_bwd(&w, &b.contiguous()?, &Linear),
        None => x.apply_op2_no_bwd(&w, &Linear),
    }
}

/// An activation on its own, with the same code as the GEMM epilogue's (`gemm::apply_act`),
/// in parallel chunks.
struct Act(Activation);

impl CustomOp1 for Act {
    fn name(&self) -> &'static str {
        "effarch-act"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        Ok((CpuStorage::F32(simd::map_chunks(slice(s, l, "activation")?, |v| gemm::act_in_place(v, self.0))), l.shape().clone()))
    }
}

pub(crate) fn act(x: &Tensor, a: Activation) -> Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&Act(a))
}

struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "effarch-softmax"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let n = *l.dims().last().unwrap_or(&1);
        Ok((CpuStorage::F32(row_ops::softmax_rows(slice(s, l, "softmax")?, n)), l.shape().clone()))
    }
}

pub(crate) fn softmax_last(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&Softmax)
}

/// Attention on separate `[B, H, N, d]` q, k, v.
struct Attention {
    causal: bool,
}

/// Self-attention read straight from a fused `[B, N, 3·H·d]` QKV projection.
struct PackedAttention<'a> {
    heads: usize,
    causal: bool,
    key_bias: &'a [f32],
}

fn check_extent(len: usize, l: HeadLayout, b: usize, h: usize, n: usize, d: usize, what: &str) -> Result<()> {
    if attention::extent(l, b, h, n, d) > len {
        bail!("attention: {what} buffer too small for {b}x{h}x{n}x{d}");
    }
    Ok(())
}

impl CustomOp1 for PackedAttention<'_> {
    fn name(&self) -> &'static str {
        "effarch-attention-packed"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let heads = self.heads;
        let (b, n, three_h) = l.shape().dims3()?;
        if heads == 0 || three_h % (3 * heads) != 0 {
            bail!("attention: fused width {three_h} is not 3 × {heads} heads");
        }
        let d = three_h / (3 * heads);
        let qkv = slice(s, l, "attention qkv")?;
        let (ql, kl, vl) = (HeadLayout::packed(0, heads, n, d), HeadLayout::packed(1, heads, n, d), HeadLayout::packed(2, heads, n, d));
        for (lay, what) in [(ql, "q"), (kl, "k"), (vl, "v")] {
            check_extent(qkv.len(), lay, b, heads, n, d, what)?;
        }
        let mut out = vec![0f32; b * n * heads * d];
        let dims = AttnDims { batch: b, heads, nq: n, nk: n, d, causal: self.causal };
        attention::attention(qkv, ql, qkv, kl, qkv, vl, dims, self.key_bias, &mut out, HeadLayout::bnhd(heads, n, d)).map_err(candle_core::Error::msg)?;
        Ok((CpuStorage::F32(out), Shape::from((b, n, heads * d))))
    }
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "effarch-attention"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, h, nq, d) = l1.shape().dims4()?;
        let (b2, h2, nk, d2) = l2.shape().dims4()?;
        if (b2, h2, d2) != (b, h, d) || l3.dims() != l2.dims() {
            bail!("attention: q {:?}, k {:?}, v {:?} do not fit", l1.dims(), l2.dims(), l3.dims());
        }
        let (q, k, v) = (slice(s1, l1, "q")?, slice(s2, l2, "k")?, slice(s3, l3, "v")?);
        let mut out = vec![0f32; b * h * nq * d];
        let dims = AttnDims { batch: b, heads: h, nq, nk, d, causal: self.causal };
        let (ql, kl) = (HeadLayout::bhnd(h, nq, d), HeadLayout::bhnd(h, nk, d));
        attention::attention(q, ql, k, kl, v, kl, dims, &[], &mut out, ql).map_err(candle_core::Error::msg)?;
        Ok((CpuStorage::F32(out), Shape::from((b, h, nq, d))))
    }
}

pub(crate) fn attention(q: &Tensor, k: &Tensor, v: &Tensor, causal: bool) -> Result<Tensor> {
    let (h, g) = (q.dim(1)?, k.dim(1)?);
    // Grouped-query attention: repeat each key/value head for its query heads.
    let expand = |t: &Tensor| -> Result<Tensor> {
        if g == h || g == 0 || h % g != 0 {
            return t.contiguous();
        }
        let (b, _, n, d) = t.dims4()?;
        t.unsqueeze(2)?.expand((b, g, h / g, n, d))?.reshape((b, h, n, d))
    };
    q.contiguous()?.apply_op3_no_bwd(&expand(k)?, &expand(v)?, &Attention { causal })
}

pub(crate) fn attention_packed(qkv: &Tensor, heads: usize, causal: bool, key_bias: &[f32]) -> Result<Tensor> {
    qkv.contiguous()?.apply_op1_no_bwd(&PackedAttention { heads, causal, key_bias })
}

pub(crate) fn cls_attention(q: &Tensor, k: &Tensor) -> Result<Tensor> {
    let d = q.dim(D::Minus1)?;
    let n = k.dim(D::Minus2)?;
    let q0 = q.narrow(2, 0, 1)?;
    let s = (q0.matmul(&k.t()?)? * (1.0 / (d as f64).sqrt()))?;
    let p = softmax_last(&s)?; // [B, H, 1, N]
    p.squeeze(2)?.mean(1)?.narrow(1, 1, n - 1)
}

pub(crate) fn topk_indices(scores: &Tensor, k: usize) -> Result<Tensor> {
    let (b, n) = scores.dims2()?;
    if k == 0 || k > n {
        bail!("top-k: k = {k} outside 1..={n}");
    }
    let rows = scores.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let mut out = Vec::with_capacity(b * k);
    for row in rows {
        out.extend(crate::num::top_k_ascending(&row, k));
    }
    Tensor::from_vec(out, (b, k), scores.device())
}

pub(crate) fn gather_rows(x: &Tensor, idx: &Tensor) -> Result<Tensor> {
    let (b, n, d) = x.dims3()?;
    let (bi, k) = idx.dims2()?;
    if bi != b {
        bail!("gather_rows: {b} rows of data but {bi} rows of indices");
    }
    let host = idx.to_vec2::<u32>()?;
    let mut flat = Vec::with_capacity(b * k);
    for (row, ids) in host.iter().enumerate() {
        for &i in ids {
            if i as usize >= n {
                bail!("gather_rows: index {i} out of range 0..{n}");
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
        bail!("embedding: id {bad} out of range 0..{v}");
    }
    let mut shape = ids.dims().to_vec();
    shape.push(d);
    table.index_select(&flat, 0)?.reshape(shape)
}

/// Rotary embedding on `[N, H, d]` with per-token `cos`/`sin` `[N, d/2]` (see `Tensor::rope`).
pub(crate) fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let &[n, h, d] = &dims[..] else {
        return Err(candle_core::Error::Msg(format!("rope: input {dims:?} is not [N, H, d]")));
    };
    let half = d / 2;
    if d % 2 != 0 || cos.dims() != [n, half] || sin.dims() != [n, half] {
        return Err(candle_core::Error::Msg(format!("rope: input {dims:?}, cos {:?}, sin {:?} do not agree", cos.dims(), sin.dims())));
    }
    let (xv, c, s) = (x.flatten_all()?.to_vec1::<f32>()?, cos.flatten_all()?.to_vec1::<f32>()?, sin.flatten_all()?.to_vec1::<f32>()?);
    let mut y = vec![0f32; xv.len()];
    for (r, (src, dst)) in xv.chunks(d.max(1)).zip(y.chunks_mut(d.max(1))).enumerate() {
        let t = r / h.max(1);
        let (ct, st) = (&c[t * half..(t + 1) * half], &s[t * half..(t + 1) * half]);
        for i in 0..half {
            let (a, b) = (src[i], src[i + half]);
            dst[i] = a * ct[i] - b * st[i];
            dst[i + half] = b * ct[i] + a * st[i];
        }
    }
    Tensor::from_vec(y, dims, x.device())
}

/// Reads a tensor's f32 values as one slice when its layout is contiguous (else a copy).
pub(crate) fn with_f32<R>(t: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = if t.is_contiguous() { t.clone() } else { t.contiguous()? };
    let (s, l) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cs) = &*s else { bail!("{what}: expected a CPU tensor") };
    f(slice(cs, l, what)?)
}

/// LayerNorm over the last dim (`w`, `b` `[n]`) with our vectorised kernel.
pub(crate) fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f32) -> Result<Tensor> {
    let n = *x.dims().last().unwrap_or(&1);
    let y = with_f32(x, "layer_norm input", |xs| {
        with_f32(w, "layer_norm weight", |ws| {
            with_f32(b, "layer_norm bias", |bs| row_ops::layer_norm_rows(xs, ws, bs, n, eps).map_err(candle_core::Error::msg))
        })
    })?;
    Tensor::from_vec(y, x.dims(), &candle_core::Device::Cpu)
}

/// `act(x @ wᵀ + b) + res` through the GEMM engine, with `w` packed at load; the bias, the
/// activation and the residual are applied in the tile epilogue.
pub(crate) fn linear_packed(x: &Tensor, w: &gemm::PackedWeight, b: Option<&Tensor>, act: Option<Activation>, res: Option<&Tensor>) -> Result<Tensor> {
    linear_packed_normed(x, None, w, b, act, res)
}

/// [`linear_packed`] on `layer_norm(x)` (`norm`: weight, bias, eps), the norm applied while
/// the input is packed: no normalised copy of `x` is made.
pub(crate) fn linear_packed_normed(
    x: &Tensor,
    norm: Option<(&Tensor, &Tensor, f32)>,
    w: &gemm::PackedWeight,
    b: Option<&Tensor>,
    act: Option<Activation>,
    res: Option<&Tensor>,
) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let k = *dims.last().unwrap_or(&1);
    if k != w.k() {
        bail!("linear: input has {k} features but the weight is [{}, {}]", w.n(), w.k());
    }
    let m = x.elem_count() / k.max(1);
    let n = w.n();
    let mut out = dims.clone();
    if let Some(last) = out.last_mut() {
        *last = n;
    }
    if let Some(r) = res {
        if r.dims() != out.as_slice() {
            bail!("linear: residual {:?} does not match the output {out:?}", r.dims());
        }
    }
    let mut y = Vec::new();
    with_f32(x, "linear input", |xs| {
        let mut run = |bias: Option<&[f32]>, res: Option<&[f32]>| -> Result<()> {
            y = match norm {
                None => w.matmul_new(xs, m, k, gemm::Epilogue { bias, act, res, norm: None }),
                Some((nw, nb, eps)) => with_f32(nw, "layer_norm weight", |nw| {
                    with_f32(nb, "layer_norm bias", |nb| {
                        Ok(w.matmul_new(xs, m, k, gemm::Epilogue { bias, act, res, norm: Some(gemm::Norm { w: nw, b: nb, eps }) }))
                    })
                })?,
            }
            .map_err(candle_core::Error::msg)?;
            Ok(())
        };
        match (b, res) {
            (None, None) => run(None, None),
            (Some(b), None) => with_f32(b, "linear bias", |bs| run(Some(bs), None)),
            (None, Some(r)) => with_f32(r, "linear residual", |rs| run(None, Some(rs))),
            (Some(b), Some(r)) => with_f32(b, "linear bias", |bs| with_f32(r, "linear residual", |rs| run(Some(bs), Some(rs)))),
        }
    })?;
    Tensor::from_vec(y, out, &candle_core::Device::Cpu)
}
