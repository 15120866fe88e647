//! The CPU GEMM engine behind every linear layer: `y = act(x · Wᵀ + b) + res`.
//!
//! Built the way ONNX Runtime's MLAS and BLIS build theirs:
//! - **Weights are packed once, at load** ([`PackedWeight`]), into the layout the micro-kernel
//!   streams: panels of `NR` output columns, each `K × NR` contiguous (`W[j·NR + c][p]` at
//!   `p·NR + c`), the last panel zero-padded. f16/bf16 weights stay half in their panels and are
//!   converted to f32 one whole `K × NR` panel at a time, once per panel and task, into a
//!   buffer that stays in L2 while the row tiles pass over it (half the memory of f32 panels,
//!   and a Qwen LM layer streams half the bytes; the conversion is cheap next to the loads it
//!   saves).
//! - **Activations are packed per call** into row tiles of at most `MR` rows, balanced (`A[start(t) + i][p]` at
//!   `t·K·MR + p·MR + i`), so the micro-kernel reads A and B through one pointer each.
//! - **A register-blocked micro-kernel per target**, picked at run time ([`Kernel::best`]):
//!   AVX-512F (12 × 32, 24 zmm accumulators), AVX2+FMA (6 × 16), wasm SIMD128 (4 × 8; with
//!   `-C target-feature=+relaxed-simd` it uses `relaxed_madd`, otherwise mul + add, since not
//!   every browser has relaxed SIMD), and a portable one (4 × 8) that the compiler vectorises.
//! - **Blocking**: no K blocking — each tile runs the whole K in registers (a ViT panel,
//!   `K × NR` = 768 × 32 floats = 96 KB for AVX-512, stays in L2 while every row tile of the
//!   task passes over it); the packed rows are taken in chunks of at most `A_CHUNK_BYTES`
//!   (512 KB) so that a large batch stays in L2 across its panels; rayon over output blocks
//!   natively, the whole M of a small call in one task so that each weight panel is read from
//!   memory once. (`KC` only sizes the in-L1 micro-kernel measurement of `bench gemm`.)
//! - **Fused epilogue**: bias, activation and residual are applied to each finished tile while
//!   it is in L1, on its way to the output, so a projection makes one pass over memory.

use super::super::kernels::{exp, multiversion, threads};
use super::super::Activation;
use rayon::prelude::*;

/// Rows of the wasm SIMD128 tile. V8 gives wasm 16 xmm registers and allocates them itself: a
/// 6 × 8 tile (12 accumulators + 2 panel vectors + a broadcast + the product) spilled, and
/// ViT-B/16 ran in 1115 ms in Chromium against 641 ms with 4 × 8 (5 × 8: 1284 ms).
const WASM_MR: usize = 4;
/// Depth of the in-L1 micro-kernel measurement ([`tile_gflops`]).
const KC: usize = 256;
/// Packed activation rows a task keeps in L2 while its weight panels pass over them.
const A_CHUNK_BYTES: usize = 512 << 10;
/// Below this many multiply-adds a call runs on the calling thread.
const PARALLEL_MIN: usize = 1 << 18;

/// A micro-kernel family (one instruction set), with its tile shape `MR × NR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx512,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx2,
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    Simd128,
    Portable,
}

impl Kernel {
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx512 => "avx512f 12x32",
            Kernel::Avx2 => "avx2+fma 6x16",
            Kernel::Simd128 => {
                if cfg!(target_feature = "relaxed-simd") {
                    "wasm simd128+relaxed 4x8"
                } else {
                    "wasm simd128 4x8"
                }
            }
            Kernel::Portable => "portable 4x8",
        }
    }

    /// Rows of a full tile.
    pub fn mr(self) -> usize {
        match self {
            Kernel::Avx512 => 12,
            Kernel::Avx2 => 6,
            Kernel::Simd128 => WASM_MR,
            Kernel::Portable => 4,
        }
    }

    /// Columns of a tile (= width of a weight panel).
    pub fn nr(self) -> usize {
        match self {
            Kernel::Avx512 => 32,
            Kernel::Avx2 => 16,
            Kernel::Simd128 | Kernel::Portable => 8,
        }
    }

    /// Every kernel this CPU can run, fastest first.
    pub fn available() -> Vec<Kernel> {
        let mut v = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                v.push(Kernel::Avx512);
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                v.push(Kernel::Avx2);
            }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        v.push(Kernel::Simd128);
        v.push(Kernel::Portable);
        v
    }

    /// The fastest kernel this CPU can run (detected once).
    pub fn best() -> Kernel {
        static BEST: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| Kernel::available()[0])
    }

    /// The micro-kernel for a tile of `rows` (1..=MR) rows.
    fn tile(self, rows: usize) -> TileFn {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => x86::AVX512[rows - 1],
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => x86::AVX2[rows - 1],
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Kernel::Simd128 => wasm::SIMD128[rows - 1],
            _ => portable::PORTABLE[rows - 1],
        }
    }
}

/// `tile(k, a, b, c, ldc, bias)`: `c[R × NR] = bias + A_tile · B_panel` for the function's `R`
/// rows, `k` deep; `a` points at the packed A tile (stride MR per k), `b` at the packed panel
/// (stride NR per k), `c` at the output (rows `ldc` apart), `bias` at `NR` values or is null.
type TileFn = unsafe fn(k: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, bias: *const f32);

/// Builds the table `[k::<1>, …, k::<N>]` of a kernel generic over its row count.
macro_rules! tile_table {
    ($k:ident; $($r:literal)*) => {
        [$($k::<$r> as TileFn),*]
    };
}

mod portable {
    use super::TileFn;
    const MR: usize = 4;
    const NR: usize = 8;

