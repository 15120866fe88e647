//! The bf16 engines behind `Precision::Bf16` where the CPU has bf16 dot products: bf16
//! weights packed once, activations rounded to bf16 as they are packed (to nearest, ties to
//! even, as `half::bf16::from_f32`), f32 sums of exact bf16 products, then bias, activation
//! and residual in one pass per row ([`write_tile`]). The numbers are those of the f32
//! micro-kernels' bf16 path (`PackedWeight::pack_bf16`) up to the order (and the rounding:
//! both instructions round to nearest even and flush denormals) of the f32 sums.
//!
//! Two engines ([`Bf16Engine`]), fastest first; both take bf16 *pairs* (one 4-byte word: a
//! row's or a column's values at depths 2p, 2p + 1) and the same 32-column weight panels:
//! - **AMX-BF16** (`tdpbf16ps`, 32 × 32 from 2 × 2 tile registers, the routine the int8 AMX
//!   kernel runs, `int8::amx::tiles`): depth padded to 32, in blocks of 16 pairs; each weight
//!   block two halves of 16 columns, each 16 pairs × 64 bytes (a B tile); the activation tile
//!   32 rows, each block two A tiles of 16 rows × 64 bytes.
//! - **AVX-512 BF16** (`vdpbf16ps`, 12 × 32, for CPUs without AMX: AMD Zen 4/5, Cooper Lake):
//!   the f32 AVX-512 kernel's shape with pairs for values: panel word `p·32 + c` is column c's
//!   pair p, activation word `p·12 + i` row i's, broadcast; two zmm of sums per row.

use super::epilogue512::write_rows32;
use super::int8::amx;
use super::{for_each_block, normed_row, write_tile, Epilogue, RowTiles, SendPtr, TileAt};
use crate::tensor::cpu::aligned::Aligned;
use crate::tensor::cpu::scratch::Scratch;
use crate::tensor::cpu::simd::threads;
use rayon::prelude::*;
use std::arch::x86_64::*;

const NR: usize = 32;
/// Below this many multiply-adds a call runs on the calling thread.
const PARALLEL_MIN: usize = 1 << 18;
/// Packed activation rows a task keeps in L2 while its weight panels pass over them.
const A_CHUNK_BYTES: usize = 256 << 10;

/// A bf16 dot-product engine (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bf16Engine {
    Amx,
    Avx512,
}

impl Bf16Engine {
    pub fn name(self) -> &'static str {
        match self {
            Bf16Engine::Amx => "amx tdpbf16ps 32x32",
            Bf16Engine::Avx512 => "avx512 vdpbf16ps 12x32",
        }
    }

    /// The engine's tile shape, `MR × NR`.
    pub fn mr_nr(self) -> (usize, usize) {
        (self.mr(), NR)
    }

    /// Every bf16 engine this CPU has (and, for AMX, may use), fastest first.
    pub fn available() -> Vec<Bf16Engine> {
        let mut v = Vec::new();
        if amx::usable_bf16() {
            v.push(Bf16Engine::Amx);
        }
        if std::arch::is_x86_feature_detected!("avx512bf16") && std::arch::is_x86_feature_detected!("avx512f") {
            v.push(Bf16Engine::Avx512);
        }
        v
    }

    /// The fastest, if the CPU has one (decided once): AMX where there is; AVX-512 BF16 only
    /// where its micro-kernel outruns the f32 one (measured, a few ms): `vdpbf16ps` does twice
    /// the work of an FMA, but an Intel core issues it on one port (107 GFLOP/s against the f32
    /// kernel's 174 on a Xeon with AMX), where AMD Zen 4/5 issue it like an FMA.
    pub fn best() -> Option<Bf16Engine> {
        static BEST: std::sync::OnceLock<Option<Bf16Engine>> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            Bf16Engine::available().into_iter().find(|&e| e == Bf16Engine::Amx || tile_gflops(e, 3.0) > super::tile_gflops(super::MicroKernel::best(), 3.0))
        })
    }

    fn mr(self) -> usize {
        match self {
            Bf16Engine::Amx => 32,
            Bf16Engine::Avx512 => AVX512_MR,
        }
    }

    /// Words (pairs) of depth for `k`: AMX whole 16-pair blocks.
    fn kq(self, k: usize) -> usize {
        match self {
            Bf16Engine::Amx => k.div_ceil(32) * 16,
            Bf16Engine::Avx512 => k.div_ceil(2),
        }
    }

    /// Where pair `q` of panel column `c` goes, in words.
    fn b_word(self, q: usize, c: usize) -> usize {
        match self {
            Bf16Engine::Amx => (((q / 16) * 2 + c / 16) * 16 + q % 16) * 16 + c % 16,
            Bf16Engine::Avx512 => q * NR + c,
        }
    }

    /// Where pair `q` of tile row `i` goes, in words.
    fn a_word(self, i: usize, q: usize) -> usize {
        match self {
            Bf16Engine::Amx => (((q / 16) * 2 + i / 16) * 16 + i % 16) * 16 + q % 16,
            Bf16Engine::Avx512 => q * AVX512_MR + i,
        }
    }

    /// AMX tiles compute whole 16-row halves: full tiles and a short last one.
    fn row_tiles(self, m: usize) -> RowTiles {
        match self {
            Bf16Engine::Amx => RowTiles::full(m, self.mr()),
            Bf16Engine::Avx512 => RowTiles::new(m, self.mr()),
        }
    }
}

