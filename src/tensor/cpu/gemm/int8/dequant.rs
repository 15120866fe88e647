//! The int8 engine's epilogue: each finished int32 tile dequantised, activated and added to
//! the residual in one pass per row, written to the output.

use super::super::{write_tile, Epilogue, TileAt};
use super::Int8MicroKernel;

/// A finished int32 tile and where it goes.
pub(super) struct Tile<'a> {
    pub(super) acc: &'a [i32],
    /// Subtracted from each column's sum ([`QuantWeight::comp`]).
    pub(super) comp: &'a [i32],
    pub(super) nr: usize,
    pub(super) rows: usize,
    pub(super) cols: usize,
    pub(super) row0: usize,
    pub(super) col0: usize,
    pub(super) n: usize,
}

/// `y = act(f32(acc − comp) · (s_x · s_w) + b) + res`, written to the output ([`write_tile`]).
#[inline(always)]
unsafe fn dequant_body(t: &Tile, sx: &[f32], sw: &[f32], epi: Epilogue, y: *mut f32, ldc: usize) {
    let cols = t.cols.min(64);
    let (sw, comp) = (&sw[..cols], &t.comp[..cols]);
    let at = TileAt { rows: t.rows, row0: t.row0, cols, col0: t.col0, n: t.n };
    write_tile(at, epi, y, ldc, |i| {
        let (acc, s) = (&t.acc[i * t.nr..][..cols], sx[i]);
        move |c| acc[c].wrapping_sub(comp[c]) as f32 * (s * sw[c])
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
            dequant_body(t, sx, sw, epi, y, ldc)
        }
        match kern {
            Int8MicroKernel::Amx | Int8MicroKernel::Avx512Vnni => return avx512(t, sx, sw, epi, y, ldc),
            Int8MicroKernel::Avx2 | Int8MicroKernel::AvxVnni => return avx2(t, sx, sw, epi, y, ldc),
            _ => {}
        }
    }
    let _ = kern;
    dequant_body(t, sx, sw, epi, y, ldc)
}
