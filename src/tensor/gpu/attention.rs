//! Attention on the GPU (`attention.wgsl`): from separate `[B, H, N, d]` heads, or straight
//! from the fused QKV projection.

use super::{GpuContext, GpuTensor};
use crate::error::{Error, Result};

const PARAMS: &str = include_str!("attention_params.wgsl");
const MAIN: &str = include_str!("attention.wgsl");
const COMBINE: &str = include_str!("attention_combine.wgsl");

/// A kernel's source with the shared parameter structs in front, made once.
fn source(cell: &'static std::sync::OnceLock<String>, body: &str) -> &'static str {
    cell.get_or_init(|| format!("{PARAMS}\n{body}"))
}
/// How the tiled kernel (`attention.wgsl`) splits head size `d`: S invocations per query row,
/// W4 vec4s of columns each (at most 32 columns), and BK keys per tile, as many of 32, 16, 8,
/// 4 as fit the device's workgroup memory (`floats` of it).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Tiling {
    s: usize,
    w4: usize,
    bk: usize,
}

impl Tiling {
    fn new(d: usize, floats: usize) -> Tiling {
        let s = d.div_ceil(32).next_power_of_two().min(4);
        let w4 = d.div_ceil(s).div_ceil(4);
        let need = |bk: usize| Self::floats(s, w4, bk);
        let bk = [32, 16, 8, 4].into_iter().find(|&bk| need(bk) <= floats).unwrap_or(4);
        Tiling { s, w4, bk }
    }
    /// Workgroup memory (floats) of a tiling: key and value tiles, the partial scores.
    fn floats(s: usize, w4: usize, bk: usize) -> usize {
        let ws = w4 + (s > 1) as usize;
        2 * bk * s * ws * 4 + 64 * bk
    }
    /// Query rows one workgroup takes.
    fn rows(self) -> usize {
        64 / self.s
    }
    /// Loop iterations one invocation runs per key (the column code is written out): the
    /// tile load, the partial dot product, the two passes over the scores' slices.
    fn iterations_per_key(self) -> usize {
        (self.s * self.w4).div_ceil(64) + 2 * self.s + 6
    }
}