/// A `[n, k]` bf16 weight packed for a [`Bf16Engine`].
#[derive(Debug)]
pub struct Bf16Weight {
    engine: Bf16Engine,
    n: usize,
    k: usize,
    /// Panels of `NR` columns, `kq` pairs deep (module docs), zero-padded.
    panels: Aligned<u32>,
}

/// Two bf16 as one word, the lower depth in the low half.
fn pair(lo: half::bf16, hi: half::bf16) -> u32 {
    lo.to_bits() as u32 | (hi.to_bits() as u32) << 16
}

impl Bf16Weight {
    /// Packs a `[n, k]` row-major bf16 weight for `engine` (one of [`Bf16Engine::available`]).
    pub fn pack(w: &[half::bf16], n: usize, k: usize, engine: Bf16Engine) -> Result<Bf16Weight, String> {
        if w.len() != n * k {
            return Err(format!("linear weight: {} values for bf16 [{n}, {k}]", w.len()));
        }
        let kq = engine.kq(k);
        let mut panels = Aligned::zeroed(n.div_ceil(NR) * kq * NR);
        if kq > 0 {
            let zero = half::bf16::ZERO;
            let fill = |(j, panel): (usize, &mut [u32])| {
                for c in 0..NR.min(n - j * NR) {
                    let row = &w[(j * NR + c) * k..][..k];
                    for (q, two) in row.chunks(2).enumerate() {
                        panel[engine.b_word(q, c)] = pair(two[0], *two.get(1).unwrap_or(&zero));
                    }
                }
            };
            if n * k >= 1 << 16 && threads() > 1 {
                panels.par_chunks_mut(kq * NR).enumerate().for_each(fill);
            } else {
                panels.chunks_mut(kq * NR).enumerate().for_each(fill);
            }
        }
        Ok(Bf16Weight { engine, n, k, panels })
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        4 * self.panels.len()
    }

