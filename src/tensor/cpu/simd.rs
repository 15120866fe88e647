//! Helpers every CPU kernel shares, importing nothing of ours: the vectorisable `exp`, the
//! thread count, parallel chunked maps and the `multiversion!` macro that compiles a hot loop
//! for AVX-512F, AVX2+FMA and the baseline.

use rayon::prelude::*;

/// e^x for f32 with ≈1e-7 relative error, written so that loops over it vectorise
/// (no libm call, no branches): range reduction by ln 2, then a degree-6 polynomial.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    const ROUND: f32 = 12_582_912.0; // 1.5·2²³: adding and subtracting rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let kr = x * LOG2E + ROUND;
    // The integer k sits in kr's low mantissa bits: read it with integer ops (a float-to-int
    // cast is a saturating conversion that does not vectorise).
    let ki = kr.to_bits() as i32 - ROUND.to_bits() as i32;
    let k = kr - ROUND;
    let r = x - k * LN2_HI - k * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((ki + 127) as u32) << 23)
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
