//! The int8 engine behind `Precision::Int8`: `y = act(x · Wᵀ + b) + res` with int8 operands
//! and int32 accumulation.
//!
//! The scheme (written out in `scripts/int8_reference.py`, which the goldens are made with):
//! - **weights**: symmetric, per output channel: `s_w[j] = max|W[j,:]| / 127`,
//!   `q_w = rint(W[j,:] · (127 / max|W[j,:]|))` (ties to even, clamped to ±127), once at load;
//! - **activations**: the same per row (token), on the fly, while the row tiles are packed (after
//!   the LayerNorm prologue when there is one);
//! - **product**: exact in int32 (`|q| ≤ 127`, so `127² · K` fits for any K below 133 000);
//! - **epilogue**: `y = f32(acc) · (s_x[i] · s_w[j]) + b[j]`, then the activation and the
//!   residual as in the f32 engine, on the tile while it is in L1.
//!
//! Layout: a weight panel holds `NR` output columns, K taken two at a time: the pair
//! `(W[c][2p], W[c][2p+1])` of column `c` at bytes `2·(p·NR + c)`; the activation tile holds
//! the same pairs of each row as one 32-bit word (two i16), `MR` rows side by side. So one
//! widening load gives `NR/…` columns × 2 depths as i16 and one `pmaddwd` (x86) or
//! `i32x4.dot_i16x8_s` (wasm) multiplies a broadcast row pair by them and adds each pair into
//! an i32 lane: 16 multiply-adds per instruction, exactly, with no saturation (unlike the
//! u8 × i8 `pmaddubsw`, which ONNX Runtime's non-VNNI x86 path must avoid with 7-bit weights).
//!
//! Micro-kernels, picked at run time and forceable in tests and `bench gemm`: AVX2 (6 × 16),
//! wasm SIMD128 (4 × 8), portable (4 × 8).

use super::super::kernels::{row_stats, threads};
use super::gemm::{apply_act, for_each_block, Epilogue, RowTiles, SendPtr};
use rayon::prelude::*;

/// Packed activation rows a task keeps in L2 while its weight panels pass over them.
const A_CHUNK_BYTES: usize = 256 << 10;
/// Below this many multiply-adds a call runs on the calling thread.
const PARALLEL_MIN: usize = 1 << 18;
/// The largest K whose int32 sums cannot overflow (`127² · K < 2³¹`).
pub const MAX_K: usize = 133_000;

/// An int8 micro-kernel family, with its tile shape `MR × NR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QKernel {
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx2,
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    Simd128,
    Portable,
}

impl QKernel {
    pub fn name(self) -> &'static str {
        match self {
            QKernel::Avx2 => "avx2 pmaddwd 6x16",
            QKernel::Simd128 => "wasm simd128 dot_i16x8 4x8",
            QKernel::Portable => "portable 4x8",
        }
    }

    pub fn mr(self) -> usize {
        match self {
            QKernel::Avx2 => 6,
            QKernel::Simd128 | QKernel::Portable => 4,
        }
    }

    pub fn nr(self) -> usize {
        match self {
            QKernel::Avx2 => 16,
            QKernel::Simd128 | QKernel::Portable => 8,
        }
    }

    /// Every int8 kernel this CPU can run, fastest first.
    pub fn available() -> Vec<QKernel> {
        let mut v = Vec::new();
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            v.push(QKernel::Avx2);
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        v.push(QKernel::Simd128);
        v.push(QKernel::Portable);
        v
    }

    /// The fastest int8 kernel this CPU can run (detected once).
    pub fn best() -> QKernel {
        static BEST: std::sync::OnceLock<QKernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| QKernel::available()[0])
    }

    fn tile(self, rows: usize) -> QTileFn {
        match self {
            #[cfg(target_arch = "x86_64")]
            QKernel::Avx2 => x86::AVX2[rows - 1],
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            QKernel::Simd128 => wasm::SIMD128[rows - 1],
            _ => portable::PORTABLE[rows - 1],
        }
    }
}

/// `tile(kp, a, b, c)`: `c[R × NR] = A_tile · B_panel` in int32 for the function's `R` rows,
/// `kp` pairs deep; `a` points at the packed tile (`MR` words per pair), `b` at the panel
/// (`2·NR` bytes per pair), `c` at an `MR × NR` buffer (rows `NR` apart).
type QTileFn = unsafe fn(kp: usize, a: *const i32, b: *const i8, c: *mut i32);

