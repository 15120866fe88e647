//! The int8 engine behind `Precision::Int8`: `y = act(x · Wᵀ + b) + res` with int8 operands
//! and int32 accumulation.
//!
//! The scheme (written out in `scripts/int8_reference.py`, which the goldens are made with):
//! - **weights**: symmetric, per output channel: `s_w[j] = max|W[j,:]| / 127`,
//!   `q_w = rint(W[j,:] · (127 / max|W[j,:]|))` (ties to even, clamped to ±127), once at load;
//! - **activations**: the same per row (token), on the fly, while the row tiles are packed (after
//!   the LayerNorm prologue when there is one);
//! - **product**: exact in int32 (`|q| ≤ 127`, so `127² · K` fits for any K below 133 000);
//! - **epilogue**: `y = f32(acc) · (s_x[i] · s_w[j]) + b[j]`, then the activation and the
//!   residual as in the f32 engine, in one pass over the tile while it is in L1.
//!
//! **The relaxed-SIMD wasm build** has one variant of the scheme (in the reference too), run by
//! two kernels with the same sums ([`Int8MicroKernel::Relaxed`] and
//! [`Int8MicroKernel::RelaxedPairs`], timed once to pick): its instruction,
//! `i32x4.relaxed_dot_i8x16_i7x16_add_s`, multiplies i8 by 7-bit
//! unsigned values, so each activation row is quantised to u7 with a zero point
//! ([`quantize_row_u7`]: `x ≈ s · (u − zp)`, asymmetric, so a row's whole range uses the 128
//! levels) and the epilogue subtracts `zp · Σ w`. Weights are the same. 2.4× the SIMD128
//! kernel's throughput where V8 lowers the dot to `vpdpbusd` (Intel with AVX-VNNI); on Zen 4 in
//! Chromium (tile at L1) 79 GOP/s in one instruction, 95 in two steps, SIMD128 74; at ViT-B/16 widths (seeded weights) its cos to f32 is 0.99983 for the
//! image and 0.99931 for the text against the 8-bit scheme's 0.99992 / 0.99967. (Keeping the
//! 8-bit sums exactly on that instruction takes two products per quad, 81 GOP/s against 157:
//! measured, not kept.)
//!
//! Layouts (`Layout`). **Pairs** (AVX2, wasm, portable): a weight panel holds `NR` output
//! columns, K taken two at a time: the pair `(W[c][2p], W[c][2p+1])` of column `c` at bytes
//! `2·(p·NR + c)`; the activation tile holds the same pairs of each row as one 32-bit word (two
//! i16), `MR` rows side by side. So one widening load gives `NR/…` columns × 2 depths as i16
//! and one `pmaddwd` (x86) or `i32x4.dot_i16x8_s` (wasm) multiplies a broadcast row pair by
//! them and adds each pair into an i32 lane: 16 multiply-adds per instruction, exactly, with no
//! saturation (unlike the u8 × i8 `pmaddubsw`, which ONNX Runtime's non-VNNI x86 path must
//! avoid with 7-bit weights). **Quads** (AMX, AVX-512 VNNI; `NR` = 32, K padded to 64): K four
//! at a time, in 16-quad blocks of two 16-column halves, each half 16 quads × 64 bytes: an AMX
//! B tile, one sequential KiB. AMX's activation tiles are the rows' int8 values in A tiles of
//! 16 rows × 64 bytes (`tdpbssd`: signed × signed); VNNI's are each row's quads as u8
//! (`q + 128`, broadcast to `vpdpbusd`, which multiplies u8 × i8), the epilogue subtracting
//! `128 · Σ w` per column: exact again, since the int32 lanes wrap and the true sum fits.
//!
//! Micro-kernels, picked at run time (fastest first) and forceable in tests and `bench gemm`:
//! AMX-INT8 (32 × 32 from 2 × 2 tile registers; Linux grants the tile data on request, see
//! `amx`), AVX-512 VNNI (8 × 32), AVX-VNNI (3 × 32 in ymm, for CPUs with VNNI but not AVX-512:
//! Alder Lake and later client cores), AVX2 (6 × 16), wasm relaxed SIMD (4 × 8, the variant
//! above, either form), wasm SIMD128 (4 × 8), portable (4 × 8).

#[cfg(test)]
mod tests;

use super::{for_each_block, Epilogue, RowTiles, SendPtr};
use crate::tensor::cpu::aligned::Aligned;

