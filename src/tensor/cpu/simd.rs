//! Helpers every CPU kernel shares, importing nothing of ours: the vectorisable `exp`, the
//! thread count, parallel chunked maps and the `multiversion!` macro that compiles a hot loop
//! for AVX-512F, AVX2+FMA and the baseline.

use rayon::prelude::*;

/// 1.5·2²³: adding then subtracting it rounds an f32 of magnitude below 2²² to an integer,
/// ties to even, in plain adds that every target vectorises.
pub const ROUND: f32 = 12_582_912.0;
/// Round half to even for `|v| < 2²²` (every quantised value), in plain f32 adds that every
/// target vectorises (`f32::round_ties_even` is a libm call on baseline x86-64).
#[inline(always)]
pub fn rint(v: f32) -> f32 {
    (v + ROUND) - ROUND
}

/// [`exp`]'s constants, shared with its vector forms (the scan's AVX-512 `exp16`, wasm's
/// [`exp4`]): the input clamp, ln 2 in two parts, and the polynomial's coefficients for e^r,
/// highest first (Horner).
pub const EXP_CLAMP: [f32; 2] = [-87.0, 88.0];
pub const LN2_HI: f32 = 0.693_145_75;
pub const LN2_LO: f32 = 1.428_606_8e-6;
pub const EXP_POLY: [f32; 7] = [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0];

/// e^x for f32 with ≈1e-7 relative error, written so that loops over it vectorise
/// (no libm call, no branches): range reduction by ln 2, then a degree-6 polynomial
/// ([`EXP_POLY`], written out).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    let x = x.clamp(EXP_CLAMP[0], EXP_CLAMP[1]);
    let kr = x * LOG2E + ROUND;
    // The integer k sits in kr's low mantissa bits: read it with integer ops (a float-to-int
    // cast is a saturating conversion that does not vectorise).
    let ki = kr.to_bits() as i32 - ROUND.to_bits() as i32;
    let k = kr - ROUND;
    let r = x - k * LN2_HI - k * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((ki + 127) as u32) << 23)
}

/// [`exp`] four lanes at a time in SIMD128: the same operations in the same order, so the same
/// values (its clamp as `pmax`/`pmin`, which keep a NaN as the scalar clamp does).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
pub(crate) fn exp4(x: std::arch::wasm32::v128) -> std::arch::wasm32::v128 {
    use std::arch::wasm32::*;
    let c = f32x4_splat;
    let x = f32x4_pmin(f32x4_pmax(x, c(EXP_CLAMP[0])), c(EXP_CLAMP[1]));
    let kr = f32x4_add(f32x4_mul(x, c(std::f32::consts::LOG2_E)), c(ROUND));
    let ki = i32x4_sub(kr, i32x4_splat(ROUND.to_bits() as i32));
    let k = f32x4_sub(kr, c(ROUND));
    let r = f32x4_sub(f32x4_sub(x, f32x4_mul(k, c(LN2_HI))), f32x4_mul(k, c(LN2_LO)));
    let mut p = c(EXP_POLY[0]);
    for coef in &EXP_POLY[1..] {
        p = f32x4_add(c(*coef), f32x4_mul(r, p));
    }
    f32x4_mul(p, i32x4_shl(i32x4_add(ki, i32x4_splat(127)), 23))
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
pub(crate) fn chunk(len: usize, align: usize) -> usize {
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
            unsafe { $crate::tensor::cpu::simd::multiversion!(@dispatch $body; $($a: $t),*; $($r)?) }
        }
    };
    ($(#[$m:meta])* $vis:vis unsafe fn $name:ident($($a:ident: $t:ty),* $(,)?) $(-> $r:ty)? = $body:path;) => {
        $(#[$m])*
        /// # Safety
        /// As for the body it runs.
        #[allow(clippy::too_many_arguments)]
        $vis unsafe fn $name($($a: $t),*) $(-> $r)? {
            $crate::tensor::cpu::simd::multiversion!(@dispatch $body; $($a: $t),*; $($r)?)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate() {
        for i in -8700..8800 {
            let x = i as f32 / 100.0;
            let (a, b) = (exp(x), x.exp());
            assert!(((a - b) / b).abs() < 3e-7, "exp({x}) = {a}, want {b}");
        }
    }
}
