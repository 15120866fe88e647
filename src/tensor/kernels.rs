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

/// Threads the CPU kernels split work over: rayon's pool natively and in the threaded wasm
/// build (shared memory, `initThreadPool`); 1 in the single-threaded wasm build.
pub(crate) fn threads() -> usize {
    if cfg!(target_arch = "wasm32") && !cfg!(target_feature = "atomics") {
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

/// `multiversion!(pub fn name(a: A, …) -> R = body;)` defines `name`, which runs `body` (an
/// `#[inline(always)]` fn taking the same arguments) compiled for AVX-512F, for AVX2+FMA or
/// for the baseline, as the CPU allows. The crate is built for baseline x86-64, so hot loops
/// would otherwise vectorise 4 wide; a closure passed into a `#[target_feature]` function
/// is not reliably inlined there, which is why the body is a named function.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($a:ident: $t:ty),* $(,)?) $(-> $r:ty)? = $body:path;) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments, unused_unsafe)]
        $vis fn $name($($a: $t),*) $(-> $r)? {
            // SAFETY: `$body` is a safe function.
            unsafe { $crate::tensor::kernels::multiversion!(@dispatch $body; $($a: $t),*; $($r)?) }
        }
    };
    ($(#[$m:meta])* $vis:vis unsafe fn $name:ident($($a:ident: $t:ty),* $(,)?) $(-> $r:ty)? = $body:path;) => {
        $(#[$m])*
        /// # Safety
        /// As for the body it runs.
        #[allow(clippy::too_many_arguments)]
        $vis unsafe fn $name($($a: $t),*) $(-> $r)? {
            $crate::tensor::kernels::multiversion!(@dispatch $body; $($a: $t),*; $($r)?)
        }
    };
    (@dispatch $body:path; $($a:ident: $t:ty),*; $($r:ty)?) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f")]
            #[allow(clippy::too_many_arguments, unused_unsafe)]
            unsafe fn v512($($a: $t),*) $(-> $r)? {
                unsafe { $body($($a),*) }
            }
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments, unused_unsafe)]
            unsafe fn v256($($a: $t),*) $(-> $r)? {
                unsafe { $body($($a),*) }
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the feature was just detected.
                return v512($($a),*);
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                // SAFETY: the features were just detected.
                return v256($($a),*);
            }
        }
        #[allow(unused_unsafe)]
        unsafe { $body($($a),*) }
    }};
}
pub(crate) use multiversion;

/// A copy of `x` with `f` applied in place to chunks of it, in parallel (`f` should be a
/// [`multiversion!`] function).
pub fn map_chunks(x: &[f32], f: impl Fn(&mut [f32]) + Sync) -> Vec<f32> {
    let mut y = x.to_vec();
    let c = chunk(x.len(), 8);
    y.par_chunks_mut(c).for_each(&f);
    y
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

/// Softmax of every `n`-wide row of `x`, in parallel.
pub fn softmax_rows(x: &[f32], n: usize) -> Vec<f32> {
    let mut y = x.to_vec();
    let n = n.max(1);
    y.par_chunks_mut(chunk(x.len(), n)).for_each(|c| softmax_block(c, n, false, 0, 1.0));
    y
}

/// Softmax of `scale ·` each `n`-wide row of `s`; with `causal`, row `i` sees `i + off + 1`
/// entries.
#[inline(always)]
fn softmax_block_body(s: &mut [f32], n: usize, causal: bool, off: usize, scale: f32) {
    for (i, row) in s.chunks_mut(n.max(1)).enumerate() {
        softmax_row_scaled(row, if causal { i + off + 1 } else { n }, scale);
    }
}

multiversion! {
    fn softmax_block(s: &mut [f32], n: usize, causal: bool, off: usize, scale: f32) = softmax_block_body;
}

/// LayerNorm of every `n`-wide row of `x` (`w`, `b` `[n]`), in parallel: mean, then the
/// variance of the deviations (two passes, as accurate as transformers' in f32).
pub fn layer_norm_rows(x: &[f32], w: &[f32], b: &[f32], n: usize, eps: f32) -> Result<Vec<f32>, String> {
    if n == 0 || x.len() % n != 0 || w.len() != n || b.len() != n {
        return Err(format!("layer_norm: {} values in rows of {n} with weight {} and bias {}", x.len(), w.len(), b.len()));
    }
    let mut y = vec![0f32; x.len()];
    let c = chunk(x.len(), n);
    y.par_chunks_mut(c).zip(x.par_chunks(c)).for_each(|(y, x)| layer_norm_block(x, y, w, b, n, eps));
    Ok(y)
}

#[inline(always)]
fn sum8(v: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0f32; 8];
    let split = v.len() - v.len() % 8;
    for c in v[..split].chunks_exact(8) {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += f(x);
        }
    }
    acc.iter().sum::<f32>() + v[split..].iter().map(|&x| f(x)).sum::<f32>()
}

/// A row's mean and 1/√(variance + eps), two passes (LayerNorm's statistics).
#[inline(always)]
pub(crate) fn row_stats(xr: &[f32], eps: f32) -> (f32, f32) {
    let n = xr.len().max(1) as f32;
    let mean = sum8(xr, |v| v) / n;
    let var = sum8(xr, |v| (v - mean) * (v - mean)) / n;
    (mean, 1.0 / (var + eps).sqrt())
}

#[inline(always)]
fn layer_norm_block_body(x: &[f32], y: &mut [f32], w: &[f32], b: &[f32], n: usize, eps: f32) {
    for (xr, yr) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
        let (mean, inv) = row_stats(xr, eps);
        for (((o, &v), &w), &b) in yr.iter_mut().zip(xr).zip(w).zip(b) {
            *o = (v - mean) * inv * w + b;
        }
    }
}

multiversion! {
    fn layer_norm_block(x: &[f32], y: &mut [f32], w: &[f32], b: &[f32], n: usize, eps: f32) = layer_norm_block_body;
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
    use super::cpu::gemm::{Epilogue, Kernel, PackedWeight, SendPtr};
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
    let kern = Kernel::best();
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
        let mut s = vec![0f32; nq * nk];
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_norm_matches_the_two_pass_formula_in_f64() {
        let n = 37;
        let x: Vec<f32> = (0..n * 5).map(|i| ((i * 7919) % 101) as f32 / 13.0 - 3.0 + (i / n) as f32 * 100.0).collect();
        let w: Vec<f32> = (0..n).map(|i| 0.5 + i as f32 / 50.0).collect();
        let b: Vec<f32> = (0..n).map(|i| i as f32 / 10.0 - 1.0).collect();
        let y = layer_norm_rows(&x, &w, &b, n, 1e-5).unwrap();
        for (r, (xr, yr)) in x.chunks(n).zip(y.chunks(n)).enumerate() {
            let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
            let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
            for i in 0..n {
                let want = (xr[i] as f64 - mean) / (var + 1e-5).sqrt() * w[i] as f64 + b[i] as f64;
                // Rows sit at offsets up to 400 with a spread near 2: f32 rounding of x - mean.
                assert!((yr[i] as f64 - want).abs() < 5e-5, "row {r} col {i}: {} vs {want}", yr[i]);
            }
        }
        let e = layer_norm_rows(&x[..n + 1], &w, &b, n, 1e-5).unwrap_err();
        assert!(e.contains("38 values in rows of 37"), "{e}");
    }

    #[test]
    fn exp_is_accurate() {
        for i in -8700..8800 {
            let x = i as f32 / 100.0;
            let (a, b) = (exp(x), x.exp());
            assert!(((a - b) / b).abs() < 3e-7, "exp({x}) = {a}, want {b}");
        }
    }
}
