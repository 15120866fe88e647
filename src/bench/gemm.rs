//! `effarch bench gemm`: the CPU GEMM engine on the shapes of the models, against the `gemm`
//! crate (candle's engine, which packs the weight again on every call), in one process, and
//! each micro-kernel alone in L1: the numbers that say where CPU time goes.

use super::{median, random_values};
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::tensor::cpu::gemm::int8::{self, Int8MicroKernel};
use crate::tensor::cpu::gemm::{peak_gflops, tile_gflops, Epilogue, MicroKernel, PackedWeight};
use serde::Serialize;

/// One micro-kernel alone: one thread, operands in L1.
#[derive(Clone, Debug, Serialize)]
pub struct TileRow {
    pub kernel: String,
    pub mr: usize,
    pub nr: usize,
    pub gflops: f64,
    /// The instruction set's multiply-add ceiling on one thread, registers only
    /// ([`peak_gflops`]): `gflops / peak_gflops` is the micro-kernel's efficiency. None for
    /// the portable kernel and wasm SIMD128 without FMA ([`peak_gflops`]).
    pub peak_gflops: Option<f64>,
}

/// One product shape on one kernel (all threads).
#[derive(Clone, Debug, Serialize)]
pub struct GemmRow {
    pub shape: String,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub kernel: String,
    pub gflops: f64,
    /// The same product with the weight coming from memory, as in a model (calls cycle over
    /// copies of the weight that together exceed the caches); the best kernel only.
    pub gflops_cold: Option<f64>,
    /// The `gemm` crate on the same product (packs the weight per call).
    pub gemm_crate_gflops: f64,
    /// Our time / the `gemm` crate's.
    pub ratio: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct GemmReport {
    pub threads: usize,
    pub tiles: Vec<TileRow>,
    pub rows: Vec<GemmRow>,
}

/// The linear layers of ViT-B/16 at batch 1 (197 tokens), of a decode step, and of ViT-B/16's
/// MLP at batch 8.
pub const SHAPES: [(&str, usize, usize, usize); 8] = [
    ("vit qkv", 197, 2304, 768),
    ("vit out_proj", 197, 768, 768),
    ("vit fc1", 197, 3072, 768),
    ("vit fc2", 197, 768, 3072),
    ("vit fc1 keep 0.5", 99, 3072, 768),
    ("decode in_proj", 1, 3072, 768),
    ("vit b8 fc1", 1576, 3072, 768),
    ("vit b8 fc2", 1576, 768, 3072),
];

/// Weight copies cycled through for the from-memory number: well past a 32 MiB L3.
const COLD_BYTES: usize = 96 << 20;

fn time(iters: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut ts = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t0 = now_ms();
        f()?;
        ts.push(now_ms() - t0);
    }
    Ok(median(ts))
}

/// `y = x · wᵀ` with the `gemm` crate (what the CPU backend used before this engine): `w`
/// read through strides, packed inside the call.
fn gemm_crate(x: &[f32], w: &[f32], y: &mut [f32], m: usize, k: usize, n: usize) {
    assert!(x.len() >= m * k && w.len() >= n * k && y.len() >= m * n);
    let threads = rayon::current_num_threads();
    let par = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // SAFETY: the sizes were checked above.
    unsafe {
        gemm::gemm(m, n, k, y.as_mut_ptr(), 1, n as isize, false, x.as_ptr(), 1, k as isize, w.as_ptr(), k as isize, 1, 0.0, 1.0, false, false, false, par);
    }
}

/// Each micro-kernel this CPU (or wasm build) has, alone for `min_ms` on one thread, beside its
/// instruction set's multiply-add ceiling ([`peak_gflops`]).
/// The int8 micro-kernels follow, their `gflops` being giga-operations (int8 multiply-adds × 2)
/// per second, then the bf16 engines' (x86).
pub fn micro_kernels(min_ms: f64, mut progress: impl FnMut(&str)) -> Vec<TileRow> {
    let f32_rows = MicroKernel::available().into_iter().map(|k| TileRow {
        kernel: k.name().into(),
        mr: k.mr(),
        nr: k.nr(),
        gflops: tile_gflops(k, min_ms),
        peak_gflops: peak_gflops(k, min_ms),
    });
    let int8_rows = Int8MicroKernel::available().into_iter().map(|k| TileRow {
        kernel: format!("int8 {}", k.name()),
        mr: k.mr(),
        nr: k.nr(),
        gflops: int8::tile_gops(k, min_ms),
        peak_gflops: None,
    });
    #[cfg(target_arch = "x86_64")]
    let bf16_rows = crate::tensor::cpu::gemm::Bf16Engine::available().into_iter().map(|e| TileRow {
        kernel: format!("bf16 {}", e.name()),
        mr: e.mr_nr().0,
        nr: e.mr_nr().1,
        gflops: crate::tensor::cpu::gemm::bf16_tile_gflops(e, min_ms),
        peak_gflops: None,
    });
    #[cfg(not(target_arch = "x86_64"))]
    let bf16_rows = std::iter::empty();
    f32_rows
        .chain(int8_rows)
        .chain(bf16_rows)
        .inspect(|row| {
            let peak = row.peak_gflops.map(|p| format!(", peak {p:.1}")).unwrap_or_default();
            progress(&format!("micro-kernel {}: {:.1} GFLOP/s (1 thread, L1){peak}", row.kernel, row.gflops));
        })
        .collect()
}

