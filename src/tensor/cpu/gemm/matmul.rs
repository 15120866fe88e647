//! The product itself: activations packed per call into row tiles, output blocks split over
//! tasks, each tile the whole K deep in registers, then its epilogue.

use super::epilogue::{finish_tile, round_bf16, Epilogue, Norm};
use super::partition::{for_each_block, RowTiles, SendPtr};
use super::weight::{PackedWeight, Panels};
use super::{A_CHUNK_BYTES, PARALLEL_MIN};
use crate::tensor::cpu::row_ops::row_stats;
use crate::tensor::cpu::scratch::Scratch;
use crate::tensor::cpu::simd::threads;
use rayon::prelude::*;

impl PackedWeight {
    /// `y[m, n] = act(x · Wᵀ + bias) + res`, `x` being `m` rows of `k` values `lda` apart.
    pub fn matmul(&self, x: &[f32], m: usize, lda: usize, epi: Epilogue, y: &mut [f32]) -> Result<(), String> {
        if y.len() < m * self.n {
            return Err(format!("linear: output of {} values for [{m}, {}]", y.len(), self.n));
        }
        // SAFETY: `y` holds the `m` rows of `n` written.
        unsafe { self.matmul_raw(x, m, lda, epi, y.as_mut_ptr(), self.n, true) }
    }

    /// [`PackedWeight::matmul`] into a new `[m, n]` buffer (not zeroed first: the engine
    /// writes every element).
    pub fn matmul_new(&self, x: &[f32], m: usize, lda: usize, epi: Epilogue) -> Result<Vec<f32>, String> {
        let len = m * self.n;
        let mut y = Vec::with_capacity(len);
        // SAFETY: the buffer has room for the `m` rows of `n`; on success every one of those
        // elements was written (each tile covers its rows and all of its panel's columns), so
        // the length may cover them.
        unsafe {
            self.matmul_raw(x, m, lda, epi, y.as_mut_ptr(), self.n, true)?;
            y.set_len(len);
        }
        Ok(y)
    }

    /// [`PackedWeight::matmul`] into rows `ldc` apart of a buffer that other callers may be
    /// writing elsewhere (heads of one attention output), on this thread unless `parallel`.
    ///
    /// # Safety
    /// `y + row·ldc + col` is valid for every `row < m`, `col < n`, and nothing else writes there.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn matmul_raw(&self, x: &[f32], m: usize, lda: usize, epi: Epilogue, y: *mut f32, ldc: usize, parallel: bool) -> Result<(), String> {
        let (n, k) = (self.n, self.k);
        if lda < k || (m > 0 && x.len() < (m - 1) * lda + k) {
            return Err(format!("linear: input of {} values is not {m} rows of {k} (row stride {lda})", x.len()));
        }
        if ldc < n {
            return Err(format!("linear: output rows {ldc} apart cannot hold {n} values"));
        }
        if let Some(b) = epi.bias.filter(|b| b.len() != n) {
            return Err(format!("linear: bias has {} values for {n} outputs", b.len()));
        }
        if let Some(r) = epi.res.filter(|r| r.len() != m * n) {
            return Err(format!("linear: residual has {} values for [{m}, {n}]", r.len()));
        }
        if let Some(nm) = epi.norm.filter(|nm| nm.w.len() != k || nm.b.len() != k) {
            return Err(format!("linear: layer norm of {} weights and {} biases for {k} features", nm.w.len(), nm.b.len()));
        }
        if m == 0 || n == 0 {
            return Ok(());
        }
        if let Panels::Int8(q) = &self.panels {
            q.matmul_raw(x, m, lda, epi, y, ldc, parallel);
            return Ok(());
        }
        #[cfg(target_arch = "x86_64")]
        if let Panels::Bf16Dot(t) = &self.panels {
            t.matmul_raw(x, m, lda, epi, y, ldc, parallel);
            return Ok(());
        }
        let (mr, nr) = (self.kernel.mr(), self.kernel.nr());
        let tiles = m.div_ceil(mr);
        let mut a = pack_a(x, m, k, lda, mr, epi.norm);
        if self.round_a {
            round_bf16(&mut a);
        }
        let panels = n.div_ceil(nr);
        // The bias padded to whole panels: the kernels start their accumulators from it.
        let bias = epi.bias.map(|b| {
            let mut v = b.to_vec();
            v.resize(panels * nr, 0.0);
            v
        });
        let yp = SendPtr(y);
        // SAFETY: each task writes only rows of its tiles × columns of its panels.
        for_each_block(tiles, panels, parallel && m * n * k >= PARALLEL_MIN, |t_range, p_range| unsafe {
            self.task(&a, m, t_range, p_range, epi, bias.as_deref(), yp.get(), ldc)
        });
        Ok(())
    }

    /// One output block: tiles `t_range` of M × panels `p_range` of N. Panel by panel (the
    /// panel, `K × NR`, stays in L2 while every row tile passes over it; a half panel is
    /// converted to f32 once), each tile the whole K deep in registers, then its epilogue.
    ///
    /// # Safety
    /// `y` is the `[m, n]` output; no other task writes this block.
    #[allow(clippy::too_many_arguments)]
    unsafe fn task(
        &self,
        a: &[f32],
        m: usize,
        t_range: std::ops::Range<usize>,
        p_range: std::ops::Range<usize>,
        epi: Epilogue,
        bias: Option<&[f32]>,
        y: *mut f32,
        ldc: usize,
    ) {
        let (n, k, kern) = (self.n, self.k, self.kernel);
        let (mr, nr) = (kern.mr(), kern.nr());
        let mut tile = vec![0f32; mr * nr];
        let mut bbuf = if matches!(self.panels, Panels::F32(_)) { Vec::new() } else { vec![0f32; k * nr] };
        let rt = RowTiles::new(m, mr);
        // Row tiles in chunks whose packed rows (`chunk × MR × K`) stay in L2 while the
        // task's panels pass over them: a large batch does not stream all of A per panel.
        let chunk_tiles = (A_CHUNK_BYTES / (k * mr * 4).max(1)).max(1);
        let mut t0 = t_range.start;
        while t0 < t_range.end {
            let chunk = t0..(t0 + chunk_tiles).min(t_range.end);
            for j in p_range.clone() {
                let off = j * k * nr;
                let b: *const f32 = match &self.panels {
                    Panels::F32(v) => v.as_ptr().add(off),
                    Panels::F16(v) => {
                        half::slice::HalfFloatSliceExt::convert_to_f32_slice(&v[off..off + k * nr], &mut bbuf);
                        bbuf.as_ptr()
                    }
                    Panels::Bf16(v) => {
                        half::slice::HalfFloatSliceExt::convert_to_f32_slice(&v[off..off + k * nr], &mut bbuf);
                        bbuf.as_ptr()
                    }
                    // Never here: `matmul_raw` hands int8 weights to `gemm::int8`.
                    Panels::Int8(_) => return,
                    #[cfg(target_arch = "x86_64")]
                    Panels::Bf16Dot(_) => return,
                };
                let cols = nr.min(n - j * nr);
                let bias = bias.map_or(std::ptr::null(), |b| b.as_ptr().add(j * nr));
                for t in chunk.clone() {
                    let (row0, rows) = (rt.start(t), rt.rows(t));
                    let at = a.as_ptr().add(t * k * mr);
                    let dst = y.add(row0 * ldc + j * nr);
                    if cols == nr {
                        (kern.tile(rows))(k, at, b, dst, ldc, bias);
                    } else {
                        (kern.tile(rows))(k, at, b, tile.as_mut_ptr(), nr, bias);
                        for i in 0..rows {
                            std::ptr::copy_nonoverlapping(tile.as_ptr().add(i * nr), dst.add(i * ldc), cols);
                        }
                    }
                    if epi.act.is_some() || epi.res.is_some() {
                        finish_tile(kern, rows, cols, row0, j * nr, n, epi, y, ldc);
                    }
                }
            }
            t0 = chunk.end;
        }
    }
}

