//! Rotary position embedding ("rotate half", as transformers' `apply_rotary_pos_emb`). See
//! `rope.wgsl`; the CPU twin is in `tensor/mod.rs`.

use super::{GpuContext, GpuTensor};
use crate::error::{Error, Result};

const WGSL: &str = include_str!("rope.wgsl");

/// `x` `[N, H, d]`, `cos`/`sin` `[N, d/2]` → `[N, H, d]`.
pub fn rope(ctx: &GpuContext, x: &GpuTensor, cos: &GpuTensor, sin: &GpuTensor) -> Result<GpuTensor> {
    let &[n, h, d] = &x.shape[..] else {
        return Err(Error::arg(format!("rope: input {:?} is not [N, H, d]", x.shape)));
    };
    if d % 2 != 0 || cos.shape != [n, d / 2] || sin.shape != [n, d / 2] {
        return Err(Error::arg(format!("rope: input {:?}, cos {:?}, sin {:?} do not agree", x.shape, cos.shape, sin.shape)));
    }
    let y = ctx.empty(&x.shape)?;
    if y.is_empty() {
        return Ok(y);
    }
    let params = ctx.uniform(&[n as u32, h as u32, d as u32, 0]);
    ctx.dispatch_1d("rope", WGSL, &[&x.buf, &cos.buf, &sin.buf, &y.buf, &params], y.len(), 256)?;
    Ok(y)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use crate::tensor::{Device, Tensor};

    #[test]
    fn matches_cpu() {
        let ctx = super::super::test_context();
        let (n, h, d) = (7usize, 3usize, 8usize);
        let x: Vec<f32> = (0..n * h * d).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
        let ang: Vec<f32> = (0..n * d / 2).map(|i| i as f32 * 0.37).collect();
        let (c, s): (Vec<f32>, Vec<f32>) = (ang.iter().map(|a| a.cos()).collect(), ang.iter().map(|a| a.sin()).collect());
        let run = |dev: &Device| {
            let t = |v: &[f32], shape: &[usize]| Tensor::from_f32(v.to_vec(), shape, dev).unwrap();
            t(&x, &[n, h, d]).rope(&t(&c, &[n, d / 2]), &t(&s, &[n, d / 2])).unwrap().to_vec_f32().unwrap()
        };
        let (want, got) = (run(&Device::cpu()), run(&Device::Gpu(ctx)));
        assert!(crate::num::max_abs_diff(&got, &want) < 1e-5);
        // Rotation keeps each pair's norm.
        let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>();
        assert!((norm(&want) - norm(&x)).abs() < 1e-3);
    }
}
