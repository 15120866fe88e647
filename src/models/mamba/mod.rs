//! Mamba language model (HF `MambaForCausalLM` layout, e.g. `state-spaces/mamba-130m-hf`):
//! prefill in O(N) with the selective scan, step decoding with O(1) state (a conv window and
//! the SSM state per layer), and the multi-resolution scan proxy (MRSS, see [`scan`]).
//!
//! Written once on the tensor seam: the projections, RMSNorm, SiLU/softplus, the causal conv
//! and the selective scan ([`scan`]) are ops with a CPU kernel and a WGSL kernel each, so the
//! same code runs on `Device::cpu()` and `Device::Gpu` (wgpu natively, WebGPU in the page).

pub mod config;
pub mod generate;
pub mod quality;
pub mod typeseg;

/// The scan kernels live with the other ops of the seam.
pub use crate::tensor::ssm as scan;

use crate::error::{Error, Result};
use crate::models::nn::{Embedding, RmsNorm};
use crate::tensor::{Activation, Device, LinearWeight, Tensor};
use crate::weights::{Scope, Weights};
pub use config::MambaConfig;
use scan::{ScanInputs, ScanStats};

struct MixerLayer {
    norm: RmsNorm,
    /// HF's `in_proj` `[2I, H]` as its two halves: x (rows 0..I) and the gate z (rows I..2I),
    /// so each is one product (z with SiLU in its epilogue) and nothing is sliced after.
    in_x: LinearWeight,
    in_z: LinearWeight,
    in_bias: Option<(Tensor, Tensor)>,
    /// `[I, K]`.
    conv_w: Tensor,
    conv_b: Tensor,
    x_proj: LinearWeight,
    dt_proj: LinearWeight,
    dt_bias: Tensor,
    /// `[I, N + 1]`: −exp(A_log) then D per channel.
    ad: Tensor,
    out_proj: LinearWeight,
    out_bias: Option<Tensor>,
}

impl MixerLayer {
    fn load(l: &Scope, cfg: &MambaConfig, device: &Device) -> Result<MixerLayer> {
        let (h, i, n, r, k) = (cfg.hidden_size, cfg.intermediate_size, cfg.state_size, cfg.time_step_rank, cfg.conv_kernel);
        let lin = |s: &Scope, out: usize, inp: usize| -> Result<LinearWeight> { LinearWeight::new(s.get_f32("weight", &[out, inp])?, [out, inp], device) };
        let m = l.pp("mixer");
        let bias = |s: &Scope, n: usize| -> Result<Option<Tensor>> {
            if cfg.use_bias {
                Ok(Some(s.get("bias", &[n], device)?))
            } else {
                Ok(None)
            }
        };
        let conv_b = if cfg.use_conv_bias { m.pp("conv1d").get_f32("bias", &[i])? } else { vec![0.0; i] };
        let (a_log, d) = (m.get_f32("A_log", &[i, n])?, m.get_f32("D", &[i])?);
        let ad: Vec<f32> = a_log.chunks(n).zip(&d).flat_map(|(row, &dv)| row.iter().map(|v| -v.exp()).chain([dv])).collect();
        let in_w = m.pp("in_proj").get_f32("weight", &[2 * i, h])?;
        Ok(MixerLayer {
            norm: RmsNorm::load(&l.pp("norm"), h, cfg.layer_norm_epsilon, device)?,
            in_x: LinearWeight::new(in_w[..i * h].to_vec(), [i, h], device)?,
            in_z: LinearWeight::new(in_w[i * h..].to_vec(), [i, h], device)?,
            in_bias: match bias(&m.pp("in_proj"), 2 * i)? {
                Some(b) => Some((b.narrow(0, 0, i)?, b.narrow(0, i, i)?)),
                None => None,
            },
            conv_w: Tensor::from_f32(m.pp("conv1d").get_f32("weight", &[i, 1, k])?, &[i, k], device)?,
            conv_b: Tensor::from_f32(conv_b, &[i], device)?,
            x_proj: lin(&m.pp("x_proj"), r + 2 * n, i)?,
            dt_proj: lin(&m.pp("dt_proj"), i, r)?,
            dt_bias: m.pp("dt_proj").get("bias", &[i], device)?,
            ad: Tensor::from_f32(ad, &[i, n + 1], device)?,
            out_proj: lin(&m.pp("out_proj"), h, i)?,
            out_bias: bias(&m.pp("out_proj"), h)?,
        })
    }