    /// `y[m, n] = act(x · Wᵀ + bias) + res` (the caller — `PackedWeight::matmul_raw` — has
    /// checked the shapes).
    ///
    /// # Safety
    /// As for `PackedWeight::matmul_raw`; the engine is one of [`Bf16Engine::available`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn matmul_raw(&self, x: &[f32], m: usize, lda: usize, epi: Epilogue, y: *mut f32, ldc: usize, parallel: bool) {
        let rt = self.engine.row_tiles(m);
        let a = pack_a(x, m, self.k, lda, self.engine, epi, parallel);
        let yp = SendPtr(y);
        // SAFETY: each task writes only rows of its tiles × columns of its panels.
        for_each_block(rt.tiles(), self.n.div_ceil(NR), parallel && m * self.n * self.k >= PARALLEL_MIN, |t_range, p_range| unsafe {
            self.task(&a, rt, t_range, p_range, epi, yp.get(), ldc)
        });
    }

    #[allow(clippy::too_many_arguments)]
    unsafe fn task(&self, a: &[u32], rt: RowTiles, t_range: std::ops::Range<usize>, p_range: std::ops::Range<usize>, epi: Epilogue, y: *mut f32, ldc: usize) {
        let (engine, mr, kq) = (self.engine, self.engine.mr(), self.engine.kq(self.k));
        let mut acc = Aligned::<f32>::zeroed(mr * NR);
        let chunk_tiles = (A_CHUNK_BYTES / (kq * mr * 4).max(1)).max(1);
        let mut t0 = t_range.start;
        while t0 < t_range.end {
            let chunk = t0..(t0 + chunk_tiles).min(t_range.end);
            for j in p_range.clone() {
                let b = self.panels.as_ptr().add(j * kq * NR);
                for t in chunk.clone() {
                    let (row0, rows) = (rt.start(t), rt.rows(t));
                    tile(engine, rows, kq, a.as_ptr().add(t * kq * mr), b, acc.as_mut_ptr());
                    finish(&acc, rows, row0, j * NR, NR.min(self.n - j * NR), self.n, epi, y, ldc);
                }
            }
            t0 = chunk.end;
        }
    }
}

/// `c[rows × NR] = A · B` on `engine`'s micro-kernel (rows ≤ its `MR`), `kq` pairs deep.
///
/// # Safety
/// The engine is one of [`Bf16Engine::available`]; `a` holds `kq · MR` words, `b` `kq · NR`,
/// `c` `MR × NR` f32s.
unsafe fn tile(engine: Bf16Engine, rows: usize, kq: usize, a: *const u32, b: *const u32, c: *mut f32) {
    match engine {
        Bf16Engine::Amx if rows > 16 => amx::tiles::<2, true>(kq, a as *const u8, b as *const u8, c as *mut u8),
        Bf16Engine::Amx => amx::tiles::<1, true>(kq, a as *const u8, b as *const u8, c as *mut u8),
        Bf16Engine::Avx512 => AVX512[rows - 1](kq, a, b, c),
    }
}

/// The engine's micro-kernel alone, on one thread with its operands in L1 (a full `MR × 32`
/// tile, 256 deep): GFLOP/s (a multiply-add counts 2).
pub fn tile_gflops(engine: Bf16Engine, min_ms: f64) -> f64 {
    const K: usize = 256;
    let (mr, kq) = (engine.mr(), engine.kq(K));
    let one = pair(half::bf16::ONE, half::bf16::ONE);
    let (a, b) = (Aligned::filled(kq * mr, one), Aligned::filled(kq * NR, one));
    let mut c = Aligned::<f32>::zeroed(mr * NR);
    let (mut calls, t0) = (0u64, crate::clock::now_ms());
    loop {
        for _ in 0..256 {
            // SAFETY: the engine is available and the buffers have the sizes it reads and writes.
            unsafe { tile(engine, mr, kq, a.as_ptr(), b.as_ptr(), c.as_mut_ptr()) };
        }
        calls += 256;
        let ms = crate::clock::now_ms() - t0;
        if ms >= min_ms {
            std::hint::black_box(&c);
            return (2 * mr * NR * K) as f64 * calls as f64 / (ms * 1e6);
        }
    }
}

/// `y = act(acc + b) + res` for one tile ([`write_tile`]).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn finish(acc: &[f32], rows: usize, row0: usize, col0: usize, cols: usize, n: usize, epi: Epilogue, y: *mut f32, ldc: usize) {
    let at = TileAt { rows, row0, cols, col0, n };
    // Whole tiles in intrinsics (the activation's division a refined reciprocal).
    if write_rows32(at, epi, y, ldc, |i| [_mm512_loadu_ps(acc.as_ptr().add(i * NR)), _mm512_loadu_ps(acc.as_ptr().add(i * NR + 16))]) {
        return;
    }
    write_tile(at, epi, y, ldc, |i| {
        let acc = &acc[i * NR..][..cols];
        move |c| acc[c]
    });
}

