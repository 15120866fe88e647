//! `linear`: `x @ wᵀ + b` over any leading dims (folded into M). See `linear.wgsl`.

use super::{GpuContext, GpuTensor};
use crate::error::{Error, Result};

const WGSL: &str = include_str!("linear.wgsl");
const TILE: usize = 64;

pub fn linear(
    ctx: &GpuContext,
    x: &GpuTensor,
    w: &GpuTensor,
    b: Option<&GpuTensor>,
) -> Result<GpuTensor> {
    let (Some(&k), &[n, wk]) = (x.shape.last(), &w.shape[..]) else {
        return Err(Error::arg(format!(
            "linear: input {:?} and weight {:?} must be [.., K] and [N, K]",
            x.shape, w.shape
        )));
    };
    if wk != k {
        return Err(Error::arg(format!(
            "linear: input has {k} features but the weight is [{n}, {wk}]"
        )));
    }
    if let Some(b) = b {
        if b.shape != [n] {
            return Err(Error::arg(format!(
                "linear: bias {:?} for {n} outputs",
                b.shape
            )));
        }
    }
    let m = x.len() / k.max(1);
    let mut shape = x.shape.clone();
    if let Some(last) = shape.last_mut() {
        *last = n;
    }
    let y = ctx.empty(&shape)?;
    if m == 0 || n == 0 {
        return Ok(y);
    }
    let params = ctx.uniform(&[m as u32, n as u32, k as u32, b.is_some() as u32, 0, 0, 0, 0]);
    let bias = b.map_or(&w.buf, |b| &b.buf);
    let pipe = ctx.pipeline("linear", WGSL);
    ctx.dispatch(
        &pipe,
        &[&x.buf, &w.buf, bias, &y.buf, &params],
        (n.div_ceil(TILE) as u32, m.div_ceil(TILE) as u32, 1),
    )?;
    Ok(y)
}

/// Batched `a @ bᵀ`: `a [.., m, k]`, `b [.., n, k]` with the same leading dims → `[.., m, n]`.
pub fn matmul_nt(ctx: &GpuContext, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
    let (ra, rb) = (a.shape.len(), b.shape.len());
    if ra < 2
        || ra != rb
        || a.shape[..ra - 2] != b.shape[..rb - 2]
        || a.shape[ra - 1] != b.shape[rb - 1]
    {
        return Err(Error::arg(format!(
            "matmul_nt: {:?} @ {:?}ᵀ do not fit",
            a.shape, b.shape
        )));
    }
    let (m, k, n) = (a.shape[ra - 2], a.shape[ra - 1], b.shape[rb - 2]);
    let batch: usize = a.shape[..ra - 2].iter().product();
    let mut shape = a.shape[..ra - 2].to_vec();
    shape.extend([m, n]);
    let y = ctx.empty(&shape)?;
    if batch == 0 || m == 0 || n == 0 {
        return Ok(y);
    }
    let params = ctx.uniform(&[
        m as u32,
        n as u32,
        k as u32,
        0,
        (m * k) as u32,
        (n * k) as u32,
        (m * n) as u32,
        0,
    ]);
    let pipe = ctx.pipeline("linear", WGSL);
    ctx.dispatch(
        &pipe,
        &[&a.buf, &b.buf, &b.buf, &y.buf, &params],
        (
            n.div_ceil(TILE) as u32,
            m.div_ceil(TILE) as u32,
            batch as u32,
        ),
    )?;
    Ok(y)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::tensor::{Device, Tensor};

    fn vals(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed * 104729) % 2003) as f32 / 1001.5) - 1.0)
            .collect()
    }

    /// Awkward shapes (1 row, 197 tokens, non-multiples of the 64×64×16 tile) against the CPU.
    #[test]
    fn matches_cpu_on_awkward_shapes() {
        let ctx = super::super::test_context();
        for &(lead, k, n, bias) in &[
            (&[1usize][..], 768usize, 3usize, true),
            (&[1, 197][..], 768, 2304, true),
            (&[2, 65][..], 17, 130, false),
            (&[3][..], 1, 1, true),
        ] {
            let m: usize = lead.iter().product();
            let (xv, wv, bv) = (vals(m * k, 1), vals(n * k, 2), vals(n, 3));
            let mut xs = lead.to_vec();
            xs.push(k);
            let want = Tensor::from_f32(xv.clone(), &xs, &Device::Cpu)
                .unwrap()
                .linear(
                    &Tensor::from_f32(wv.clone(), &[n, k], &Device::Cpu).unwrap(),
                    bias.then(|| Tensor::from_f32(bv.clone(), &[n], &Device::Cpu).unwrap())
                        .as_ref(),
                )
                .unwrap()
                .to_vec_f32()
                .unwrap();
            let (gx, gw, gb) = (
                ctx.upload(&xv, &xs).unwrap(),
                ctx.upload(&wv, &[n, k]).unwrap(),
                ctx.upload(&bv, &[n]).unwrap(),
            );
            let y = linear(&ctx, &gx, &gw, bias.then_some(&gb)).unwrap();
            let got = ctx.read_blocking(&y).unwrap();
            let d = crate::testing::max_abs_diff(&got, &want);
            assert!(
                d < 1e-3,
                "[{m}, {k}] x [{n}, {k}]: max |Δ| {d} on {}",
                ctx.adapter.name
            );
        }
        let x = ctx.upload(&[0.0; 6], &[2, 3]).unwrap();
        let w = ctx.upload(&[0.0; 8], &[2, 4]).unwrap();
        assert!(linear(&ctx, &x, &w, None)
            .unwrap_err()
            .to_string()
            .contains("3 features"));
    }
}
