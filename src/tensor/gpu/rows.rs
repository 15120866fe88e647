//! Row-wise ops over the last dim: layer_norm, rms_norm, softmax, L2 row norms, mean.
//! See `rows.wgsl`.

use super::{GpuContext, GpuTensor};
use crate::error::{Error, Result};

const WGSL: &str = include_str!("rows.wgsl");

/// `rows.wgsl` with its reductions in workgroup memory, or by subgroup operations (`sg`).
fn variant(sg: bool) -> (&'static str, &'static str) {
    static SRC: [std::sync::OnceLock<String>; 2] = [const { std::sync::OnceLock::new() }; 2];
    let src = SRC[sg as usize].get_or_init(|| super::wgsl::specialise(WGSL, if sg { &["SG"] } else { &[] }));
    (if sg { "rows_sg" } else { "rows" }, src)
}

#[derive(Clone, Copy, Debug)]
pub enum RowOp {
    LayerNorm {
        eps: f32,
    },
    /// LayerNorm without its weight and bias: the row less its mean over its std (a LayerNorm
    /// folded into the next product needs only this).
    Normalize {
        eps: f32,
    },
    /// x / rms(x) · w (the bias slot is not read).
    RmsNorm {
        eps: f32,
    },
    Softmax,
    L2Norm,
    Mean,
}

/// `x`: `[.., n]`. LayerNorm takes `w`, `b` of `[n]`; L2Norm returns `[..]`.
pub fn rows(ctx: &GpuContext, x: &GpuTensor, wb: Option<(&GpuTensor, &GpuTensor)>, op: RowOp) -> Result<GpuTensor> {
    let Some(&n) = x.shape.last() else {
        return Err(Error::arg("row op on a scalar"));
    };
    let rows = x.len() / n.max(1);
    let (code, eps, w, b) = match (op, wb) {
        (RowOp::LayerNorm { eps }, Some((w, b))) => {
            if w.shape != [n] || b.shape != [n] {
                return Err(Error::arg(format!("layer_norm: weight {:?} / bias {:?} for rows of {n}", w.shape, b.shape)));
            }
            (0u32, eps, w, b)
        }
        (RowOp::RmsNorm { eps }, Some((w, _))) => {
            if w.shape != [n] {
                return Err(Error::arg(format!("rms_norm: weight {:?} for rows of {n}", w.shape)));
            }
            (4, eps, w, w)
        }
        (RowOp::LayerNorm { .. } | RowOp::RmsNorm { .. }, None) => return Err(Error::arg("a norm needs its weight")),
        (RowOp::Normalize { eps }, _) => (5, eps, x, x),
        (RowOp::Softmax, _) => (1, 0.0, x, x),
        (RowOp::L2Norm, _) => (2, 0.0, x, x),
        (RowOp::Mean, _) => (3, 0.0, x, x),
    };
    let out_shape = match op {
        RowOp::L2Norm | RowOp::Mean => x.shape[..x.shape.len() - 1].to_vec(),
        _ => x.shape.clone(),
    };
    let y = ctx.empty(&out_shape)?;
    if rows == 0 || n == 0 {
        return Ok(y);
    }
    let params = ctx.uniform(&[rows as u32, n as u32, code, eps.to_bits()]);
    // one workgroup per row
    let (name, src) = variant(ctx.subgroups());
    ctx.dispatch_1d(name, src, &[&x.buf, &w.buf, &b.buf, &y.buf, &params], rows, 1)?;
    Ok(y)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::tensor::{Device, Tensor};

    /// Every op on the CPU's numbers, with the reductions in workgroup memory and (where the
    /// adapter has them: lavapipe does) by subgroup operations.
    #[test]
    fn matches_cpu() {
        let ctx = super::super::test_context();
        assert!(ctx.subgroups(), "lavapipe has subgroups: the subgroup variant must be tested");
        for (sg, &(r, n)) in [false, true].into_iter().flat_map(|sg| [(1usize, 1usize), (197, 768), (3, 197), (5, 70)].iter().map(move |c| (sg, c))) {
            ctx.set_subgroups(Some(sg));
            let x: Vec<f32> = (0..r * n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 9.0).collect();
            let w: Vec<f32> = (0..n).map(|i| 1.0 + (i % 7) as f32 / 10.0).collect();
            let b: Vec<f32> = (0..n).map(|i| (i % 5) as f32 / 10.0 - 0.2).collect();
            let cx = Tensor::from_f32(x.clone(), &[r, n], &Device::cpu()).unwrap();
            let (cw, cb) = (Tensor::from_f32(w.clone(), &[n], &Device::cpu()).unwrap(), Tensor::from_f32(b.clone(), &[n], &Device::cpu()).unwrap());
            let (gx, gw, gb) = (ctx.upload(&x, &[r, n]).unwrap(), ctx.upload(&w, &[n]).unwrap(), ctx.upload(&b, &[n]).unwrap());
            let cases = [
                (RowOp::LayerNorm { eps: 1e-5 }, cx.layer_norm(&cw, &cb, 1e-5).unwrap()),
                (RowOp::RmsNorm { eps: 1e-5 }, cx.rms_norm(&cw, 1e-5).unwrap()),
                (RowOp::Softmax, cx.softmax_last().unwrap()),
                (RowOp::L2Norm, cx.row_norms().unwrap()),
                (RowOp::Normalize { eps: 1e-5 }, cx.normalize(1e-5).unwrap()),
            ];
            for (op, want) in cases {
                let got = ctx.read_blocking(&rows(&ctx, &gx, Some((&gw, &gb)), op).unwrap()).unwrap();
                let d = crate::num::max_abs_diff(&got, &want.to_vec_f32().unwrap());
                assert!(d < 1e-4, "{op:?} [{r}, {n}] (subgroups {sg}): max |Δ| {d}");
            }
        }
        ctx.set_subgroups(None);
        assert!(variant(true).1.contains("subgroupAdd(") && !variant(false).1.contains("subgroupAdd("));
    }
}
