//! Attention on plain slices: both products per head on the GEMM engine, heads in parallel;
//! with one or two queries (decoding) keys and values are read in place.

use super::row_ops::{softmax_block, softmax_row_scaled};
use super::scratch::Scratch;
use super::simd::multiversion;
use rayon::prelude::*;

/// Where the rows of one head live in a buffer: `base(b, h) + i · row_stride`.
#[derive(Clone, Copy, Debug)]
pub struct HeadLayout {
    pub batch_stride: usize,
    pub head_stride: usize,
    pub row_stride: usize,
    pub offset: usize,
}

impl HeadLayout {
    fn base(&self, b: usize, h: usize) -> usize {
        self.offset + b * self.batch_stride + h * self.head_stride
    }
    /// `[B, H, N, d]` contiguous.
    pub fn bhnd(heads: usize, n: usize, d: usize) -> Self {
        HeadLayout { batch_stride: heads * n * d, head_stride: n * d, row_stride: d, offset: 0 }
    }
    /// Part `which` (0 = q, 1 = k, 2 = v) of a fused `[B, N, 3, H, d]` projection.
    pub fn packed(which: usize, heads: usize, n: usize, d: usize) -> Self {
        HeadLayout { batch_stride: n * 3 * heads * d, head_stride: d, row_stride: 3 * heads * d, offset: which * heads * d }
    }
    /// `[B, N, H, d]` contiguous (= `[B, N, H·d]`).
    pub fn bnhd(heads: usize, n: usize, d: usize) -> Self {
        HeadLayout { batch_stride: n * heads * d, head_stride: d, row_stride: heads * d, offset: 0 }
    }
}

/// Shapes of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnDims {
    pub batch: usize,
    pub heads: usize,
    pub nq: usize,
    pub nk: usize,
    pub d: usize,
    pub causal: bool,
}

/// softmax(q kᵀ / √d + bias) v per (batch, head), heads run in parallel; writes `out` laid
/// out as `ol`. `key_bias` (`[batch, nk]`, or empty for none) is added to every query's logit
/// of each key: ToMe's proportional attention, log of the number of patches a token holds.
/// Both products run on the GEMM engine (`cpu::gemm`): the head's keys are packed as a
/// weight straight out of their layout (a fused QKV needs no copy), its values as the right
/// side `[nk, d]`, and the output is written in place through `ol`'s row stride.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &[f32],
    ql: HeadLayout,
    k: &[f32],
    kl: HeadLayout,
    v: &[f32],
    vl: HeadLayout,
    dims: AttnDims,
    key_bias: &[f32],
    out: &mut [f32],
    ol: HeadLayout,
) -> Result<(), String> {
    use super::gemm::{Epilogue, MicroKernel, PackedWeight, SendPtr};
    let AttnDims { batch, heads, nq, nk, d, causal } = dims;
    if [(q.len(), ql, nq), (k.len(), kl, nk), (v.len(), vl, nk), (out.len(), ol, nq)].iter().any(|&(len, l, n)| extent(l, batch, heads, n, d) > len)
        || ol.row_stride < d
    {
        return Err(format!("attention: buffers too small for {batch}x{heads}x{nq}x{nk}x{d}"));
    }
    if !key_bias.is_empty() && key_bias.len() != batch * nk {
        return Err(format!("attention: key bias has {} values for {batch} × {nk} keys", key_bias.len()));
    }
    let scale = 1.0 / (d as f32).sqrt();
    let kern = MicroKernel::best();
    let op = SendPtr(out.as_mut_ptr());
    (0..batch * heads).into_par_iter().try_for_each(|bh| {
        let (b, h) = (bh / heads, bh % heads);
        let bias = if key_bias.is_empty() { key_bias } else { &key_bias[b * nk..(b + 1) * nk] };
        if nq <= FEW_QUERIES {
            // A decode step: packing the keys and values would cost as much as reading them
            // once, which is all the product does; dot products and axpys instead.
            // SAFETY: this head's output rows were checked above; no other head writes them.
            unsafe {
                attend_few(
                    &q[ql.base(b, h)..],
                    ql.row_stride,
                    &k[kl.base(b, h)..],
                    kl.row_stride,
                    &v[vl.base(b, h)..],
                    vl.row_stride,
                    dims,
                    bias,
                    op.get().add(ol.base(b, h)),
                    ol.row_stride,
                )
            };
            return Ok(());
        }
        let kp = PackedWeight::pack_rows(&k[kl.base(b, h)..], nk, d, kl.row_stride, kern)?;
        // Every score is written by the product (reused buffer, stale contents).
        let mut s = Scratch::<f32>::new(nq * nk);
        // SAFETY: `s` is [nq, nk]; the output rows of this head were checked above, and no
        // other head writes them.
        unsafe { kp.matmul_raw(&q[ql.base(b, h)..], nq, ql.row_stride, Epilogue::default(), s.as_mut_ptr(), nk, false)? };
        add_key_bias(&mut s, bias, scale);
        softmax_block(&mut s, nk, causal, nk.saturating_sub(nq), scale);
        let vp = PackedWeight::pack_kn(&v[vl.base(b, h)..], nk, d, vl.row_stride, kern)?;
        unsafe { vp.matmul_raw(&s, nq, nk, Epilogue::default(), op.get().add(ol.base(b, h)), ol.row_stride, false) }
    })
}