macro_rules! qtile_table {
    ($k:ident; $($r:literal)*) => {
        [$($k::<$r> as QTileFn),*]
    };
}

mod portable {
    use super::QTileFn;
    const MR: usize = 4;
    const NR: usize = 8;

    /// # Safety
    /// See [`QTileFn`].
    pub unsafe fn k<const R: usize>(kp: usize, a: *const i32, b: *const i8, c: *mut i32) {
        let mut acc = [[0i32; NR]; R];
        for p in 0..kp {
            let w = std::slice::from_raw_parts(b.add(p * 2 * NR), 2 * NR);
            for (i, row) in acc.iter_mut().enumerate() {
                let word = *a.add(p * MR + i);
                let (lo, hi) = (word as i16 as i32, (word >> 16) as i16 as i32);
                for (c, v) in row.iter_mut().enumerate() {
                    *v += lo * w[2 * c] as i32 + hi * w[2 * c + 1] as i32;
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            std::ptr::copy_nonoverlapping(row.as_ptr(), c.add(i * NR), NR);
        }
    }

    pub static PORTABLE: [QTileFn; MR] = qtile_table!(k; 1 2 3 4);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::QTileFn;
    use std::arch::x86_64::*;
    const MR: usize = 6;
    const NR: usize = 16;

    /// # Safety
    /// AVX2 is available; see [`QTileFn`].
    #[target_feature(enable = "avx2")]
    pub unsafe fn avx2<const R: usize>(kp: usize, a: *const i32, b: *const i8, c: *mut i32) {
        let mut lo = [_mm256_setzero_si256(); R];
        let mut hi = [_mm256_setzero_si256(); R];
        for p in 0..kp {
            let w = b.add(p * 2 * NR);
            let w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(w as *const __m128i));
            let w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(w.add(16) as *const __m128i));
            let ap = a.add(p * MR);
            for i in 0..R {
                let av = _mm256_set1_epi32(*ap.add(i));
                lo[i] = _mm256_add_epi32(lo[i], _mm256_madd_epi16(av, w0));
                hi[i] = _mm256_add_epi32(hi[i], _mm256_madd_epi16(av, w1));
            }
        }
        for i in 0..R {
            _mm256_storeu_si256(c.add(i * NR) as *mut __m256i, lo[i]);
            _mm256_storeu_si256(c.add(i * NR + 8) as *mut __m256i, hi[i]);
        }
    }