    /// # Safety
    /// `a` holds `k·MR`, `b` `k·NR` valid f32s; `c` rows `R × NR` (`ldc` apart) are writable;
    /// `bias` is null or holds `NR` f32s.
    pub unsafe fn k<const R: usize>(k: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, bias: *const f32) {
        let init = if bias.is_null() { [0f32; NR] } else { *(bias as *const [f32; NR]) };
        let mut acc = [init; R];
        for p in 0..k {
            let bp = std::slice::from_raw_parts(b.add(p * NR), NR);
            for (i, row) in acc.iter_mut().enumerate() {
                let av = *a.add(p * MR + i);
                for (v, &bv) in row.iter_mut().zip(bp) {
                    *v += av * bv;
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            std::ptr::copy_nonoverlapping(row.as_ptr(), c.add(i * ldc), NR);
        }
    }

    pub static PORTABLE: [TileFn; MR] = tile_table!(k; 1 2 3 4);
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::TileFn;
    use std::arch::x86_64::*;

    /// 12 × 32: two zmm per row, 24 accumulators.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `a` holds `k·12`, `b` `k·32` valid f32s; `c` rows `R × 32` (`ldc` apart) are
    /// writable; `bias` is null or holds 32 f32s.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn avx512<const R: usize>(k: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, bias: *const f32) {
        const MR: usize = 12;
        const NR: usize = 32;
        let (i0, i1) = if bias.is_null() { (_mm512_setzero_ps(), _mm512_setzero_ps()) } else { (_mm512_loadu_ps(bias), _mm512_loadu_ps(bias.add(16))) };
        let mut c0 = [i0; R];
        let mut c1 = [i1; R];
        let (mut ap, mut bp) = (a, b);
        for _ in 0..k {
            let b0 = _mm512_loadu_ps(bp);
            let b1 = _mm512_loadu_ps(bp.add(16));
            for i in 0..R {
                let av = _mm512_set1_ps(*ap.add(i));
                c0[i] = _mm512_fmadd_ps(av, b0, c0[i]);
                c1[i] = _mm512_fmadd_ps(av, b1, c1[i]);
            }
            ap = ap.add(MR);
            bp = bp.add(NR);
        }
        for i in 0..R {
            _mm512_storeu_ps(c.add(i * ldc), c0[i]);
            _mm512_storeu_ps(c.add(i * ldc + 16), c1[i]);
        }
    }

    /// 6 × 16: two ymm per row, 12 accumulators (of 16 registers).
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `a` holds `k·6`, `b` `k·16` valid f32s; `c` rows `R × 16` (`ldc` apart) are
    /// writable; `bias` is null or holds 16 f32s.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2<const R: usize>(k: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, bias: *const f32) {
        const MR: usize = 6;
        const NR: usize = 16;
        if R == 1 {
            return avx2_row(k, a, b, c, bias);
        }
        let (i0, i1) = if bias.is_null() { (_mm256_setzero_ps(), _mm256_setzero_ps()) } else { (_mm256_loadu_ps(bias), _mm256_loadu_ps(bias.add(8))) };
        let mut c0 = [i0; R];
        let mut c1 = [i1; R];
        let (mut ap, mut bp) = (a, b);
        for _ in 0..k {
            let b0 = _mm256_loadu_ps(bp);
            let b1 = _mm256_loadu_ps(bp.add(8));
            for i in 0..R {
                let av = _mm256_broadcast_ss(&*ap.add(i));
                c0[i] = _mm256_fmadd_ps(av, b0, c0[i]);
                c1[i] = _mm256_fmadd_ps(av, b1, c1[i]);
            }
            ap = ap.add(MR);
            bp = bp.add(NR);
        }
        for i in 0..R {
            _mm256_storeu_ps(c.add(i * ldc), c0[i]);
            _mm256_storeu_ps(c.add(i * ldc + 8), c1[i]);
        }
    }

