//! The int8 engine's epilogue: each finished int32 tile dequantised, activated and added to
//! the residual in one pass per row, written to the output.

use super::super::{apply_act, quick_gelu, silu, Epilogue};
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

/// `y = act(f32(acc − comp) · (s_x · s_w) + b) + res`, written to the output in one pass per
/// row (one loop the compiler vectorises: no store is read back).
#[inline(always)]
unsafe fn dequant_body(t: &Tile, sx: &[f32], sw: &[f32], epi: Epilogue, y: *mut f32, ldc: usize) {
    use crate::tensor::Activation;
    match epi.act {
        None => dequant_rows(t, sx, sw, epi, y, ldc, |v| v),
        Some(Activation::QuickGelu) => dequant_rows(t, sx, sw, epi, y, ldc, quick_gelu),
        Some(Activation::Silu) => dequant_rows(t, sx, sw, epi, y, ldc, silu),
        Some(a) => dequant_rows(t, sx, sw, epi, y, ldc, |v| {
            let mut one = [v];
            apply_act(&mut one, a);
            one[0]
        }),
    }
}

#[inline(always)]
unsafe fn dequant_rows(t: &Tile, sx: &[f32], sw: &[f32], epi: Epilogue, y: *mut f32, ldc: usize, act: impl Fn(f32) -> f32) {
    const ZEROS: [f32; 64] = [0.0; 64];
    let cols = t.cols.min(64);
    let bias = epi.bias.map_or(&ZEROS[..cols], |b| &b[t.col0..t.col0 + cols]);
    let (sw, comp) = (&sw[..cols], &t.comp[..cols]);
    for i in 0..t.rows {
        let row = t.row0 + i;
        let out = std::slice::from_raw_parts_mut(y.add(row * ldc + t.col0), cols);
        let res = epi.res.map_or(&ZEROS[..cols], |r| &r[row * t.n + t.col0..][..cols]);
        let (acc, s) = (&t.acc[i * t.nr..][..cols], sx[i]);
        for c in 0..cols {
            out[c] = act(acc[c].wrapping_sub(comp[c]) as f32 * (s * sw[c]) + bias[c]) + res[c];
        }
    }
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
            Int8MicroKernel::Avx2 => return avx2(t, sx, sw, epi, y, ldc),
            _ => {}
        }
    }
    let _ = kern;
    dequant_body(t, sx, sw, epi, y, ldc)
}
