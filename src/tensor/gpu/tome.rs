//! Token Merging on the GPU (`tome.wgsl`): the matching (keys averaged over heads, normalised;
//! each A token's best B token; ranks; every token's destination) and the size-weighted merge,
//! all recorded without a read-back. The host code in `prune/tome.rs` is the CPU path and the
//! reference these kernels are tested against.

use super::{GpuContext, GpuDtype, GpuTensor};
use crate::error::{Error, Result};

const WGSL: &str = include_str!("tome.wgsl");

/// Loop iterations one invocation may run (llvmpipe ends an invocation at 65535).
const MAX_LOOP: usize = 60_000;

#[derive(Clone, Copy, Default)]
struct P {
    batch: usize,
    t: usize,
    d: usize,
    heads: usize,
    width: usize,
    koff: usize,
    r: usize,
    n_unm: usize,
    na: usize,
    nb: usize,
    n_out: usize,
    c: usize,
}

fn run(ctx: &GpuContext, p: P, op: u32, total: usize, bufs: [&GpuTensor; 5]) -> Result<()> {
    if total == 0 {
        return Ok(());
    }
    let w = [p.batch, p.t, p.d, p.heads, p.width, p.koff, p.r, p.n_unm, p.na, p.nb, p.n_out, p.c].map(|v| v as u32);
    let mut words = w.to_vec();
    words.extend([op, total as u32, 0, 0]);
    let params = ctx.uniform(&words);
    ctx.dispatch_1d("tome", WGSL, &[&bufs[0].buf, &bufs[1].buf, &bufs[2].buf, &bufs[3].buf, &bufs[4].buf, &params], total, 64)
}

/// Bipartite soft matching on the keys of a fused `qkv [B, t, 3·H·d]`: each token's index
/// after merging `r` (already clamped by the caller) tokens, `u32 [B, t]`.
pub fn tome_match(ctx: &GpuContext, qkv: &GpuTensor, heads: usize, r: usize) -> Result<GpuTensor> {
    let &[b, t, w] = &qkv.shape[..] else {
        return Err(Error::arg(format!("tome_match: qkv {:?} must be [B, t, 3·H·d]", qkv.shape)));
    };
    if heads == 0 || w % (3 * heads) != 0 || t < 3 || r == 0 || r > crate::tensor::cpu::tome::max_merge(t) {
        return Err(Error::arg(format!("tome_match: {t} tokens of width {w}, {heads} heads, r = {r}")));
    }
    let d = w / (3 * heads);
    let (na, nb) = (t.div_ceil(2), t / 2);
    if nb * d > MAX_LOOP || na > MAX_LOOP || d * heads > MAX_LOOP {
        return Err(Error::arg(format!("tome_match: {t} tokens of head size {d} exceed one invocation's loop bound")));
    }
    let p = P { batch: b, t, d, heads, width: w, koff: heads * d, r, n_unm: na - r, na, nb, ..P::default() };
    let (su, sf) = (ctx.empty_like(&[1], GpuDtype::U32)?, ctx.empty(&[1])?);
    let unit = ctx.empty(&[b, t, d])?;
    run(ctx, p, 0, b * t, [qkv, &su, &sf, &unit, &ctx.empty_like(&[1], GpuDtype::U32)?])?;
    let node_max = ctx.empty(&[b, na])?;
    let idx_rank = ctx.empty_like(&[2, b, na], GpuDtype::U32)?;
    run(ctx, p, 1, b * na, [&unit, &su, &sf, &node_max, &idx_rank])?;
    run(ctx, p, 2, b * na, [&unit, &su, &node_max, &ctx.empty(&[1])?, &idx_rank])?;
    let dest = ctx.empty_like(&[b, t], GpuDtype::U32)?;
    run(ctx, p, 3, b * t, [&sf, &idx_rank, &ctx.empty(&[1])?, &ctx.empty(&[1])?, &dest])?;
    Ok(dest)
}