/// Packs `m` rows of `x` into `MR`-row tiles (a reused buffer: the padding rows of a short
/// tile hold stale values, which no kernel reads; see the module docs), normalising
/// each row first when `norm` is given. Written in output order (one k after another, the
/// tile's rows side by side), reading `MR` rows as parallel streams.
fn pack_a(x: &[f32], m: usize, k: usize, lda: usize, mr: usize, norm: Option<Norm>) -> Scratch<f32> {
    let rt = RowTiles::new(m, mr);
    let tiles = rt.tiles();
    // Reused, not zeroed: a tile's padding rows are never read (each kernel reads its `rows`).
    let mut a = Scratch::new(tiles * k * mr);
    if k == 0 {
        return a;
    }
    #[cfg(target_arch = "x86_64")]
    let avx2 = std::arch::is_x86_feature_detected!("avx2");
    let fill = |(t, dst): (usize, &mut [f32])| {
        let rows = rt.rows(t);
        let src = &x[rt.start(t) * lda..];
        #[cfg(target_arch = "x86_64")]
        if avx2 && k >= 8 {
            let stats: Vec<(f32, f32)> = match norm {
                Some(nm) => (0..rows).map(|i| row_stats(&src[i * lda..i * lda + k], nm.eps)).collect(),
                None => Vec::new(),
            };
            // SAFETY: AVX2 was detected; `src` holds `rows` rows of `k` values `lda` apart and
            // `dst` one tile (`k × mr`), as the function requires.
            unsafe { super::x86::pack_tile_avx2(src, lda, rows, k, mr, dst, norm.map(|nm| (nm, stats.as_slice()))) };
            return;
        }
        match norm {
            None => {
                for (p, d) in dst.chunks_exact_mut(mr).enumerate() {
                    for (i, v) in d[..rows].iter_mut().enumerate() {
                        *v = src[i * lda + p];
                    }
                }
            }
            Some(nm) => {
                let stats: Vec<(f32, f32)> = (0..rows).map(|i| row_stats(&src[i * lda..i * lda + k], nm.eps)).collect();
                for (p, d) in dst.chunks_exact_mut(mr).enumerate() {
                    let (w, b) = (nm.w[p], nm.b[p]);
                    for (i, v) in d[..rows].iter_mut().enumerate() {
                        let (mean, inv) = stats[i];
                        *v = (src[i * lda + p] - mean) * inv * w + b;
                    }
                }
            }
        }
    };
    if tiles > 4 && threads() > 1 {
        a.par_chunks_mut(k * mr).enumerate().for_each(fill);
    } else {
        a.chunks_mut(k * mr).enumerate().for_each(fill);
    }
    a
}