    /// The 6 × 16 kernel's one-row case (a decoding step's products, M = 1): every weight is
    /// used once, so the loop is bound by how fast the panel streams in, not by FMAs. Four k
    /// steps at a time into eight accumulators (the two of the general loop would chain each
    /// FMA on the last one's latency), summed at the end.
    ///
    /// # Safety
    /// As for [`avx2`] with one row.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2_row(k: usize, a: *const f32, b: *const f32, c: *mut f32, bias: *const f32) {
        const MR: usize = 6;
        const NR: usize = 16;
        let z = _mm256_setzero_ps();
        let mut acc = [z; 8];
        if !bias.is_null() {
            acc[0] = _mm256_loadu_ps(bias);
            acc[1] = _mm256_loadu_ps(bias.add(8));
        }
        let (mut ap, mut bp) = (a, b);
        for _ in 0..k / 4 {
            for u in 0..4 {
                let av = _mm256_broadcast_ss(&*ap.add(u * MR));
                acc[2 * u] = _mm256_fmadd_ps(av, _mm256_loadu_ps(bp.add(u * NR)), acc[2 * u]);
                acc[2 * u + 1] = _mm256_fmadd_ps(av, _mm256_loadu_ps(bp.add(u * NR + 8)), acc[2 * u + 1]);
            }
            ap = ap.add(4 * MR);
            bp = bp.add(4 * NR);
        }
        for _ in 0..k % 4 {
            let av = _mm256_broadcast_ss(&*ap);
            acc[0] = _mm256_fmadd_ps(av, _mm256_loadu_ps(bp), acc[0]);
            acc[1] = _mm256_fmadd_ps(av, _mm256_loadu_ps(bp.add(8)), acc[1]);
            ap = ap.add(MR);
            bp = bp.add(NR);
        }
        let lo = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[4], acc[6]));
        let hi = _mm256_add_ps(_mm256_add_ps(acc[1], acc[3]), _mm256_add_ps(acc[5], acc[7]));
        _mm256_storeu_ps(c, lo);
        _mm256_storeu_ps(c.add(8), hi);
    }

    /// One tile of [`super::pack_a`] with AVX2: 8 columns of up to 8 rows at a time are loaded
    /// (normalised with the same operations, in the same order, as the scalar path: `(v -
    /// mean) · inv · w + b`, no FMA) and transposed in registers, so the gather that turns rows
    /// into the kernel's `[k][MR]` layout is no longer one scalar load and store per value.
    ///
    /// # Safety
    /// The CPU has AVX2; `src` holds `rows ≤ mr` rows of `k` values `lda` apart; `dst` is
    /// `k × mr`; with a norm, `stats` has `rows` entries and the norm's `w`, `b` hold `k`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn pack_tile_avx2(src: &[f32], lda: usize, rows: usize, k: usize, mr: usize, dst: &mut [f32], norm: Option<(super::Norm, &[(f32, f32)])>) {
        let k8 = k - k % 8;
        let mut tmp = [0f32; 8];
        for i0 in (0..rows).step_by(8) {
            let n = (rows - i0).min(8);
            for p0 in (0..k8).step_by(8) {
                let mut r = [_mm256_setzero_ps(); 8];
                for (i, ri) in r.iter_mut().enumerate().take(n) {
                    let mut v = _mm256_loadu_ps(src.as_ptr().add((i0 + i) * lda + p0));
                    if let Some((nm, stats)) = norm {
                        let (mean, inv) = stats[i0 + i];
                        v = _mm256_sub_ps(v, _mm256_set1_ps(mean));
                        v = _mm256_mul_ps(v, _mm256_set1_ps(inv));
                        v = _mm256_mul_ps(v, _mm256_loadu_ps(nm.w.as_ptr().add(p0)));
                        v = _mm256_add_ps(v, _mm256_loadu_ps(nm.b.as_ptr().add(p0)));
                    }
                    *ri = v;
                }
                let t0 = _mm256_unpacklo_ps(r[0], r[1]);
                let t1 = _mm256_unpackhi_ps(r[0], r[1]);
                let t2 = _mm256_unpacklo_ps(r[2], r[3]);
                let t3 = _mm256_unpackhi_ps(r[2], r[3]);
                let t4 = _mm256_unpacklo_ps(r[4], r[5]);
                let t5 = _mm256_unpackhi_ps(r[4], r[5]);
                let t6 = _mm256_unpacklo_ps(r[6], r[7]);
                let t7 = _mm256_unpackhi_ps(r[6], r[7]);
                let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                let cols = [
                    _mm256_permute2f128_ps::<0x20>(s0, s4),
                    _mm256_permute2f128_ps::<0x20>(s1, s5),
                    _mm256_permute2f128_ps::<0x20>(s2, s6),
                    _mm256_permute2f128_ps::<0x20>(s3, s7),
                    _mm256_permute2f128_ps::<0x31>(s0, s4),
                    _mm256_permute2f128_ps::<0x31>(s1, s5),
                    _mm256_permute2f128_ps::<0x31>(s2, s6),
                    _mm256_permute2f128_ps::<0x31>(s3, s7),
                ];
                for (j, c) in cols.iter().enumerate() {
                    let d = dst.as_mut_ptr().add((p0 + j) * mr + i0);
                    if n == 8 {
                        _mm256_storeu_ps(d, *c);
                    } else {
                        _mm256_storeu_ps(tmp.as_mut_ptr(), *c);
                        std::ptr::copy_nonoverlapping(tmp.as_ptr(), d, n);
                    }
                }
            }
        }
        // The last k % 8 columns, one value at a time.
        for p in k8..k {
            for i in 0..rows {
                let v = src[i * lda + p];
                dst[p * mr + i] = match norm {
                    Some((nm, stats)) => (v - stats[i].0) * stats[i].1 * nm.w[p] + nm.b[p],
                    None => v,
                };
            }
        }
    }

    /// `n` rounds of 16 independent zmm multiply-adds in registers (enough chains to cover the
    /// FMA latency on every core we know; with 24 LLVM spills some to the stack).
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn peak_avx512(n: usize) -> f32 {
        let (m, a) = (_mm512_set1_ps(0.999_99), _mm512_set1_ps(1e-6));
        let mut c = [_mm512_set1_ps(1.0); 16];
        for _ in 0..n {
            for v in c.iter_mut() {
                *v = _mm512_fmadd_ps(*v, m, a);
            }
        }
        c.iter().map(|&v| _mm512_reduce_add_ps(v)).sum()
    }

    /// `n` rounds of 12 independent ymm multiply-adds in registers (the 6 × 16 tile's chains).
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn peak_avx2(n: usize) -> f32 {
        let (m, a) = (_mm256_set1_ps(0.999_99), _mm256_set1_ps(1e-6));
        let mut c = [_mm256_set1_ps(1.0); 12];
        for _ in 0..n {
            for v in c.iter_mut() {
                *v = _mm256_fmadd_ps(*v, m, a);
            }
        }
        let mut out = [0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), c.iter().fold(_mm256_setzero_ps(), |s, &v| _mm256_add_ps(s, v)));
        out.iter().sum()
    }

    pub static AVX512: [TileFn; 12] = tile_table!(avx512; 1 2 3 4 5 6 7 8 9 10 11 12);
    pub static AVX2: [TileFn; 6] = tile_table!(avx2; 1 2 3 4 5 6);
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm {
    use super::TileFn;
    use std::arch::wasm32::*;

    #[inline(always)]
    fn madd(a: v128, b: v128, c: v128) -> v128 {
        #[cfg(target_feature = "relaxed-simd")]
        {
            f32x4_relaxed_madd(a, b, c)
        }
        #[cfg(not(target_feature = "relaxed-simd"))]
        {
            f32x4_add(f32x4_mul(a, b), c)
        }
    }

    /// 4 × 8: two v128 per row, 8 accumulators (see [`super::WASM_MR`]).
    ///
    /// # Safety
    /// `a` holds `k·6`, `b` `k·8` valid f32s; `c` rows `R × 8` (`ldc` apart) are
    /// writable; `bias` is null or holds 8 f32s.
    pub unsafe fn simd128<const R: usize>(k: usize, a: *const f32, b: *const f32, c: *mut f32, ldc: usize, bias: *const f32) {
        const MR: usize = super::WASM_MR;
        const NR: usize = 8;
        let (i0, i1) =
            if bias.is_null() { (f32x4_splat(0.0), f32x4_splat(0.0)) } else { (v128_load(bias as *const v128), v128_load(bias.add(4) as *const v128)) };
        let mut c0 = [i0; R];
        let mut c1 = [i1; R];
        let (mut ap, mut bp) = (a, b);
        for _ in 0..k {
            let b0 = v128_load(bp as *const v128);
            let b1 = v128_load(bp.add(4) as *const v128);
            for i in 0..R {
                let av = f32x4_splat(*ap.add(i));
                c0[i] = madd(av, b0, c0[i]);
                c1[i] = madd(av, b1, c1[i]);
            }
            ap = ap.add(MR);
            bp = bp.add(NR);
        }
        for i in 0..R {
            v128_store(c.add(i * ldc) as *mut v128, c0[i]);
            v128_store(c.add(i * ldc + 4) as *mut v128, c1[i]);
        }
    }

    /// `n` rounds of 12 independent `relaxed_madd` chains in registers (FMA where the
    /// browser has relaxed-simd).
    #[cfg(target_feature = "relaxed-simd")]
    pub fn peak_simd128(n: usize) -> f32 {
        let (m, a) = (f32x4_splat(0.999_99), f32x4_splat(1e-6));
        let mut v = [f32x4_splat(std::hint::black_box(1.0)); 12];
        for _ in 0..n {
            for c in v.iter_mut() {
                *c = madd(*c, m, a);
            }
        }
        let s = v.iter().fold(f32x4_splat(0.0), |s, &c| f32x4_add(s, c));
        f32x4_extract_lane::<0>(s) + f32x4_extract_lane::<1>(s) + f32x4_extract_lane::<2>(s) + f32x4_extract_lane::<3>(s)
    }

    pub static SIMD128: [TileFn; super::WASM_MR] = tile_table!(simd128; 1 2 3 4);
}

