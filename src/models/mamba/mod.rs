//! Mamba language model (HF `MambaForCausalLM` layout, e.g. `state-spaces/mamba-130m-hf`):
//! prefill in O(N) with the selective scan, step decoding with O(1) state (a conv window and
//! the SSM state per layer), and the multi-resolution scan proxy (MRSS, see [`scan`]).
//!
//! The projections run through the tensor seam (`Tensor::linear`); the scan, the causal conv
//! and the element-wise glue run on host slices ([`scan`]). Status: the CPU device; the GPU
//! scan kernel is not written yet, so loading on `Device::Gpu` is refused with a clear error.

pub mod config;
pub mod generate;
pub mod scan;
pub mod tokenizer;
pub mod typeseg;

use crate::error::{Error, Result};
use crate::tensor::{Device, LinearWeight, Tensor};
use crate::weights::{Scope, Weights};
pub use config::MambaConfig;
use scan::{silu, ScanDims, ScanStats};

struct MixerLayer {
    norm: Vec<f32>,
    in_proj: LinearWeight,
    in_bias: Option<Tensor>,
    conv_w: Vec<f32>,
    conv_b: Vec<f32>,
    x_proj: LinearWeight,
    dt_proj: LinearWeight,
    dt_bias: Tensor,
    /// −exp(A_log), `[I, N]`.
    a: Vec<f32>,
    d: Vec<f32>,
    out_proj: LinearWeight,
    out_bias: Option<Tensor>,
}

/// Per-layer recurrent state of a batch: the last K−1 conv inputs and the SSM state.
#[derive(Clone, Debug)]
pub struct MambaState {
    pub batch: usize,
    conv: Vec<Vec<f32>>,
    ssm: Vec<Vec<f32>>,
    /// Tokens consumed so far.
    pub position: usize,
}

/// One forward call's outputs.
#[derive(Debug)]
pub struct MambaOutput {
    /// `[B, L, V]` logits.
    pub logits: Vec<f32>,
    /// `[B, L, H]` after the final norm.
    pub hidden: Vec<f32>,
    pub stats: ScanStats,
}

pub struct MambaLM {
    pub cfg: MambaConfig,
    embed: Vec<f32>,
    lm_head: LinearWeight,
    layers: Vec<MixerLayer>,
    norm_f: Vec<f32>,
    device: Device,
}

fn rms_norm(x: &mut [f32], w: &[f32], eps: f32) {
    let h = w.len();
    for row in x.chunks_mut(h) {
        let ms = row.iter().map(|v| v * v).sum::<f32>() / h as f32;
        let r = 1.0 / (ms + eps).sqrt();
        for (v, g) in row.iter_mut().zip(w) {
            *v = *v * r * g;
        }
    }
}

fn softplus(v: f32) -> f32 {
    // transformers' threshold: x > 20 → x.
    if v > 20.0 {
        v
    } else {
        v.exp().ln_1p()
    }
}