/// Every kernel this CPU has on [`SHAPES`], `iters` timed runs each (median).
pub fn bench_gemm(iters: usize, mut progress: impl FnMut(&str)) -> Result<GemmReport> {
    if iters == 0 {
        return Err(Error::arg("benchmark needs at least one iteration"));
    }
    let kernels = MicroKernel::available();
    let tiles = micro_kernels(200.0, &mut progress);
    let mut rows = Vec::new();
    for (name, m, n, k) in SHAPES {
        let x = random_values(m * k, 1, 1.0);
        let w = random_values(n * k, 2, 0.05);
        let flop = 2.0 * (m * n * k) as f64;
        let mut y = vec![0f32; m * n];
        let theirs = time(iters, || {
            gemm_crate(&x, &w, &mut y, m, k, n);
            Ok(())
        })?;
        // Every f32 kernel, then the int8 and bf16 engines (activations quantised or rounded inside the call):
        // (name, the best of its kind, bytes a weight value, how to pack the weight).
        type Pack<'a> = Box<dyn Fn() -> Result<PackedWeight> + 'a>;
        let wr = &w;
        let mut engines: Vec<(String, bool, usize, Pack)> = kernels
            .iter()
            .map(|&kern| {
                (kern.name().to_string(), kern == MicroKernel::best(), 4, Box::new(move || PackedWeight::pack(wr, n, k, kern).map_err(Error::arg)) as Pack)
            })
            .collect();
        engines.extend(Int8MicroKernel::available().into_iter().map(|qk| {
            (
                format!("int8 {}", qk.name()),
                qk == Int8MicroKernel::best(),
                1,
                Box::new(move || PackedWeight::quantize(wr, n, k, Some(qk)).map_err(Error::arg)) as Pack,
            )
        }));
        // The bf16 dot-product engines (weights rounded once here, activations in the call).
        #[cfg(target_arch = "x86_64")]
        engines.extend(crate::tensor::cpu::gemm::Bf16Engine::available().into_iter().map(|e| {
            let pack = move || {
                let b: Vec<half::bf16> = wr.iter().map(|&v| half::bf16::from_f32(v)).collect();
                PackedWeight::pack_bf16_on(crate::tensor::cpu::gemm::HalfSlice::Bf16(&b), n, k, e).map_err(Error::arg)
            };
            (format!("bf16 {}", e.name()), false, 2, Box::new(pack) as Pack)
        }));
        for (kernel, best, bytes, pack) in engines {
            let p = pack()?;
            let ours = time(iters, || p.matmul(&x, m, k, Epilogue::default(), &mut y).map_err(Error::arg))?;
            let cold = if best {
                let copies = (COLD_BYTES / (n * k * bytes)).max(2);
                let ps = (0..copies).map(|_| pack()).collect::<Result<Vec<_>>>()?;
                let mut i = 0;
                let t = time(iters.max(copies), || {
                    i = (i + 1) % copies;
                    ps[i].matmul(&x, m, k, Epilogue::default(), &mut y).map_err(Error::arg)
                })?;
                Some(flop / (t * 1e6))
            } else {
                None
            };
            let row = GemmRow {
                shape: name.into(),
                m,
                n,
                k,
                kernel,
                gflops: flop / (ours * 1e6),
                gflops_cold: cold,
                gemm_crate_gflops: flop / (theirs * 1e6),
                ratio: ours / theirs,
            };
            let cold = row.gflops_cold.map(|g| format!(" ({g:.1} from memory)")).unwrap_or_default();
            progress(&format!("{name} [{m}x{k}]·[{k}x{n}] {}: {:.1} GFLOP/s{cold}, gemm crate {:.1}", row.kernel, row.gflops, row.gemm_crate_gflops));
            rows.push(row);
        }
    }
    Ok(GemmReport { threads: rayon::current_num_threads(), tiles, rows })
}

/// `y = x · Wᵀ + b` (`x` `[m, k]`, `w` `[n, k]`, `b` `[n]`) by every int8 kernel this build
/// runs, each packing `w` itself, with the kernel's name: the tests hold each kernel to the
/// reference of its scheme whichever one the run-time pick made the default.
pub fn int8_products(x: &[f32], w: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Result<Vec<(String, Vec<f32>)>> {
    if x.len() != m * k || w.len() != n * k || b.len() != n {
        return Err(Error::arg(format!("int8_products: x {}, w {}, b {} values for m {m}, k {k}, n {n}", x.len(), w.len(), b.len())));
    }
    Int8MicroKernel::available()
        .into_iter()
        .map(|qk| {
            let p = PackedWeight::quantize(w, n, k, Some(qk)).map_err(Error::arg)?;
            let mut y = vec![0f32; m * n];
            let epi = Epilogue { bias: Some(b), ..Epilogue::default() };
            p.matmul(x, m, k, epi, &mut y).map_err(Error::arg)?;
            Ok((qk.name().to_string(), y))
        })
        .collect()
}
