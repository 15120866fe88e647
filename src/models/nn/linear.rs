//! Linear layers and norms with HF's parameter names (`weight`, `bias`).

use crate::error::Result;
use crate::tensor::{Device, LinearWeight, Tensor};
use crate::weights::Scope;

/// LayerNorm with weight and bias.
pub struct LayerNorm {
    w: Tensor,
    b: Tensor,
    eps: f32,
}

impl LayerNorm {
    pub fn load(s: &Scope, d: usize, eps: f64, dev: &Device) -> Result<Self> {
        Ok(LayerNorm { w: s.get("weight", &[d], dev)?, b: s.get("bias", &[d], dev)?, eps: eps as f32 })
    }
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.layer_norm(&self.w, &self.b, self.eps)
    }
    fn parts(&self) -> (&Tensor, &Tensor, f32) {
        (&self.w, &self.b, self.eps)
    }
}

/// `y = x Wᵀ + b` with HF's `[out, in]` weight.
pub struct Linear {
    w: LinearWeight,
    b: Option<Tensor>,
}

impl Linear {
    pub fn new(w: LinearWeight, b: Option<Tensor>) -> Self {
        Linear { w, b }
    }
    pub fn load(s: &Scope, out: usize, inp: usize, bias: bool, dev: &Device) -> Result<Self> {
        let b = if bias { Some(s.get("bias", &[out], dev)?) } else { None };
        Ok(Linear { w: s.get_linear("weight", [out, inp], dev)?, b })
    }
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.w.forward(x, self.b.as_ref())
    }
    /// `act(x Wᵀ + b) + res` in one pass on the GPU ([`Tensor::linear_ex`]).
    pub fn forward_ex(&self, x: &Tensor, act: Option<crate::tensor::Activation>, res: Option<&Tensor>) -> Result<Tensor> {
        self.w.forward_ex(x, self.b.as_ref(), act, res)
    }
    /// `act(ln(x) Wᵀ + b) + res`: a pre-norm block's projection, the norm fused into the CPU
    /// product's input packing ([`LinearWeight::forward_normed`]).
    pub fn forward_normed(&self, x: &Tensor, ln: &LayerNorm, act: Option<crate::tensor::Activation>, res: Option<&Tensor>) -> Result<Tensor> {
        self.w.forward_normed(x, ln.parts(), self.b.as_ref(), act, res)
    }
    pub fn is_half(&self) -> bool {
        self.w.is_half()
    }
}

/// RMSNorm (Qwen2, Mamba): `x / rms(x) · weight`, no bias.
pub struct RmsNorm {
    w: Tensor,
    eps: f32,
}

impl RmsNorm {
    pub fn load(s: &Scope, d: usize, eps: f32, dev: &Device) -> Result<Self> {
        Ok(RmsNorm { w: s.get("weight", &[d], dev)?, eps })
    }
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.rms_norm(&self.w, self.eps)
    }
}