    /// One residual block on `x` `[B·L, H]` from its `conv` and `ssm` state: the new `x`, the
    /// next states and (with τ > 0) the MRSS counts.
    fn forward(&self, x: &Tensor, conv: &Tensor, ssm: &Tensor, [bsz, len]: [usize; 2], tau: f32) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
        let (i, n) = (self.conv_w.dim(0)?, self.ad.dim(1)? - 1);
        let xn = self.norm.forward(x)?;
        let (bx, bz) = (self.in_bias.as_ref().map(|b| &b.0), self.in_bias.as_ref().map(|b| &b.1));
        let xs = self.in_x.forward(&xn, bx)?.reshape(&[bsz, len, i])?; // [B, L, I]
        let gate = self.in_z.forward_ex(&xn, bz, Some(Activation::Silu), None)?; // [rows, I]
        let (xc, conv_next) = xs.causal_conv1d(conv, &self.conv_w, &self.conv_b, Some(Activation::Silu))?;
        let proj = self.x_proj.forward(&xc, None)?; // [B, L, R + 2N]
        let r = proj.dim(2)? - 2 * n;
        let dt = self.dt_proj.forward_ex(&proj.narrow(2, 0, r)?, Some(&self.dt_bias), Some(Activation::Softplus), None)?;
        let scan_in = ScanInputs { x: &xc, dt: &dt, proj: &proj, b_off: r, ad: &self.ad, h: ssm };
        let (y, ssm_next, count) = Tensor::selective_scan(&scan_in, tau)?;
        let y = y.reshape(&[bsz * len, i])?.mul(&gate)?;
        // x + out_proj(y), the residual added in the projection's epilogue.
        Ok((self.out_proj.forward_ex(&y, self.out_bias.as_ref(), None, Some(x))?, conv_next, ssm_next, count))
    }
}

/// Milliseconds one mixer block takes per decoded token on `dev` (layer 0's weights, eight
/// steps from a zero state, one read-back), for choosing a backend by measurement.
pub async fn probe_layer_ms(cfg: &MambaConfig, w: &Weights, dev: Device) -> Result<f64> {
    const STEPS: usize = 8;
    let (h, i, k) = (cfg.hidden_size, cfg.intermediate_size, cfg.conv_kernel);
    scan::check_state_size(&dev, cfg.state_size)?;
    let layer = MixerLayer::load(&w.pp("backbone").pp("layers").pp(0), cfg, &dev)?;
    let x = Tensor::from_f32(crate::num::random_values(h, 7, 1.0), &[1, h], &dev)?;
    let conv = Tensor::from_f32(vec![0.0; (k - 1) * i], &[1, k - 1, i], &dev)?;
    let ssm = Tensor::from_f32(vec![0.0; i * cfg.state_size], &[1, i, cfg.state_size], &dev)?;
    let (layer, x, conv, ssm) = (&layer, &x, &conv, &ssm);
    let ms = crate::tensor::time_best(
        move || async move {
            let (mut y, mut c, mut s) = (x.clone(), conv.clone(), ssm.clone());
            for _ in 0..STEPS {
                (y, c, s, _) = layer.forward(&y, &c, &s, [1, 1], 0.0)?;
            }
            y.to_vec_f32_async().await.map(|_| ())
        },
        3,
        250.0,
    )
    .await?;
    Ok(ms / STEPS as f64)
}

/// Per-layer recurrent state of a batch, on the model's device: the last K−1 conv inputs
/// `[B, K−1, I]` and the SSM state `[B, I, N]`. Cloning is cheap and each clone evolves on its
/// own (ops never write into their inputs).
#[derive(Clone, Debug)]
pub struct MambaState {
    pub batch: usize,
    conv: Vec<Tensor>,
    ssm: Vec<Tensor>,
    /// Tokens consumed so far.
    pub position: usize,
}

