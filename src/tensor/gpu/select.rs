//! Top-k selection, row gather and embedding lookup on the GPU (`select.wgsl`), so a pruned
//! forward pass is recorded without reading scores back.

use super::{GpuContext, GpuDtype, GpuTensor};
use crate::error::{Error, Result};

const WGSL: &str = include_str!("select.wgsl");

#[allow(clippy::too_many_arguments)]
fn run(ctx: &GpuContext, x: &GpuTensor, idx: &GpuTensor, y: &GpuTensor, out: &GpuTensor, dims: [usize; 4], op: u32, total: usize) -> Result<()> {
    if total == 0 {
        return Ok(());
    }
    let [b, n, k, d] = dims;
    let params = ctx.uniform(&[b as u32, n as u32, k as u32, d as u32, op, total as u32, 0, 0]);
    ctx.dispatch_1d("select", WGSL, &[&x.buf, &idx.buf, &y.buf, &out.buf, &params], total, 256)
}

/// Per row of `scores [B, N]`, the indices of the `k` largest in ascending order: `u32 [B, k]`.
pub fn topk_indices(ctx: &GpuContext, scores: &GpuTensor, k: usize) -> Result<GpuTensor> {
    let &[b, n] = &scores.shape[..] else {
        return Err(Error::arg(format!("top-k expects [B, N], got {:?}", scores.shape)));
    };
    if k == 0 || k > n {
        return Err(Error::arg(format!("top-k: k = {k} outside 1..={n}")));
    }
    let flags = ctx.empty_like(&[b, n], GpuDtype::U32)?;
    let out = ctx.empty_like(&[b, k], GpuDtype::U32)?;
    // A buffer may not be bound read-only and writable in one dispatch: unused slots get
    // their own scratch buffers.
    let (spare_u, spare_f) = (ctx.empty_like(&[1], GpuDtype::U32)?, ctx.empty(&[1])?);
    run(ctx, scores, &spare_u, &spare_f, &flags, [b, n, k, 1], 0, b * n)?;
    run(ctx, scores, &flags, &spare_f, &out, [b, n, k, 1], 1, b * n)?;
    Ok(out)
}

/// `x [B, N, D]` rows picked by `idx u32 [B, K]`: `[B, K, D]`. Indices come from
/// [`topk_indices`] (always in range); out-of-range ones are clamped, never read past the end.
pub fn gather_rows(ctx: &GpuContext, x: &GpuTensor, idx: &GpuTensor) -> Result<GpuTensor> {
    let (&[b, n, d], &[bi, k]) = (&x.shape[..], &idx.shape[..]) else {
        return Err(Error::arg(format!("gather_rows: x {:?} must be [B, N, D] and indices {:?} [B, K]", x.shape, idx.shape)));
    };
    if bi != b || idx.dtype != GpuDtype::U32 || n == 0 {
        return Err(Error::arg(format!("gather_rows: {b} rows of data, indices {:?} ({:?})", idx.shape, idx.dtype)));
    }
    let y = ctx.empty(&[b, k, d])?;
    run(ctx, x, idx, &y, &ctx.empty_like(&[1], GpuDtype::U32)?, [b, n, k, d], 2, b * k * d)?;
    Ok(y)
}

/// Rows of `table [V, D]` for `ids` (u32, any shape): `[.., D]`. Ids are checked on the host
/// before upload (the models do); here they are clamped for memory safety.
pub fn embedding(ctx: &GpuContext, table: &GpuTensor, ids: &GpuTensor) -> Result<GpuTensor> {
    let &[v, d] = &table.shape[..] else {
        return Err(Error::arg(format!("embedding table {:?} must be [V, D]", table.shape)));
    };
    if ids.dtype != GpuDtype::U32 || v == 0 {
        return Err(Error::arg("embedding: ids must be u32 and the table non-empty"));
    }
    let mut shape = ids.shape.clone();
    shape.push(d);
    let y = ctx.empty(&shape)?;
    run(ctx, table, ids, &y, &ctx.empty_like(&[1], GpuDtype::U32)?, [1, v, 1, d], 3, ids.len() * d)?;
    Ok(y)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::tensor::{Device, Tensor};

    #[test]
    fn topk_gather_embedding_match_cpu() {
        let ctx = super::super::test_context();
        let (b, n, d) = (3usize, 196usize, 5usize);
        // ties on purpose: many equal scores
        let s: Vec<f32> = (0..b * n).map(|i| ((i * 37) % 23) as f32).collect();
        let cs = Tensor::from_f32(s.clone(), &[b, n], &Device::cpu()).unwrap();
        let gs = ctx.upload(&s, &[b, n]).unwrap();
        for k in [1usize, 98, 137, 196] {
            let want = cs.topk_indices(k).unwrap().to_vec_u32().unwrap();
            let got = ctx.read_u32_blocking(&topk_indices(&ctx, &gs, k).unwrap()).unwrap();
            assert_eq!(got, want, "k = {k}");
        }
        let x: Vec<f32> = (0..b * n * d).map(|i| i as f32).collect();
        let (cx, gx) = (Tensor::from_f32(x.clone(), &[b, n, d], &Device::cpu()).unwrap(), ctx.upload(&x, &[b, n, d]).unwrap());
        let gi = topk_indices(&ctx, &gs, 50).unwrap();
        let ci = cs.topk_indices(50).unwrap();
        assert_eq!(ctx.read_blocking(&gather_rows(&ctx, &gx, &gi).unwrap()).unwrap(), cx.gather_rows(&ci).unwrap().to_vec_f32().unwrap());
        let table = ctx.upload(&x[..n * d], &[n, d]).unwrap();
        let ids = ctx.upload_u32(&[3, 0, 195, 7], &[2, 2]).unwrap();
        let e = ctx.read_blocking(&embedding(&ctx, &table, &ids).unwrap()).unwrap();
        assert_eq!(&e[..d], &x[3 * d..4 * d]);
        assert_eq!(&e[2 * d..3 * d], &x[195 * d..196 * d]);
        assert!(topk_indices(&ctx, &gs, 0).is_err());
    }
}
