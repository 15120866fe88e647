//! `linear`: `x @ wᵀ + b` over any leading dims (folded into M). See `linear.wgsl`.

use super::linear_shaders::{choose, pipeline, reduce, reduce_norm, small};
use super::{GpuContext, GpuDtype, GpuTensor};
use crate::error::{Error, Result};

/// Output tiles below which `linear` splits K (see `linear.wgsl`): a GPU has 100+ cores that
/// each want a few workgroups, and one image's projections (M = 197) have 48–192 tiles.
const TARGET_TILES: usize = 512;
/// Fewest K per split.
const MIN_SPLIT_K: usize = 256;

/// How many slices of K `linear` runs in parallel for an output of `tiles` tiles (one on a
/// device that is not [`GpuContext::wide`]).
fn k_splits(ctx: &GpuContext, tiles: usize, k: usize) -> usize {
    if tiles * 2 >= TARGET_TILES || !ctx.wide() {
        return 1;
    }
    TARGET_TILES.div_ceil(tiles.max(1)).min(k / MIN_SPLIT_K).max(1)
}
/// Rows up to which `linear` runs the few-row kernel (`linear_small.wgsl`).
const SMALL_M: usize = 8;
const TILE: usize = 64;
pub fn linear(ctx: &GpuContext, x: &GpuTensor, w: &GpuTensor, b: Option<&GpuTensor>) -> Result<GpuTensor> {
    linear_ex(ctx, x, w, b, None, None)
}

/// `(M, N, K, output shape)` of `x @ wᵀ`, the bias and residual checked against them.
fn check(x: &GpuTensor, w: &GpuTensor, b: Option<&GpuTensor>, res: Option<&GpuTensor>) -> Result<(usize, usize, usize, Vec<usize>)> {
    let (Some(&k), &[n, wk]) = (x.shape.last(), &w.shape[..]) else {
        return Err(Error::arg(format!("linear: input {:?} and weight {:?} must be [.., K] and [N, K]", x.shape, w.shape)));
    };
    if wk != k {
        return Err(Error::arg(format!("linear: input has {k} features but the weight is [{n}, {wk}]")));
    }
    if let Some(b) = b {
        if b.shape != [n] {
            return Err(Error::arg(format!("linear: bias {:?} for {n} outputs", b.shape)));
        }
    }
    let m = x.len() / k.max(1);
    let mut shape = x.shape.clone();
    if let Some(last) = shape.last_mut() {
        *last = n;
    }
    if let Some(r) = res {
        if r.shape != shape || r.dtype != GpuDtype::F32 {
            return Err(Error::arg(format!("linear: residual {:?} for an output of {shape:?}", r.shape)));
        }
    }
    Ok((m, n, k, shape))
}

/// `act(norm(x) @ w′ᵀ + b′) + res`: a LayerNorm folded into the product
/// ([`crate::models::nn::NormedLinear`]): `w′ = w·diag(γ)`, `b′ = b + w·β`, `colsum` = `w′`'s
/// row sums, and `norm` the LayerNorm without its affine part. One pass over x: the tiled
/// kernel sums each row's mean and variance while it stages it (`norm_variant`); where that
/// kernel does not run (a few rows, K not a multiple of 4 or under 16) the norm is a pass of
/// its own.
#[allow(clippy::too_many_arguments)]
pub fn linear_normed(
    ctx: &GpuContext,
    x: &GpuTensor,
    w: &GpuTensor,
    colsum: &GpuTensor,
    b: &GpuTensor,
    eps: f32,
    act: Option<crate::tensor::Activation>,
    res: Option<&GpuTensor>,
) -> Result<GpuTensor> {
    let (m, n, k, shape) = check(x, w, Some(b), res)?;
    if colsum.shape != [n] {
        return Err(Error::arg(format!("linear: row sums {:?} for {n} outputs", colsum.shape)));
    }
    let foldable = k % 4 == 0 && k >= 16;
    if foldable {
        ctx.compile_alternatives(|| [choose(ctx, true, k, w), reduce_norm()]);
    }
    let separate = m <= SMALL_M || !foldable;
    // A warm-up being recorded also takes the separate pass, which fewer rows pick.
    if separate || ctx.recording() {
        let xn = super::rows::rows(ctx, x, None, super::rows::RowOp::Normalize { eps })?;
        let y = linear_ex(ctx, &xn, w, Some(b), act, res)?;
        if separate {
            return Ok(y);
        }
    }
    tiled(ctx, x, w, Some(b), act, res, Some((colsum, eps)), (m, n, k, &shape))
}

