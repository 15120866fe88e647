//! What a micro-kernel can reach: its tile alone in L1 and its instruction set's multiply-add
//! ceiling, for `bench gemm`.

use super::{MicroKernel, KC};
use crate::tensor::cpu::aligned::Aligned;

/// The micro-kernel alone, on one thread with its operands in L1 (a full `MR × NR` tile,
/// `KC` deep): GFLOP/s, the ceiling every larger product works under.
pub fn tile_gflops(kernel: MicroKernel, min_ms: f64) -> f64 {
    let (mr, nr) = (kernel.mr(), kernel.nr());
    let a = Aligned::filled(KC * mr, 0.5f32);
    let b = Aligned::filled(KC * nr, 0.25f32);
    let mut t = Aligned::<f32>::zeroed(mr * nr);
    let bias = vec![0f32; nr];
    let f = kernel.tile(mr);
    let (mut calls, t0) = (0u64, crate::clock::now_ms());
    loop {
        for _ in 0..256 {
            // SAFETY: the buffers have the sizes the kernel reads and writes.
            unsafe { f(KC, a.as_ptr(), b.as_ptr(), t.as_mut_ptr(), nr, bias.as_ptr()) };
        }
        calls += 256;
        let ms = crate::clock::now_ms() - t0;
        if ms >= min_ms {
            std::hint::black_box(&t);
            return (2 * mr * nr * KC) as f64 * calls as f64 / (ms * 1e6);
        }
    }
}

/// The kernel's instruction set alone, on one thread: as many independent multiply-add chains
/// as its micro-kernel keeps, in registers, no loads or stores — the ceiling
/// [`tile_gflops`] is measured against (on x86, the FMA units' peak at the clock the core runs).
/// None for the portable kernel (its instructions are the compiler's choice) and for wasm
/// SIMD128 without relaxed-simd (separate multiplies and adds, which V8 schedules as it
/// likes: no register-only loop we wrote measured more than the micro-kernel itself).
#[cfg_attr(all(target_arch = "wasm32", not(target_feature = "relaxed-simd")), allow(unreachable_code, unused_variables))]
pub fn peak_gflops(kernel: MicroKernel, min_ms: f64) -> Option<f64> {
    // Multiply-adds per round (×2 flops each; the kernels without FMA count a multiply or an
    // add as half of one).
    let (round, f): (usize, fn(usize) -> f32) = match kernel {
        // SAFETY: the kernel is only offered when the CPU has its features (`MicroKernel::available`).
        #[cfg(target_arch = "x86_64")]
        MicroKernel::Avx512 => (16 * 16, |n| unsafe { super::x86::peak_avx512(n) }),
        #[cfg(target_arch = "x86_64")]
        MicroKernel::Avx2 => (12 * 8, |n| unsafe { super::x86::peak_avx2(n) }),
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        MicroKernel::Simd128 => (48, super::wasm::peak_simd128),
        _ => return None,
    };
    let n = 1 << 14;
    let (mut rounds, t0) = (0u64, crate::clock::now_ms());
    loop {
        std::hint::black_box(f(std::hint::black_box(n)));
        rounds += n as u64;
        let ms = crate::clock::now_ms() - t0;
        if ms >= min_ms {
            return Some((2 * round) as f64 * rounds as f64 / (ms * 1e6));
        }
    }
}
