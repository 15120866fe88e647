//! Weights packed once at load into the micro-kernel's panels (f32, f16/bf16 halves, or int8).

use super::MicroKernel;
use crate::tensor::cpu::aligned::{Aligned, Plain};
use crate::tensor::cpu::simd::threads;
use rayon::prelude::*;

/// The weight's values in panel order.
#[derive(Debug)]
pub(super) enum Panels {
    F32(Aligned<f32>),
    F16(Aligned<half::f16>),
    Bf16(Aligned<half::bf16>),
    /// int8 with per-channel scales, multiplied by the int8 engine (`gemm::int8`).
    Int8(super::int8::QuantWeight),
    /// bf16 pairs for a bf16 dot-product engine (`gemm::bf16`: AMX, AVX-512 BF16).
    #[cfg(target_arch = "x86_64")]
    Bf16Dot(super::bf16::Bf16Weight),
}

/// A half-precision `[n, k]` weight as read from a checkpoint.
#[derive(Clone, Copy)]
pub enum HalfSlice<'a> {
    F16(&'a [half::f16]),
    Bf16(&'a [half::bf16]),
}

/// A `[n, k]` (HF `[out, in]`) weight packed for one kernel; see the module docs.
#[derive(Debug)]
pub struct PackedWeight {
    pub(super) kernel: MicroKernel,
    pub(super) n: usize,
    pub(super) k: usize,
    pub(super) panels: Panels,
    /// `Precision::Bf16`: the activations are rounded to bf16 as they are packed (the weights
    /// are bf16 panels), so the product is bf16 × bf16 with f32 sums.
    pub(super) round_a: bool,
}

/// Reorders `w` (`[n, k]`, rows `ldw` apart) into panels of `nr` columns, zero-padded.
fn pack_panels<T: Plain>(w: &[T], n: usize, k: usize, ldw: usize, nr: usize) -> Aligned<T> {
    let panels = n.div_ceil(nr);
    let mut out = Aligned::zeroed(panels * k * nr);
    if k == 0 {
        return out;
    }
    let fill = |(j, panel): (usize, &mut [T])| {
        for c in 0..nr.min(n - j * nr) {
            let row = &w[(j * nr + c) * ldw..][..k];
            for (p, &v) in row.iter().enumerate() {
                panel[p * nr + c] = v;
            }
        }
    };
    if panels * k * nr >= 1 << 16 && threads() > 1 {
        out.par_chunks_mut(k * nr).enumerate().for_each(fill);
    } else {
        out.chunks_mut(k * nr).enumerate().for_each(fill);
    }
    out
}

impl PackedWeight {
    /// Packs an f32 `[n, k]` weight for `kernel`.
    pub fn pack(w: &[f32], n: usize, k: usize, kernel: MicroKernel) -> Result<PackedWeight, String> {
        if w.len() != n * k {
            return Err(format!("linear weight: {} values for [{n}, {k}]", w.len()));
        }
        Ok(PackedWeight { kernel, n, k, panels: Panels::F32(pack_panels(w, n, k, k, kernel.nr())), round_a: false })
    }

    /// Packs `n` rows of `k` values, `ld` apart (a key matrix read out of a fused QKV
    /// projection: `S = Q · Kᵀ`).
    pub fn pack_rows(w: &[f32], n: usize, k: usize, ld: usize, kernel: MicroKernel) -> Result<PackedWeight, String> {
        if ld < k || (n > 0 && w.len() < (n - 1) * ld + k) {
            return Err(format!("pack: {} values are not {n} rows of {k} (row stride {ld})", w.len()));
        }
        Ok(PackedWeight { kernel, n, k, panels: Panels::F32(pack_panels(w, n, k, ld, kernel.nr())), round_a: false })
    }

    /// Packs the product's right side given as `[k, n]` (rows `ld` apart): `O = P · V`.
    pub fn pack_kn(v: &[f32], k: usize, n: usize, ld: usize, kernel: MicroKernel) -> Result<PackedWeight, String> {
        if ld < n || (k > 0 && v.len() < (k - 1) * ld + n) {
            return Err(format!("pack: {} values are not {k} rows of {n} (row stride {ld})", v.len()));
        }
        let nr = kernel.nr();
        let panels = n.div_ceil(nr);
        let mut out = Aligned::zeroed(panels * k * nr);
        for (j, panel) in out.chunks_mut((k * nr).max(1)).enumerate().take(panels) {
            let cols = nr.min(n - j * nr);
            for p in 0..k {
                panel[p * nr..][..cols].copy_from_slice(&v[p * ld + j * nr..][..cols]);
            }
        }
        Ok(PackedWeight { kernel, n, k, panels: Panels::F32(out), round_a: false })
    }

    /// Packs a half-precision weight, keeping it half (converted per block at run time).
    pub fn pack_half(w: HalfSlice, n: usize, k: usize, kernel: MicroKernel) -> Result<PackedWeight, String> {
        let len = match w {
            HalfSlice::F16(v) => v.len(),
            HalfSlice::Bf16(v) => v.len(),
        };
        if len != n * k {
            return Err(format!("linear weight: {len} values for half [{n}, {k}]"));
        }
        let panels = match w {
            HalfSlice::F16(v) => Panels::F16(pack_panels(v, n, k, k, kernel.nr())),
            HalfSlice::Bf16(v) => Panels::Bf16(pack_panels(v, n, k, k, kernel.nr())),
        };
        Ok(PackedWeight { kernel, n, k, panels, round_a: false })
    }

    /// Quantises an f32 `[n, k]` weight to int8 (`Precision::Int8`; see `gemm::int8`), packed for
    /// the best int8 kernel, or for `kernel` when given (tests, `bench gemm`).
    pub fn quantize(w: &[f32], n: usize, k: usize, kernel: Option<super::int8::Int8MicroKernel>) -> Result<PackedWeight, String> {
        let q = super::int8::QuantWeight::quantize(w, n, k, kernel.unwrap_or_else(super::int8::Int8MicroKernel::best))?;
        Ok(PackedWeight { kernel: MicroKernel::best(), n, k, panels: Panels::Int8(q), round_a: false })
    }

    /// A `[n, k]` weight for `Precision::Bf16`: bf16 panels (rounded to nearest even once, at
    /// load), and every activation tile rounded to bf16 as it is packed; f32 sums. The bf16
    /// numbers of an AMX/AVX-512 BF16 engine, on the f32 micro-kernels (half the weight bytes).
    pub fn pack_bf16(w: HalfSlice, n: usize, k: usize, kernel: MicroKernel) -> Result<PackedWeight, String> {
        let w = match w {
            HalfSlice::Bf16(v) => return Ok(PackedWeight { round_a: true, ..PackedWeight::pack_half(HalfSlice::Bf16(v), n, k, kernel)? }),
            HalfSlice::F16(v) => v.iter().map(|x| half::bf16::from_f32(x.to_f32())).collect::<Vec<_>>(),
        };
        Ok(PackedWeight { round_a: true, ..PackedWeight::pack_half(HalfSlice::Bf16(&w), n, k, kernel)? })
    }

    /// [`PackedWeight::pack_bf16`] on the fastest engine this CPU has: a bf16 dot-product
    /// engine where there is one (`gemm::bf16`: AMX-BF16, AVX-512 BF16; sums in another order,
    /// so not bit-equal to the f32 kernels' bf16 product), else the best f32 micro-kernel.
    pub fn pack_bf16_best(w: HalfSlice, n: usize, k: usize) -> Result<PackedWeight, String> {
        #[cfg(target_arch = "x86_64")]
        if let Some(engine) = super::bf16::Bf16Engine::best() {
            return PackedWeight::pack_bf16_on(w, n, k, engine);
        }
        PackedWeight::pack_bf16(w, n, k, MicroKernel::best())
    }

    /// [`PackedWeight::pack_bf16`] for one bf16 dot-product engine (tests, `bench gemm`).
    #[cfg(target_arch = "x86_64")]
    pub fn pack_bf16_on(w: HalfSlice, n: usize, k: usize, engine: super::bf16::Bf16Engine) -> Result<PackedWeight, String> {
        let packed = match w {
            HalfSlice::Bf16(v) => super::bf16::Bf16Weight::pack(v, n, k, engine)?,
            HalfSlice::F16(v) => super::bf16::Bf16Weight::pack(&v.iter().map(|x| half::bf16::from_f32(x.to_f32())).collect::<Vec<_>>(), n, k, engine)?,
        };
        Ok(PackedWeight { kernel: MicroKernel::best(), n, k, panels: Panels::Bf16Dot(packed), round_a: true })
    }

    /// Whether the weight is int8.
    pub fn is_int8(&self) -> bool {
        matches!(self.panels, Panels::Int8(_))
    }

    /// Bytes the weight holds in memory.
    pub fn bytes(&self) -> usize {
        match &self.panels {
            Panels::F32(v) => 4 * v.len(),
            Panels::F16(v) => 2 * v.len(),
            Panels::Bf16(v) => 2 * v.len(),
            Panels::Int8(q) => q.bytes(),
            #[cfg(target_arch = "x86_64")]
            Panels::Bf16Dot(t) => t.bytes(),
        }
    }

    /// Output features.
    pub fn n(&self) -> usize {
        self.n
    }
    /// Input features.
    pub fn k(&self) -> usize {
        self.k
    }
    pub fn is_half(&self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if matches!(self.panels, Panels::Bf16Dot(_)) {
            return true;
        }
        matches!(self.panels, Panels::F16(_) | Panels::Bf16(_))
    }
}