/// The weight's values in panel order.
#[derive(Debug)]
enum Panels {
    F32(Vec<f32>),
    F16(Vec<half::f16>),
    Bf16(Vec<half::bf16>),
    /// int8 with per-channel scales, multiplied by the int8 engine (`qgemm`).
    Int8(super::qgemm::QuantWeight),
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
    kernel: Kernel,
    n: usize,
    k: usize,
    panels: Panels,
    /// `Precision::Bf16`: the activations are rounded to bf16 as they are packed (the weights
    /// are bf16 panels), so the product is bf16 × bf16 with f32 sums.
    round_a: bool,
}

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

/// Reorders `w` (`[n, k]`, rows `ldw` apart) into panels of `nr` columns, zero-padded.
fn pack_panels<T: Copy + Default + Send + Sync>(w: &[T], n: usize, k: usize, ldw: usize, nr: usize) -> Vec<T> {
    let panels = n.div_ceil(nr);
    let mut out = vec![T::default(); panels * k * nr];
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

/// An output pointer shared by tasks that write disjoint parts of it (tiles of a product,
/// heads of an attention output).
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: every user writes only its own disjoint part of the buffer.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    pub(crate) fn get(&self) -> *mut f32 {
        self.0
    }
}

impl PackedWeight {
    /// Packs an f32 `[n, k]` weight for `kernel`.
    pub fn pack(w: &[f32], n: usize, k: usize, kernel: Kernel) -> Result<PackedWeight, String> {
        if w.len() != n * k {
            return Err(format!("linear weight: {} values for [{n}, {k}]", w.len()));
        }
        Ok(PackedWeight { kernel, n, k, panels: Panels::F32(pack_panels(w, n, k, k, kernel.nr())), round_a: false })
    }

    /// Packs `n` rows of `k` values, `ld` apart (a key matrix read out of a fused QKV
    /// projection: `S = Q · Kᵀ`).
    pub fn pack_rows(w: &[f32], n: usize, k: usize, ld: usize, kernel: Kernel) -> Result<PackedWeight, String> {
        if ld < k || (n > 0 && w.len() < (n - 1) * ld + k) {
            return Err(format!("pack: {} values are not {n} rows of {k} (row stride {ld})", w.len()));
        }
        Ok(PackedWeight { kernel, n, k, panels: Panels::F32(pack_panels(w, n, k, ld, kernel.nr())), round_a: false })
    }

    /// Packs the product's right side given as `[k, n]` (rows `ld` apart): `O = P · V`.
    pub fn pack_kn(v: &[f32], k: usize, n: usize, ld: usize, kernel: Kernel) -> Result<PackedWeight, String> {
        if ld < n || (k > 0 && v.len() < (k - 1) * ld + n) {
            return Err(format!("pack: {} values are not {k} rows of {n} (row stride {ld})", v.len()));
        }
        let nr = kernel.nr();
        let panels = n.div_ceil(nr);
        let mut out = vec![0f32; panels * k * nr];
        for (j, panel) in out.chunks_mut((k * nr).max(1)).enumerate().take(panels) {
            let cols = nr.min(n - j * nr);
            for p in 0..k {
                panel[p * nr..][..cols].copy_from_slice(&v[p * ld + j * nr..][..cols]);
            }
        }
        Ok(PackedWeight { kernel, n, k, panels: Panels::F32(out), round_a: false })
    }

