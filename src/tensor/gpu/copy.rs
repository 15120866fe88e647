//! Layout ops as one strided-copy kernel (`copy.wgsl`): permute, narrow, cat, patchify.

use super::{GpuContext, GpuTensor};
use crate::error::{Error, Result};

const WGSL: &str = include_str!("copy.wgsl");

const MAX_RANK: usize = 6;

fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Copies `shape` elements from `src` (offset, strides) into `dst` (offset, strides).
#[allow(clippy::too_many_arguments)]
fn copy(ctx: &GpuContext, src: &GpuTensor, soff: usize, ss: &[usize], dst: &GpuTensor, doff: usize, ds: &[usize], shape: &[usize]) -> Result<()> {
    if shape.len() > MAX_RANK {
        return Err(Error::arg(format!("copy: rank {} over {MAX_RANK}", shape.len())));
    }
    let n: usize = shape.iter().product();
    if n == 0 {
        return Ok(());
    }
    let pad = |v: &[usize]| -> Vec<u32> {
        let mut out: Vec<u32> = v.iter().map(|&x| x as u32).collect();
        out.resize(8, 0);
        out
    };
    let mut words = vec![n as u32, soff as u32, doff as u32, shape.len() as u32];
    words.extend(pad(shape));
    words.extend(pad(ss));
    words.extend(pad(ds));
    let params = ctx.uniform(&words);
    ctx.dispatch_1d("copy", WGSL, &[&src.buf, &dst.buf, &params], n, 256)
}

pub fn permute(ctx: &GpuContext, x: &GpuTensor, dims: &[usize]) -> Result<GpuTensor> {
    let mut seen = vec![false; x.shape.len()];
    if dims.len() != x.shape.len() || dims.iter().any(|&d| d >= seen.len() || std::mem::replace(&mut seen[d], true)) {
        return Err(Error::arg(format!("permute {dims:?} of shape {:?}", x.shape)));
    }
    let st = contiguous_strides(&x.shape);
    let shape: Vec<usize> = dims.iter().map(|&d| x.shape[d]).collect();
    let ss: Vec<usize> = dims.iter().map(|&d| st[d]).collect();
    let y = ctx.empty_like(&shape, x.dtype)?;
    copy(ctx, x, 0, &ss, &y, 0, &contiguous_strides(&shape), &shape)?;
    Ok(y)
}

pub fn narrow(ctx: &GpuContext, x: &GpuTensor, dim: usize, start: usize, len: usize) -> Result<GpuTensor> {
    if dim >= x.shape.len() || start + len > x.shape[dim] {
        return Err(Error::arg(format!("narrow dim {dim} [{start}, {}) of shape {:?}", start + len, x.shape)));
    }
    let st = contiguous_strides(&x.shape);
    let mut shape = x.shape.clone();
    shape[dim] = len;
    let y = ctx.empty_like(&shape, x.dtype)?;
    copy(ctx, x, start * st[dim], &st, &y, 0, &contiguous_strides(&shape), &shape)?;
    Ok(y)
}

pub fn cat(ctx: &GpuContext, parts: &[&GpuTensor], dim: usize) -> Result<GpuTensor> {
    let Some(first) = parts.first() else {
        return Err(Error::arg("cat of nothing"));
    };
    let mut shape = first.shape.clone();
    if dim >= shape.len() {
        return Err(Error::arg(format!("cat along dim {dim} of shape {shape:?}")));
    }
    shape[dim] = 0;
    for p in parts {
        let same = p.shape.len() == first.shape.len() && p.shape.iter().zip(&first.shape).enumerate().all(|(i, (a, b))| i == dim || a == b);
        if !same {
            return Err(Error::arg(format!("cat: shapes {:?} and {:?} differ off dim {dim}", first.shape, p.shape)));
        }
        shape[dim] += p.shape[dim];
    }
    let y = ctx.empty_like(&shape, first.dtype)?;
    let ds = contiguous_strides(&shape);
    let mut at = 0;
    let mut i = 0;
    while i < parts.len() {
        let p = parts[i];
        // A run of the same tensor (a class token repeated over the batch) is one copy: the
        // source read with stride 0 along an extra leading axis.
        let run = parts[i..].iter().take_while(|q| std::sync::Arc::ptr_eq(&q.buf, &p.buf) && q.shape == p.shape).count();
        let ss = contiguous_strides(&p.shape);
        if run > 1 && p.shape.len() < MAX_RANK {
            let lead = |v: usize, rest: &[usize]| [&[v][..], rest].concat();
            copy(ctx, p, 0, &lead(0, &ss), &y, at * ds[dim], &lead(p.shape[dim] * ds[dim], &ds), &lead(run, &p.shape))?;
        } else {
            for _ in 0..run {
                copy(ctx, p, 0, &ss, &y, at * ds[dim], &ds, &p.shape)?;
                at += p.shape[dim];
            }
            i += run;
            continue;
        }
        at += run * p.shape[dim];
        i += run;
    }
    Ok(y)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::tensor::{Device, Tensor};

    #[test]
    fn layout_ops_match_cpu() {
        let ctx = super::super::test_context();
        let shape = [2usize, 3, 4, 5, 6];
        let v: Vec<f32> = (0..shape.iter().product::<usize>()).map(|i| i as f32).collect();
        let c = Tensor::from_f32(v.clone(), &shape, &Device::cpu()).unwrap();
        let g = ctx.upload(&v, &shape).unwrap();
        let read = |t: &GpuTensor| ctx.read_blocking(t).unwrap();
        let p = [2usize, 0, 4, 1, 3];
        assert_eq!(read(&permute(&ctx, &g, &p).unwrap()), c.permute(&p).unwrap().to_vec_f32().unwrap());
        assert_eq!(read(&narrow(&ctx, &g, 2, 1, 2).unwrap()), c.narrow(2, 1, 2).unwrap().to_vec_f32().unwrap());
        let a = narrow(&ctx, &g, 1, 0, 1).unwrap();
        let b = narrow(&ctx, &g, 1, 1, 2).unwrap();
        assert_eq!(read(&cat(&ctx, &[&a, &b], 1).unwrap()), v);
        // Runs of one tensor (one copy each, reading it with stride 0), on every axis, and at
        // the rank limit (copied part by part).
        for dim in 0..shape.len() {
            let parts = [&a, &a, &a, &g, &a];
            let fit: Vec<&GpuTensor> = parts.iter().map(|t| if dim == 1 { *t } else { &a }).collect();
            let cpu: Vec<Tensor> = fit.iter().map(|t| Tensor::from_f32(read(t), &t.shape, &Device::cpu()).unwrap()).collect();
            let want = Tensor::cat(&cpu.iter().collect::<Vec<_>>(), dim).unwrap().to_vec_f32().unwrap();
            let before = ctx.counters().0;
            assert_eq!(read(&cat(&ctx, &fit, dim).unwrap()), want, "cat along {dim}");
            assert_eq!(ctx.counters().0 - before, if dim == 1 { 3 } else { 1 }, "copies for a cat along {dim}");
        }
        let r6 = ctx.upload(&v[..64], &[1, 2, 2, 2, 2, 4]).unwrap();
        let want: Vec<f32> = [&v[..64], &v[..64]].concat();
        assert_eq!(read(&cat(&ctx, &[&r6, &r6], 0).unwrap()), want);
        assert!(permute(&ctx, &g, &[0, 0, 1, 2, 3]).is_err());
        assert!(narrow(&ctx, &g, 1, 2, 2).is_err());
    }
}