    pub static AVX2: [QTileFn; MR] = qtile_table!(avx2; 1 2 3 4 5 6);
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm {
    use super::QTileFn;
    use std::arch::wasm32::*;
    const MR: usize = 4;
    const NR: usize = 8;

    /// # Safety
    /// See [`QTileFn`].
    pub unsafe fn simd128<const R: usize>(kp: usize, a: *const i32, b: *const i8, c: *mut i32) {
        let mut lo = [i32x4_splat(0); R];
        let mut hi = [i32x4_splat(0); R];
        for p in 0..kp {
            let w = v128_load(b.add(p * 2 * NR) as *const v128);
            let (w0, w1) = (i16x8_extend_low_i8x16(w), i16x8_extend_high_i8x16(w));
            let ap = a.add(p * MR);
            for i in 0..R {
                let av = i32x4_splat(*ap.add(i));
                lo[i] = i32x4_add(lo[i], i32x4_dot_i16x8(av, w0));
                hi[i] = i32x4_add(hi[i], i32x4_dot_i16x8(av, w1));
            }
        }
        for i in 0..R {
            v128_store(c.add(i * NR) as *mut v128, lo[i]);
            v128_store(c.add(i * NR + 4) as *mut v128, hi[i]);
        }
    }

    pub static SIMD128: [QTileFn; MR] = qtile_table!(simd128; 1 2 3 4);
}

/// Round half to even for `|v| < 2²²` (every quantised value here), in plain f32 adds that
/// every target vectorises (`f32::round_ties_even` is a libm call on baseline x86-64).
#[inline(always)]
fn rint(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2²³
    (v + MAGIC) - MAGIC
}

/// Quantises one row symmetrically to `out` (±127) and returns its scale `max|x| / 127`
/// (0 for a zero row; NaN when the row holds NaN or ±∞, so the output says so).
#[inline(always)]
fn quantize_row_body(x: &[f32], out: &mut [i8]) -> f32 {
    let mut amax = 0f32;
    let mut finite = true;
    for &v in x {
        amax = amax.max(v.abs());
        finite &= v.is_finite();
    }
    if !finite {
        out.iter_mut().for_each(|q| *q = 0);
        return f32::NAN;
    }
    let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
    for (q, &v) in out.iter_mut().zip(x) {
        *q = rint(v * inv).clamp(-127.0, 127.0) as i8;
    }
    amax / 127.0
}

crate::tensor::kernels::multiversion! {
    /// [`quantize_row_body`]: one row's int8 values and scale (the scheme of the module docs).
    pub fn quantize_row(x: &[f32], out: &mut [i8]) -> f32 = quantize_row_body;
}

/// A `[n, k]` weight quantised per output channel: the int8 values (row-major) and the scales.
pub fn quantize_weight(w: &[f32], n: usize, k: usize) -> Result<(Vec<i8>, Vec<f32>), String> {
    if w.len() != n * k {
        return Err(format!("linear weight: {} values for [{n}, {k}]", w.len()));
    }
    let mut q = vec![0i8; n * k];
    let mut s = vec![0f32; n];
    if k > 0 {
        let run = |((row, qr), sc): ((&[f32], &mut [i8]), &mut f32)| *sc = quantize_row(row, qr);
        if n * k >= 1 << 16 && threads() > 1 {
            w.par_chunks(k).zip(q.par_chunks_mut(k)).zip(s.par_iter_mut()).for_each(run);
        } else {
            w.chunks(k).zip(q.chunks_mut(k)).zip(s.iter_mut()).for_each(run);
        }
    }
    Ok((q, s))
}

/// An int8 `[n, k]` weight packed for one kernel, with its per-channel scales.
#[derive(Debug)]
pub struct QuantWeight {
    kernel: QKernel,
    n: usize,
    k: usize,
    /// Panels of `NR` columns, `⌈k/2⌉` pairs deep (see the module docs), zero-padded.
    panels: Vec<i8>,
    /// `[n]`, padded with zeros to whole panels.
    scales: Vec<f32>,
}

impl QuantWeight {
    /// Quantises an f32 `[n, k]` weight (the scheme of the module docs) and packs it.
    pub fn quantize(w: &[f32], n: usize, k: usize, kernel: QKernel) -> Result<QuantWeight, String> {
        let (q, s) = quantize_weight(w, n, k)?;
        QuantWeight::from_quantized(&q, &s, n, k, kernel)
    }

    /// Packs weights already quantised (`q` `[n, k]` row-major, `scales` `[n]`), as read from a
    /// quantised checkpoint.
    pub fn from_quantized(q: &[i8], scales: &[f32], n: usize, k: usize, kernel: QKernel) -> Result<QuantWeight, String> {
        if q.len() != n * k || scales.len() != n {
            return Err(format!("int8 weight: {} values and {} scales for [{n}, {k}]", q.len(), scales.len()));
        }
        if k > MAX_K {
            return Err(format!("int8 weight: {k} input features, more than the {MAX_K} whose int32 sums cannot overflow"));
        }
        if q.contains(&i8::MIN) {
            return Err("int8 weight: -128 is outside the symmetric range ±127".into());
        }
        let nr = kernel.nr();
        let (kp, panels) = (k.div_ceil(2), n.div_ceil(nr));
        let mut out = vec![0i8; panels * kp * 2 * nr];
        if kp > 0 {
            let fill = |(j, panel): (usize, &mut [i8])| {
                for c in 0..nr.min(n - j * nr) {
                    for (p, &v) in q[(j * nr + c) * k..][..k].iter().enumerate() {
                        panel[((p / 2) * nr + c) * 2 + p % 2] = v;
                    }
                }
            };
            out.chunks_mut(kp * 2 * nr).enumerate().for_each(fill);
        }
        let mut sc = scales.to_vec();
        sc.resize(panels * nr, 0.0);
        Ok(QuantWeight { kernel, n, k, panels: out, scales: sc })
    }

    /// Bytes held (int8 panels and scales).
    pub fn bytes(&self) -> usize {
        self.panels.len() + 4 * self.scales.len()
    }

