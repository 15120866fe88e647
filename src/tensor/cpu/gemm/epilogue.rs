//! The fused epilogue (bias, activation, residual) applied to each tile in L1, the LayerNorm
//! prologue's parameters, and the activation and bf16-rounding loops it shares.

use super::MicroKernel;
use crate::tensor::cpu::simd::{exp, multiversion};
use crate::tensor::Activation;

/// What the epilogue applies to `x · Wᵀ`: `act(· + bias) + res`.
#[derive(Clone, Copy, Default)]
pub struct Epilogue<'a> {
    /// `[n]`.
    pub bias: Option<&'a [f32]>,
    pub act: Option<Activation>,
    /// `[m, n]`, added after the activation.
    pub res: Option<&'a [f32]>,
    /// A LayerNorm applied to the input rows as they are packed (the prologue): the product
    /// of a pre-norm block reads its input once, and no normalised copy is made.
    pub norm: Option<Norm<'a>>,
}

/// LayerNorm over each input row (`w`, `b` `[k]`), the same arithmetic as
/// `kernels::layer_norm_rows`.
#[derive(Clone, Copy, Debug)]
pub struct Norm<'a> {
    pub w: &'a [f32],
    pub b: &'a [f32],
    pub eps: f32,
}

/// Where a finished tile goes: rows `row0..row0 + rows` and columns `col0..col0 + cols` (at most
/// 64) of the `[m, n]` output.
#[derive(Clone, Copy)]
pub(crate) struct TileAt {
    pub(crate) rows: usize,
    pub(crate) row0: usize,
    pub(crate) cols: usize,
    pub(crate) col0: usize,
    pub(crate) n: usize,
}

/// `y = act(sums + b) + res` for one finished tile, written to the output (rows `ldc` apart) in
/// one pass per row that the compiler vectorises (no store is read back): the epilogue of the
/// engines whose kernels leave their sums in a buffer (int8, AMX bf16). `row(i)` gives row
/// `i`'s sums as f32 by column.
///
/// # Safety
/// The output block is writable; `epi`'s bias and residual hold `n` and `[m, n]` values.
#[inline(always)]
pub(crate) unsafe fn write_tile<R, G>(at: TileAt, epi: Epilogue, y: *mut f32, ldc: usize, row: R)
where
    R: Fn(usize) -> G,
    G: Fn(usize) -> f32,
{
    match epi.act {
        None => write_rows(at, epi, y, ldc, row, |v| v),
        Some(Activation::QuickGelu) => write_rows(at, epi, y, ldc, row, quick_gelu),
        Some(Activation::Silu) => write_rows(at, epi, y, ldc, row, silu),
        Some(a) => write_rows(at, epi, y, ldc, row, |v| {
            let mut one = [v];
            apply_act(&mut one, a);
            one[0]
        }),
    }
}

#[inline(always)]
unsafe fn write_rows<R, G>(at: TileAt, epi: Epilogue, y: *mut f32, ldc: usize, row: R, act: impl Fn(f32) -> f32)
where
    R: Fn(usize) -> G,
    G: Fn(usize) -> f32,
{
    const ZEROS: [f32; 64] = [0.0; 64];
    let cols = at.cols.min(64);
    let bias = epi.bias.map_or(&ZEROS[..cols], |b| &b[at.col0..at.col0 + cols]);
    if cols == 32 {
        // A whole 32-column tile (every one but a layer's last): fixed-width rows, which the
        // compiler unrolls into two vectors a row with no per-element bounds checks.
        let bias: &[f32; 32] = bias.try_into().unwrap_or(&[0.0; 32]);
        for i in 0..at.rows {
            let r = at.row0 + i;
            let out = &mut *(y.add(r * ldc + at.col0) as *mut [f32; 32]);
            let res: &[f32; 32] = epi.res.and_then(|v| v[r * at.n + at.col0..][..32].try_into().ok()).unwrap_or(&[0.0; 32]);
            let sums = row(i);
            for c in 0..32 {
                out[c] = act(sums(c) + bias[c]) + res[c];
            }
        }
        return;
    }
    for i in 0..at.rows {
        let r = at.row0 + i;
        let out = std::slice::from_raw_parts_mut(y.add(r * ldc + at.col0), cols);
        let res = epi.res.map_or(&ZEROS[..cols], |v| &v[r * at.n + at.col0..][..cols]);
        let sums = row(i);
        for c in 0..cols {
            out[c] = act(sums(c) + bias[c]) + res[c];
        }
    }
}