    /// Packs a half-precision weight, keeping it half (converted per block at run time).
    pub fn pack_half(w: HalfSlice, n: usize, k: usize, kernel: Kernel) -> Result<PackedWeight, String> {
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

    /// Quantises an f32 `[n, k]` weight to int8 (`Precision::Int8`; see `qgemm`), packed for
    /// the best int8 kernel, or for `kernel` when given (tests, `bench gemm`).
    pub fn quantize(w: &[f32], n: usize, k: usize, kernel: Option<super::qgemm::QKernel>) -> Result<PackedWeight, String> {
        let q = super::qgemm::QuantWeight::quantize(w, n, k, kernel.unwrap_or_else(super::qgemm::QKernel::best))?;
        Ok(PackedWeight { kernel: Kernel::best(), n, k, panels: Panels::Int8(q), round_a: false })
    }

    /// A `[n, k]` weight for `Precision::Bf16`: bf16 panels (rounded to nearest even once, at
    /// load), and every activation tile rounded to bf16 as it is packed; f32 sums. The bf16
    /// numbers of an AMX/AVX-512 BF16 engine, on the f32 micro-kernels (half the weight bytes).
    pub fn pack_bf16(w: HalfSlice, n: usize, k: usize, kernel: Kernel) -> Result<PackedWeight, String> {
        let w = match w {
            HalfSlice::Bf16(v) => return Ok(PackedWeight { round_a: true, ..PackedWeight::pack_half(HalfSlice::Bf16(v), n, k, kernel)? }),
            HalfSlice::F16(v) => v.iter().map(|x| half::bf16::from_f32(x.to_f32())).collect::<Vec<_>>(),
        };
        Ok(PackedWeight { round_a: true, ..PackedWeight::pack_half(HalfSlice::Bf16(&w), n, k, kernel)? })
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
        matches!(self.panels, Panels::F16(_) | Panels::Bf16(_))
    }

    /// `y[m, n] = act(x · Wᵀ + bias) + res`, `x` being `m` rows of `k` values `lda` apart.
    pub fn matmul(&self, x: &[f32], m: usize, lda: usize, epi: Epilogue, y: &mut [f32]) -> Result<(), String> {
        if y.len() < m * self.n {
            return Err(format!("linear: output of {} values for [{m}, {}]", y.len(), self.n));
        }
        // SAFETY: `y` holds the `m` rows of `n` written.
        unsafe { self.matmul_raw(x, m, lda, epi, y.as_mut_ptr(), self.n, true) }
    }

    /// [`PackedWeight::matmul`] into a new `[m, n]` buffer (not zeroed first: the engine
    /// writes every element).
    pub fn matmul_new(&self, x: &[f32], m: usize, lda: usize, epi: Epilogue) -> Result<Vec<f32>, String> {
        let len = m * self.n;
        let mut y = Vec::with_capacity(len);
        // SAFETY: the buffer has room for the `m` rows of `n`; on success every one of those
        // elements was written (each tile covers its rows and all of its panel's columns), so
        // the length may cover them.
        unsafe {
            self.matmul_raw(x, m, lda, epi, y.as_mut_ptr(), self.n, true)?;
            y.set_len(len);
        }
        Ok(y)
    }

    /// [`PackedWeight::matmul`] into rows `ldc` apart of a buffer that other callers may be
    /// writing elsewhere (heads of one attention output), on this thread unless `parallel`.
    ///
    /// # Safety
    /// `y + row·ldc + col` is valid for every `row < m`, `col < n`, and nothing else writes there.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn matmul_raw(&self, x: &[f32], m: usize, lda: usize, epi: Epilogue, y: *mut f32, ldc: usize, parallel: bool) -> Result<(), String> {
        let (n, k) = (self.n, self.k);
        if lda < k || (m > 0 && x.len() < (m - 1) * lda + k) {
            return Err(format!("linear: input of {} values is not {m} rows of {k} (row stride {lda})", x.len()));
        }
        if ldc < n {
            return Err(format!("linear: output rows {ldc} apart cannot hold {n} values"));
        }
        if let Some(b) = epi.bias.filter(|b| b.len() != n) {
            return Err(format!("linear: bias has {} values for {n} outputs", b.len()));
        }
        if let Some(r) = epi.res.filter(|r| r.len() != m * n) {
            return Err(format!("linear: residual has {} values for [{m}, {n}]", r.len()));
        }
        if let Some(nm) = epi.norm.filter(|nm| nm.w.len() != k || nm.b.len() != k) {
            return Err(format!("linear: layer norm of {} weights and {} biases for {k} features", nm.w.len(), nm.b.len()));
        }
        if m == 0 || n == 0 {
            return Ok(());
        }
        if let Panels::Int8(q) = &self.panels {
            q.matmul_raw(x, m, lda, epi, y, ldc, parallel);
            return Ok(());
        }
        let (mr, nr) = (self.kernel.mr(), self.kernel.nr());
        let tiles = m.div_ceil(mr);
        let mut a = pack_a(x, m, k, lda, mr, epi.norm);
        if self.round_a {
            round_bf16(&mut a);
        }
        let panels = n.div_ceil(nr);
        // The bias padded to whole panels: the kernels start their accumulators from it.
        let bias = epi.bias.map(|b| {
            let mut v = b.to_vec();
            v.resize(panels * nr, 0.0);
            v
        });
        let yp = SendPtr(y);
        // SAFETY: each task writes only rows of its tiles × columns of its panels.
        for_each_block(tiles, panels, parallel && m * n * k >= PARALLEL_MIN, |t_range, p_range| unsafe {
            self.task(&a, m, t_range, p_range, epi, bias.as_deref(), yp.get(), ldc)
        });
        Ok(())
    }

    /// One output block: tiles `t_range` of M × panels `p_range` of N. Panel by panel (the
    /// panel, `K × NR`, stays in L2 while every row tile passes over it; a half panel is
    /// converted to f32 once), each tile the whole K deep in registers, then its epilogue.
    ///
    /// # Safety
    /// `y` is the `[m, n]` output; no other task writes this block.
    #[allow(clippy::too_many_arguments)]
    unsafe fn task(
        &self,
        a: &[f32],
        m: usize,
        t_range: std::ops::Range<usize>,
        p_range: std::ops::Range<usize>,
        epi: Epilogue,
        bias: Option<&[f32]>,
        y: *mut f32,
        ldc: usize,
    ) {
        let (n, k, kern) = (self.n, self.k, self.kernel);
        let (mr, nr) = (kern.mr(), kern.nr());
        let mut tile = vec![0f32; mr * nr];
        let mut bbuf = if matches!(self.panels, Panels::F32(_)) { Vec::new() } else { vec![0f32; k * nr] };
        let rt = RowTiles::new(m, mr);
        // Row tiles in chunks whose packed rows (`chunk × MR × K`) stay in L2 while the
        // task's panels pass over them: a large batch does not stream all of A per panel.
        let chunk_tiles = (A_CHUNK_BYTES / (k * mr * 4).max(1)).max(1);
        let mut t0 = t_range.start;
        while t0 < t_range.end {
            let chunk = t0..(t0 + chunk_tiles).min(t_range.end);
            for j in p_range.clone() {
                let off = j * k * nr;
                let b: *const f32 = match &self.panels {
                    Panels::F32(v) => v.as_ptr().add(off),
                    Panels::F16(v) => {
                        half::slice::HalfFloatSliceExt::convert_to_f32_slice(&v[off..off + k * nr], &mut bbuf);
                        bbuf.as_ptr()
                    }
                    Panels::Bf16(v) => {
                        half::slice::HalfFloatSliceExt::convert_to_f32_slice(&v[off..off + k * nr], &mut bbuf);
                        bbuf.as_ptr()
                    }
                    // Never here: `matmul_raw` hands int8 weights to `qgemm`.
                    Panels::Int8(_) => return,
                };
                let cols = nr.min(n - j * nr);
                let bias = bias.map_or(std::ptr::null(), |b| b.as_ptr().add(j * nr));
                for t in chunk.clone() {
                    let (row0, rows) = (rt.start(t), rt.rows(t));
                    let at = a.as_ptr().add(t * k * mr);
                    let dst = y.add(row0 * ldc + j * nr);
                    if cols == nr {
                        (kern.tile(rows))(k, at, b, dst, ldc, bias);
                    } else {
                        (kern.tile(rows))(k, at, b, tile.as_mut_ptr(), nr, bias);
                        for i in 0..rows {
                            std::ptr::copy_nonoverlapping(tile.as_ptr().add(i * nr), dst.add(i * ldc), cols);
                        }
                    }
                    if epi.act.is_some() || epi.res.is_some() {
                        finish_tile(kern, rows, cols, row0, j * nr, n, epi, y, ldc);
                    }
                }
            }
            t0 = chunk.end;
        }
    }
}

