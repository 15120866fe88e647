//! A real trained Mamba for the scan: the `typeseg` 0.2.7 segmenter (PyPI, Apache-2.0): a
//! bidirectional, character-level Mamba (6 blocks, d_model 256, d_state 16) that labels
//! every byte with one of 35 content types (+ "other"). Its weights are Flax-named
//! (`CheckpointMambaBlock1D_0/Dense_0/kernel`, `[in, out]` matrices); they are read under
//! those names and transposed here, nothing is converted on disk by the user.
//! `scripts/typeseg_check.py` fetches the wheel, checks us against the package's own numpy
//! reference and measures MRSS on real text.
//!
//! Block (as the package's `_mamba_kernel.py`): x + W₃·(silu(gate) ⊙ (scan→(u) + scan←(u))),
//! with LayerNorm (eps 1e-6), a SAME-padded depthwise conv, Δ = softplus(·) + 1e-4, and the
//! same selective scan run forwards and over the reversed sequence.

use super::scan::{self, ScanDims, ScanStats};
use crate::error::{Error, Result};
use crate::tensor::{Device, LinearWeight, Tensor};
use crate::weights::Weights;

struct Dense {
    w: LinearWeight,
    b: Tensor,
}

struct Block {
    ln: (Vec<f32>, Vec<f32>),
    d0: Dense,
    conv_w: Vec<f32>,
    conv_b: Vec<f32>,
    d1: Dense,
    d2: Dense,
    a: Vec<f32>,
    d: Vec<f32>,
    d3: Dense,
}

pub struct Typeseg {
    embed: Vec<f32>,
    rows: usize,
    d_model: usize,
    blocks: Vec<Block>,
    ln: (Vec<f32>, Vec<f32>),
    head: Dense,
    pub classes: usize,
    d_state: usize,
    dt_rank: usize,
    d_conv: usize,
    device: Device,
}

fn dense(w: &Weights, name: &str, dev: &Device) -> Result<Dense> {
    let info = w.info(&format!("{name}/kernel")).ok_or_else(|| Error::MissingTensor { file: "typeseg weights".into(), name: format!("{name}/kernel") })?;
    let [inp, out] = info.shape[..] else {
        return Err(Error::arg(format!("typeseg {name}/kernel has shape {:?}, expected [in, out]", info.shape)));
    };
    let k = w.get_f32(&format!("{name}/kernel"), &[inp, out])?;
    // Flax [in, out] → HF [out, in].
    let mut t = vec![0f32; inp * out];
    for i in 0..inp {
        for o in 0..out {
            t[o * inp + i] = k[i * out + o];
        }
    }
    Ok(Dense { w: LinearWeight::new(t, [out, inp], dev)?, b: w.get(&format!("{name}/bias"), &[out], dev)? })
}

fn layer_norm(x: &mut [f32], s: &[f32], b: &[f32]) {
    let d = s.len();
    for row in x.chunks_mut(d) {
        let mean = row.iter().sum::<f32>() / d as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let r = 1.0 / (var + 1e-6).sqrt();
        for ((v, g), c) in row.iter_mut().zip(s).zip(b) {
            *v = (*v - mean) * r * g + c;
        }
    }
}