/// The kernel for head size `d` with `tiling` (its pipeline name and source), made once each:
/// the column code written out over named vec4 registers.
fn main_kernel(d: usize, t: Tiling) -> (&'static str, &'static str) {
    static KERNELS: std::sync::Mutex<Vec<(usize, Tiling, &'static str, &'static str)>> = std::sync::Mutex::new(Vec::new());
    let mut k = KERNELS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(&(_, _, name, src)) = k.iter().find(|e| e.0 == d && e.1 == t) {
        return (name, src);
    }
    // At most MAX_HEAD_DIM sizes × 4 tilings ever: leaking them gives the pipeline cache its static keys.
    let name: &'static str = Box::leak(format!("attention_d{d}_k{}", t.bk).into_boxed_str());
    let each = |f: &dyn Fn(usize) -> String| (0..t.w4).map(f).collect::<Vec<_>>().join("\n");
    let lanes = |dst: &str, at: &str| {
        (0..4 * t.w4)
            .map(|c| format!("        if (col0 + {c}u < D) {{ {dst}[{at} + {c}u] = acc{}.{} * inv; }}", c / 4, ["x", "y", "z", "w"][c % 4]))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let qv = each(&|v| {
        let cols = (4 * v..4 * v + 4).map(|c| format!("ld_q(qi + col0 + {c}u, col0 + {c}u)")).collect::<Vec<_>>().join(", ");
        format!("    let qv{v} = vec4<f32>({cols});\n    var acc{v} = vec4<f32>(0.0);")
    });
    let body = MAIN
        .replace("HEAD_DIMu", &format!("{d}u"))
        .replace("SLICESu", &format!("{}u", t.s))
        .replace("VEC4Su", &format!("{}u", t.w4))
        .replace("KEYSu", &format!("{}u", t.bk))
        .replace("QV_DECL", &qv)
        .replace("DOT", &each(&|v| format!("            sdot += dot(qv{v}, ks[at + {v}u]);")))
        .replace("SCALE", &each(&|v| format!("        acc{v} *= corr;")))
        .replace("ACCUMULATE", &each(&|v| format!("                acc{v} = fma(ev, vs[at + {v}u], acc{v});")))
        .replace("STORE_OUT", &lanes("o", "oi"))
        .replace("STORE_PART", &lanes("part", "pi"));
    let src: &'static str = Box::leak(format!("{PARAMS}\n{body}").into_boxed_str());
    k.push((d, t, name, src));
    (name, src)
}
static COMBINE_WGSL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
/// Loop iterations one invocation may run: Mesa's llvmpipe ends an invocation after 65535 loop
/// iterations and keeps what it has (measured with the untiled kernel: 2·d + 1 per key fails
/// from about 60 000 on), so long key ranges are split into chunks well below that.
const MAX_LOOP_ITERATIONS: usize = 30_000;
/// Bytes of partial chunk states one pass may hold (small in unit tests, so they run several passes).
const PART_BYTES: usize = if cfg!(test) { 64 << 10 } else { 32 << 20 };
/// Workgroups a pass should have to fill a GPU (an H200 has 132 multiprocessors).
const TARGET_WORKGROUPS: usize = 512;

/// Keys per chunk for `blocks` workgroups of query rows over `nk` keys: below the loop limit,
/// and, on a [`GpuContext::wide`] device, short enough (down to two tiles) that the blocks ×
/// chunks fill the GPU (one ViT-B/16 image: 12 heads × 7 blocks of 32 rows, so 7 chunks, merged
/// by the combine pass, as flash-decoding splits keys).
fn chunk_for(wide: bool, t: Tiling, blocks: usize, nk: usize) -> usize {
    let limit = (MAX_LOOP_ITERATIONS / t.iterations_per_key()).max(t.bk);
    let fill = if wide { TARGET_WORKGROUPS.div_ceil(blocks.max(1)).min(nk.div_ceil(2 * t.bk)) } else { 1 };
    let chunks = nk.div_ceil(limit).max(fill);
    nk.div_ceil(chunks.max(1)).max(1)
}

/// Head size the kernel's accumulator holds (ViT-B: 64, Qwen2.5: 128).
pub const MAX_HEAD_DIM: usize = 128;

#[derive(Clone, Copy)]
struct Lay {
    bs: usize,
    hs: usize,
    rs: usize,
    off: usize,
}

#[allow(clippy::too_many_arguments)]
fn run(
    ctx: &GpuContext,
    bufs: [&GpuTensor; 3],
    lays: [Lay; 4],
    dims: [usize; 5],
    group: usize,
    causal: bool,
    key_sizes: Option<&GpuTensor>,
    out_shape: &[usize],
) -> Result<GpuTensor> {
    let [batch, heads, nq, nk, d] = dims;
    if d == 0 || d > MAX_HEAD_DIM {
        return Err(Error::arg(format!("attention: head size {d} outside 1..={MAX_HEAD_DIM}")));
    }
    if causal && nk < nq {
        return Err(Error::arg(format!("attention: causal with {nq} queries over {nk} keys")));
    }
    let o = ctx.empty(out_shape)?;
    let total = batch * heads * nq;
    if total == 0 || nk == 0 {
        return Ok(o);
    }
    if let Some(s) = key_sizes.filter(|s| s.shape != [batch, nk]) {
        return Err(Error::arg(format!("attention: key sizes {:?} for {batch} × {nk} keys", s.shape)));
    }
    let placeholder;
    let bias = match key_sizes {
        Some(s) => s,
        None => {
            placeholder = ctx.empty(&[1])?;
            &placeholder
        }
    };
    let flag = key_sizes.is_some() as u32;
    let group = group.max(1);
    let tiling = Tiling::new(d, ctx.limits.max_compute_workgroup_storage_size as usize / 4);
    let kernel = main_kernel(d, tiling);
    // Longer keys or a wider device split keys into chunks and add the combine pass.
    ctx.compile_alternatives(|| [kernel, ("attention_combine", source(&COMBINE_WGSL, COMBINE))]);
    // Workgroups per (batch, key/value head): the group's query rows in blocks.
    let blocks = (group * nq).div_ceil(tiling.rows());
    let pairs = batch * (heads / group);
    let chunk = chunk_for(ctx.wide(), tiling, pairs * blocks, nk);
    let chunks = nk.div_ceil(chunk);
    let mut w = vec![batch as u32, heads as u32, nq as u32, nk as u32, d as u32, causal as u32, (1.0 / (d as f32).sqrt()).to_bits(), group as u32];
    for l in lays {
        w.extend([l.bs as u32, l.hs as u32, l.rs as u32, l.off as u32]);
    }
    let rows_per_pair = group * nq;
    if chunks == 1 {
        // One chunk: the kernel writes the output and `part` is a placeholder.
        w.extend([chunk as u32, 1, 0, total as u32, flag, 0, pairs as u32, 0]);
        let part = ctx.empty(&[1])?;
        ctx.dispatch_1d(
            kernel.0,
            kernel.1,
            &[&bufs[0].buf, &bufs[1].buf, &bufs[2].buf, &o.buf, &part.buf, &ctx.uniform(&w), &bias.buf],
            pairs * blocks * 64,
            64,
        )?;
        return Ok(o);
    }
    let per_row = chunks * (d + 2);
    let per_pass = (PART_BYTES / (4 * per_row * rows_per_pair)).clamp(1, pairs);
    let part = ctx.empty(&[per_pass * rows_per_pair * per_row])?;
    for bg0 in (0..pairs).step_by(per_pass) {
        let n = per_pass.min(pairs - bg0);
        let mut pw = w.clone();
        pw.extend([chunk as u32, chunks as u32, (bg0 * rows_per_pair) as u32, (n * rows_per_pair) as u32, flag, bg0 as u32, n as u32, 0]);
        let params = ctx.uniform(&pw);
        ctx.dispatch_1d(kernel.0, kernel.1, &[&bufs[0].buf, &bufs[1].buf, &bufs[2].buf, &o.buf, &part.buf, &params, &bias.buf], n * blocks * chunks * 64, 64)?;
        ctx.dispatch_1d("attention_combine", source(&COMBINE_WGSL, COMBINE), &[&part.buf, &o.buf, &params], n * rows_per_pair * d, 64)?;
    }
    Ok(o)
}

/// `q [B, H, Nq, d]`, `k`/`v [B, G, Nk, d]` → `[B, H, Nq, d]`, where G divides H (G < H is
/// grouped-query attention: query head h reads key/value head h / (H / G)).
pub fn attention(ctx: &GpuContext, q: &GpuTensor, k: &GpuTensor, v: &GpuTensor, causal: bool) -> Result<GpuTensor> {
    let (&[b, h, nq, d], &[b2, g, nk, d2]) = (&q.shape[..], &k.shape[..]) else {
        return Err(Error::arg(format!("attention: q {:?}, k {:?} must be [B, H, N, d]", q.shape, k.shape)));
    };
    if (b2, d2) != (b, d) || g == 0 || h % g != 0 || v.shape != k.shape {
        return Err(Error::arg(format!("attention: q {:?}, k {:?}, v {:?} do not fit", q.shape, k.shape, v.shape)));
    }
    let lq = Lay { bs: h * nq * d, hs: nq * d, rs: d, off: 0 };
    let lk = Lay { bs: g * nk * d, hs: nk * d, rs: d, off: 0 };
    run(ctx, [q, k, v], [lq, lk, lk, lq], [b, h, nq, nk, d], h / g, causal, None, &q.shape)
}

/// Self-attention from a fused `[B, N, 3·H·d]` projection → `[B, N, H·d]`; with `key_sizes`
/// (`[B, N]`) ln(size) is added to the logits of each key.
pub fn attention_packed(ctx: &GpuContext, qkv: &GpuTensor, heads: usize, causal: bool, key_sizes: Option<&GpuTensor>) -> Result<GpuTensor> {
    let &[b, n, w] = &qkv.shape[..] else {
        return Err(Error::arg(format!("attention: qkv {:?} must be [B, N, 3·H·d]", qkv.shape)));
    };
    if heads == 0 || w % (3 * heads) != 0 {
        return Err(Error::arg(format!("attention: fused width {w} is not 3 × {heads} heads")));
    }
    let d = w / (3 * heads);
    let part = |i: usize| Lay { bs: n * w, hs: d, rs: w, off: i * heads * d };
    let lo = Lay { bs: n * heads * d, hs: d, rs: heads * d, off: 0 };
    run(ctx, [qkv, qkv, qkv], [part(0), part(1), part(2), lo], [b, heads, n, n, d], 1, causal, key_sizes, &[b, n, heads * d])
}

/// Attention paid by token 0 (CLS) to tokens 1.., averaged over heads: `[B, N-1]` from `q`,
/// `k` `[B, H, N, d]` (the EViT scorer's one row: a matmul, a softmax and a mean).
pub fn cls_attention(ctx: &GpuContext, q: &GpuTensor, k: &GpuTensor) -> Result<GpuTensor> {
    use super::{copy, elementwise, linear, rows};
    let &[b, h, n, d] = &q.shape[..] else {
        return Err(Error::arg(format!("cls_attention: q {:?} must be [B, H, N, d]", q.shape)));
    };
    if n < 2 {
        return Err(Error::arg("cls_attention needs CLS and at least one patch"));
    }
    let q0 = copy::narrow(ctx, q, 2, 0, 1)?;
    let scores = elementwise::elementwise(ctx, &linear::matmul_nt(ctx, &q0, k)?, None, elementwise::Op::Scale(1.0 / (d as f32).sqrt()))?;
    let probs = rows::rows(ctx, &scores, None, rows::RowOp::Softmax)?;
    let probs = copy::permute(ctx, &GpuTensor { shape: vec![b, h, n], ..probs }, &[0, 2, 1])?;
    copy::narrow(ctx, &rows::rows(ctx, &probs, None, rows::RowOp::Mean)?, 1, 1, n - 1)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::tensor::{Device, Tensor};

    #[test]
    fn matches_cpu() {
        let ctx = super::super::test_context();
        // The last cases span several key chunks (`chunk_for`'s loop limit), causal and not; a wide device
        // also splits short key ranges to fill itself (the first cases), any adapter forced both ways.
        for (wide, &(b, h, n, d, causal)) in [false, true].into_iter().flat_map(|w| {
            [(1usize, 12usize, 197usize, 64usize, false), (2, 3, 17, 8, true), (1, 1, 1, 4, false), (1, 2, 1100, 80, false), (1, 2, 600, 128, true)]
                .iter()
                .map(move |c| (w, c))
        }) {
            ctx.set_wide(Some(wide));
            let qkv: Vec<f32> = (0..b * n * 3 * h * d).map(|i| (((i * 7919) % 1999) as f32 / 999.5 - 1.0) * 2.0).collect();
            let c = Tensor::from_f32(qkv.clone(), &[b, n, 3 * h * d], &Device::cpu()).unwrap();
            let want = Tensor::attention_packed(&c, h, causal).unwrap().to_vec_f32().unwrap();
            let g = ctx.upload(&qkv, &[b, n, 3 * h * d]).unwrap();
            let got = ctx.read_blocking(&attention_packed(&ctx, &g, h, causal, None).unwrap()).unwrap();
            let dd = crate::num::max_abs_diff(&got, &want);
            assert!(dd < 1e-4, "packed b{b} h{h} n{n} d{d} causal {causal}: max |Δ| {dd}");
            // A bias per key (ToMe's log sizes): GPU = CPU (the CPU's is checked against torch
            // in the ToMe golden test), and the bias does change the output.
            let sizes: Vec<f32> = (0..b * n).map(|i| (i % 5) as f32 + 1.0).collect();
            let cs = Tensor::from_f32(sizes.clone(), &[b, n], &Device::cpu()).unwrap();
            let want_b = Tensor::attention_packed_sized(&c, h, causal, Some(&cs)).unwrap().to_vec_f32().unwrap();
            let got_b = ctx.read_blocking(&attention_packed(&ctx, &g, h, causal, Some(&ctx.upload(&sizes, &[b, n]).unwrap())).unwrap()).unwrap();
            let dd = crate::num::max_abs_diff(&got_b, &want_b);
            assert!(dd < 1e-4, "biased b{b} h{h} n{n} d{d}: max |Δ| {dd}");
            assert!(n == 1 || crate::num::max_abs_diff(&want_b, &want) > 1e-3, "the bias changes the output");

            let split = c.reshape(&[b, n, 3, h, d]).unwrap().permute(&[2, 0, 3, 1, 4]).unwrap();
            let part = |i: usize| split.narrow(0, i, 1).unwrap().reshape(&[b, h, n, d]).unwrap();
            let (q, k, v) = (part(0), part(1), part(2));
            let want = Tensor::attention(&q, &k, &v, causal).unwrap().to_vec_f32().unwrap();
            let up = |t: &Tensor| ctx.upload(&t.to_vec_f32().unwrap(), &[b, h, n, d]).unwrap();
            let got = ctx.read_blocking(&attention(&ctx, &up(&q), &up(&k), &up(&v), causal).unwrap()).unwrap();
            let dd = crate::num::max_abs_diff(&got, &want);
            assert!(dd < 1e-4, "separate b{b} h{h} n{n}: max |Δ| {dd}");
        }
    }

    /// Grouped-query attention (2 key/value heads for 6 or 16 query heads): GPU = CPU = the
    /// same attention with the key/value heads repeated by hand; one query row (decoding, all
    /// heads of a group in one block), blocks of rows that span two heads, head sizes that
    /// split into 1, 2 and 4 slices, causal or not.
    #[test]
    fn grouped_query_matches_repeated_heads() {
        let ctx = super::super::test_context();
        let vals = |n: usize, s: usize| (0..n).map(|i| (((i * 7919 + s * 31) % 1999) as f32 / 999.5 - 1.0) * 2.0).collect::<Vec<f32>>();
        let t = |x: &[f32], s: &[usize]| Tensor::from_f32(x.to_vec(), s, &Device::cpu()).unwrap();
        for wide in [false, true] {
            ctx.set_wide(Some(wide));
            for &(b, h, g, nq, nk, d) in
                &[(1usize, 6usize, 2usize, 5usize, 9usize, 16usize), (1, 16, 2, 1, 300, 128), (2, 4, 2, 23, 40, 80), (1, 4, 1, 40, 40, 64)]
            {
                let (k, v) = (vals(b * g * nk * d, 2), vals(b * g * nk * d, 3));
                let rep = |x: &[f32]| -> Vec<f32> {
                    (0..b * h)
                        .flat_map(|bh| {
                            let (bb, hh) = (bh / h, bh % h);
                            let src = (bb * g + hh / (h / g)) * nk * d;
                            x[src..src + nk * d].to_vec()
                        })
                        .collect()
                };
                for causal in [false, true] {
                    let q = vals(b * h * nq * d, 4);
                    let want = Tensor::attention(&t(&q, &[b, h, nq, d]), &t(&rep(&k), &[b, h, nk, d]), &t(&rep(&v), &[b, h, nk, d]), causal)
                        .unwrap()
                        .to_vec_f32()
                        .unwrap();
                    let cpu = Tensor::attention(&t(&q, &[b, h, nq, d]), &t(&k, &[b, g, nk, d]), &t(&v, &[b, g, nk, d]), causal).unwrap().to_vec_f32().unwrap();
                    let got = ctx
                        .read_blocking(
                            &attention(
                                &ctx,
                                &ctx.upload(&q, &[b, h, nq, d]).unwrap(),
                                &ctx.upload(&k, &[b, g, nk, d]).unwrap(),
                                &ctx.upload(&v, &[b, g, nk, d]).unwrap(),
                                causal,
                            )
                            .unwrap(),
                        )
                        .unwrap();
                    assert!(crate::num::max_abs_diff(&cpu, &want) < 1e-6);
                    let dd = crate::num::max_abs_diff(&got, &want);
                    assert!(dd < 1e-4, "b{b} h{h} g{g} nq{nq} nk{nk} d{d} causal {causal} wide {wide}: max |Δ| {dd}");
                }
            }
        }
        ctx.set_wide(None);
    }

    /// The tiling: slices of at most 32 columns, tiles as large as the workgroup memory allows
    /// (WebGPU's default 16 KiB: 4096 floats), and the chunks a wide device splits keys into.
    #[test]
    fn tiling_fits_the_workgroup_memory() {
        for d in 1..=MAX_HEAD_DIM {
            for floats in [4096, 12288] {
                let t = Tiling::new(d, floats);
                assert!(4 * t.w4 <= 32 && 4 * t.s * t.w4 >= d && 64 % t.s == 0, "d {d}: {t:?}");
                assert!(Tiling::floats(t.s, t.w4, t.bk) <= floats, "d {d}: {t:?} over {floats} floats");
            }
        }
        assert_eq!(Tiling::new(64, 4096), Tiling { s: 2, w4: 8, bk: 16 });
        assert_eq!(Tiling::new(128, 4096).bk, 8);
        // ViT-B/16 at batch 1 on a wide device: 12 heads × 7 blocks, keys in 7 chunks.
        let t = Tiling::new(64, 4096);
        assert_eq!(197usize.div_ceil(chunk_for(true, t, 12 * 7, 197)), 7);
        assert_eq!(chunk_for(false, t, 12 * 7, 197), 197);
    }
}