/// Runs `block(tiles, panels)` over the output blocks of a product of `tiles` row tiles ×
/// `panels` weight panels: split N first, so that every weight panel is read from memory once;
/// M too only when there are fewer panels than tasks wanted (3 a thread when `parallel`, else
/// one block on this thread). Shared by the f32 and the int8 engines.
pub(crate) fn for_each_block(tiles: usize, panels: usize, parallel: bool, block: impl Fn(std::ops::Range<usize>, std::ops::Range<usize>) + Sync) {
    let want = if parallel && threads() > 1 { 3 * threads() } else { 1 };
    let task_rows = want.div_ceil(panels.max(1)).min(tiles).max(1);
    let tiles_per_task = tiles.div_ceil(task_rows);
    let panels_per_task = panels.div_ceil(want.div_ceil(task_rows)).max(1);
    let task_cols = panels.div_ceil(panels_per_task);
    let run = |task: usize| {
        let (tr, tc) = (task / task_cols, task % task_cols);
        block(tr * tiles_per_task..((tr + 1) * tiles_per_task).min(tiles), tc * panels_per_task..((tc + 1) * panels_per_task).min(panels));
    };
    let tasks = task_rows * task_cols;
    if tasks > 1 {
        (0..tasks).into_par_iter().for_each(run);
    } else {
        run(0);
    }
}

/// The rest of the epilogue on a tile the kernel just wrote (bias included): the activation
/// and the residual, in place while the tile is in L1, compiled for the kernel's
/// instruction set.
///
/// # Safety
/// As for [`PackedWeight::matmul_raw`]; `epi.res`, if any, is `[m, n]`.
#[allow(clippy::too_many_arguments)]
unsafe fn finish_tile(kern: Kernel, rows: usize, cols: usize, row0: usize, col0: usize, n: usize, epi: Epilogue, y: *mut f32, ldc: usize) {
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
            Kernel::Avx512 => return avx512(rows, cols, row0, col0, n, epi, y, ldc),
            Kernel::Avx2 => return avx2(rows, cols, row0, col0, n, epi, y, ldc),
            _ => {}
        }
    }
    let _ = kern;
    body(rows, cols, row0, col0, n, epi, y, ldc)
}