impl Typeseg {
    /// `w`: the package's `mamba_al.npz` arrays under their names with `/` separators.
    pub fn load(w: &Weights, device: &Device) -> Result<Typeseg> {
        let miss = |n: &str| Error::MissingTensor { file: "typeseg weights".into(), name: n.to_string() };
        let e = w.info("Embed_0/embedding").ok_or_else(|| miss("Embed_0/embedding"))?.shape.clone();
        let [rows, d_model] = e[..] else { return Err(Error::arg(format!("Embed_0/embedding has shape {e:?}"))) };
        let mut blocks = Vec::new();
        let (mut d_state, mut dt_rank, mut d_conv) = (16, 16, 4);
        for i in 0.. {
            let p = format!("CheckpointMambaBlock1D_{i}");
            if w.info(&format!("{p}/A_log")).is_none() {
                break;
            }
            let a_shape = w.info(&format!("{p}/A_log")).map(|t| t.shape.clone()).unwrap_or_default();
            let [c, n] = a_shape[..] else { return Err(Error::arg(format!("{p}/A_log has shape {a_shape:?}"))) };
            let kshape = w.info(&format!("{p}/Conv_0/kernel")).ok_or_else(|| miss(&format!("{p}/Conv_0/kernel")))?.shape.clone();
            let k = kshape.first().copied().unwrap_or(4);
            let conv = w.get_f32(&format!("{p}/Conv_0/kernel"), &[k, 1, c])?;
            let d2 = dense(w, &format!("{p}/Dense_2"), device)?;
            (d_state, d_conv) = (n, k);
            dt_rank = w.info(&format!("{p}/Dense_2/kernel")).map_or(16, |t| t.shape[0]);
            let d0 = dense(w, &format!("{p}/Dense_0"), device)?;
            let d1 = dense(w, &format!("{p}/Dense_1"), device)?;
            let d3 = dense(w, &format!("{p}/Dense_3"), device)?;
            let (o0, o1, o2, o3) = (d0.b.dim(0)?, d1.b.dim(0)?, d2.b.dim(0)?, d3.b.dim(0)?);
            if o0 != 2 * c || o1 != dt_rank + 2 * n || o2 != c || o3 != d_model || k == 0 {
                return Err(Error::arg(format!(
                    "typeseg block {i}: Dense_0/1/2/3 give {o0}/{o1}/{o2}/{o3} outputs, expected {}/{}/{c}/{d_model} for {c} channels, state {n}, dt rank {dt_rank}",
                    2 * c,
                    dt_rank + 2 * n
                )));
            }
            blocks.push(Block {
                ln: (w.get_f32(&format!("{p}/LayerNorm_0/scale"), &[d_model])?, w.get_f32(&format!("{p}/LayerNorm_0/bias"), &[d_model])?),
                d0,
                conv_w: (0..c * k).map(|j| conv[(j % k) * c + j / k]).collect(),
                conv_b: w.get_f32(&format!("{p}/Conv_0/bias"), &[c])?,
                d1,
                d2,
                a: w.get_f32(&format!("{p}/A_log"), &[c, n])?.iter().map(|v| -v.exp()).collect(),
                d: w.get_f32(&format!("{p}/D"), &[c])?,
                d3,
            });
        }
        if blocks.is_empty() {
            return Err(miss("CheckpointMambaBlock1D_0/A_log"));
        }
        let head = dense(w, "Dense_0", device)?;
        Ok(Typeseg {
            embed: w.get_f32("Embed_0/embedding", &[rows, d_model])?,
            rows,
            d_model,
            blocks,
            ln: (w.get_f32("LayerNorm_0/scale", &[d_model])?, w.get_f32("LayerNorm_0/bias", &[d_model])?),
            classes: head.b.dim(0)?,
            head,
            d_state,
            dt_rank,
            d_conv,
            device: device.clone(),
        })
    }

    fn linear(&self, x: Vec<f32>, rows: usize, d: &Dense) -> Result<Vec<f32>> {
        d.w.forward_rows(x, rows, Some(&d.b), &self.device)
    }