/// One forward call's outputs.
#[derive(Debug)]
pub struct MambaOutput {
    /// `[B, L, V]` logits (`[B, 1, V]`, the last position's, with [`Logits::Last`]).
    pub logits: Vec<f32>,
    /// `[B, L, H]` after the final norm (empty with [`Logits::Last`]).
    pub hidden: Vec<f32>,
    pub stats: ScanStats,
}

/// Which positions a forward call returns logits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// Every position, with the final hidden states (tests, perplexity).
    All,
    /// The last position of each sequence only (generation: the LM head runs on one row).
    Last,
}

pub struct MambaLM {
    pub cfg: MambaConfig,
    /// `[V, H]` (ids are checked on the host before the lookup).
    embed: Embedding,
    lm_head: LinearWeight,
    layers: Vec<MixerLayer>,
    norm_f: RmsNorm,
    device: Device,
}

impl MambaLM {
    pub fn load(cfg: MambaConfig, w: &Weights, device: &Device) -> Result<MambaLM> {
        let h = cfg.hidden_size;
        scan::check_state_size(device, cfg.state_size)?;
        let b = w.pp("backbone");
        let embed_host = b.pp("embeddings").get_f32("weight", &[cfg.vocab_size, h])?;
        let lm_head = if w.contains("lm_head.weight") && !cfg.tie_word_embeddings {
            LinearWeight::new(w.get_f32("lm_head.weight", &[cfg.vocab_size, h])?, [cfg.vocab_size, h], device)?
        } else {
            LinearWeight::new(embed_host.clone(), [cfg.vocab_size, h], device)?
        };
        let embed = Embedding::new(embed_host, cfg.vocab_size, h, device)?;
        let layers = (0..cfg.num_hidden_layers).map(|li| MixerLayer::load(&b.pp("layers").pp(li), &cfg, device)).collect::<Result<Vec<_>>>()?;
        let m = MambaLM { norm_f: RmsNorm::load(&b.pp("norm_f"), h, cfg.layer_norm_epsilon, device)?, embed, lm_head, layers, cfg, device: device.clone() };
        // The GPU's pipelines compiled now, from what the warm-up dispatches, not in the first token.
        device.compile_by_recording(|| crate::tensor::block_on(m.warm_up()))?;
        Ok(m)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Everything generation does, once: a 9-token prefill and a one-token step, without MRSS
    /// and with it. Recorded at load on a GPU, which compiles every pipeline it dispatches
    /// ([`Device::compile_by_recording`]); run for real in the browser by
    /// [`MambaLM::warm_up_async`].
    pub async fn warm_up(&self) -> Result<()> {
        for tau in [0.0, 0.05] {
            let mut state = self.new_state(1)?;
            self.forward_async(&[vec![0; 9]], &mut state, tau, Logits::Last).await?;
            self.forward_async(&[vec![0]], &mut state, tau, Logits::Last).await?;
        }
        Ok(())
    }

    /// Runs [`MambaLM::warm_up`] on the GPU and waits for it, so the browser's deferred
    /// pipeline compiles land in the load, not in the first prompt (see `Clip::warm_up_async`).
    /// Nothing on the CPU.
    pub async fn warm_up_async(&self) -> Result<()> {
        if !matches!(self.device, Device::Gpu(_)) {
            return Ok(());
        }
        self.warm_up().await
    }

    /// A fresh (zero) state for `batch` sequences.
    pub fn new_state(&self, batch: usize) -> Result<MambaState> {
        let (i, n, k) = (self.cfg.intermediate_size, self.cfg.state_size, self.cfg.conv_kernel);
        let zeros = |shape: &[usize]| Tensor::from_f32(vec![0.0; shape.iter().product()], shape, &self.device);
        let conv = (0..self.layers.len()).map(|_| zeros(&[batch, k - 1, i])).collect::<Result<Vec<_>>>()?;
        let ssm = (0..self.layers.len()).map(|_| zeros(&[batch, i, n])).collect::<Result<Vec<_>>>()?;
        Ok(MambaState { batch, conv, ssm, position: 0 })
    }

    /// [`MambaLM::forward_async`] with every position's logits, waiting for the device.
    pub fn forward(&self, ids: &[Vec<u32>], state: &mut MambaState, tau: f32) -> Result<MambaOutput> {
        crate::tensor::block_on(self.forward_async(ids, state, tau, Logits::All))
    }

    /// Runs `ids` (B rows of equal length L) from `state` (advanced only on success), with
    /// MRSS threshold `tau` (0 = the full scan). Prefill is one call with the prompt; decoding
    /// is one call per token (L = 1): same code, O(1) state. Everything stays on the model's
    /// device until the logits (and, with τ > 0, the MRSS counts) are read back.
    pub async fn forward_async(&self, ids: &[Vec<u32>], state: &mut MambaState, tau: f32, want: Logits) -> Result<MambaOutput> {
        let c = &self.cfg;
        let (h, i) = (c.hidden_size, c.intermediate_size);
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
        let flat: Vec<u32> = ids.iter().flatten().copied().collect();
        let x = self.embed.forward(&flat)?; // [rows, H]
        let layers = || -> Result<_> {
            let (mut x, mut conv, mut ssm, mut counts) = (x, Vec::with_capacity(self.layers.len()), Vec::with_capacity(self.layers.len()), Vec::new());
            for (li, l) in self.layers.iter().enumerate() {
                let (y, conv_next, ssm_next, count) = l.forward(&x, &state.conv[li], &state.ssm[li], [bsz, len], tau)?;
                x = y;
                conv.push(conv_next);
                ssm.push(ssm_next);
                if tau > 0.0 {
                    counts.push(count);
                }
            }
            Ok((self.norm_f.forward(&x)?, conv, ssm, counts))
        };
        let step = || -> Result<_> {
            let (x, conv, ssm, counts) = layers()?;
            let (logits, hidden) = match want {
                Logits::All => (self.lm_head.forward(&x, None)?, Some(x)),
                Logits::Last => {
                    let last = x.reshape(&[bsz, len, h])?.narrow(1, len - 1, 1)?.reshape(&[bsz, h])?;
                    (self.lm_head.forward(&last, None)?, None)
                }
            };
            Ok((logits, hidden, conv, ssm, counts))
        };
        // On the CPU (each op eager) the whole step, LM head included, runs inside the thread
        // pool with its workers kept awake between the step's ~100 products ([`cpu_pass`]).
        let (logits, hidden, conv, ssm, counts) = crate::tensor::cpu_pass(&self.device, step)?;
        let logits = logits.to_vec_f32_async().await?;
        let hidden = match hidden {
            Some(x) => x.to_vec_f32_async().await?,
            None => Vec::new(),
        };
        crate::error::check_finite("the logits", &logits)?;
        let stats = if counts.is_empty() {
            // τ = 0 merges nothing: every (layer, sequence, channel, step) is one update.
            ScanStats { updates: (self.layers.len() * bsz * len * i) as u64, merged: 0, runs: 0 }
        } else {
            ScanStats::from_rows(&Tensor::cat(&counts.iter().collect::<Vec<_>>(), 0)?.to_vec_f32_async().await?)
        };
        state.conv = conv;
        state.ssm = ssm;
        state.position += len;
        Ok(MambaOutput { logits, hidden, stats })
    }

    /// Loads `config.json` + `model.safetensors` (+ `tokenizer.json` when present) from a
    /// directory in the hub layout.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_dir(dir: &std::path::Path, device: &Device) -> Result<(MambaLM, Option<crate::models::lm::ByteBpe>)> {
        let cfg_path = dir.join("config.json");
        let json = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(cfg_path.display(), e))?;
        let cfg = MambaConfig::from_json(&cfg_path.display().to_string(), &json)?;
        let w = Weights::from_file(&dir.join("model.safetensors"))?;
        let tok_path = dir.join("tokenizer.json");
        let tok = if tok_path.exists() {
            let t = std::fs::read_to_string(&tok_path).map_err(|e| Error::io(tok_path.display(), e))?;
            Some(crate::models::lm::ByteBpe::from_tokenizer_json(&t)?)
        } else {
            None
        };
        Ok((MambaLM::load(cfg, &w, device)?, tok))
    }
}