    /// `y[m, n] = act(x · Wᵀ + bias) + res` in int8 (the caller — `PackedWeight::matmul_raw` —
    /// has checked the shapes).
    ///
    /// # Safety
    /// As for `PackedWeight::matmul_raw`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn matmul_raw(&self, x: &[f32], m: usize, lda: usize, epi: Epilogue, y: *mut f32, ldc: usize, parallel: bool) {
        let (n, k, kern) = (self.n, self.k, self.kernel);
        let (mr, nr) = (kern.mr(), kern.nr());
        let rt = RowTiles::new(m, mr);
        let tiles = rt.tiles();
        let (a, sx) = pack_a(x, m, k, lda, mr, epi, parallel);
        let yp = SendPtr(y);
        // SAFETY: each task writes only rows of its tiles × columns of its panels.
        for_each_block(tiles, n.div_ceil(nr), parallel && m * n * k >= PARALLEL_MIN, |t_range, p_range| unsafe {
            self.task(&a, &sx, rt, t_range, p_range, epi, yp.get(), ldc)
        });
    }

    /// One output block: tiles `t_range` × panels `p_range`, each tile's int32 product then its
    /// dequantising epilogue.
    #[allow(clippy::too_many_arguments)]
    unsafe fn task(
        &self,
        a: &[i32],
        sx: &[f32],
        rt: RowTiles,
        t_range: std::ops::Range<usize>,
        p_range: std::ops::Range<usize>,
        epi: Epilogue,
        y: *mut f32,
        ldc: usize,
    ) {
        let (n, kern) = (self.n, self.kernel);
        let (mr, nr, kp) = (kern.mr(), kern.nr(), self.k.div_ceil(2));
        let mut acc = vec![0i32; mr * nr];
        let chunk_tiles = (A_CHUNK_BYTES / (kp * mr * 4).max(1)).max(1);
        let mut t0 = t_range.start;
        while t0 < t_range.end {
            let chunk = t0..(t0 + chunk_tiles).min(t_range.end);
            for j in p_range.clone() {
                let b = self.panels.as_ptr().add(j * kp * 2 * nr);
                let cols = nr.min(n - j * nr);
                for t in chunk.clone() {
                    let (row0, rows) = (rt.start(t), rt.rows(t));
                    (kern.tile(rows))(kp, a.as_ptr().add(t * kp * mr), b, acc.as_mut_ptr());
                    let tile = Tile { acc: &acc, nr, rows, cols, row0, col0: j * nr, n };
                    dequant_tile(kern, &tile, &sx[row0..row0 + rows], &self.scales[j * nr..(j + 1) * nr], epi, y, ldc);
                }
            }
            t0 = chunk.end;
        }
    }
}

/// The int8 micro-kernel alone, on one thread with its operands in L1 (a full `MR × NR` tile,
/// 128 pairs deep): giga-operations per second (a multiply-add counts 2).
pub fn tile_gops(kernel: QKernel, min_ms: f64) -> f64 {
    const KP: usize = 128;
    let (mr, nr) = (kernel.mr(), kernel.nr());
    let a = vec![0x0003_0005i32; KP * mr];
    let b = vec![3i8; KP * 2 * nr];
    let mut c = vec![0i32; mr * nr];
    let f = kernel.tile(mr);
    let (mut calls, t0) = (0u64, crate::clock::now_ms());
    loop {
        for _ in 0..256 {
            // SAFETY: the buffers have the sizes the kernel reads and writes.
            unsafe { f(KP, a.as_ptr(), b.as_ptr(), c.as_mut_ptr()) };
        }
        calls += 256;
        let ms = crate::clock::now_ms() - t0;
        if ms >= min_ms {
            std::hint::black_box(&c);
            return (2 * mr * nr * 2 * KP) as f64 * calls as f64 / (ms * 1e6);
        }
    }
}

/// A finished int32 tile and where it goes.
struct Tile<'a> {
    acc: &'a [i32],
    nr: usize,
    rows: usize,
    cols: usize,
    row0: usize,
    col0: usize,
    n: usize,
}

/// `y = f32(acc) · (s_x · s_w) + b`, then the activation and the residual, written to the output.
#[inline(always)]
unsafe fn dequant_body(t: &Tile, sx: &[f32], sw: &[f32], epi: Epilogue, y: *mut f32, ldc: usize) {
    for i in 0..t.rows {
        let row = t.row0 + i;
        let out = std::slice::from_raw_parts_mut(y.add(row * ldc + t.col0), t.cols);
        let acc = &t.acc[i * t.nr..][..t.cols];
        let s = sx[i];
        match epi.bias {
            Some(b) => {
                let b = &b[t.col0..t.col0 + t.cols];
                for (((o, &a), &w), &b) in out.iter_mut().zip(acc).zip(sw).zip(b) {
                    *o = a as f32 * (s * w) + b;
                }
            }
            None => {
                for ((o, &a), &w) in out.iter_mut().zip(acc).zip(sw) {
                    *o = a as f32 * (s * w);
                }
            }
        }
        if let Some(a) = epi.act {
            apply_act(out, a);
        }
        if let Some(r) = epi.res {
            out.iter_mut().zip(&r[row * t.n + t.col0..][..t.cols]).for_each(|(v, r)| *v += r);
        }
    }
}