/// The micro-kernel alone, on one thread with its operands in L1 (a full `MR × NR` tile,
/// `KC` deep): GFLOP/s, the ceiling every larger product works under.
pub fn tile_gflops(kernel: Kernel, min_ms: f64) -> f64 {
    let (mr, nr) = (kernel.mr(), kernel.nr());
    let a = vec![0.5f32; KC * mr];
    let b = vec![0.25f32; KC * nr];
    let mut t = vec![0f32; mr * nr];
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
pub fn peak_gflops(kernel: Kernel, min_ms: f64) -> Option<f64> {
    // Multiply-adds per round (×2 flops each; the kernels without FMA count a multiply or an
    // add as half of one).
    let (round, f): (usize, fn(usize) -> f32) = match kernel {
        // SAFETY: the kernel is only offered when the CPU has its features (`Kernel::available`).
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => (16 * 16, |n| unsafe { x86::peak_avx512(n) }),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => (12 * 8, |n| unsafe { x86::peak_avx2(n) }),
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        Kernel::Simd128 => (48, wasm::peak_simd128),
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

/// The row tiles of a product: `m` rows in `⌈m / MR⌉` tiles of `⌊m / tiles⌋` or one more
/// rows, balanced, so that no short last tile runs with too few accumulator chains to keep the
/// FMA units busy (99 rows: 9 tiles of 11 on AVX-512, not 8 of 12 and one of 3).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowTiles {
    m: usize,
    tiles: usize,
}

impl RowTiles {
    pub(crate) fn new(m: usize, mr: usize) -> Self {
        RowTiles { m, tiles: m.div_ceil(mr.max(1)) }
    }
    pub(crate) fn tiles(&self) -> usize {
        self.tiles
    }
    pub(crate) fn start(&self, t: usize) -> usize {
        let (q, r) = (self.m / self.tiles.max(1), self.m % self.tiles.max(1));
        t * q + t.min(r)
    }
    pub(crate) fn rows(&self, t: usize) -> usize {
        let (q, r) = (self.m / self.tiles.max(1), self.m % self.tiles.max(1));
        q + usize::from(t < r)
    }
}

/// Packs `m` rows of `x` into `MR`-row tiles, zero-padded (see the module docs), normalising
/// each row first when `norm` is given. Written in output order (one k after another, the
/// tile's rows side by side), reading `MR` rows as parallel streams.
fn pack_a(x: &[f32], m: usize, k: usize, lda: usize, mr: usize, norm: Option<Norm>) -> Vec<f32> {
    let rt = RowTiles::new(m, mr);
    let tiles = rt.tiles;
    let mut a = vec![0f32; tiles * k * mr];
    if k == 0 {
        return a;
    }
    #[cfg(target_arch = "x86_64")]
    let avx2 = std::arch::is_x86_feature_detected!("avx2");
    let fill = |(t, dst): (usize, &mut [f32])| {
        let rows = rt.rows(t);
        let src = &x[rt.start(t) * lda..];
        #[cfg(target_arch = "x86_64")]
        if avx2 && k >= 8 {
            let stats: Vec<(f32, f32)> = match norm {
                Some(nm) => (0..rows).map(|i| super::super::kernels::row_stats(&src[i * lda..i * lda + k], nm.eps)).collect(),
                None => Vec::new(),
            };
            // SAFETY: AVX2 was detected; `src` holds `rows` rows of `k` values `lda` apart and
            // `dst` one tile (`k × mr`), as the function requires.
            unsafe { x86::pack_tile_avx2(src, lda, rows, k, mr, dst, norm.map(|nm| (nm, stats.as_slice()))) };
            return;
        }
        match norm {
            None => {
                for (p, d) in dst.chunks_exact_mut(mr).enumerate() {
                    for (i, v) in d[..rows].iter_mut().enumerate() {
                        *v = src[i * lda + p];
                    }
                }
            }
            Some(nm) => {
                let stats: Vec<(f32, f32)> = (0..rows).map(|i| super::super::kernels::row_stats(&src[i * lda..i * lda + k], nm.eps)).collect();
                for (p, d) in dst.chunks_exact_mut(mr).enumerate() {
                    let (w, b) = (nm.w[p], nm.b[p]);
                    for (i, v) in d[..rows].iter_mut().enumerate() {
                        let (mean, inv) = stats[i];
                        *v = (src[i * lda + p] - mean) * inv * w + b;
                    }
                }
            }
        }
    };
    if tiles > 4 && threads() > 1 {
        a.par_chunks_mut(k * mr).enumerate().for_each(fill);
    } else {
        a.chunks_mut(k * mr).enumerate().for_each(fill);
    }
    a
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

/// The activations as the CPU backend computes them everywhere (same formulas as candle's).
#[inline(always)]
pub(crate) fn apply_act(v: &mut [f32], a: Activation) {
    match a {
        Activation::QuickGelu => v.iter_mut().for_each(|x| *x /= 1.0 + exp(-1.702 * *x)),
        Activation::Silu => v.iter_mut().for_each(|x| *x /= 1.0 + exp(-*x)),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn vals(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i * 7919 + seed * 104729) % 1999) as f32 - 999.0) / 700.0).collect()
    }

    /// The naive triple loop, in f64.
    fn naive(x: &[f32], w: &[f32], m: usize, k: usize, n: usize, lda: usize, epi: Epilogue) -> Vec<f32> {
        let mut y = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for p in 0..k {
                    s += x[i * lda + p] as f64 * w[j * k + p] as f64;
                }
                y[i * n + j] = s as f32 + epi.bias.map_or(0.0, |b| b[j]);
            }
        }
        if let Some(a) = epi.act {
            apply_act(&mut y, a);
        }
        if let Some(r) = epi.res {
            y.iter_mut().zip(r).for_each(|(v, r)| *v += r);
        }
        y
    }

    fn check(kern: Kernel, m: usize, k: usize, n: usize, lda: usize, epi_kind: usize) {
        let x = vals(m.max(1) * lda, 1);
        let w = vals(n * k, 2);
        let bias = vals(n, 3);
        let res = vals(m * n, 4);
        let epi = match epi_kind {
            0 => Epilogue::default(),
            1 => Epilogue { bias: Some(&bias), ..Default::default() },
            2 => Epilogue { bias: Some(&bias), act: Some(Activation::QuickGelu), res: Some(&res), norm: None },
            _ => Epilogue { bias: None, act: Some(Activation::Silu), res: Some(&res), norm: None },
        };
        let want = naive(&x, &w, m, k, n, lda, epi);
        let p = PackedWeight::pack(&w, n, k, kern).unwrap();
        let mut got = vec![f32::NAN; m * n];
        p.matmul(&x, m, lda, epi, &mut got).unwrap();
        let tol = 1e-5 * (k as f32).sqrt().max(1.0) * 4.0;
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!((a - b).abs() <= tol * b.abs().max(1.0), "{kern:?} m{m} k{k} n{n} lda{lda} epi{epi_kind}: [{i}] {a} vs {b}");
        }
    }

    /// Every kernel this machine has, on shapes that are not multiples of any tile, K = 1,
    /// N = 1, M = 1 (the one-row kernels, K a multiple of their unrolling and not), K past one K block, strided rows, and each epilogue.
    #[test]
    fn every_kernel_matches_the_naive_product_on_odd_shapes() {
        let shapes = [(1, 1, 1), (1, 7, 1), (1, 768, 100), (1, 10, 33), (7, 66, 48), (5, 1, 3), (13, 37, 33), (25, 300, 65), (197, 64, 70), (3, 513, 17), (12, 256, 32), (40, 20, 200)];
        let kernels = Kernel::available();
        assert!(kernels.contains(&Kernel::Portable));
        for kern in kernels {
            for &(m, k, n) in &shapes {
                for epi in 0..4 {
                    check(kern, m, k, n, k, epi);
                }
                check(kern, m, k, n, k + 3, 2);
            }
        }
    }

    #[test]
    fn a_large_call_split_over_tasks_matches() {
        for kern in Kernel::available() {
            check(kern, 300, 700, 260, 700, 2);
        }
    }

    #[test]
    fn half_panels_match_the_same_values_in_f32() {
        let (m, k, n) = (7, 300, 45);
        let x = vals(m * k, 5);
        let wb: Vec<half::bf16> = vals(n * k, 6).into_iter().map(half::bf16::from_f32).collect();
        let wf: Vec<f32> = wb.iter().map(|v| v.to_f32()).collect();
        let wh: Vec<half::f16> = wf.iter().map(|&v| half::f16::from_f32(v)).collect();
        for kern in Kernel::available() {
            let mut want = vec![0f32; m * n];
            PackedWeight::pack(&wf, n, k, kern).unwrap().matmul(&x, m, k, Epilogue::default(), &mut want).unwrap();
            for p in [PackedWeight::pack_half(HalfSlice::Bf16(&wb), n, k, kern).unwrap(), PackedWeight::pack_half(HalfSlice::F16(&wh), n, k, kern).unwrap()] {
                assert!(p.is_half());
                let mut got = vec![0f32; m * n];
                p.matmul(&x, m, k, Epilogue::default(), &mut got).unwrap();
                assert!(want.iter().zip(&got).all(|(a, b)| (a - b).abs() < 2e-3), "{kern:?}");
            }
        }
    }

    /// The pre-engine half-weight test, kept with its tolerances: bf16 panels give the f32
    /// product of the same values (bias included) to 1e-5, f16 to 1e-3.
    #[test]
    fn half_linear_equals_f32_linear_of_the_same_values() {
        let (m, k, n) = (3usize, 37usize, 150usize);
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
        let wb: Vec<half::bf16> = (0..n * k).map(|i| half::bf16::from_f32(((i * 13 % 97) as f32 - 48.0) / 40.0)).collect();
        let wf: Vec<f32> = wb.iter().map(|v| v.to_f32()).collect();
        let b: Vec<f32> = (0..n).map(|i| i as f32 / 100.0).collect();
        let epi = Epilogue { bias: Some(&b), ..Default::default() };
        let run = |p: PackedWeight| {
            let mut y = vec![0f32; m * n];
            p.matmul(&x, m, k, epi, &mut y).unwrap();
            y
        };
        let want = naive(&x, &wf, m, k, n, k, epi);
        let got = run(PackedWeight::pack_half(HalfSlice::Bf16(&wb), n, k, Kernel::best()).unwrap());
        assert!(want.iter().zip(&got).all(|(a, c)| (a - c).abs() < 1e-5));
        let wh: Vec<half::f16> = wf.iter().map(|&v| half::f16::from_f32(v)).collect();
        let got = run(PackedWeight::pack_half(HalfSlice::F16(&wh), n, k, Kernel::best()).unwrap());
        assert!(want.iter().zip(&got).all(|(a, c)| (a - c).abs() < 1e-3));
    }

    #[test]
    fn layer_norm_prologue_equals_the_norm_then_the_product() {
        let (m, k, n, lda) = (29, 70, 45, 73);
        let x = vals(m * lda, 11).iter().enumerate().map(|(i, v)| v * 3.0 + (i / lda) as f32).collect::<Vec<_>>();
        let w = vals(n * k, 12);
        let (nw, nb) = (vals(k, 13), vals(k, 14));
        let rows: Vec<f32> = x.chunks(lda).flat_map(|r| r[..k].to_vec()).collect();
        let normed = super::super::super::kernels::layer_norm_rows(&rows, &nw, &nb, k, 1e-5).unwrap();
        for kern in Kernel::available() {
            let p = PackedWeight::pack(&w, n, k, kern).unwrap();
            let want = p.matmul_new(&normed, m, k, Epilogue::default()).unwrap();
            let got = p.matmul_new(&x, m, lda, Epilogue { norm: Some(Norm { w: &nw, b: &nb, eps: 1e-5 }), ..Default::default() }).unwrap();
            assert_eq!(got, want, "{}", kern.name());
            let e = p.matmul_new(&x, m, lda, Epilogue { norm: Some(Norm { w: &nw[..5], b: &nb, eps: 1e-5 }), ..Default::default() }).unwrap_err();
            assert!(e.contains("layer norm of 5 weights and 70 biases for 70 features"), "{e}");
        }
    }

    /// `Precision::Bf16`: the product of the bf16-rounded operands in f32 (sums in another order:
    /// within f32 rounding of it), on every kernel; far from the unrounded product.
    #[test]
    fn bf16_weights_and_activations_equal_the_product_of_the_rounded_values() {
        let (m, k, n) = (13, 200, 37);
        let (x, w) = (vals(m * k, 21), vals(n * k, 22));
        let r = |v: &[f32]| v.iter().map(|&a| half::bf16::from_f32(a).to_f32()).collect::<Vec<_>>();
        let want = naive(&r(&x), &r(&w), m, k, n, k, Epilogue::default());
        let exact = naive(&x, &w, m, k, n, k, Epilogue::default());
        let mut rounded = x.clone();
        round_bf16(&mut rounded);
        assert_eq!(rounded, r(&x), "round_bf16 rounds as half::bf16 does");
        for kern in Kernel::available() {
            let b: Vec<half::bf16> = w.iter().map(|&a| half::bf16::from_f32(a)).collect();
            let p = PackedWeight::pack_bf16(HalfSlice::Bf16(&b), n, k, kern).unwrap();
            let got = p.matmul_new(&x, m, k, Epilogue::default()).unwrap();
            let (d, far) = (crate::num::max_abs_diff(&got, &want), crate::num::max_abs_diff(&got, &exact));
            let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
            assert!(d <= 1e-6 * scale, "{}: {d} (scale {scale})", kern.name());
            assert!(far > 100.0 * d.max(1e-7), "{}: bf16 is as near the f32 product ({far:.1e})", kern.name());
        }
    }

    #[test]
    fn bad_shapes_are_errors_that_say_what() {
        let p = PackedWeight::pack(&[1.0; 6], 2, 3, Kernel::Portable).unwrap();
        let mut y = vec![0f32; 4];
        let e = p.matmul(&[1.0; 5], 2, 3, Epilogue::default(), &mut y).unwrap_err();
        assert!(e.contains("2 rows of 3"), "{e}");
        let e = p.matmul(&[1.0; 6], 2, 3, Epilogue { bias: Some(&[1.0]), ..Default::default() }, &mut y).unwrap_err();
        assert!(e.contains("bias has 1 values for 2"), "{e}");
        assert!(PackedWeight::pack(&[1.0; 5], 2, 3, Kernel::Portable).unwrap_err().contains("[2, 3]"));
    }
}
