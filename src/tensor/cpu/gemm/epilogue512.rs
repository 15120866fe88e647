//! The epilogue of whole 32-column tiles written with AVX-512 intrinsics, for the engines whose
//! kernels leave their sums in a buffer (int8, AMX bf16): the same steps as [`write_tile`]
//! (`act(sums + b) + res`, the shared `exp`), but the activations' division is a
//! reciprocal estimate refined by one Newton step. `vdivps` on 16 lanes costs ~16 cycles, and
//! QuickGELU over fc1's output was a quarter of the int8 epilogue; the refined reciprocal is
//! within 2 ulp of the quotient.
//!
//! [`write_tile`]: super::epilogue::write_tile

use super::epilogue::{Epilogue, TileAt};
use crate::tensor::cpu::simd::exp;
use crate::tensor::Activation;
use std::arch::x86_64::*;

/// `e^x` on 16 lanes: the shared [`exp`] on each (inlined here, the loop compiles to one
/// AVX-512 pass; the lanes' values are the scalar function's).
#[inline]
#[target_feature(enable = "avx512f")]
fn exp16(x: __m512) -> __m512 {
    let mut v = [0f32; 16];
    // SAFETY: 16 lanes to and from a 16-value array.
    unsafe { _mm512_storeu_ps(v.as_mut_ptr(), x) };
    v.iter_mut().for_each(|e| *e = exp(*e));
    // SAFETY: as above.
    unsafe { _mm512_loadu_ps(v.as_ptr()) }
}

/// `x / (1 + e^(−a·x))` (QuickGELU with a = 1.702, SiLU with a = 1).
#[inline]
#[target_feature(enable = "avx512f")]
fn x_sigmoid(x: __m512, a: f32) -> __m512 {
    let d = _mm512_add_ps(_mm512_set1_ps(1.0), exp16(_mm512_mul_ps(_mm512_set1_ps(-a), x)));
    // 1/d to 14 bits, then one Newton step: r·(2 − d·r).
    let r = _mm512_rcp14_ps(d);
    let r = _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0)));
    _mm512_mul_ps(x, r)
}

/// Writes `act(row(i) + bias) + res` for every row of a whole 32-column tile; false (nothing
/// written) for a narrower tile or an activation other than none, QuickGELU and SiLU, which
/// the portable [`super::epilogue::write_tile`] handles.
///
/// # Safety
/// The CPU has AVX-512F; as for `write_tile`: the output block is writable, `epi`'s bias and
/// residual hold `n` and `[m, n]` values.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn write_rows32<R: Fn(usize) -> [__m512; 2]>(at: TileAt, epi: Epilogue, y: *mut f32, ldc: usize, row: R) -> bool {
    let a = match epi.act {
        None => 0.0,
        Some(Activation::QuickGelu) => 1.702,
        Some(Activation::Silu) => 1.0,
        Some(_) => return false,
    };
    if at.cols != 32 {
        return false;
    }
    let (b0, b1) = match epi.bias {
        Some(b) => (_mm512_loadu_ps(b.as_ptr().add(at.col0)), _mm512_loadu_ps(b.as_ptr().add(at.col0 + 16))),
        None => (_mm512_setzero_ps(), _mm512_setzero_ps()),
    };
    for i in 0..at.rows {
        let r = at.row0 + i;
        let [s0, s1] = row(i);
        let (mut v0, mut v1) = (_mm512_add_ps(s0, b0), _mm512_add_ps(s1, b1));
        if a != 0.0 {
            v0 = x_sigmoid(v0, a);
            v1 = x_sigmoid(v1, a);
        }
        if let Some(res) = epi.res {
            let p = res.as_ptr().add(r * at.n + at.col0);
            v0 = _mm512_add_ps(v0, _mm512_loadu_ps(p));
            v1 = _mm512_add_ps(v1, _mm512_loadu_ps(p.add(16)));
        }
        let out = y.add(r * ldc + at.col0);
        _mm512_storeu_ps(out, v0);
        _mm512_storeu_ps(out.add(16), v1);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::cpu::gemm::epilogue::write_tile;

    /// Against the portable epilogue on values over the activations' range (both tails, zero,
    /// exponents at the clamp), with and without a residual: within ~2 ulp.
    #[test]
    fn the_avx512_epilogue_matches_the_portable_one() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            // Then no engine that calls it may be offered.
            use crate::tensor::cpu::gemm::{int8::Int8MicroKernel, Bf16Engine};
            let int8 = Int8MicroKernel::available();
            assert!(!int8.contains(&Int8MicroKernel::Amx) && !int8.contains(&Int8MicroKernel::Avx512Vnni), "{int8:?}");
            assert!(Bf16Engine::available().is_empty());
            return;
        }
        let (rows, n) = (5, 64);
        let sums: Vec<f32> = (0..rows * 32).map(|i| (i as f32 - 80.0) * 0.37 + if i % 7 == 0 { 60.0 } else { 0.0 }).collect();
        let bias: Vec<f32> = (0..n).map(|c| c as f32 * 0.01 - 0.3).collect();
        let res: Vec<f32> = (0..rows * n).map(|i| (i % 11) as f32 * 0.1).collect();
        for act in [None, Some(Activation::QuickGelu), Some(Activation::Silu)] {
            for use_res in [false, true] {
                let epi = Epilogue { bias: Some(&bias), act, res: use_res.then_some(&res[..]), norm: None };
                let at = TileAt { rows, row0: 0, cols: 32, col0: 32, n };
                let (mut got, mut want) = (vec![0f32; rows * n], vec![0f32; rows * n]);
                // SAFETY: AVX-512F checked; the buffers are [rows, n].
                let wrote = unsafe {
                    write_rows32(at, epi, got.as_mut_ptr(), n, |i| [_mm512_loadu_ps(sums[i * 32..].as_ptr()), _mm512_loadu_ps(sums[i * 32 + 16..].as_ptr())])
                };
                assert!(wrote);
                let s = &sums;
                unsafe { write_tile(at, epi, want.as_mut_ptr(), n, |i| move |c| s[i * 32 + c]) };
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() <= 3e-7 * w.abs().max(1.0), "{act:?}: {g} vs {w}");
                }
            }
        }
        // Not its cases: an activation it does not have, a narrower tile.
        let mut out = [0f32; 32];
        let gelu = Epilogue { act: Some(Activation::Gelu), ..Default::default() };
        for (epi, cols) in [(gelu, 32), (Epilogue::default(), 16)] {
            // SAFETY: as above; nothing is written.
            let wrote = unsafe { write_rows32(TileAt { rows: 1, row0: 0, cols, col0: 0, n: 32 }, epi, out.as_mut_ptr(), 32, |_| [_mm512_set1_ps(1.0); 2]) };
            assert!(!wrote && out == [0.0; 32]);
        }
    }
}
