//! Linear weights stored for their device: packed once for the CPU's GEMM engine (half
//! precision kept half), split into row blocks where a GPU binding cannot hold them.

use super::cpu::gemm::{HalfSlice, MicroKernel, PackedWeight};
use super::gpu::{GpuDtype, GpuWeights};
use super::{Device, Precision, Tensor};
use crate::error::{Error, Result};
use std::sync::Arc;

/// A linear layer's `[out, in]` weight (HF layout), stored for the device it lives on: on the
/// CPU packed into the GEMM engine's panels (see `cpu::gemm`); on a GPU one tensor (f32, or
/// packed f16 on a context made with f16 weights), or, when the weight is larger than the
/// GPU's storage-buffer binding limit, blocks of output rows that each fit, run one linear per
/// block and concatenated (the adapter's limits are respected by splitting the work, not by
/// failing).
#[derive(Clone, Debug)]
pub struct LinearWeight {
    repr: Repr,
}

#[derive(Clone, Debug)]
enum Repr {
    Cpu(Arc<PackedWeight>),
    Gpu(Vec<Tensor>),
}

fn cpu(t: &Tensor) -> Result<&candle_core::Tensor> {
    match t {
        Tensor::Cpu(t) => Ok(t),
        Tensor::Gpu(..) => Err(Error::Backend("linear: a CPU weight got a GPU tensor (an op got tensors on different devices)".into())),
    }
}

impl LinearWeight {
    pub fn new(data: Vec<f32>, shape: [usize; 2], device: &Device) -> Result<LinearWeight> {
        Self::make(data, shape, device, true)
    }

    /// [`LinearWeight::new`] never quantised: f32 on the CPU whatever its precision, f32 (or
    /// the context's f16) on a GPU whose weights are int8. For the patch embeddings, which
    /// stay f32 in every precision, as in ONNX Runtime's dynamic quantisation.
    pub fn new_unquantized(data: Vec<f32>, shape: [usize; 2], device: &Device) -> Result<LinearWeight> {
        Self::make(data, shape, device, false)
    }

    /// The values a weight `data` `[out, inp]` is multiplied with on `device`, row by row: f16-
    /// or int8-rounded where the weight is stored so (the rows a GPU's folded LayerNorm sums).
    pub fn stored_values(data: &[f32], [out, inp]: [usize; 2], device: &Device) -> Result<Vec<f32>> {
        if Self::int8_on(device, inp) {
            let (q, s) = super::cpu::gemm::int8::quantize_weight(data, out, inp).map_err(Error::arg)?;
            return Ok(q.iter().enumerate().map(|(i, &v)| v as f32 * s[i / inp.max(1)]).collect());
        }
        if Self::half_on(device, inp) {
            return Ok(data.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect());
        }
        Ok(data.to_vec())
    }

