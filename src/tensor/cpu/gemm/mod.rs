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
//! - **A register-blocked micro-kernel per target**, picked at run time ([`MicroKernel::best`]):
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

#[cfg(target_arch = "x86_64")]
mod bf16;
mod epilogue;
#[cfg(target_arch = "x86_64")]
mod epilogue512;
pub mod int8;
mod matmul;
mod partition;
mod peak;
#[cfg(test)]
mod tests;
mod weight;

#[cfg(target_arch = "x86_64")]
pub use bf16::{tile_gflops as bf16_tile_gflops, Bf16Engine};
pub(crate) use epilogue::{act_in_place, normed_row, write_tile, TileAt};
pub use epilogue::{Epilogue, Norm};
pub(crate) use partition::{for_each_block, RowTiles, SendPtr};
pub use peak::{peak_gflops, tile_gflops};
pub use weight::{HalfSlice, PackedWeight};

/// The bf16 dot-product engine `Precision::Bf16` runs on with this CPU, if it has one
/// (`PackedWeight::pack_bf16_best`; else the f32 micro-kernels).
pub fn bf16_engine() -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    return bf16::Bf16Engine::best().map(bf16::Bf16Engine::name);
    #[cfg(not(target_arch = "x86_64"))]
    None
}

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
pub enum MicroKernel {
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx512,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx2,
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    Simd128,
    Portable,
}

impl MicroKernel {
    pub fn name(self) -> &'static str {
        match self {
            MicroKernel::Avx512 => "avx512f 12x32",
            MicroKernel::Avx2 => "avx2+fma 6x16",
            MicroKernel::Simd128 => {
                if cfg!(target_feature = "relaxed-simd") {
                    "wasm simd128+relaxed 4x8"
                } else {
                    "wasm simd128 4x8"
                }
            }
            MicroKernel::Portable => "portable 4x8",
        }
    }

    /// Rows of a full tile.
    pub fn mr(self) -> usize {
        match self {
            MicroKernel::Avx512 => 12,
            MicroKernel::Avx2 => 6,
            MicroKernel::Simd128 => WASM_MR,
            MicroKernel::Portable => 4,
        }
    }

    /// Columns of a tile (= width of a weight panel).
    pub fn nr(self) -> usize {
        match self {
            MicroKernel::Avx512 => 32,
            MicroKernel::Avx2 => 16,
            MicroKernel::Simd128 | MicroKernel::Portable => 8,
        }
    }

    /// Every kernel this CPU can run, fastest first.
    pub fn available() -> Vec<MicroKernel> {
        let mut v = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                v.push(MicroKernel::Avx512);
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                v.push(MicroKernel::Avx2);
            }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        v.push(MicroKernel::Simd128);
        v.push(MicroKernel::Portable);
        v
    }

    /// The fastest kernel this CPU can run (detected once).
    pub fn best() -> MicroKernel {
        static BEST: std::sync::OnceLock<MicroKernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| MicroKernel::available()[0])
    }

    /// The micro-kernel for a tile of `rows` (1..=MR) rows.
    fn tile(self, rows: usize) -> TileFn {
        match self {
            #[cfg(target_arch = "x86_64")]
            MicroKernel::Avx512 => x86::AVX512[rows - 1],
            #[cfg(target_arch = "x86_64")]
            MicroKernel::Avx2 => x86::AVX2[rows - 1],
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            MicroKernel::Simd128 => wasm::SIMD128[rows - 1],
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

// The micro-kernels, after the macro that builds their tables (textual scope).
mod portable;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm;
#[cfg(target_arch = "x86_64")]
mod x86;