/// The `m` rows of `x` (after the LayerNorm prologue, if any) rounded to bf16 into the
/// engine's row tiles of pairs (module docs).
fn pack_a(x: &[f32], m: usize, k: usize, lda: usize, engine: Bf16Engine, epi: Epilogue, parallel: bool) -> Scratch<u32> {
    let rt = engine.row_tiles(m);
    let (mr, kq) = (engine.mr(), engine.kq(k));
    // Reused, not zeroed: every row's `kq` pairs are written (the depth padding zero); a
    // tile's padding rows are read by AMX but their sums are never written out.
    let mut a = Scratch::new(rt.tiles() * kq * mr);
    if kq == 0 {
        return a;
    }
    let cvt = std::arch::is_x86_feature_detected!("avx512bf16") && std::arch::is_x86_feature_detected!("avx512f");
    let fill = |(t, dst): (usize, &mut [u32])| {
        let (row0, rows) = (rt.start(t), rt.rows(t));
        let mut tmp = if epi.norm.is_some() { vec![0f32; k] } else { Vec::new() };
        // One row's pairs in order (a loop the compiler vectorises), then placed.
        let mut pairs = vec![0u32; kq];
        for i in 0..rows {
            let src = &x[(row0 + i) * lda..][..k];
            let row = normed_row(src, epi.norm, &mut tmp);
            to_pairs(row, &mut pairs, cvt);
            match engine {
                // 16-pair blocks: each one sequential run of its A tile.
                Bf16Engine::Amx => {
                    for (qb, block) in pairs.chunks_exact(16).enumerate() {
                        let at = engine.a_word(i, qb * 16);
                        dst[at..at + 16].copy_from_slice(block);
                    }
                }
                Bf16Engine::Avx512 => {
                    for (q, &v) in pairs.iter().enumerate() {
                        dst[q * AVX512_MR + i] = v;
                    }
                }
            }
        }
    };
    if parallel && rt.tiles() > 1 && threads() > 1 {
        a.par_chunks_mut(kq * mr).enumerate().for_each(fill);
    } else {
        a.chunks_mut(kq * mr).enumerate().for_each(fill);
    }
    a
}

/// `row` rounded to bf16 (to nearest, ties to even) as pairs in order: pair `p` holds values
/// `2p` (low half) and `2p + 1`, an odd row's last pair a zero high half. With `cvt` (the CPU
/// has AVX-512 BF16) 16 values at a time by `vcvtneps2bf16`, the same rounding, except that it
/// reads and writes subnormals (below 1.2e-38) as zero.
fn to_pairs(row: &[f32], pairs: &mut [u32], cvt: bool) {
    let k = row.len();
    let mut done = 0;
    if cvt {
        #[target_feature(enable = "avx512f,avx512bf16")]
        fn bulk(row: &[f32], pairs: &mut [u32]) -> usize {
            let n = (row.len() / 16).min(pairs.len() / 8);
            for (src, dst) in row.chunks_exact(16).zip(pairs.chunks_exact_mut(8)) {
                // SAFETY: 16 values read, 8 pairs (32 bytes) written, both in bounds.
                unsafe {
                    let h = _mm512_cvtneps_pbh(_mm512_loadu_ps(src.as_ptr()));
                    _mm256_storeu_si256(dst.as_mut_ptr() as *mut __m256i, std::mem::transmute::<__m256bh, __m256i>(h));
                }
            }
            n * 16
        }
        // SAFETY: the CPU has AVX-512F and AVX-512 BF16 (`cvt`).
        done = unsafe { bulk(row, pairs) };
    }
    for (d, two) in pairs[done / 2..].iter_mut().zip(row[done..].chunks_exact(2)) {
        *d = pair(half::bf16::from_f32(two[0]), half::bf16::from_f32(two[1]));
    }
    if k % 2 == 1 {
        pairs[k / 2] = pair(half::bf16::from_f32(row[k - 1]), half::bf16::ZERO);
    }
}

