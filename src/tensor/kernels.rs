//! CPU kernels on plain slices, where candle's generic ops leave time on the table:
//! softmax with a vectorisable exp, element-wise maps in parallel chunks, and attention on
//! the GEMM engine (heads in parallel instead of threads per small product). Linear layers
//! live in `cpu/gemm.rs`.

use rayon::prelude::*;

/// e^x for f32 with ≈1e-7 relative error, written so that loops over it vectorise
/// (no libm call, no branches): range reduction by ln 2, then a degree-6 polynomial.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0; // 1.5·2²³: adding and subtracting rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let kr = x * LOG2E + ROUND;
    // The integer k sits in kr's low mantissa bits: read it with integer ops (a float-to-int
    // cast is a saturating conversion that does not vectorise).
    let ki = kr.to_bits() as i32 - ROUND.to_bits() as i32;
    let k = kr - ROUND;
    let r = x - k * LN2_HI - k * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((ki + 127) as u32) << 23)
}

pub(crate) fn threads() -> usize {
    if cfg!(target_arch = "wasm32") {
        1
    } else {
        rayon::current_num_threads().max(1)
    }
}

/// Splits `len` elements into about one chunk per thread (multiples of `align`).
fn chunk(len: usize, align: usize) -> usize {
    let per = len.div_ceil(threads() * 4).max(4096);
    per.div_ceil(align.max(1)) * align.max(1)
}

/// Runs `f` compiled for AVX2+FMA when the CPU has them (the crate is built for baseline
/// x86-64, so the hot loops would otherwise vectorise only 4 wide).
#[inline(always)]
pub(crate) fn with_simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the features were just detected.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// A copy of `x` with `f` applied in place to chunks of it, in parallel, compiled for AVX2.
pub fn map_chunks(x: &[f32], f: impl Fn(&mut [f32]) + Sync) -> Vec<f32> {
    let mut y = x.to_vec();
    let c = chunk(x.len(), 8);
    y.par_chunks_mut(c).for_each(|y| with_simd(|| f(y)));
    y
}

/// Softmax of one row in place; entries past `valid` are set to 0 (causal masking).
#[inline(always)]
pub fn softmax_row(row: &mut [f32], valid: usize) {
    softmax_row_scaled(row, valid, 1.0)
}

/// Softmax of `scale · row` (`scale > 0`) in place; entries past `valid` are set to 0.
#[inline(always)]
pub fn softmax_row_scaled(row: &mut [f32], valid: usize, scale: f32) {
    let valid = valid.min(row.len());
    // Eight running maxima and sums, so that both reductions vectorise (a single float
    // accumulator is a serial chain the compiler may not reorder).
    let mut mx = [f32::NEG_INFINITY; 8];
    let (body, tail) = row[..valid].split_at(valid - valid % 8);
    for c in body.chunks_exact(8) {
        for (m, &v) in mx.iter_mut().zip(c) {
            *m = if v > *m { v } else { *m };
        }
    }
    let m = tail.iter().chain(&mx).fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    for v in &mut row[..valid] {
        *v = exp((*v - m) * scale);
    }
    let mut acc = [0f32; 8];
    let (body, tail) = row[..valid].split_at(valid - valid % 8);
    for c in body.chunks_exact(8) {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    let s: f32 = acc.iter().sum::<f32>() + tail.iter().sum::<f32>();
    let inv = 1.0 / s;
    row[..valid].iter_mut().for_each(|v| *v *= inv);
    row[valid..].iter_mut().for_each(|v| *v = 0.0);
}

pub fn softmax_rows(x: &[f32], n: usize) -> Vec<f32> {
    let mut y = x.to_vec();
    let n = n.max(1);
    y.par_chunks_mut(chunk(x.len(), n)).for_each(|c| with_simd(|| c.chunks_mut(n).for_each(|r| softmax_row(r, n))));
    y
}

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

/// softmax(q kᵀ / √d) v per (batch, head), heads run in parallel; writes `out` laid out as
/// `ol`. Both products run on the GEMM engine (`cpu::gemm`): the head's keys are packed as a
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
    out: &mut [f32],
    ol: HeadLayout,
) -> Result<(), String> {
    use super::cpu::gemm::{Epilogue, Kernel, PackedWeight, SendPtr};
    let AttnDims { batch, heads, nq, nk, d, causal } = dims;
    if [(q.len(), ql, nq), (k.len(), kl, nk), (v.len(), vl, nk), (out.len(), ol, nq)].iter().any(|&(len, l, n)| extent(l, batch, heads, n, d) > len)
        || ol.row_stride < d
    {
        return Err(format!("attention: buffers too small for {batch}x{heads}x{nq}x{nk}x{d}"));
    }
    let scale = 1.0 / (d as f32).sqrt();
    let kern = Kernel::best();
    let op = SendPtr(out.as_mut_ptr());
    (0..batch * heads).into_par_iter().try_for_each(|bh| {
        let (b, h) = (bh / heads, bh % heads);
        if nq <= FEW_QUERIES {
            // A decode step: packing the keys and values would cost as much as reading them
            // once, which is all the product does; dot products and axpys instead.
            let (qb, kb, vb, ob) = (ql.base(b, h), kl.base(b, h), vl.base(b, h), ol.base(b, h));
            let off = nk.saturating_sub(nq);
            with_simd(|| {
                let mut s = vec![0f32; nk];
                let mut o = vec![0f32; d];
                for i in 0..nq {
                    let qi = &q[qb + i * ql.row_stride..][..d];
                    for (j, sj) in s.iter_mut().enumerate() {
                        *sj = dot(qi, &k[kb + j * kl.row_stride..][..d]);
                    }
                    let valid = if causal { i + off + 1 } else { nk };
                    softmax_row_scaled(&mut s, valid, scale);
                    o.iter_mut().for_each(|v| *v = 0.0);
                    for (j, &p) in s[..valid.min(nk)].iter().enumerate() {
                        o.iter_mut().zip(&v[vb + j * vl.row_stride..][..d]).for_each(|(o, v)| *o += p * v);
                    }
                    // SAFETY: this head's output rows were checked above; no other head writes them.
                    unsafe { std::ptr::copy_nonoverlapping(o.as_ptr(), op.get().add(ob + i * ol.row_stride), d) };
                }
            });
            return Ok(());
        }
        let kp = PackedWeight::pack_rows(&k[kl.base(b, h)..], nk, d, kl.row_stride, kern)?;
        let mut s = vec![0f32; nq * nk];
        // SAFETY: `s` is [nq, nk]; the output rows of this head were checked above, and no
        // other head writes them.
        unsafe { kp.matmul_raw(&q[ql.base(b, h)..], nq, ql.row_stride, Epilogue::default(), s.as_mut_ptr(), nk, false)? };
        let off = nk.saturating_sub(nq);
        with_simd(|| {
            for (i, row) in s.chunks_mut(nk.max(1)).enumerate() {
                softmax_row_scaled(row, if causal { i + off + 1 } else { nk }, scale);
            }
        });
        let vp = PackedWeight::pack_kn(&v[vl.base(b, h)..], nk, d, vl.row_stride, kern)?;
        unsafe { vp.matmul_raw(&s, nq, nk, Epilogue::default(), op.get().add(ol.base(b, h)), ol.row_stride, false) }
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate() {
        for i in -8700..8800 {
            let x = i as f32 / 100.0;
            let (a, b) = (exp(x), x.exp());
            assert!(((a - b) / b).abs() < 3e-7, "exp({x}) = {a}, want {b}");
        }
    }
}