/// Packed activation rows a task keeps in L2 while its weight panels pass over them.
const A_CHUNK_BYTES: usize = 256 << 10;
/// Below this many multiply-adds a call runs on the calling thread.
const PARALLEL_MIN: usize = 1 << 18;
/// The largest K whose int32 sums cannot overflow (`127² · K < 2³¹`).
pub const MAX_K: usize = 133_000;

/// An int8 micro-kernel family, with its tile shape `MR × NR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8MicroKernel {
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Amx,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx512Vnni,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    AvxVnni,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx2,
    /// wasm relaxed SIMD (`i32x4.relaxed_dot_i8x16_i7x16_add_s`), 7-bit activations
    /// ([`Layout::QuadsU7`]); elsewhere the same sums in portable code (tests).
    #[cfg_attr(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")), allow(dead_code))]
    Relaxed,
    /// The same sums in two steps a quad (`i16x8.relaxed_dot_i8x16_i7x16_s`, then
    /// `i32x4.dot_i16x8_s` with ones): faster where V8 has no `vpdpbusd` (see `wasm`).
    #[cfg_attr(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")), allow(dead_code))]
    RelaxedPairs,
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    Simd128,
    Portable,
}

/// How a kernel's operands are laid out (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// Depth two at a time: activation words are one row's int16 pair.
    Pairs,
    /// Depth four at a time (panels in 16-quad blocks, below): activation words are one row's
    /// quad as u8 (`q + 128`).
    QuadsU8,
    /// The same panels; the activation tile is int8 rows in AMX A tiles: for each 64-deep
    /// block, rows 0–15 then 16–31, each 16 rows × 64 bytes contiguous.
    QuadsRows,
    /// Depth four at a time, a panel's quads column after column (`NR` quads = `4 · NR`
    /// bytes a word of depth); activation words are one row's quad of u7 values with the
    /// row's zero point ([`quantize_row_u7`]): the unsigned 7-bit operand of wasm's relaxed
    /// dot product. The epilogue subtracts `zp · Σ w`.
    QuadsU7,
}