/// `act(x @ wᵀ + b) + res` in one pass over the output: the bias, the activation and the
/// residual are applied while each output is in a register (`epilogue.wgsl`), so an MLP's
/// first projection or a block's output projection writes its result once.
pub fn linear_ex(
    ctx: &GpuContext,
    x: &GpuTensor,
    w: &GpuTensor,
    b: Option<&GpuTensor>,
    act: Option<crate::tensor::Activation>,
    res: Option<&GpuTensor>,
) -> Result<GpuTensor> {
    let (m, n, k, shape) = check(x, w, b, res)?;
    if m == 0 || n == 0 {
        return ctx.empty(&shape);
    }
    let few_rows = k % 4 == 0 && matches!(w.dtype, GpuDtype::F32 | GpuDtype::I8);
    // What other row counts and device widths pick, compiled by a warm-up being recorded.
    ctx.compile_alternatives(|| {
        let small = few_rows.then(|| small(ctx, w));
        [Some(choose(ctx, false, k, w)), Some(reduce()), small].into_iter().flatten()
    });
    if m <= SMALL_M && few_rows {
        // Decoding: one workgroup per output column (split over x and y past the per-dimension limit).
        let y = ctx.empty(&shape)?;
        let (has_bias, act, has_res) = (b.is_some() as u32, act.map_or(0, super::elementwise::act_code), res.is_some() as u32);
        let params = ctx.uniform(&[m as u32, n as u32, k as u32, has_bias, 0, 0, 0, 0, act, has_res, 0, 0]);
        let groups = (n.min(32768) as u32, n.div_ceil(n.min(32768)) as u32, 1);
        let (name, src) = small(ctx, w);
        let (bias, resb) = (b.map_or(&x.buf, |b| &b.buf), res.map_or(&x.buf, |r| &r.buf));
        return ctx.dispatch(&ctx.pipeline(name, src), &[&x.buf, &w.buf, bias, &y.buf, &params, resb], groups).map(|_| y);
    }
    tiled(ctx, x, w, b, act, res, None, (m, n, k, &shape))
}