impl MambaLM {
    pub fn load(cfg: MambaConfig, w: &Weights, device: &Device) -> Result<MambaLM> {
        if matches!(device, Device::Gpu(_)) {
            return Err(Error::Backend("Mamba runs on the CPU device for now: its GPU scan kernel is not written yet".into()));
        }
        let (h, i, n, r, k) = (cfg.hidden_size, cfg.intermediate_size, cfg.state_size, cfg.time_step_rank, cfg.conv_kernel);
        let b = w.pp("backbone");
        let embed = b.pp("embeddings").get_f32("weight", &[cfg.vocab_size, h])?;
        let lm_head = if w.contains("lm_head.weight") && !cfg.tie_word_embeddings {
            LinearWeight::new(w.get_f32("lm_head.weight", &[cfg.vocab_size, h])?, [cfg.vocab_size, h], device)?
        } else {
            LinearWeight::new(embed.clone(), [cfg.vocab_size, h], device)?
        };
        let lin = |s: &Scope, out: usize, inp: usize| -> Result<LinearWeight> { LinearWeight::new(s.get_f32("weight", &[out, inp])?, [out, inp], device) };
        let layers = (0..cfg.num_hidden_layers)
            .map(|li| {
                let l = b.pp("layers").pp(li);
                let m = l.pp("mixer");
                let bias = |s: &Scope, n: usize| -> Result<Option<Tensor>> {
                    if cfg.use_bias {
                        Ok(Some(s.get("bias", &[n], device)?))
                    } else {
                        Ok(None)
                    }
                };
                Ok(MixerLayer {
                    norm: l.pp("norm").get_f32("weight", &[h])?,
                    in_proj: lin(&m.pp("in_proj"), 2 * i, h)?,
                    in_bias: bias(&m.pp("in_proj"), 2 * i)?,
                    conv_w: m.pp("conv1d").get_f32("weight", &[i, 1, k])?,
                    conv_b: if cfg.use_conv_bias { m.pp("conv1d").get_f32("bias", &[i])? } else { vec![0.0; i] },
                    x_proj: lin(&m.pp("x_proj"), r + 2 * n, i)?,
                    dt_proj: lin(&m.pp("dt_proj"), i, r)?,
                    dt_bias: m.pp("dt_proj").get("bias", &[i], device)?,
                    a: m.get_f32("A_log", &[i, n])?.iter().map(|v| -v.exp()).collect(),
                    d: m.get_f32("D", &[i])?,
                    out_proj: lin(&m.pp("out_proj"), h, i)?,
                    out_bias: bias(&m.pp("out_proj"), h)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(MambaLM { norm_f: b.get_f32("norm_f.weight", &[h])?, embed, lm_head, layers, cfg, device: device.clone() })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A fresh (zero) state for `batch` sequences.
    pub fn new_state(&self, batch: usize) -> MambaState {
        let (i, n, k) = (self.cfg.intermediate_size, self.cfg.state_size, self.cfg.conv_kernel);
        MambaState { batch, conv: vec![vec![0.0; batch * (k - 1) * i]; self.layers.len()], ssm: vec![vec![0.0; batch * i * n]; self.layers.len()], position: 0 }
    }

    fn linear(&self, x: Vec<f32>, rows: usize, w: &LinearWeight, b: Option<&Tensor>) -> Result<Vec<f32>> {
        w.forward_rows(x, rows, b, &self.device)
    }

    /// Runs `ids` (B rows of equal length L) from `state` (advanced in place), with MRSS
    /// threshold `tau` (0 = the full scan). Prefill is one call with the prompt; decoding is
    /// one call per token (L = 1): same code, O(1) state.
    pub fn forward(&self, ids: &[Vec<u32>], state: &mut MambaState, tau: f32) -> Result<MambaOutput> {
        let c = &self.cfg;
        let (h, i, n, r, k) = (c.hidden_size, c.intermediate_size, c.state_size, c.time_step_rank, c.conv_kernel);
        let bsz = ids.len();
        let len = ids.first().map_or(0, |r| r.len());
        if bsz == 0 || len == 0 {
            return Err(Error::arg("no tokens to run (empty prompt)"));
        }
        if ids.iter().any(|r| r.len() != len) {
            return Err(Error::arg("all sequences of a batch must have the same length"));
        }
        if bsz != state.batch {
            return Err(Error::arg(format!("state is for {} sequences, got {bsz}", state.batch)));
        }
        if !(tau >= 0.0) {
            return Err(Error::arg(format!("MRSS threshold tau must be ≥ 0, got {tau}")));
        }
        if let Some(bad) = ids.iter().flatten().find(|&&t| t as usize >= c.vocab_size) {
            return Err(Error::arg(format!("token id {bad} is outside the vocabulary of {}", c.vocab_size)));
        }
        let rows = bsz * len;
        let mut x: Vec<f32> = ids.iter().flatten().flat_map(|&t| self.embed[t as usize * h..(t as usize + 1) * h].iter().copied()).collect();
        let mut stats = ScanStats::default();
        for (li, l) in self.layers.iter().enumerate() {
            let mut hn = x.clone();
            rms_norm(&mut hn, &l.norm, c.layer_norm_epsilon);
            let xz = self.linear(hn, rows, &l.in_proj, l.in_bias.as_ref())?; // [rows, 2I]
            let mut xs = Vec::with_capacity(rows * i);
            let mut z = Vec::with_capacity(rows * i);
            for row in xz.chunks(2 * i) {
                xs.extend_from_slice(&row[..i]);
                z.extend_from_slice(&row[i..]);
            }
            let mut xc = scan::causal_conv1d(bsz, len, i, k, &xs, &l.conv_w, &l.conv_b, &mut state.conv[li]);
            xc.iter_mut().for_each(|v| *v = silu(*v));
            let dbl = self.linear(xc.clone(), rows, &l.x_proj, None)?; // [rows, R + 2N]
            let (mut dt_in, mut bm, mut cm) = (Vec::with_capacity(rows * r), Vec::with_capacity(rows * n), Vec::with_capacity(rows * n));
            for row in dbl.chunks(r + 2 * n) {
                dt_in.extend_from_slice(&row[..r]);
                bm.extend_from_slice(&row[r..r + n]);
                cm.extend_from_slice(&row[r + n..]);
            }
            let mut dt = self.linear(dt_in, rows, &l.dt_proj, Some(&l.dt_bias))?;
            dt.iter_mut().for_each(|v| *v = softplus(*v));
            let dims = ScanDims { batch: bsz, len, channels: i, state: n };
            let (mut y, s) = scan::selective_scan(dims, &xc, &dt, &bm, &cm, &l.a, &l.d, &mut state.ssm[li], tau);
            stats.add(s);
            for (v, g) in y.iter_mut().zip(&z) {
                *v *= silu(*g);
            }
            let out = self.linear(y, rows, &l.out_proj, l.out_bias.as_ref())?;
            for (a, b) in x.iter_mut().zip(out) {
                *a += b;
            }
        }
        rms_norm(&mut x, &self.norm_f, c.layer_norm_epsilon);
        let logits = self.linear(x.clone(), rows, &self.lm_head, None)?;
        state.position += len;
        Ok(MambaOutput { logits, hidden: x, stats })
    }

    /// Loads `config.json` + `model.safetensors` (+ `tokenizer.json` when present) from a
    /// directory in the hub layout.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_dir(dir: &std::path::Path, device: &Device) -> Result<(MambaLM, Option<tokenizer::ByteBpe>)> {
        let cfg_path = dir.join("config.json");
        let json = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(cfg_path.display(), e))?;
        let cfg = MambaConfig::from_json(&cfg_path.display().to_string(), &json)?;
        let w = Weights::from_file(&dir.join("model.safetensors"))?;
        let tok_path = dir.join("tokenizer.json");
        let tok = if tok_path.exists() {
            let t = std::fs::read_to_string(&tok_path).map_err(|e| Error::io(tok_path.display(), e))?;
            Some(tokenizer::ByteBpe::from_tokenizer_json(&t)?)
        } else {
            None
        };
        Ok((MambaLM::load(cfg, &w, device)?, tok))
    }
}