unsafe fn dequant_tile(kern: QKernel, t: &Tile, sx: &[f32], sw: &[f32], epi: Epilogue, y: *mut f32, ldc: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(t: &Tile, sx: &[f32], sw: &[f32], epi: Epilogue, y: *mut f32, ldc: usize) {
            dequant_body(t, sx, sw, epi, y, ldc)
        }
        if kern == QKernel::Avx2 {
            return avx2(t, sx, sw, epi, y, ldc);
        }
    }
    let _ = kern;
    dequant_body(t, sx, sw, epi, y, ldc)
}

/// Quantises the `m` rows of `x` (after the LayerNorm prologue, if any) and packs them into
/// `MR`-row tiles of int16 pairs (see the module docs); returns the tiles and each row's scale.
fn pack_a(x: &[f32], m: usize, k: usize, lda: usize, mr: usize, epi: Epilogue, parallel: bool) -> (Vec<i32>, Vec<f32>) {
    let rt = RowTiles::new(m, mr);
    let kp = k.div_ceil(2);
    let mut a = vec![0i32; rt.tiles() * kp * mr];
    let mut sx = vec![0f32; m];
    if kp == 0 {
        return (a, sx);
    }
    // Each tile's rows: normalised (when asked), quantised, then interleaved in pairs.
    let fill = |(t, dst): (usize, &mut [i32])| -> Vec<f32> {
        let (row0, rows) = (rt.start(t), rt.rows(t));
        let mut q = vec![0i8; k + 1];
        let mut tmp = if epi.norm.is_some() { vec![0f32; k] } else { Vec::new() };
        let mut scales = Vec::with_capacity(rows);
        for i in 0..rows {
            let src = &x[(row0 + i) * lda..][..k];
            let row: &[f32] = match epi.norm {
                Some(nm) => {
                    let (mean, inv) = row_stats(src, nm.eps);
                    for (((o, &v), &w), &b) in tmp.iter_mut().zip(src).zip(nm.w).zip(nm.b) {
                        *o = (v - mean) * inv * w + b;
                    }
                    &tmp
                }
                None => src,
            };
            scales.push(quantize_row(row, &mut q[..k]));
            q[k] = 0;
            for p in 0..kp {
                let (lo, hi) = (q[2 * p] as i16 as u16 as u32, q[2 * p + 1] as i16 as u16 as u32);
                dst[p * mr + i] = (lo | (hi << 16)) as i32;
            }
        }
        scales
    };
    let per_tile: Vec<Vec<f32>> = if parallel && rt.tiles() > 4 && threads() > 1 {
        a.par_chunks_mut(kp * mr).enumerate().map(fill).collect()
    } else {
        a.chunks_mut(kp * mr).enumerate().map(fill).collect()
    };
    for (t, s) in per_tile.into_iter().enumerate() {
        sx[rt.start(t)..rt.start(t) + s.len()].copy_from_slice(&s);
    }
    (a, sx)
}

#[cfg(test)]
mod tests {
    use super::super::gemm::Norm;
    use super::*;

