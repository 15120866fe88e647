//! The bf16 engine on AMX-BF16 (`Precision::Bf16` where the CPU has it): bf16 weights packed
//! once into AMX B tiles, activations rounded to bf16 as they are packed into A tiles, f32 sums
//! (`tdpbf16ps`: products of bf16 exact, sums rounded to nearest even, denormals flushed), then
//! bias, activation and residual in one pass per row. The numbers are those of the f32
//! micro-kernels' bf16 path (`PackedWeight::pack_bf16`) up to the order of the f32 sums.
//!
//! Layout, in 4-byte words (a bf16 pair of one row or column): depth padded to 32, in blocks of
//! 16 pairs; the weight panel holds 32 columns, each block two halves of 16 columns, each half
//! 16 pairs × 64 bytes (a B tile); the activation tile 32 rows, each block two A tiles of 16
//! rows × 64 bytes. The same blocking as the int8 AMX kernel, which the two share
//! (`int8::amx::tiles`).

use super::int8::amx;
use super::{for_each_block, normed_row, write_tile, Epilogue, RowTiles, SendPtr, TileAt};
use crate::tensor::cpu::simd::threads;
use rayon::prelude::*;

const MR: usize = 32;
const NR: usize = 32;
/// Below this many multiply-adds a call runs on the calling thread.
const PARALLEL_MIN: usize = 1 << 18;
/// Packed activation rows a task keeps in L2 while its weight panels pass over them.
const A_CHUNK_BYTES: usize = 256 << 10;

/// A `[n, k]` bf16 weight packed into AMX B tiles.
#[derive(Debug)]
pub struct Bf16Tiles {
    n: usize,
    k: usize,
    /// Panels of `NR` columns, `kq` words deep (module docs), zero-padded.
    panels: Vec<u16>,
}

/// Words of depth for `k` (whole 16-pair blocks).
fn kq(k: usize) -> usize {
    k.div_ceil(32) * 16
}

impl Bf16Tiles {
    /// Whether this CPU has AMX-BF16 and this process may use it.
    pub fn usable() -> bool {
        amx::usable_bf16()
    }

    /// Packs a `[n, k]` row-major bf16 weight.
    pub fn pack(w: &[half::bf16], n: usize, k: usize) -> Result<Bf16Tiles, String> {
        if w.len() != n * k {
            return Err(format!("linear weight: {} values for bf16 [{n}, {k}]", w.len()));
        }
        let kq = kq(k);
        let mut panels = vec![0u16; n.div_ceil(NR) * kq * 2 * NR];
        if kq > 0 {
            let fill = |(j, panel): (usize, &mut [u16])| {
                for c in 0..NR.min(n - j * NR) {
                    for (p, v) in w[(j * NR + c) * k..][..k].iter().enumerate() {
                        let pair = p / 2;
                        panel[(((pair / 16) * 2 + c / 16) * 16 + pair % 16) * 32 + (c % 16) * 2 + p % 2] = v.to_bits();
                    }
                }
            };
            if n * k >= 1 << 16 && threads() > 1 {
                panels.par_chunks_mut(kq * 2 * NR).enumerate().for_each(fill);
            } else {
                panels.chunks_mut(kq * 2 * NR).enumerate().for_each(fill);
            }
        }
        Ok(Bf16Tiles { n, k, panels })
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        2 * self.panels.len()
    }

    /// `y[m, n] = act(x · Wᵀ + bias) + res` (the caller — `PackedWeight::matmul_raw` — has
    /// checked the shapes).
    ///
    /// # Safety
    /// As for `PackedWeight::matmul_raw`; [`Bf16Tiles::usable`] is true.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn matmul_raw(&self, x: &[f32], m: usize, lda: usize, epi: Epilogue, y: *mut f32, ldc: usize, parallel: bool) {
        let rt = RowTiles::full(m, MR);
        let a = pack_a(x, m, self.k, lda, epi, parallel);
        let yp = SendPtr(y);
        // SAFETY: each task writes only rows of its tiles × columns of its panels.
        for_each_block(rt.tiles(), self.n.div_ceil(NR), parallel && m * self.n * self.k >= PARALLEL_MIN, |t_range, p_range| unsafe {
            self.task(&a, rt, t_range, p_range, epi, yp.get(), ldc)
        });
    }

    #[allow(clippy::too_many_arguments)]
    unsafe fn task(&self, a: &[u16], rt: RowTiles, t_range: std::ops::Range<usize>, p_range: std::ops::Range<usize>, epi: Epilogue, y: *mut f32, ldc: usize) {
        let kq = kq(self.k);
        let mut acc = vec![0f32; MR * NR];
        let chunk_tiles = (A_CHUNK_BYTES / (kq * MR * 4).max(1)).max(1);
        let mut t0 = t_range.start;
        while t0 < t_range.end {
            let chunk = t0..(t0 + chunk_tiles).min(t_range.end);
            for j in p_range.clone() {
                let b = self.panels.as_ptr().add(j * kq * 2 * NR) as *const u8;
                for t in chunk.clone() {
                    let (row0, rows) = (rt.start(t), rt.rows(t));
                    let at = a.as_ptr().add(t * kq * 2 * MR) as *const u8;
                    if rows > 16 {
                        amx::tiles::<2, true>(kq, at, b, acc.as_mut_ptr() as *mut u8);
                    } else {
                        amx::tiles::<1, true>(kq, at, b, acc.as_mut_ptr() as *mut u8);
                    }
                    finish(&acc, rows, row0, j * NR, NR.min(self.n - j * NR), self.n, epi, y, ldc);
                }
            }
            t0 = chunk.end;
        }
    }
}

/// `y = act(acc + b) + res` for one tile ([`write_tile`]).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn finish(acc: &[f32], rows: usize, row0: usize, col0: usize, cols: usize, n: usize, epi: Epilogue, y: *mut f32, ldc: usize) {
    write_tile(TileAt { rows, row0, cols, col0, n }, epi, y, ldc, |i| {
        let acc = &acc[i * NR..][..cols];
        move |c| acc[c]
    });
}

/// The `m` rows of `x` (after the LayerNorm prologue, if any) rounded to bf16 (to nearest, ties
/// to even, as `half::bf16::from_f32`) into `MR`-row tiles of A tiles (module docs).
fn pack_a(x: &[f32], m: usize, k: usize, lda: usize, epi: Epilogue, parallel: bool) -> Vec<u16> {
    let rt = RowTiles::full(m, MR);
    let kq = kq(k);
    let mut a = vec![0u16; rt.tiles() * kq * 2 * MR];
    if kq == 0 {
        return a;
    }
    let fill = |(t, dst): (usize, &mut [u16])| {
        let (row0, rows) = (rt.start(t), rt.rows(t));
        let mut tmp = if epi.norm.is_some() { vec![0f32; k] } else { Vec::new() };
        for i in 0..rows {
            let src = &x[(row0 + i) * lda..][..k];
            let row = normed_row(src, epi.norm, &mut tmp);
            for (kb, block) in row.chunks(32).enumerate() {
                let at = ((kb * 2 + i / 16) * 16 + i % 16) * 32;
                for (d, &v) in dst[at..at + block.len()].iter_mut().zip(block) {
                    *d = half::bf16::from_f32(v).to_bits();
                }
            }
        }
    };
    if parallel && rt.tiles() > 4 && threads() > 1 {
        a.par_chunks_mut(kq * 2 * MR).enumerate().for_each(fill);
    } else {
        a.chunks_mut(kq * 2 * MR).enumerate().for_each(fill);
    }
    a
}