    fn make(data: Vec<f32>, shape: [usize; 2], device: &Device, quantize: bool) -> Result<LinearWeight> {
        let [out, inp] = shape;
        if data.len() != out * inp {
            return Err(Error::arg(format!("linear weight: {} values for [{out}, {inp}]", data.len())));
        }
        let c = match device {
            Device::Cpu(precision) => {
                let p = match if quantize { *precision } else { Precision::F32 } {
                    Precision::F32 => PackedWeight::pack(&data, out, inp, MicroKernel::best()),
                    Precision::Int8 => PackedWeight::quantize(&data, out, inp, None),
                    Precision::Bf16 => {
                        let b: Vec<half::bf16> = data.iter().map(|&x| half::bf16::from_f32(x)).collect();
                        PackedWeight::pack_bf16_best(HalfSlice::Bf16(&b), out, inp)
                    }
                };
                return Ok(LinearWeight { repr: Repr::Cpu(Arc::new(p.map_err(Error::arg)?)) });
            }
            Device::Gpu(c) => c,
        };
        let (f16, int8) = (Self::half_on(device, inp), quantize && Self::int8_on(device, inp));
        // Bytes a row takes in a binding (int8: its quads and its scale).
        let row_bytes = (if int8 { inp + 4 } else { inp * if f16 { 2 } else { 4 } }).max(1) as u64;
        let rows = (c.max_binding() / row_bytes).max(1) as usize;
        let parts = data
            .chunks((rows * inp).max(1))
            .map(|d| {
                let s = [d.len() / inp.max(1), inp];
                let g = if int8 {
                    let (q, scales) = super::cpu::gemm::int8::quantize_weight(d, s[0], inp).map_err(Error::arg)?;
                    c.upload_i8(&q, &scales, &s)?
                } else if f16 {
                    c.upload_f16(d, &s)?
                } else {
                    c.upload(d, &s)?
                };
                Ok(Tensor::Gpu(c.clone(), g))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(LinearWeight { repr: Repr::Gpu(parts) })
    }

    /// Whether a weight with `inp` input features is stored as packed f16 on `device` (a GPU
    /// context made with f16 weights; K even).
    pub fn half_on(device: &Device, inp: usize) -> bool {
        matches!(device, Device::Gpu(c) if c.weights == GpuWeights::F16 && inp % 2 == 0)
    }

    /// Whether a weight with `inp` input features is stored as int8 on `device` (a GPU
    /// context made with int8 weights; K a multiple of 4, as every model's widths are).
    pub fn int8_on(device: &Device, inp: usize) -> bool {
        matches!(device, Device::Gpu(c) if c.weights == GpuWeights::Int8 && inp % 4 == 0 && inp > 0)
    }

    /// A weight kept in half precision at rest on the CPU (`bits`: the little-endian f16 or
    /// bf16 values), packed half and multiplied in f32 block by block. On a GPU it is converted
    /// (f32, or the context's f16 storage); on an int8 CPU it is widened, then quantised.
    pub fn from_half(bits: &[u8], bf16: bool, shape: [usize; 2], device: &Device) -> Result<LinearWeight> {
        let [out, inp] = shape;
        if bits.len() != out * inp * 2 {
            return Err(Error::arg(format!("linear weight: {} bytes for half [{out}, {inp}]", bits.len())));
        }
        if matches!(device, Device::Gpu(_) | Device::Cpu(Precision::Int8)) {
            let f: Vec<f32> = if bf16 {
                bits.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
            } else {
                bits.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
            };
            return LinearWeight::new(f, shape, device);
        }
        // bf16 checkpoints at `Precision::Bf16` need no conversion at all.
        let pack = |w: HalfSlice| {
            if device.precision() == Precision::Bf16 {
                PackedWeight::pack_bf16_best(w, out, inp)
            } else {
                PackedWeight::pack_half(w, out, inp, MicroKernel::best())
            }
        };
        let p = if bf16 {
            let v: Vec<half::bf16> = bits.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]])).collect();
            pack(HalfSlice::Bf16(&v))
        } else {
            let v: Vec<half::f16> = bits.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]])).collect();
            pack(HalfSlice::F16(&v))
        };
        Ok(LinearWeight { repr: Repr::Cpu(Arc::new(p.map_err(Error::arg)?)) })
    }

    /// Whether the weight is held in int8 (`Precision::Int8` on the CPU, a GPU context with
    /// int8 weights).
    pub fn is_int8(&self) -> bool {
        match &self.repr {
            Repr::Cpu(p) => p.is_int8(),
            Repr::Gpu(parts) => parts.iter().all(|p| matches!(p, Tensor::Gpu(_, g) if g.dtype == GpuDtype::I8)),
        }
    }

    /// Bytes the weight holds in memory (on a GPU: its buffers).
    pub fn bytes(&self) -> usize {
        match &self.repr {
            Repr::Cpu(p) => p.bytes(),
            Repr::Gpu(parts) => parts
                .iter()
                .map(|p| {
                    let n: usize = p.shape().iter().product();
                    match p {
                        Tensor::Gpu(_, g) if g.dtype == GpuDtype::F16 => n * 2,
                        Tensor::Gpu(_, g) if g.dtype == GpuDtype::I8 => n + 4 * p.shape().first().copied().unwrap_or(0),
                        _ => n * 4,
                    }
                })
                .sum(),
        }
    }

    /// Whether the weight is held in half precision (f16/bf16 at rest on the CPU, or packed
    /// f16 on a GPU context with f16 weights).
    pub fn is_half(&self) -> bool {
        match &self.repr {
            Repr::Cpu(p) => p.is_half(),
            Repr::Gpu(parts) => parts.iter().all(|p| matches!(p, Tensor::Gpu(_, g) if g.dtype == GpuDtype::F16)),
        }
    }

    /// [`LinearWeight::forward`] on `rows` host rows (read back to the host): for models whose
    /// glue between projections runs on host slices.
    pub fn forward_rows(&self, x: Vec<f32>, rows: usize, b: Option<&Tensor>, device: &Device) -> Result<Vec<f32>> {
        let k = x.len() / rows.max(1);
        self.forward(&Tensor::from_f32(x, &[rows, k], device)?, b)?.to_vec_f32()
    }

    /// Output features (rows of the HF `[out, in]` weight).
    pub fn out_features(&self) -> usize {
        match &self.repr {
            Repr::Cpu(p) => p.n(),
            Repr::Gpu(parts) => parts.iter().map(|p| p.shape().first().copied().unwrap_or(0)).sum(),
        }
    }

    /// Number of row blocks (1 unless the weight had to be split).
    pub fn blocks(&self) -> usize {
        match &self.repr {
            Repr::Cpu(_) => 1,
            Repr::Gpu(parts) => parts.len(),
        }
    }

    /// `act(x @ wᵀ + b) + res` ([`Tensor::linear_ex`]): one pass with the bias, activation and
    /// residual in the epilogue on either backend (a GPU weight split into row blocks applies
    /// the activation and the residual after joining them).
    pub fn forward_ex(&self, x: &Tensor, b: Option<&Tensor>, act: Option<super::Activation>, res: Option<&Tensor>) -> Result<Tensor> {
        match &self.repr {
            Repr::Cpu(p) => {
                let (b, res) = (b.map(cpu).transpose()?, res.map(cpu).transpose()?);
                Ok(Tensor::Cpu(super::cpu::linear_packed(cpu(x)?, p, b, act, res)?))
            }
            Repr::Gpu(parts) => {
                if let [w] = &parts[..] {
                    return x.linear_ex(w, b, act, res);
                }
                let mut outs = Vec::with_capacity(parts.len());
                let mut start = 0;
                for w in parts {
                    let n = w.dim(0)?;
                    let bias = b.map(|b| b.narrow(0, start, n)).transpose()?;
                    outs.push(x.linear(w, bias.as_ref())?);
                    start += n;
                }
                let last = x.shape().len().saturating_sub(1);
                Tensor::cat(&outs.iter().collect::<Vec<_>>(), last)?.epilogue(act, res)
            }
        }
    }

    /// `act(layer_norm(x) @ wᵀ + b) + res` (`norm`: LayerNorm weight, bias, eps): on the CPU
    /// the norm is applied while the input is packed for the product (one read of `x`, no
    /// normalised copy); on the GPU a LayerNorm, then [`LinearWeight::forward_ex`].
    pub fn forward_normed(
        &self,
        x: &Tensor,
        norm: (&Tensor, &Tensor, f32),
        b: Option<&Tensor>,
        act: Option<super::Activation>,
        res: Option<&Tensor>,
    ) -> Result<Tensor> {
        match &self.repr {
            Repr::Cpu(p) => {
                let (b, res) = (b.map(cpu).transpose()?, res.map(cpu).transpose()?);
                Ok(Tensor::Cpu(super::cpu::linear_packed_normed(cpu(x)?, Some((cpu(norm.0)?, cpu(norm.1)?, norm.2)), p, b, act, res)?))
            }
            Repr::Gpu(_) => self.forward_ex(&x.layer_norm(norm.0, norm.1, norm.2)?, b, act, res),
        }
    }

    /// [`Tensor::linear_normed`] with this weight, a LayerNorm folded into it (`colsum`: its
    /// row sums, `b` the folded bias): one pass on a GPU; elsewhere (a weight split into row
    /// blocks, the CPU) x is normalised once, then multiplied.
    pub fn forward_folded(&self, x: &Tensor, colsum: &Tensor, b: &Tensor, eps: f32, act: Option<super::Activation>, res: Option<&Tensor>) -> Result<Tensor> {
        if let Repr::Gpu(parts) = &self.repr {
            if let [w] = &parts[..] {
                return x.linear_normed(w, colsum, b, eps, act, res);
            }
        }
        self.forward_ex(&x.normalize(eps)?, Some(b), act, res)
    }

    /// `x @ wᵀ + b` over any leading dims.
    pub fn forward(&self, x: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        self.forward_ex(x, b, None, None)
    }
}