impl Int8MicroKernel {
    pub fn name(self) -> &'static str {
        match self {
            Int8MicroKernel::Amx => "amx tdpbssd 32x32",
            Int8MicroKernel::Avx512Vnni => "avx512 vnni vpdpbusd 8x32",
            Int8MicroKernel::AvxVnni => "avx vnni vpdpbusd 3x32",
            Int8MicroKernel::Avx2 => "avx2 pmaddwd 6x16",
            Int8MicroKernel::Relaxed => "wasm simd128+relaxed dot_i8x16_i7x16_add 4x8 (7-bit activations)",
            Int8MicroKernel::RelaxedPairs => "wasm simd128+relaxed dot_i8x16_i7x16 + dot_i16x8 4x8 (7-bit activations)",
            Int8MicroKernel::Simd128 => "wasm simd128 dot_i16x8 4x8",
            Int8MicroKernel::Portable => "portable 4x8",
        }
    }

    pub fn mr(self) -> usize {
        match self {
            Int8MicroKernel::Amx => 32,
            Int8MicroKernel::Avx512Vnni => 8,
            Int8MicroKernel::AvxVnni => 3,
            Int8MicroKernel::Avx2 => 6,
            Int8MicroKernel::Relaxed | Int8MicroKernel::RelaxedPairs | Int8MicroKernel::Simd128 | Int8MicroKernel::Portable => 4,
        }
    }

    pub fn nr(self) -> usize {
        match self {
            Int8MicroKernel::Amx | Int8MicroKernel::Avx512Vnni | Int8MicroKernel::AvxVnni => 32,
            Int8MicroKernel::Avx2 => 16,
            Int8MicroKernel::Relaxed | Int8MicroKernel::RelaxedPairs | Int8MicroKernel::Simd128 | Int8MicroKernel::Portable => 8,
        }
    }

    fn layout(self) -> Layout {
        match self {
            Int8MicroKernel::Amx => Layout::QuadsRows,
            Int8MicroKernel::Avx512Vnni | Int8MicroKernel::AvxVnni => Layout::QuadsU8,
            Int8MicroKernel::Relaxed | Int8MicroKernel::RelaxedPairs => Layout::QuadsU7,
            _ => Layout::Pairs,
        }
    }

    /// Depth values per packed word (2 or 4).
    fn unit(self) -> usize {
        if self.layout() == Layout::Pairs {
            2
        } else {
            4
        }
    }

    /// Packed depth in words for `k` (AMX: whole 16-word tile rows).
    fn kq(self, k: usize) -> usize {
        match self.layout() {
            Layout::Pairs => k.div_ceil(2),
            Layout::QuadsU7 => k.div_ceil(4),
            Layout::QuadsU8 | Layout::QuadsRows => k.div_ceil(64) * 16,
        }
    }

    /// Where weight `(depth p, column c)` of a panel goes. Pairs: `((p/2)·NR + c)·2 + p%2`;
    /// QuadsU7 the same four at a time.
    /// Quads (`NR` = 32): 16-quad blocks, each two halves of 16 columns, each half 16 quads ×
    /// 64 bytes (an AMX B tile, contiguous; the VNNI kernel reads a quad's two halves 1 KiB
    /// apart).
    fn panel_index(self, p: usize, c: usize) -> usize {
        match self.layout() {
            Layout::Pairs => ((p / 2) * self.nr() + c) * 2 + p % 2,
            Layout::QuadsU7 => ((p / 4) * self.nr() + c) * 4 + p % 4,
            Layout::QuadsU8 | Layout::QuadsRows => {
                let q = p / 4;
                (((q / 16) * 2 + c / 16) * 16 + q % 16) * 64 + (c % 16) * 4 + p % 4
            }
        }
    }

    /// How `m` rows split into tiles: balanced, but for AMX, whose tiles compute whole 16-row
    /// halves, full tiles and a short last one.
    fn row_tiles(self, m: usize) -> RowTiles {
        if self == Int8MicroKernel::Amx {
            RowTiles::full(m, self.mr())
        } else {
            RowTiles::new(m, self.mr())
        }
    }

    /// Every int8 kernel this CPU can run, fastest first.
    pub fn available() -> Vec<Int8MicroKernel> {
        let mut v = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if amx::usable() {
                v.push(Int8MicroKernel::Amx);
            }
            if std::arch::is_x86_feature_detected!("avx512vnni") && std::arch::is_x86_feature_detected!("avx512bw") {
                v.push(Int8MicroKernel::Avx512Vnni);
            }
            if std::arch::is_x86_feature_detected!("avxvnni") && std::arch::is_x86_feature_detected!("avx2") {
                v.push(Int8MicroKernel::AvxVnni);
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                v.push(Int8MicroKernel::Avx2);
            }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        v.extend(relaxed_order());
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        v.push(Int8MicroKernel::Simd128);
        v.push(Int8MicroKernel::Portable);
        v
    }

    /// The fastest int8 kernel this CPU can run (detected once).
    pub fn best() -> Int8MicroKernel {
        static BEST: std::sync::OnceLock<Int8MicroKernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| Int8MicroKernel::available()[0])
    }

    fn tile(self, rows: usize) -> Int8TileFn {
        match self {
            #[cfg(target_arch = "x86_64")]
            Int8MicroKernel::Amx => amx::AMX[rows - 1],
            #[cfg(target_arch = "x86_64")]
            Int8MicroKernel::Avx512Vnni => x86::vnni::AVX512[rows - 1],
            #[cfg(target_arch = "x86_64")]
            Int8MicroKernel::AvxVnni => x86::vnni::AVX[rows - 1],
            #[cfg(target_arch = "x86_64")]
            Int8MicroKernel::Avx2 => x86::AVX2[rows - 1],
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Int8MicroKernel::Simd128 => wasm::SIMD128[rows - 1],
            #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
            Int8MicroKernel::Relaxed => wasm::RELAXED[rows - 1],
            #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
            Int8MicroKernel::RelaxedPairs => wasm::RELAXED_PAIRS[rows - 1],
            #[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
            Int8MicroKernel::Relaxed | Int8MicroKernel::RelaxedPairs => portable::QUADS_U7[rows - 1],
            _ => portable::PORTABLE[rows - 1],
        }
    }
}

/// The relaxed build's two kernels (the same sums), fastest first: which one is depends on how
/// the engine lowers the one-instruction dot (one `vpdpbusd` with AVX-VNNI, five instructions
/// without on x86), which wasm cannot ask, so each is timed on a tile at L1, best of three
/// alternating 2 ms runs, once (~12 ms at the first int8 layer).
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
fn relaxed_order() -> [Int8MicroKernel; 2] {
    static ORDER: std::sync::OnceLock<[Int8MicroKernel; 2]> = std::sync::OnceLock::new();
    *ORDER.get_or_init(|| {
        let (one, two) = (Int8MicroKernel::Relaxed, Int8MicroKernel::RelaxedPairs);
        let (mut a, mut b) = (0f64, 0f64);
        for _ in 0..3 {
            a = a.max(tile_gops(one, 2.0));
            b = b.max(tile_gops(two, 2.0));
        }
        if b > a {
            [two, one]
        } else {
            [one, two]
        }
    })
}