/// One head's attention for a few queries: `q`, `k`, `v` rows `*s` apart from the head's
/// first, output rows `os` apart from `o`.
///
/// # Safety
/// `o + i·os .. + d` is writable for every query `i < dims.nq`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn attend_few_body(q: &[f32], qs: usize, k: &[f32], ks: usize, v: &[f32], vs: usize, dims: AttnDims, bias: &[f32], o: *mut f32, os: usize) {
    let AttnDims { nq, nk, d, causal, .. } = dims;
    let scale = 1.0 / (d as f32).sqrt();
    let off = nk.saturating_sub(nq);
    let mut s = vec![0f32; nk];
    let mut acc = vec![0f32; d];
    for i in 0..nq {
        let qi = &q[i * qs..][..d];
        for (j, sj) in s.iter_mut().enumerate() {
            *sj = dot(qi, &k[j * ks..][..d]);
        }
        add_key_bias(&mut s, bias, scale);
        let valid = if causal { i + off + 1 } else { nk };
        softmax_row_scaled(&mut s, valid, scale);
        acc.iter_mut().for_each(|v| *v = 0.0);
        for (j, &p) in s[..valid.min(nk)].iter().enumerate() {
            acc.iter_mut().zip(&v[j * vs..][..d]).for_each(|(a, v)| *a += p * v);
        }
        std::ptr::copy_nonoverlapping(acc.as_ptr(), o.add(i * os), d);
    }
}

multiversion! {
    /// [`attend_few_body`] for the CPU's vector width.
    unsafe fn attend_few(q: &[f32], qs: usize, k: &[f32], ks: usize, v: &[f32], vs: usize, dims: AttnDims, bias: &[f32], o: *mut f32, os: usize) = attend_few_body;
}

/// Adds `bias[j]` (one per key; none when empty) to every row's logit j of `s` `[rows, nk]`,
/// which holds logits before the softmax's `scale`: so `bias / scale` is added.
fn add_key_bias(s: &mut [f32], bias: &[f32], scale: f32) {
    if bias.is_empty() {
        return;
    }
    let inv = 1.0 / scale;
    for row in s.chunks_exact_mut(bias.len()) {
        row.iter_mut().zip(bias).for_each(|(v, &b)| *v += b * inv);
    }
}

/// Queries per head up to which attention reads keys and values in place instead of packing
/// them for the GEMM engine.
const FEW_QUERIES: usize = 2;

/// Dot product with eight partial sums, so that it vectorises.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let n = a.len().min(b.len());
    let split = n - n % 8;
    for (x, y) in a[..split].chunks_exact(8).zip(b[..split].chunks_exact(8)) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + a[split..n].iter().zip(&b[split..n]).map(|(x, y)| x * y).sum::<f32>()
}

/// The last index each layout touches, to check slices before the unsafe reads.
pub fn extent(l: HeadLayout, batch: usize, heads: usize, n: usize, d: usize) -> usize {
    if batch == 0 || heads == 0 || n == 0 {
        return 0;
    }
    l.base(batch - 1, heads - 1) + (n - 1) * l.row_stride + d
}
