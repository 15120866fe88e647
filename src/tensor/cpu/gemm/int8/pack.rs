//! The int8 engine's activation side: rows quantised on the fly (after the LayerNorm
//! prologue, if any) and packed into the kernel's row tiles.

use super::{quantize_row, quantize_row_u7, Int8MicroKernel, Layout};
use crate::tensor::cpu::gemm::{normed_row, Epilogue};
use crate::tensor::cpu::scratch::Scratch;
use crate::tensor::cpu::simd::threads;
use rayon::prelude::*;

/// Quantises the `m` rows of `x` (after the LayerNorm prologue, if any) and packs them into
/// `MR`-row tiles in the kernel's layout (see the module docs); returns the tiles, each
/// row's scale and, for [`Layout::QuadsU7`], each row's zero point (else nothing).
pub(super) fn pack_a(x: &[f32], m: usize, k: usize, lda: usize, kern: Int8MicroKernel, epi: Epilogue, parallel: bool) -> (Scratch<i32>, Vec<f32>, Vec<i32>) {
    let (mr, kq, layout) = (kern.mr(), kern.kq(k), kern.layout());
    let rt = kern.row_tiles(m);
    // Reused, not zeroed: every row's `kq` words are written (the depth padding from `q`'s
    // zeros); a tile's padding rows are read by AMX but their sums are never written out.
    let mut a = Scratch::new(rt.tiles() * kq * mr);
    let mut sx = vec![0f32; m];
    let mut zp = vec![0i32; if layout == Layout::QuadsU7 { m } else { 0 }];
    if kq == 0 {
        return (a, sx, zp);
    }
    // Each tile's rows: normalised (when asked), quantised, then laid out as the kernel reads.
    let fill = |(t, dst): (usize, &mut [i32])| -> Vec<(f32, i32)> {
        let (row0, rows) = (rt.start(t), rt.rows(t));
        let mut q = vec![0i8; kq * kern.unit()];
        let mut tmp = if epi.norm.is_some() { vec![0f32; k] } else { Vec::new() };
        let mut scales = Vec::with_capacity(rows);
        for i in 0..rows {
            let src = &x[(row0 + i) * lda..][..k];
            let row = normed_row(src, epi.norm, &mut tmp);
            let mut zero = 0;
            let scale = match layout {
                Layout::Pairs => {
                    let s = quantize_row(row, &mut q[..k]);
                    for (p, pair) in q.chunks_exact(2).enumerate() {
                        let (lo, hi) = (pair[0] as i16 as u16 as u32, pair[1] as i16 as u16 as u32);
                        dst[p * mr + i] = (lo | (hi << 16)) as i32;
                    }
                    s
                }
                Layout::QuadsU8 => {
                    let s = quantize_row(row, &mut q[..k]);
                    for (p, quad) in q.chunks_exact(4).enumerate() {
                        let b = |j: usize| (quad[j] as u8 ^ 0x80) as u32;
                        dst[p * mr + i] = (b(0) | b(1) << 8 | b(2) << 16 | b(3) << 24) as i32;
                    }
                    s
                }
                Layout::QuadsU7 => {
                    let u: &mut [u8] = bytemuck::cast_slice_mut(&mut q[..]);
                    let s;
                    (s, zero) = quantize_row_u7(row, &mut u[..k]);
                    for (p, quad) in u.chunks_exact(4).enumerate() {
                        dst[p * mr + i] = u32::from_le_bytes([quad[0], quad[1], quad[2], quad[3]]) as i32;
                    }
                    s
                }
                // Row-major int8: quantised straight into the tile (the padding stays zero).
                Layout::QuadsRows => {
                    let s = quantize_row(row, &mut q[..k]);
                    let bytes: &mut [i8] = bytemuck::cast_slice_mut(dst);
                    for (kb, block) in q.chunks_exact(64).enumerate() {
                        let at = ((kb * 2 + i / 16) * 16 + i % 16) * 64;
                        bytes[at..at + 64].copy_from_slice(block);
                    }
                    s
                }
            };
            scales.push((scale, zero));
        }
        scales
    };
    let per_tile: Vec<Vec<(f32, i32)>> = if parallel && rt.tiles() > 1 && threads() > 1 {
        a.par_chunks_mut(kq * mr).enumerate().map(fill).collect()
    } else {
        a.chunks_mut(kq * mr).enumerate().map(fill).collect()
    };
    for (t, s) in per_tile.into_iter().enumerate() {
        for (i, (scale, zero)) in s.into_iter().enumerate() {
            sx[rt.start(t) + i] = scale;
            if let Some(z) = zp.get_mut(rt.start(t) + i) {
                *z = zero;
            }
        }
    }
    (a, sx, zp)
}