/// One input row as a product reads it: normalised into `tmp` (`[k]`) when there is a
/// LayerNorm prologue (`(v − mean) · inv · w + b`, the f32 engine's arithmetic), else itself.
#[inline]
pub(crate) fn normed_row<'a>(src: &'a [f32], norm: Option<Norm>, tmp: &'a mut [f32]) -> &'a [f32] {
    match norm {
        Some(nm) => {
            let (mean, inv) = crate::tensor::cpu::row_ops::row_stats(src, nm.eps);
            for (((o, &v), &w), &b) in tmp.iter_mut().zip(src).zip(nm.w).zip(nm.b) {
                *o = (v - mean) * inv * w + b;
            }
            tmp
        }
        None => src,
    }
}

/// The rest of the epilogue on a tile the kernel just wrote (bias included): the activation
/// and the residual, in place while the tile is in L1, compiled for the kernel's
/// instruction set.
///
/// # Safety
/// As for [`PackedWeight::matmul_raw`]; `epi.res`, if any, is `[m, n]`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn finish_tile(kern: MicroKernel, rows: usize, cols: usize, row0: usize, col0: usize, n: usize, epi: Epilogue, y: *mut f32, ldc: usize) {
    #[inline(always)]
    unsafe fn body(rows: usize, cols: usize, row0: usize, col0: usize, n: usize, epi: Epilogue, y: *mut f32, ldc: usize) {
        for i in 0..rows {
            let row = row0 + i;
            let out = std::slice::from_raw_parts_mut(y.add(row * ldc + col0), cols);
            if let Some(a) = epi.act {
                apply_act(out, a);
            }
            if let Some(r) = epi.res {
                out.iter_mut().zip(&r[row * n + col0..][..cols]).for_each(|(v, r)| *v += r);
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn avx512(rows: usize, cols: usize, row0: usize, col0: usize, n: usize, epi: Epilogue, y: *mut f32, ldc: usize) {
            body(rows, cols, row0, col0, n, epi, y, ldc)
        }
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn avx2(rows: usize, cols: usize, row0: usize, col0: usize, n: usize, epi: Epilogue, y: *mut f32, ldc: usize) {
            body(rows, cols, row0, col0, n, epi, y, ldc)
        }
        match kern {
            MicroKernel::Avx512 => return avx512(rows, cols, row0, col0, n, epi, y, ldc),
            MicroKernel::Avx2 => return avx2(rows, cols, row0, col0, n, epi, y, ldc),
            _ => {}
        }
    }
    let _ = kern;
    body(rows, cols, row0, col0, n, epi, y, ldc)
}

multiversion! {
    /// Rounds every value to bf16 (to nearest, ties to even), in place: the activations of
    /// `Precision::Bf16`.
    pub(crate) fn round_bf16(v: &mut [f32]) = round_bf16_body;
}

#[inline(always)]
fn round_bf16_body(v: &mut [f32]) {
    for x in v.iter_mut() {
        let b = x.to_bits();
        // NaN stays NaN (quiet); everything else rounds its low 16 bits away, ties to even.
        *x = if x.is_nan() { *x } else { f32::from_bits(b.wrapping_add(0x7fff + ((b >> 16) & 1)) & 0xffff_0000) };
    }
}

multiversion! {
    /// An activation in place, on its own (the GEMM epilogue applies the same [`apply_act`]).
    pub(crate) fn act_in_place(v: &mut [f32], a: Activation) = apply_act;
}

#[inline(always)]
pub(crate) fn quick_gelu(x: f32) -> f32 {
    x / (1.0 + exp(-1.702 * x))
}

#[inline(always)]
pub(crate) fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// The activations as the CPU backend computes them everywhere (same formulas as candle's).
#[inline(always)]
pub(crate) fn apply_act(v: &mut [f32], a: Activation) {
    match a {
        Activation::QuickGelu => v.iter_mut().for_each(|x| *x = quick_gelu(*x)),
        Activation::Silu => v.iter_mut().for_each(|x| *x = silu(*x)),
        Activation::Gelu => v.iter_mut().for_each(|x| *x = (candle_core::cpu::erf::erf_f32(*x * std::f32::consts::FRAC_1_SQRT_2) + 1.0) * 0.5 * *x),
        Activation::GeluTanh => v.iter_mut().for_each(|x| {
            let u = *x;
            *x = 0.5 * u * (1.0 + ((2.0f32 / std::f32::consts::PI).sqrt() * u * (1.0 + 0.044715 * u * u)).tanh());
        }),
        Activation::Softplus => v.iter_mut().for_each(|x| {
            if *x <= 20.0 {
                *x = x.exp().ln_1p();
            }
        }),
    }
}