/// The tiled kernel (`linear.wgsl`) for an `(M, N, K, output shape)` product with the epilogue,
/// the LayerNorm folded in when `norm` (`(row sums, eps)`, see [`linear_normed`]): one pass, or
/// where the output has too few tiles for a wide device, split K and a reduce pass.
#[allow(clippy::too_many_arguments)]
fn tiled(
    ctx: &GpuContext,
    x: &GpuTensor,
    w: &GpuTensor,
    b: Option<&GpuTensor>,
    act: Option<crate::tensor::Activation>,
    res: Option<&GpuTensor>,
    norm: Option<(&GpuTensor, f32)>,
    (m, n, k, shape): (usize, usize, usize, &[usize]),
) -> Result<GpuTensor> {
    let y = ctx.empty(shape)?;
    // The epilogue's words: bias, activation, residual (unused bindings get the input).
    let (has_bias, act, has_res) = (b.is_some() as u32, act.map_or(0, super::elementwise::act_code), res.is_some() as u32);
    let bias = b.map_or(&x.buf, |b| &b.buf);
    let resb = res.map_or(&x.buf, |r| &r.buf);
    let (mu, nu, ku) = (m as u32, n as u32, k as u32);
    let pipe = pipeline(ctx, norm.is_some(), k, w);
    // The folded norm's words (eps, whether this pass normalises) and bindings (row sums, and
    // the split slabs' row sums).
    let e = norm.map_or(0, |(_, eps)| eps.to_bits());
    let (tn, tm) = (n.div_ceil(TILE), m.div_ceil(TILE));
    // K per slice: a whole number of 16-deep K tiles.
    let kc = k.div_ceil(k_splits(ctx, tn * tm, k)).next_multiple_of(16);
    let splits = k.div_ceil(kc);
    if splits > 1 && ((splits * m * n * 4) as u64) <= ctx.max_binding() {
        let part = ctx.empty(&[splits * m * n])?;
        let pp = ctx.uniform(&[mu, nu, ku, 0, 0, 0, mu * nu, kc as u32, 0, 0, e, 0]);
        let rp = ctx.uniform(&[mu * nu, nu, splits as u32, has_bias, act, has_res, e, if norm.is_some() { ku } else { 0 }]);
        match norm {
            Some((colsum, _)) => {
                let stats = ctx.empty(&[splits * m * 2])?;
                ctx.dispatch(&pipe, &[&x.buf, &w.buf, &x.buf, &part.buf, &pp, &x.buf, &colsum.buf, &stats.buf], (tn as u32, tm as u32, splits as u32))?;
                let (name, src) = reduce_norm();
                ctx.dispatch_1d(name, src, &[&part.buf, bias, &y.buf, &rp, resb, &colsum.buf, &stats.buf], m * n, 256)?;
            }
            None => {
                ctx.dispatch(&pipe, &[&x.buf, &w.buf, &x.buf, &part.buf, &pp, &x.buf], (tn as u32, tm as u32, splits as u32))?;
                let (name, src) = reduce();
                ctx.dispatch_1d(name, src, &[&part.buf, bias, &y.buf, &rp, resb], m * n, 256)?;
            }
        }
        return Ok(y);
    }
    let params = ctx.uniform(&[mu, nu, ku, has_bias, 0, 0, 0, 0, act, has_res, e, norm.is_some() as u32]);
    let groups = (tn as u32, tm as u32, 1);
    match norm {
        Some((colsum, _)) => ctx.dispatch(&pipe, &[&x.buf, &w.buf, bias, &y.buf, &params, resb, &colsum.buf, &ctx.empty(&[2])?.buf], groups)?,
        None => ctx.dispatch(&pipe, &[&x.buf, &w.buf, bias, &y.buf, &params, resb], groups)?,
    }
    Ok(y)
}

/// Batched `a @ b`: `[.., m, k] @ [.., k, n]` (b transposed by a copy, then [`matmul_nt`]).
pub fn matmul(ctx: &GpuContext, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
    let r = b.shape.len();
    if r < 2 {
        return Err(Error::arg(format!("matmul: rhs {:?} needs 2+ dims", b.shape)));
    }
    let mut perm: Vec<usize> = (0..r).collect();
    perm.swap(r - 2, r - 1);
    matmul_nt(ctx, a, &super::copy::permute(ctx, b, &perm)?)
}

