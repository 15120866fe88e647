//! Element-wise ops: add / mul with right-aligned broadcasting, scale, activations
//! (quick_gelu, silu, softplus, tanh-gelu).
//! See `elementwise.wgsl`.

use super::{GpuContext, GpuTensor};
use crate::error::{Error, Result};

pub(super) const ACTIVATION: &str = include_str!("activation.wgsl");

/// `activation.wgsl` in front of `body`, made once per kernel.
pub(crate) fn with_activation(cell: &'static std::sync::OnceLock<String>, body: &str) -> &'static str {
    cell.get_or_init(|| format!("{ACTIVATION}\n{body}"))
}

/// The code `activation.wgsl` (and the linear epilogue) knows an activation by.
pub(crate) fn act_code(a: crate::tensor::Activation) -> u32 {
    use crate::tensor::Activation::*;
    match a {
        QuickGelu => 3,
        Silu => 4,
        Softplus => 5,
        GeluTanh => 6,
        Gelu => 7,
    }
}

static WGSL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The kernel's source: `elementwise.wgsl` with the activations in front.
fn source() -> &'static str {
    with_activation(&WGSL, include_str!("elementwise.wgsl"))
}

#[derive(Clone, Copy, Debug)]
pub enum Op {
    Add,
    Mul,
    Scale(f32),
    QuickGelu,
    Silu,
    Softplus,
    GeluTanh,
    /// Exact GELU x·Φ(x) (erf to 1.5e-7).
    Gelu,
}

/// `a op b`; `b` (for Add/Mul) must have a suffix of `a`'s shape.
pub fn elementwise(ctx: &GpuContext, a: &GpuTensor, b: Option<&GpuTensor>, op: Op) -> Result<GpuTensor> {
    let (code, s) = match op {
        Op::Add => (0u32, 0.0f32),
        Op::Mul => (1, 0.0),
        Op::Scale(s) => (2, s),
        Op::QuickGelu => (3, 0.0),
        Op::Silu => (4, 0.0),
        Op::Softplus => (5, 0.0),
        Op::GeluTanh => (6, 0.0),
        Op::Gelu => (7, 0.0),
    };
    let rhs = match (op, b) {
        (Op::Add | Op::Mul, Some(b)) => {
            if b.shape.len() > a.shape.len() || a.shape[a.shape.len() - b.shape.len()..] != b.shape[..] || b.is_empty() {
                return Err(Error::arg(format!("{op:?}: shape {:?} does not broadcast to {:?}", b.shape, a.shape)));
            }
            b
        }
        (Op::Add | Op::Mul, None) => return Err(Error::arg(format!("{op:?} needs a second operand"))),
        _ => a,
    };
    let y = ctx.empty(&a.shape)?;
    let n = a.len();
    if n == 0 {
        return Ok(y);
    }
    let params = ctx.uniform(&[n as u32, rhs.len() as u32, code, s.to_bits()]);
    ctx.dispatch_1d("elementwise", source(), &[&a.buf, &rhs.buf, &y.buf, &params], n, 256)?;
    Ok(y)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::tensor::{Activation, Device, Tensor};

    #[test]
    fn matches_cpu() {
        let ctx = super::super::test_context();
        let a: Vec<f32> = (0..2 * 197 * 48).map(|i| ((i * 37 % 101) as f32 - 50.0) / 10.0).collect();
        let b: Vec<f32> = (0..197 * 48).map(|i| ((i * 13 % 31) as f32 - 15.0) / 7.0).collect();
        let (ca, cb) = (Tensor::from_f32(a.clone(), &[2, 197, 48], &Device::cpu()).unwrap(), Tensor::from_f32(b.clone(), &[197, 48], &Device::cpu()).unwrap());
        let (ga, gb) = (ctx.upload(&a, &[2, 197, 48]).unwrap(), ctx.upload(&b, &[197, 48]).unwrap());
        let cases: Vec<(Op, Tensor)> = vec![
            (Op::Add, ca.add(&cb).unwrap()),
            (Op::Mul, ca.mul(&cb).unwrap()),
            (Op::Scale(0.125), ca.scale(0.125).unwrap()),
            (Op::QuickGelu, ca.act(Activation::QuickGelu).unwrap()),
            (Op::Silu, ca.act(Activation::Silu).unwrap()),
            (Op::Softplus, ca.act(Activation::Softplus).unwrap()),
            (Op::GeluTanh, ca.act(Activation::GeluTanh).unwrap()),
            (Op::Gelu, ca.act(Activation::Gelu).unwrap()),
        ];
        for (op, want) in cases {
            let got = ctx.read_blocking(&elementwise(&ctx, &ga, Some(&gb), op).unwrap()).unwrap();
            let d = crate::num::max_abs_diff(&got, &want.to_vec_f32().unwrap());
            assert!(d < 1e-5, "{op:?}: max |Δ| {d}");
        }
        let bad = ctx.upload(&[1.0; 5], &[5]).unwrap();
        assert!(elementwise(&ctx, &ga, Some(&bad), Op::Add).is_err());
    }
}