    /// Per-byte logits `[L, classes]` of `tokens` (raw byte ids 0..=256), with MRSS threshold `tau`.
    pub fn forward(&self, tokens: &[u32], tau: f32) -> Result<(Vec<f32>, ScanStats)> {
        let l = tokens.len();
        if l == 0 {
            return Err(Error::arg("no bytes to label"));
        }
        if !(tau >= 0.0) {
            return Err(Error::arg(format!("MRSS threshold tau must be ≥ 0, got {tau}")));
        }
        let dm = self.d_model;
        // The package's compact remap when the table has fewer than 257 rows.
        let row = |t: u32| -> usize {
            let t = t.min(256) as usize;
            if self.rows == 257 {
                t
            } else if t < 128 {
                t
            } else if t < 256 {
                128
            } else {
                129
            }
            .min(self.rows - 1)
        };
        let mut x: Vec<f32> = tokens.iter().flat_map(|&t| self.embed[row(t) * dm..(row(t) + 1) * dm].iter().copied()).collect();
        let mut stats = ScanStats::default();
        let (n, r, k) = (self.d_state, self.dt_rank, self.d_conv);
        for b in &self.blocks {
            let mut h = x.clone();
            layer_norm(&mut h, &b.ln.0, &b.ln.1);
            let xz = self.linear(h, l, &b.d0)?;
            let c = xz.len() / l / 2;
            let (mut u, mut gate) = (Vec::with_capacity(l * c), Vec::with_capacity(l * c));
            for rrow in xz.chunks(2 * c) {
                u.extend_from_slice(&rrow[..c]);
                gate.extend_from_slice(&rrow[c..]);
            }
            // SAME padding (low = (k-1)/2, high = k-1-low) as a causal conv over the input
            // followed by `high` zeros, shifted by `high`.
            let high = (k - 1) - (k - 1) / 2;
            u.extend(std::iter::repeat_n(0.0, high * c));
            let mut st = vec![0f32; (k - 1) * c];
            let conv = scan::causal_conv1d(1, l + high, c, k, &u, &b.conv_w, &b.conv_b, &mut st);
            let u: Vec<f32> = conv[high * c..].iter().map(|&v| silu(v)).collect();
            let dbl = self.linear(u.clone(), l, &b.d1)?;
            let (mut dt_in, mut bm, mut cm) = (Vec::with_capacity(l * r), Vec::with_capacity(l * n), Vec::with_capacity(l * n));
            for rrow in dbl.chunks(r + 2 * n) {
                dt_in.extend_from_slice(&rrow[..r]);
                bm.extend_from_slice(&rrow[r..r + n]);
                cm.extend_from_slice(&rrow[r + n..r + 2 * n]);
            }
            let dt: Vec<f32> = self.linear(dt_in, l, &b.d2)?.iter().map(|&v| softplus(v) + 1e-4).collect();
            let dims = ScanDims { batch: 1, len: l, channels: c, state: n };
            let (yf, sf) = scan::selective_scan(dims, &u, &dt, &bm, &cm, &b.a, &b.d, &mut vec![0.0; c * n], tau);
            let rev = |v: &[f32], w: usize| -> Vec<f32> { v.chunks(w).rev().flatten().copied().collect() };
            let (yr, sr) = scan::selective_scan(dims, &rev(&u, c), &rev(&dt, c), &rev(&bm, n), &rev(&cm, n), &b.a, &b.d, &mut vec![0.0; c * n], tau);
            stats.add(sf);
            stats.add(sr);
            let yr = rev(&yr, c);
            let y: Vec<f32> = yf.iter().zip(&yr).zip(&gate).map(|((a, b), g)| (a + b) * silu(*g)).collect();
            let out = self.linear(y, l, &b.d3)?;
            for (a, o) in x.iter_mut().zip(out) {
                *a += o;
            }
        }
        layer_norm(&mut x, &self.ln.0, &self.ln.1);
        Ok((self.linear(x, l, &self.head)?, stats))
    }

    /// The package's byte sanitising: visible ASCII, tab, newline and CR pass; every other
    /// byte becomes the placeholder 0xA4.
    pub fn tokens(text: &[u8]) -> Vec<u32> {
        text.iter().map(|&b| if (0x20..0x7f).contains(&b) || b == 9 || b == 10 || b == 13 || b == 0xa4 { b as u32 } else { 0xa4 }).collect()
    }
}

/// x·sigmoid(x).
fn silu(v: f32) -> f32 {
    v / (1.0 + (-v).exp())
}

fn softplus(v: f32) -> f32 {
    // log(1 + eˣ) without overflow, as numpy's logaddexp(0, x).
    v.max(0.0) + (-v.abs()).exp().ln_1p()
}
