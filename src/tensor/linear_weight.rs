//! Linear weights stored for their device: split into row blocks where a GPU binding cannot
//! hold them, kept in half precision at rest on the CPU.

use super::gpu::GpuDtype;
use super::{Device, Tensor};
use crate::error::{Error, Result};

/// A linear layer's `[out, in]` weight (HF layout), stored for the device it lives on: one
/// tensor (f32, or packed f16 on a GPU context made with f16 weights), or, when the weight is
/// larger than the GPU's storage-buffer binding limit, blocks of output rows that each fit,
/// run one linear per block and concatenated (the adapter's limits are respected by splitting
/// the work, not by failing).
#[derive(Clone, Debug)]
pub struct LinearWeight {
    parts: Vec<Tensor>,
}

impl LinearWeight {
    pub fn new(data: Vec<f32>, shape: [usize; 2], device: &Device) -> Result<LinearWeight> {
        let [out, inp] = shape;
        if data.len() != out * inp {
            return Err(Error::arg(format!("linear weight: {} values for [{out}, {inp}]", data.len())));
        }
        let Device::Gpu(c) = device else {
            return Ok(LinearWeight { parts: vec![Tensor::from_f32(data, &shape, device)?] });
        };
        let f16 = c.f16_weights && inp % 2 == 0;
        let row_bytes = (inp * if f16 { 2 } else { 4 }).max(1) as u64;
        let rows = (c.max_binding() / row_bytes).max(1) as usize;
        let parts = data
            .chunks((rows * inp).max(1))
            .map(|d| {
                let s = [d.len() / inp.max(1), inp];
                let g = if f16 { c.upload_f16(d, &s)? } else { c.upload(d, &s)? };
                Ok(Tensor::Gpu(c.clone(), g))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(LinearWeight { parts })
    }

    /// A weight kept in half precision at rest on the CPU (`bits`: the little-endian f16 or
    /// bf16 values); multiplied in f32 block by block. On a GPU it is converted (f32, or the
    /// context's f16 storage).
    pub fn from_half(bits: &[u8], bf16: bool, shape: [usize; 2], device: &Device) -> Result<LinearWeight> {
        let [out, inp] = shape;
        if bits.len() != out * inp * 2 {
            return Err(Error::arg(format!("linear weight: {} bytes for half [{out}, {inp}]", bits.len())));
        }
        let cpu = &candle_core::Device::Cpu;
        let t = match (device, bf16) {
            (Device::Cpu, true) => {
                candle_core::Tensor::from_vec(bits.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]])).collect::<Vec<_>>(), &shape, cpu)?
            }
            (Device::Cpu, false) => {
                candle_core::Tensor::from_vec(bits.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]])).collect::<Vec<_>>(), &shape, cpu)?
            }
            (Device::Gpu(_), _) => {
                let f: Vec<f32> = if bf16 {
                    bits.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
                } else {
                    bits.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
                };
                return LinearWeight::new(f, shape, device);
            }
        };
        Ok(LinearWeight { parts: vec![Tensor::Cpu(t)] })
    }

    /// Whether the weight is held in half precision (f16/bf16 at rest on the CPU, or packed
    /// f16 on a GPU context with f16 weights).
    pub fn is_half(&self) -> bool {
        self.parts.iter().all(|p| match p {
            Tensor::Cpu(t) => matches!(t.dtype(), candle_core::DType::BF16 | candle_core::DType::F16),
            Tensor::Gpu(_, g) => g.dtype == GpuDtype::F16,
        })
    }

    /// [`LinearWeight::forward`] on `rows` host rows (read back to the host): for models whose
    /// glue between projections runs on host slices.
    pub fn forward_rows(&self, x: Vec<f32>, rows: usize, b: Option<&Tensor>, device: &Device) -> Result<Vec<f32>> {
        let k = x.len() / rows.max(1);
        self.forward(&Tensor::from_f32(x, &[rows, k], device)?, b)?.to_vec_f32()
    }

    /// Number of row blocks (1 unless the weight had to be split).
    pub fn blocks(&self) -> usize {
        self.parts.len()
    }

    /// `act(x @ wᵀ + b) + res` ([`Tensor::linear_ex`]; a weight split into row blocks
    /// applies the activation and the residual after joining them).
    pub fn forward_ex(&self, x: &Tensor, b: Option<&Tensor>, act: Option<super::Activation>, res: Option<&Tensor>) -> Result<Tensor> {
        if let [w] = &self.parts[..] {
            return x.linear_ex(w, b, act, res);
        }
        self.forward(x, b)?.epilogue(act, res)
    }

    /// `x @ wᵀ + b` over any leading dims.
    pub fn forward(&self, x: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        if let [w] = &self.parts[..] {
            return x.linear(w, b);
        }
        let mut outs = Vec::with_capacity(self.parts.len());
        let mut start = 0;
        for w in &self.parts {
            let n = w.dim(0)?;
            let bias = b.map(|b| b.narrow(0, start, n)).transpose()?;
            outs.push(x.linear(w, bias.as_ref())?);
            start += n;
        }
        let last = x.shape().len().saturating_sub(1);
        Tensor::cat(&outs.iter().collect::<Vec<_>>(), last)
    }
}