/// The size-weighted merge of `x [B, t, C]` (token sizes `[B, t]`) into `n_out` tokens by
/// `dest u32 [B, t]`: the merged tokens `[B, n_out, C]` and their sizes `[B, n_out]`.
pub fn tome_merge(ctx: &GpuContext, x: &GpuTensor, sizes: &GpuTensor, dest: &GpuTensor, n_out: usize) -> Result<(GpuTensor, GpuTensor)> {
    let &[b, t, c] = &x.shape[..] else {
        return Err(Error::arg(format!("tome_merge: x {:?} must be [B, t, C]", x.shape)));
    };
    if sizes.shape != [b, t] || dest.shape != [b, t] || dest.dtype != GpuDtype::U32 || n_out == 0 || n_out > t || t > MAX_LOOP {
        return Err(Error::arg(format!("tome_merge: x {:?}, sizes {:?}, dest {:?}, {n_out} tokens out", x.shape, sizes.shape, dest.shape)));
    }
    let p = P { batch: b, t, n_out, c, ..P::default() };
    let su = ctx.empty_like(&[1], GpuDtype::U32)?;
    let y = ctx.empty(&[b, n_out, c])?;
    run(ctx, p, 4, b * n_out * c, [x, dest, sizes, &y, &su])?;
    let s = ctx.empty(&[b, n_out])?;
    run(ctx, p, 5, b * n_out, [x, dest, sizes, &s, &ctx.empty_like(&[1], GpuDtype::U32)?])?;
    Ok((y, s))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use crate::tensor::{Device, Tensor};

    /// The GPU's matching and merge equal the host code (the CPU path) on random keys, for odd
    /// and even token counts, a few and the most merges, and sizes from an earlier merge.
    #[test]
    fn matching_and_merge_match_cpu() {
        let ctx = super::super::test_context();
        let gpu = Device::Gpu(ctx.clone());
        for &(b, t, heads, d, r) in &[(2usize, 197usize, 4usize, 16usize, 1usize), (2, 197, 4, 16, 98), (1, 196, 3, 8, 40), (3, 9, 2, 4, 3)] {
            let w = 3 * heads * d;
            let qkv = crate::num::random_values(b * t * w, t as u64 + r as u64, 1.0);
            let (c, g) = (Tensor::from_f32(qkv.clone(), &[b, t, w], &Device::cpu()).unwrap(), Tensor::from_f32(qkv, &[b, t, w], &gpu).unwrap());
            let want = Tensor::tome_match(&c, heads, r).unwrap().to_vec_u32().unwrap();
            let got = Tensor::tome_match(&g, heads, r).unwrap().to_vec_u32().unwrap();
            assert_eq!(got, want, "b{b} t{t} r{r}: destinations");
            let n_out = t - r;
            assert_eq!(*want.iter().max().unwrap() as usize, n_out - 1);

            let ch = 24;
            let x = crate::num::random_values(b * t * ch, 5, 2.0);
            let sizes: Vec<f32> = (0..b * t).map(|i| (i % 4 + 1) as f32).collect();
            let run = |dev: &Device| {
                let dest = Tensor::from_u32(want.clone(), &[b, t], dev).unwrap();
                let (y, s) = Tensor::tome_merge(
                    &Tensor::from_f32(x.clone(), &[b, t, ch], dev).unwrap(),
                    &Tensor::from_f32(sizes.clone(), &[b, t], dev).unwrap(),
                    &dest,
                    n_out,
                )
                .unwrap();
                (y.to_vec_f32().unwrap(), s.to_vec_f32().unwrap())
            };
            let ((yc, sc), (yg, sg)) = (run(&Device::cpu()), run(&gpu));
            assert_eq!(sg, sc, "b{b} t{t} r{r}: sizes");
            let dd = crate::num::max_abs_diff(&yg, &yc);
            assert!(dd < 1e-5, "b{b} t{t} r{r}: merged tokens max |Δ| {dd}");
            assert_eq!(sc.iter().sum::<f32>(), sizes.iter().sum::<f32>(), "sizes are conserved");
        }
    }
}