    fn vals(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// The scheme written out plainly: quantise both sides, integer dot products, dequantise.
    fn reference(x: &[f32], w: &[f32], m: usize, k: usize, n: usize, bias: Option<&[f32]>) -> Vec<f32> {
        let (qw, sw) = quantize_weight(w, n, k).unwrap();
        let (qx, sx) = quantize_weight(x, m, k).unwrap();
        let mut y = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let acc: i32 = (0..k).map(|p| qx[i * k + p] as i32 * qw[j * k + p] as i32).sum();
                y[i * n + j] = acc as f32 * (sx[i] * sw[j]) + bias.map_or(0.0, |b| b[j]);
            }
        }
        y
    }

    fn run(kern: QKernel, x: &[f32], w: &[f32], m: usize, k: usize, n: usize, epi: Epilogue) -> Vec<f32> {
        let q = QuantWeight::quantize(w, n, k, kern).unwrap();
        let mut y = vec![f32::NAN; m * n];
        // SAFETY: `y` is `[m, n]`.
        unsafe { q.matmul_raw(x, m, k, epi, y.as_mut_ptr(), n, true) };
        y
    }

    #[test]
    fn every_int8_kernel_equals_the_scheme_exactly_on_odd_shapes() {
        for kern in QKernel::available() {
            for &(m, k, n) in &[(1, 1, 1), (1, 7, 5), (3, 33, 17), (7, 64, 40), (13, 129, 33), (50, 768, 70), (197, 768, 2304), (197, 3072, 768)] {
                let (x, w, b) = (vals(m * k, 1), vals(n * k, 2), vals(n, 3));
                let got = run(kern, &x, &w, m, k, n, Epilogue { bias: Some(&b), ..Default::default() });
                let want = reference(&x, &w, m, k, n, Some(&b));
                assert_eq!(got, want, "{} m{m} k{k} n{n}", kern.name());
            }
        }
    }

    /// The numpy reference written from the scheme's definition (`scripts/int8_reference.py`,
    /// fixture `int8-linear.json`): every kernel equals it exactly.
    #[test]
    fn every_int8_kernel_equals_the_independent_numpy_reference() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/generation/int8-linear.json");
        let fx: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let f = |c: &serde_json::Value, key: &str| -> Vec<f32> { c[key].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect() };
        let cases = fx["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 5);
        for kern in QKernel::available() {
            for c in cases {
                let (m, k, n) = (c["m"].as_u64().unwrap() as usize, c["k"].as_u64().unwrap() as usize, c["n"].as_u64().unwrap() as usize);
                let (x, w, b, want) = (f(c, "x"), f(c, "w"), f(c, "b"), f(c, "y"));
                assert_eq!((x.len(), w.len(), want.len()), (m * k, n * k, m * n));
                let got = run(kern, &x, &w, m, k, n, Epilogue { bias: Some(&b), ..Default::default() });
                assert_eq!(got, want, "{} m{m} k{k} n{n}", kern.name());
            }
        }
    }

    #[test]
    fn the_scheme_is_what_the_docs_say() {
        // max 2 → scale 2/127; 1 → rint(63.5) = 64 (ties to even); -2 → -127; 0.01 → rint(0.635) = 1.
        let mut q = [0i8; 4];
        let s = quantize_row(&[1.0, -2.0, 0.01, 0.0], &mut q);
        assert_eq!((q, s), ([64, -127, 1, 0], 2.0 / 127.0));
        assert_eq!(quantize_row(&[0.0, 0.0], &mut q[..2]), 0.0);
        assert!(quantize_row(&[1.0, f32::NAN], &mut q[..2]).is_nan());
        assert!(QuantWeight::from_quantized(&[-128], &[1.0], 1, 1, QKernel::Portable).is_err());
    }

    #[test]
    fn the_epilogue_and_the_norm_prologue_match_the_f32_path_on_the_dequantised_values() {
        let (m, k, n) = (9, 96, 24);
        let (x, w, b, r) = (vals(m * k, 4), vals(n * k, 5), vals(n, 6), vals(m * n, 7));
        let (nw, nb) = (vals(k, 8), vals(k, 9));
        for kern in QKernel::available() {
            let norm = Some(Norm { w: &nw, b: &nb, eps: 1e-5 });
            let act = Some(crate::tensor::Activation::QuickGelu);
            let got = run(kern, &x, &w, m, k, n, Epilogue { bias: Some(&b), act, res: Some(&r), norm });
            // The same steps by hand: LayerNorm, the scheme, the activation, the residual.
            let mut xn = x.clone();
            for row in xn.chunks_mut(k) {
                let (mean, inv) = row_stats(row, 1e-5);
                for ((v, &w), &b) in row.iter_mut().zip(&nw).zip(&nb) {
                    *v = (*v - mean) * inv * w + b;
                }
            }
            let mut want = reference(&xn, &w, m, k, n, Some(&b));
            apply_act(&mut want, crate::tensor::Activation::QuickGelu);
            want.iter_mut().zip(&r).for_each(|(v, r)| *v += r);
            assert!(crate::num::max_abs_diff(&got, &want) <= 1e-6, "{}", kern.name());
        }
    }
}