/// `tile(kq, a, b, c)`: `c[R × NR] = A_tile · B_panel` in int32 for the function's `R` rows,
/// `kq` words deep (pairs or quads, [`Int8MicroKernel::kq`]); `a` points at the packed tile
/// (`MR · kq` words), `b` at the panel (`unit · NR` bytes a word of depth), `c` at an
/// `MR × NR` buffer (rows `NR` apart).
type Int8TileFn = unsafe fn(kq: usize, a: *const i32, b: *const i8, c: *mut i32);

macro_rules! int8_tile_table {
    ($k:ident; $($r:literal)*) => {
        [$($k::<$r> as Int8TileFn),*]
    };
}

mod dequant;
use dequant::{dequant_tile, Tile};
mod quant;
use quant::quantize_row_u7;
pub use quant::{quantize_row, quantize_weight};
#[cfg(test)]
use quant::{quantize_row_body, quantize_row_u7_body};
mod pack;
use pack::pack_a;

// The micro-kernels, after the macro that builds their tables (textual scope).
#[cfg(target_arch = "x86_64")]
pub(super) mod amx;
mod portable;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm;
#[cfg(target_arch = "x86_64")]
mod x86;

/// An int8 `[n, k]` weight packed for one kernel, with its per-channel scales.
#[derive(Debug)]
pub struct QuantWeight {
    kernel: Int8MicroKernel,
    n: usize,
    k: usize,
    /// Panels of `NR` columns, `kq` words deep (see the module docs), zero-padded.
    panels: Aligned<i8>,
    /// `[n]`, padded with zeros to whole panels.
    scales: Vec<f32>,
    /// What each column's int32 sum carries beyond the product (`128 · Σ w` for the u8
    /// activations of [`Layout::QuadsU8`], else 0), or for [`Layout::QuadsU7`] `Σ w`, which
    /// each row's zero point multiplies; padded like `scales`.
    comp: Vec<i32>,
}

impl QuantWeight {
    /// Quantises an f32 `[n, k]` weight (the scheme of the module docs) and packs it.
    pub fn quantize(w: &[f32], n: usize, k: usize, kernel: Int8MicroKernel) -> Result<QuantWeight, String> {
        let (q, s) = quantize_weight(w, n, k)?;
        QuantWeight::from_quantized(&q, &s, n, k, kernel)
    }

    /// Packs weights already quantised (`q` `[n, k]` row-major, `scales` `[n]`), as read from a
    /// quantised checkpoint.
    pub fn from_quantized(q: &[i8], scales: &[f32], n: usize, k: usize, kernel: Int8MicroKernel) -> Result<QuantWeight, String> {
        if q.len() != n * k || scales.len() != n {
            return Err(format!("int8 weight: {} values and {} scales for [{n}, {k}]", q.len(), scales.len()));
        }
        if k > MAX_K {
            return Err(format!("int8 weight: {k} input features, more than the {MAX_K} whose int32 sums cannot overflow"));
        }
        if q.contains(&i8::MIN) {
            return Err("int8 weight: -128 is outside the symmetric range ±127".into());
        }
        let (nr, u, kq) = (kernel.nr(), kernel.unit(), kernel.kq(k));
        let panels = n.div_ceil(nr);
        let mut out = Aligned::zeroed(panels * kq * u * nr);
        if kq > 0 {
            let fill = |(j, panel): (usize, &mut [i8])| {
                for c in 0..nr.min(n - j * nr) {
                    for (p, &v) in q[(j * nr + c) * k..][..k].iter().enumerate() {
                        panel[kernel.panel_index(p, c)] = v;
                    }
                }
            };
            out.chunks_mut(kq * u * nr).enumerate().for_each(fill);
        }
        let mut sc = scales.to_vec();
        sc.resize(panels * nr, 0.0);
        let mut comp = vec![0i32; panels * nr];
        let zero = match kernel.layout() {
            Layout::QuadsU8 => 128,
            Layout::QuadsU7 => 1,
            _ => 0,
        };
        if zero != 0 && k > 0 {
            for (c, row) in comp.iter_mut().zip(q.chunks(k)) {
                *c = row.iter().fold(0i32, |s, &v| s.wrapping_add(zero * v as i32));
            }
        }
        Ok(QuantWeight { kernel, n, k, panels: out, scales: sc, comp })
    }