/// Batched `a @ bᵀ`: `a [.., m, k]`, `b [.., n, k]` with the same leading dims → `[.., m, n]`.
pub fn matmul_nt(ctx: &GpuContext, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
    let (ra, rb) = (a.shape.len(), b.shape.len());
    if ra < 2 || ra != rb || a.shape[..ra - 2] != b.shape[..rb - 2] || a.shape[ra - 1] != b.shape[rb - 1] {
        return Err(Error::arg(format!("matmul_nt: {:?} @ {:?}ᵀ do not fit", a.shape, b.shape)));
    }
    let (m, k, n) = (a.shape[ra - 2], a.shape[ra - 1], b.shape[rb - 2]);
    let batch: usize = a.shape[..ra - 2].iter().product();
    let mut shape = a.shape[..ra - 2].to_vec();
    shape.extend([m, n]);
    let y = ctx.empty(&shape)?;
    if batch == 0 || m == 0 || n == 0 {
        return Ok(y);
    }
    let params = ctx.uniform(&[m as u32, n as u32, k as u32, 0, (m * k) as u32, (n * k) as u32, (m * n) as u32, 0, 0, 0, 0, 0]);
    // K is often a sequence length here (scores @ values): its residue mod 4 picks vec4 loads or not.
    ctx.compile_alternatives(|| [choose(ctx, false, 4, b), choose(ctx, false, 1, b)]);
    let pipe = pipeline(ctx, false, k, b);
    ctx.dispatch(&pipe, &[&a.buf, &b.buf, &b.buf, &y.buf, &params, &a.buf], (n.div_ceil(TILE) as u32, m.div_ceil(TILE) as u32, batch as u32))?;
    Ok(y)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::super::linear_shaders::int8_variant;
    use super::super::GpuWeights;
    use super::*;
    use crate::tensor::{Device, Tensor};

    fn vals(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i * 7919 + seed * 104729) % 2003) as f32 / 1001.5) - 1.0).collect()
    }

    /// Awkward shapes (1 row, 197 tokens, non-multiples of the 64×64×16 tile) against the CPU.
    #[test]
    fn matches_cpu_on_awkward_shapes() {
        let ctx = super::super::test_context();
        // Both policies on any adapter: split K where the device is wide, one pass where not.
        for (lead, k, n, bias, wide) in [false, true].into_iter().flat_map(|wide| {
            [
                (&[1usize][..], 768usize, 3usize, true),
                (&[1, 197][..], 768, 2304, true),
                (&[2, 65][..], 17, 130, false),
                (&[3][..], 1, 1, true),
                (&[1, 1][..], 1536, 3072, true),
                (&[8][..], 48, 1536, true),
                (&[3][..], 4, 70000, false),
                (&[9][..], 64, 5, true),
                // Split K (few output tiles): slices of whole 16-deep tiles, the last one short.
                (&[1, 197][..], 3072, 768, true),
                (&[5][..], 1000, 64, true),
                (&[17][..], 777, 70, false),
            ]
            .map(|(l, k, n, b)| (l, k, n, b, wide))
        }) {
            ctx.set_wide(Some(wide));
            let m: usize = lead.iter().product();
            let (xv, wv, bv) = (vals(m * k, 1), vals(n * k, 2), vals(n, 3));
            let mut xs = lead.to_vec();
            xs.push(k);
            let want = Tensor::from_f32(xv.clone(), &xs, &Device::cpu())
                .unwrap()
                .linear(
                    &Tensor::from_f32(wv.clone(), &[n, k], &Device::cpu()).unwrap(),
                    bias.then(|| Tensor::from_f32(bv.clone(), &[n], &Device::cpu()).unwrap()).as_ref(),
                )
                .unwrap()
                .to_vec_f32()
                .unwrap();
            let (gx, gw, gb) = (ctx.upload(&xv, &xs).unwrap(), ctx.upload(&wv, &[n, k]).unwrap(), ctx.upload(&bv, &[n]).unwrap());
            // The few-row kernel (M ≤ 8) with its sums added by subgroups and in workgroup memory.
            for sg in [true, false] {
                ctx.set_subgroups(Some(sg));
                let y = linear(&ctx, &gx, &gw, bias.then_some(&gb)).unwrap();
                let got = ctx.read_blocking(&y).unwrap();
                let d = crate::num::max_abs_diff(&got, &want);
                // f32 sums of K products in two summation orders: the gap grows with K (at
                // K = 3072 the one-pass kernel is 2.9e-3 from candle's gemm, split K 1.3e-3).
                let tol = 1e-3 * (k as f32 / 768.0).max(1.0);
                assert!(d < tol, "[{m}, {k}] x [{n}, {k}] (wide {wide}, subgroups {sg}): max |Δ| {d} > {tol} on {}", ctx.adapter.name);
            }
        }
        ctx.set_subgroups(None);
        assert!(ctx.subgroups(), "lavapipe has subgroups: the subgroup variant must be tested");
        ctx.set_wide(None);
        // f16 weights (vec4 loads for K = 768, scalar for K = 6): the same products within
        // f16 rounding of the weights.
        for &(m, k, n) in &[(197usize, 768usize, 130usize), (5, 6, 3)] {
            let (xv, wv, bv) = (vals(m * k, 4), vals(n * k, 5), vals(n, 6));
            let cpu = |v: &[f32], s: &[usize]| Tensor::from_f32(v.to_vec(), s, &Device::cpu()).unwrap();
            let want = cpu(&xv, &[m, k]).linear(&cpu(&wv, &[n, k]), Some(&cpu(&bv, &[n]))).unwrap().to_vec_f32().unwrap();
            let y = linear(&ctx, &ctx.upload(&xv, &[m, k]).unwrap(), &ctx.upload_f16(&wv, &[n, k]).unwrap(), Some(&ctx.upload(&bv, &[n]).unwrap())).unwrap();
            let d = crate::num::max_abs_diff(&ctx.read_blocking(&y).unwrap(), &want);
            // |x|, |w| ≤ 1: f16 rounding of w (≤ 2⁻¹² relative) bounds |Δ| by k · 2⁻¹²; it is far less.
            println!("linear [{m}, {k}] with f16 weights: max |Δ| {d:e}");
            assert!(d < 0.05 && d > 0.0, "f16 weights [{m}, {k}] x [{n}, {k}]: max |Δ| {d}");
        }
        // f16 math (a context with f16 weights on an adapter with shader-f16, as lavapipe is):
        // the same products within f16 rounding of the staged tiles and of each 16-deep sum.
        let half = pollster::block_on(GpuContext::new_with(GpuWeights::F16)).unwrap();
        half.set_wide(Some(true));
        assert!(half.f16_math(), "the test adapter ({}) has shader-f16", half.adapter.name);
        for &(m, k, n) in &[(197usize, 768usize, 130usize), (70, 64, 3)] {
            let (xv, wv, bv) = (vals(m * k, 7), vals(n * k, 8), vals(n, 9));
            let cpu = |v: &[f32], s: &[usize]| Tensor::from_f32(v.to_vec(), s, &Device::cpu()).unwrap();
            let want = cpu(&xv, &[m, k]).linear(&cpu(&wv, &[n, k]), Some(&cpu(&bv, &[n]))).unwrap().to_vec_f32().unwrap();
            let y =
                linear(&half, &half.upload(&xv, &[m, k]).unwrap(), &half.upload_f16(&wv, &[n, k]).unwrap(), Some(&half.upload(&bv, &[n]).unwrap())).unwrap();
            let d = crate::num::max_abs_diff(&half.read_blocking(&y).unwrap(), &want);
            let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
            println!("linear [{m}, {k}] with f16 math: max |Δ| {d:e} (scale {scale})");
            assert!(d < 2e-3 * scale && d > 0.0, "f16 math [{m}, {k}] x [{n}, {k}]: max |Δ| {d} (scale {scale})");
        }
        assert!(ctx.upload_f16(&[0.0; 3], &[1, 3]).is_err());
        // int8 weights: the products of x with the dequantised weights `q · scale` (as the CPU
        // computes them in f32) on the one-pass and split-K paths, the few-row kernel (M ≤ 8)
        // and the folded-norm variant's source.
        assert!(int8_variant(false).1.contains("qi << 24u") && int8_variant(true).1.contains("qi << 24u"));
        let i8w = ctx.upload_i8(&[0; 4], &[1.0], &[1, 4]).unwrap();
        assert!(small(&ctx, &i8w).1.contains("qi << 24u") && small(&ctx, &i8w).1.contains("* bitcast<f32>(w[col])"));
        for (m, k, n, wide) in [(197usize, 768usize, 130usize, false), (197, 3072, 96, true), (1, 768, 300, true), (8, 64, 5, false), (70, 64, 3, false)] {
            ctx.set_wide(Some(wide));
            let (xv, wv, bv) = (vals(m * k, 21), vals(n * k, 22), vals(n, 23));
            let (q, sc) = crate::tensor::cpu::gemm::int8::quantize_weight(&wv, n, k).unwrap();
            let deq: Vec<f32> = q.iter().enumerate().map(|(i, &v)| v as f32 * sc[i / k]).collect();
            let cpu = |v: &[f32], s: &[usize]| Tensor::from_f32(v.to_vec(), s, &Device::cpu()).unwrap();
            let want = cpu(&xv, &[m, k]).linear(&cpu(&deq, &[n, k]), Some(&cpu(&bv, &[n]))).unwrap().to_vec_f32().unwrap();
            let y = linear(&ctx, &ctx.upload(&xv, &[m, k]).unwrap(), &ctx.upload_i8(&q, &sc, &[n, k]).unwrap(), Some(&ctx.upload(&bv, &[n]).unwrap())).unwrap();
            let d = crate::num::max_abs_diff(&ctx.read_blocking(&y).unwrap(), &want);
            let tol = 1e-3 * (k as f32 / 768.0).max(1.0);
            println!("linear [{m}, {k}] x [{n}, {k}] with int8 weights (wide {wide}): max |Δ| to the dequantised product {d:e}");
            assert!(d < tol, "int8 weights [{m}, {k}] x [{n}, {k}] (wide {wide}): max |Δ| {d} > {tol}");
        }
        ctx.set_wide(None);
        assert!(ctx.upload_i8(&[0; 6], &[1.0; 2], &[2, 3]).is_err());
        let x = ctx.upload(&[0.0; 6], &[2, 3]).unwrap();
        let w = ctx.upload(&[0.0; 8], &[2, 4]).unwrap();
        assert!(linear(&ctx, &x, &w, None).unwrap_err().to_string().contains("3 features"));
    }

    /// The fused epilogue (bias, activation, residual) on each kernel path (few rows, split
    /// K, one pass) equals the CPU's linear → act → add.
    #[test]
    fn fused_epilogue_matches_the_steps_on_cpu() {
        use crate::tensor::Activation::*;
        let ctx = super::super::test_context();
        let dev = Device::Gpu(ctx.clone());
        let acts = [None, Some(QuickGelu), Some(Gelu), Some(GeluTanh), Some(Silu), Some(Softplus)];
        for (case, &(m, k, n)) in [(1usize, 768usize, 300usize), (197, 3072, 96), (70, 64, 130), (3, 6, 5)].iter().enumerate() {
            for (i, &act) in acts.iter().enumerate() {
                // Split K on a wide device, one pass otherwise: each act on one of them.
                ctx.set_wide(Some(i % 2 == 0));
                let with_res = (case + i) % 2 == 0;
                let (xv, wv, bv, rv) = (vals(m * k, 11 + i), vals(n * k, 12), vals(n, 13), vals(m * n, 14));
                let on = |d: &Device| -> Vec<f32> {
                    let t = |v: &[f32], s: &[usize]| Tensor::from_f32(v.to_vec(), s, d).unwrap();
                    let r = t(&rv, &[m, n]);
                    t(&xv, &[m, k]).linear_ex(&t(&wv, &[n, k]), Some(&t(&bv, &[n])), act, with_res.then_some(&r)).unwrap().to_vec_f32().unwrap()
                };
                let d = crate::num::max_abs_diff(&on(&dev), &on(&Device::cpu()));
                let tol = 1e-3 * (k as f32 / 768.0).max(1.0);
                assert!(d < tol, "[{m}, {k}] x [{n}, {k}] {act:?}, residual {with_res}: max |Δ| {d}");
            }
        }
        let (x, w) = (Tensor::from_f32(vals(6, 1), &[2, 3], &dev).unwrap(), Tensor::from_f32(vals(12, 2), &[4, 3], &dev).unwrap());
        let bad = Tensor::from_f32(vals(6, 3), &[2, 3], &dev).unwrap();
        assert!(x.linear_ex(&w, None, None, Some(&bad)).unwrap_err().to_string().contains("residual"));
    }

    /// A weight larger than the binding limit is split into row blocks that each fit, and
    /// gives the same result.
    #[test]
    fn weights_over_the_binding_limit_are_split() {
        use crate::tensor::LinearWeight;
        let ctx = super::super::test_context();
        let (m, k, n) = (5usize, 768usize, 130usize);
        let (xv, wv, bv) = (vals(m * k, 7), vals(n * k, 8), vals(n, 9));
        let cpu = |v: &[f32], s: &[usize]| Tensor::from_f32(v.to_vec(), s, &Device::cpu()).unwrap();
        let want = cpu(&xv, &[m, k]).linear(&cpu(&wv, &[n, k]), Some(&cpu(&bv, &[n]))).unwrap().to_vec_f32().unwrap();
        let dev = Device::Gpu(ctx.clone());
        let (x, b) = (Tensor::from_f32(xv.clone(), &[m, k], &dev).unwrap(), Tensor::from_f32(bv.clone(), &[n], &dev).unwrap());
        ctx.set_binding_limit(64 << 10); // 400 KB of weight → 7 blocks of 21 rows
        let w = LinearWeight::new(wv.clone(), [n, k], &dev).unwrap();
        let got = w.forward(&x, Some(&b)).unwrap().to_vec_f32().unwrap();
        ctx.set_binding_limit(0);
        assert_eq!(w.blocks(), 7);
        let d = crate::num::max_abs_diff(&got, &want);
        assert!(d < 1e-3, "split linear: max |Δ| {d}");
        assert!(ctx.upload(&wv, &[n, k]).is_ok());
    }
}
