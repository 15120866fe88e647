//! The int8 engine's epilogue: each finished int32 tile dequantised, activated and added to
//! the residual in one pass per row, written to the output.

#[cfg(target_arch = "x86_64")]
use super::super::epilogue512::write_rows32;
use super::super::{write_tile, Epilogue, TileAt};
use super::Int8MicroKernel;

/// A finished int32 tile and where it goes.
pub(super) struct Tile<'a> {
    pub(super) acc: &'a [i32],
    /// Subtracted from each column's sum ([`QuantWeight::comp`]), times the row's zero point
    /// where there are any.
    pub(super) comp: &'a [i32],
    /// Each row's zero point ([`Layout::QuadsU7`](super::Layout)), else empty.
    pub(super) zp: &'a [i32],
    pub(super) nr: usize,
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) row0: usize,
    pub(super) col0: usize,
    pub(super) n: usize,
}

/// `y = act(f32(acc − comp · zp) · (s_x · s_w) + b) + res` (`zp` = 1 without zero points),
/// written to the output ([`write_tile`]).
#[inline(always)]
unsafe fn dequant_body(t: &Tile, sx: &[f32], sw: &[f32], epi: Epilogue, y: *mut f32, ldc: usize) {
    let cols = t.cols.min(64);
    let (sw, comp) = (&sw[..cols], &t.comp[..cols]);
    let at = TileAt { rows: t.rows, row0: t.row0, cols, col0: t.col0, n: t.n };
    write_tile(at, epi, y, ldc, |i| {
        let (acc, s, z) = (&t.acc[i * t.nr..][..cols], sx[i], t.zp.get(i).copied().unwrap_or(1));
        move |c| acc[c].wrapping_sub(comp[c].wrapping_mul(z)) as f32 * (s * sw[c])
    });
}

pub(super) unsafe fn dequant_tile(kern: Int8MicroKernel, t: &Tile, sx: &[f32], sw: &[f32], epi: Epilogue, y: *mut f32, ldc: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(t: &Tile, sx: &[f32], sw: &[f32], epi: Epilogue, y: *mut f32, ldc: usize) {
            dequant_body(t, sx, sw, epi, y, ldc)
        }
        #[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
        unsafe fn avx512(t: &Tile, sx: &[f32], sw: &[f32], epi: Epilogue, y: *mut f32, ldc: usize) {
            use std::arch::x86_64::*;
            if t.cols == 32 && t.nr >= 32 && t.zp.is_empty() {
                // Whole tiles: the same arithmetic in intrinsics ([`write_rows32`]).
                let (w0, w1) = (_mm512_loadu_ps(sw.as_ptr()), _mm512_loadu_ps(sw.as_ptr().add(16)));
                let (c0, c1) = (_mm512_loadu_si512(t.comp.as_ptr() as *const _), _mm512_loadu_si512(t.comp.as_ptr().add(16) as *const _));
                let at = TileAt { rows: t.rows, row0: t.row0, cols: 32, col0: t.col0, n: t.n };
                let wrote = write_rows32(at, epi, y, ldc, |i| {
                    let s = _mm512_set1_ps(sx[i]);
                    let p = t.acc.as_ptr().add(i * t.nr);
                    let a0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_loadu_si512(p as *const _), c0));
                    let a1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_loadu_si512(p.add(16) as *const _), c1));
                    [_mm512_mul_ps(a0, _mm512_mul_ps(s, w0)), _mm512_mul_ps(a1, _mm512_mul_ps(s, w1))]
                });
                if wrote {
                    return;
                }
            }
            dequant_body(t, sx, sw, epi, y, ldc)
        }
        match kern {
            Int8MicroKernel::Amx | Int8MicroKernel::Avx512Vnni => return avx512(t, sx, sw, epi, y, ldc),
            Int8MicroKernel::Avx2 | Int8MicroKernel::AvxVnni => return avx2(t, sx, sw, epi, y, ldc),
            _ => {}
        }
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if super::wasm::dequant8(t, sx, sw, epi, y, ldc) {
        return;
    }
    let _ = kern;
    dequant_body(t, sx, sw, epi, y, ldc)
}