    /// Bytes held (int8 panels and scales).
    pub fn bytes(&self) -> usize {
        self.panels.len() + 4 * self.scales.len() + 4 * self.comp.len()
    }

    /// `y[m, n] = act(x · Wᵀ + bias) + res` in int8 (the caller — `PackedWeight::matmul_raw` —
    /// has checked the shapes).
    ///
    /// # Safety
    /// As for `PackedWeight::matmul_raw`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn matmul_raw(&self, x: &[f32], m: usize, lda: usize, epi: Epilogue, y: *mut f32, ldc: usize, parallel: bool) {
        let (n, k, kern) = (self.n, self.k, self.kernel);
        let nr = kern.nr();
        let rt = kern.row_tiles(m);
        let tiles = rt.tiles();
        let (a, sx, zp) = pack_a(x, m, k, lda, kern, epi, parallel);
        let yp = SendPtr(y);
        // SAFETY: each task writes only rows of its tiles × columns of its panels.
        for_each_block(tiles, n.div_ceil(nr), parallel && m * n * k >= PARALLEL_MIN, |t_range, p_range| unsafe {
            self.task(&a, (&sx, &zp), rt, t_range, p_range, epi, yp.get(), ldc)
        });
    }

    /// One output block: tiles `t_range` × panels `p_range`, each tile's int32 product then its
    /// dequantising epilogue (`rows`: each row's scale and, for [`Layout::QuadsU7`], zero point).
    #[allow(clippy::too_many_arguments)]
    unsafe fn task(
        &self,
        a: &[i32],
        (sx, zp): (&[f32], &[i32]),
        rt: RowTiles,
        t_range: std::ops::Range<usize>,
        p_range: std::ops::Range<usize>,
        epi: Epilogue,
        y: *mut f32,
        ldc: usize,
    ) {
        let (n, kern) = (self.n, self.kernel);
        let (mr, nr, kq, u) = (kern.mr(), kern.nr(), kern.kq(self.k), kern.unit());
        let mut acc = Aligned::<i32>::zeroed(mr * nr);
        let chunk_tiles = (A_CHUNK_BYTES / (kq * mr * 4).max(1)).max(1);
        let mut t0 = t_range.start;
        while t0 < t_range.end {
            let chunk = t0..(t0 + chunk_tiles).min(t_range.end);
            for j in p_range.clone() {
                let b = self.panels.as_ptr().add(j * kq * u * nr);
                let cols = nr.min(n - j * nr);
                let (sw, comp) = (&self.scales[j * nr..(j + 1) * nr], &self.comp[j * nr..(j + 1) * nr]);
                for t in chunk.clone() {
                    let (row0, rows) = (rt.start(t), rt.rows(t));
                    (kern.tile(rows))(kq, a.as_ptr().add(t * kq * mr), b, acc.as_mut_ptr());
                    let zp = if zp.is_empty() { zp } else { &zp[row0..row0 + rows] };
                    let tile = Tile { acc: &acc, comp, zp, nr, rows, cols, row0, col0: j * nr, n };
                    dequant_tile(kern, &tile, &sx[row0..row0 + rows], sw, epi, y, ldc);
                }
            }
            t0 = chunk.end;
        }
    }
}

/// The int8 micro-kernel alone, on one thread with its operands in L1 (a full `MR × NR` tile,
/// 256 deep): giga-operations per second (a multiply-add counts 2).
pub fn tile_gops(kernel: Int8MicroKernel, min_ms: f64) -> f64 {
    const K: usize = 256;
    let (mr, nr, kq) = (kernel.mr(), kernel.nr(), kernel.kq(K));
    let a = Aligned::filled(kq * mr, 0x0003_0005i32);
    let b = Aligned::filled(kq * kernel.unit() * nr, 3i8);
    let mut c = Aligned::<i32>::zeroed(mr * nr);
    let f = kernel.tile(mr);
    let (mut calls, t0) = (0u64, crate::clock::now_ms());
    loop {
        for _ in 0..256 {
            // SAFETY: the buffers have the sizes the kernel reads and writes.
            unsafe { f(kq, a.as_ptr(), b.as_ptr(), c.as_mut_ptr()) };
        }
        calls += 256;
        let ms = crate::clock::now_ms() - t0;
        if ms >= min_ms {
            std::hint::black_box(&c);
            return (2 * mr * nr * K) as f64 * calls as f64 / (ms * 1e6);
        }
    }
}