const AVX512_MR: usize = 12;

/// The AVX-512 BF16 micro-kernel: `c[R × 32] = A · B` over `kq` pairs of depth, each step two
/// panel vectors (32 columns' pairs) and one broadcast pair per row into `vdpbf16ps`.
///
/// # Safety
/// The CPU has AVX-512F and AVX-512 BF16; `a` holds `kq · 12` words, `b` `kq · 32`, `c` `R × 32`
/// f32s.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn avx512<const R: usize>(kq: usize, a: *const u32, b: *const u32, c: *mut f32) {
    let mut c0 = [_mm512_setzero_ps(); R];
    let mut c1 = [_mm512_setzero_ps(); R];
    let (mut ap, mut bp) = (a, b);
    for _ in 0..kq {
        if R >= 4 {
            // The panel streams from L2 or memory: ask for it 8 steps (1 KB) ahead.
            _mm_prefetch::<_MM_HINT_T0>(bp.add(8 * NR) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(bp.add(8 * NR + 16) as *const i8);
        }
        let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp as *const __m512i));
        let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(bp.add(16) as *const __m512i));
        for i in 0..R {
            let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(*ap.add(i) as i32));
            c0[i] = _mm512_dpbf16_ps(c0[i], av, b0);
            c1[i] = _mm512_dpbf16_ps(c1[i], av, b1);
        }
        ap = ap.add(AVX512_MR);
        bp = bp.add(NR);
    }
    for i in 0..R {
        _mm512_storeu_ps(c.add(i * NR), c0[i]);
        _mm512_storeu_ps(c.add(i * NR + 16), c1[i]);
    }
}

type Bf16TileFn = unsafe fn(kq: usize, a: *const u32, b: *const u32, c: *mut f32);

/// Indexed by rows − 1.
static AVX512: [Bf16TileFn; AVX512_MR] = [
    avx512::<1>,
    avx512::<2>,
    avx512::<3>,
    avx512::<4>,
    avx512::<5>,
    avx512::<6>,
    avx512::<7>,
    avx512::<8>,
    avx512::<9>,
    avx512::<10>,
    avx512::<11>,
    avx512::<12>,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Pairs are the row's values rounded one by one as `half` does (ties to even, both
    /// signs, large and tiny normal values, infinities), over bulk and tail, even and odd
    /// lengths: the scalar path always, the `vcvtneps2bf16` path where the CPU has it.
    #[test]
    fn pairs_by_vcvtneps2bf16_match_the_scalar_rounding() {
        let cvt = std::arch::is_x86_feature_detected!("avx512bf16") && std::arch::is_x86_feature_detected!("avx512f");
        // Two exact ties (one rounds down to even, one up), then the extremes.
        let specials = [f32::from_bits(0x3F80_8000), f32::from_bits(0x3F81_8000), -3.0e38, 2.0e-38, f32::INFINITY, -0.0];
        for k in [1, 15, 16, 33, 48, 77] {
            let row: Vec<f32> =
                (0..k).map(|i| if i % 5 == 0 { specials[i % specials.len()] } else { (i as f32 * 0.731).sin() * 10f32.powi(i as i32 % 9 - 4) }).collect();
            // Each value rounded alone, laid out as pairs (an odd row's last high half zero,
            // the spare words untouched).
            let mut want = vec![0u32; k.div_ceil(2) + 3];
            for (i, &v) in row.iter().enumerate() {
                want[i / 2] |= (half::bf16::from_f32(v).to_bits() as u32) << (16 * (i % 2));
            }
            for fast in if cvt { vec![false, true] } else { vec![false] } {
                let mut got = vec![0u32; k.div_ceil(2) + 3];
                to_pairs(&row, &mut got, fast);
                assert_eq!(got, want, "k = {k}, vector {fast}");
            }
        }
    }
}
