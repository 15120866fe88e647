//! Qwen2.5-VL's vision tower (transformers' `Qwen2_5_VisionTransformerPretrainedModel`):
//! patch embedding (the Conv3d as one matmul over flattened patches), 2-D rotary embeddings,
//! window attention (112-px windows) with full attention in `fullatt_block_indexes`, RMSNorm,
//! SwiGLU MLP, the 2×2 patch merger, and the window reordering undone at the end. Attention
//! runs per window segment (no dense L×L mask).

use super::config::VisionConfig;
use super::processor::ImagePatches;
use crate::error::{Error, Result};
use crate::models::nn::Linear;
use crate::prune::KqWhich;
use crate::tensor::{Activation, Device, LinearWeight, Tensor};
use crate::weights::Scope;

struct Block {
    norm1: Tensor,
    norm2: Tensor,
    qkv: Linear,
    proj: Linear,
    gate: Linear,
    up: Linear,
    down: Linear,
}

pub struct VisionTower {
    pub cfg: VisionConfig,
    patch: LinearWeight,
    blocks: Vec<Block>,
    ln_q: Tensor,
    mlp0: Linear,
    mlp2: Linear,
    device: Device,
}

/// The window layout of one image: merge units in window order, and the token boundaries of
/// the windows (transformers' `window_index`, `cu_window_seqlens`).
#[derive(Clone, Debug, PartialEq)]
pub struct Windows {
    pub index: Vec<usize>,
    pub bounds: Vec<usize>,
}

pub fn windows(grid_h: usize, grid_w: usize, v: &VisionConfig) -> Windows {
    let m = v.spatial_merge_size;
    let (lh, lw, ws) = (grid_h / m, grid_w / m, v.window_units());
    let unit = m * m;
    let (nwh, nww) = ((lh + ws - lh % ws) / ws, (lw + ws - lw % ws) / ws);
    let mut index = Vec::with_capacity(lh * lw);
    let mut bounds = vec![0];
    for wh in 0..nwh {
        for ww in 0..nww {
            let before = index.len();
            for r in 0..ws {
                for c in 0..ws {
                    let (h, w) = (wh * ws + r, ww * ws + c);
                    if h < lh && w < lw {
                        index.push(h * lw + w);
                    }
                }
            }
            if index.len() > before {
                bounds.push(index.len() * unit);
            }
        }
    }
    Windows { index, bounds }
}

/// The size of the windows `bounds` (token boundaries from 0) cut, when all are one size.
fn equal_windows(bounds: &[usize]) -> Option<usize> {
    let mut sizes = bounds.windows(2).map(|w| w[1] - w[0]);
    let first = sizes.next()?;
    sizes.all(|n| n == first).then_some(first)
}

/// Per token (in window order) the rotary angles' cos and sin, `[S, head_dim / 2]`: the first
/// half of the frequencies rotate with the patch row, the second with the column.
fn rope_tables(win: &Windows, grid_w: usize, v: &VisionConfig) -> (Vec<f32>, Vec<f32>) {
    let m = v.spatial_merge_size;
    let hd = v.head_dim();
    let q = hd / 4; // frequencies per axis
    let inv: Vec<f32> = (0..q).map(|j| 1.0 / v.rope_theta.powf((2 * j) as f32 / (hd / 2) as f32)).collect();
    let (mut cos, mut sin) = (Vec::with_capacity(win.index.len() * m * m * hd / 2), Vec::new());
    for &u in &win.index {
        let (bh, bw) = (u / (grid_w / m), u % (grid_w / m));
        for mh in 0..m {
            for mw in 0..m {
                let (h, w) = ((bh * m + mh) as f32, (bw * m + mw) as f32);
                for &pos in &[h, w] {
                    for &f in &inv {
                        cos.push((pos * f).cos());
                        sin.push((pos * f).sin());
                    }
                }
            }
        }
    }
    (cos, sin)
}

/// What the tower returns for one image.
pub struct VisionOut {
    /// `[U, out_hidden]`: one embedding per merge unit, in the original (row-major) order.
    pub embeds: Tensor,
    /// Per unit (original order), the mean over its patches of ‖k‖ (or ‖q‖) at the scoring
    /// block, when asked for.
    pub unit_scores: Option<Vec<f32>>,
}

impl VisionTower {
    pub fn load(cfg: &VisionConfig, s: &Scope, device: &Device) -> Result<VisionTower> {
        let (d, i) = (cfg.hidden_size, cfg.intermediate_size);
        let patch_in = cfg.in_channels * cfg.temporal_patch_size * cfg.patch_size * cfg.patch_size;
        let pw = s.pp("patch_embed").pp("proj").get_f32("weight", &[d, cfg.in_channels, cfg.temporal_patch_size, cfg.patch_size, cfg.patch_size])?;
        let blocks = (0..cfg.depth)
            .map(|b| {
                let bs = s.pp("blocks").pp(b);
                let (a, mlp) = (bs.pp("attn"), bs.pp("mlp"));
                Ok(Block {
                    norm1: bs.pp("norm1").get("weight", &[d], device)?,
                    norm2: bs.pp("norm2").get("weight", &[d], device)?,
                    qkv: Linear::load(&a.pp("qkv"), 3 * d, d, true, device)?,
                    proj: Linear::load(&a.pp("proj"), d, d, true, device)?,
                    gate: Linear::load(&mlp.pp("gate_proj"), i, d, true, device)?,
                    up: Linear::load(&mlp.pp("up_proj"), i, d, true, device)?,
                    down: Linear::load(&mlp.pp("down_proj"), d, i, true, device)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let unit = cfg.spatial_merge_size * cfg.spatial_merge_size;
        let mg = s.pp("merger");
        Ok(VisionTower {
            patch: LinearWeight::new_unquantized(pw, [d, patch_in], device)?,
            blocks,
            ln_q: mg.pp("ln_q").get("weight", &[d], device)?,
            mlp0: Linear::load(&mg.pp("mlp").pp(0), d * unit, d * unit, true, device)?,
            mlp2: Linear::load(&mg.pp("mlp").pp(2), cfg.out_hidden_size, d * unit, true, device)?,
            cfg: cfg.clone(),
            device: device.clone(),
        })
    }

    /// Runs one image. `score`: (block, which projection) whose norms score the merge units.
    pub async fn forward_async(&self, img: &ImagePatches, score: Option<(usize, KqWhich)>) -> Result<VisionOut> {
        let v = &self.cfg;
        let (m, d, heads, hd) = (v.spatial_merge_size, v.hidden_size, v.num_heads, v.head_dim());
        let unit = m * m;
        if img.grid_h % m != 0 || img.grid_w % m != 0 || img.grid_h == 0 || img.grid_w == 0 {
            return Err(Error::arg(format!("image grid {}×{} is not a positive multiple of the {m}×{m} merge", img.grid_h, img.grid_w)));
        }
        let s_len = img.grid_h * img.grid_w;
        let row = v.in_channels * v.temporal_patch_size * v.patch_size * v.patch_size;
        if img.pixels.len() != s_len * row {
            return Err(Error::arg(format!("pixel values: {} values for {s_len} patches of {row}", img.pixels.len())));
        }
        if let Some((b, _)) = score {
            if b >= self.blocks.len() {
                return Err(Error::arg(format!("scoring block {b} of a {}-block vision tower", self.blocks.len())));
            }
        }
        let win = windows(img.grid_h, img.grid_w, v);
        // Tokens in window order: the 4 patches of each unit stay together.
        let order: Vec<u32> = win.index.iter().flat_map(|&u| (0..unit).map(move |j| (u * unit + j) as u32)).collect();
        let x = Tensor::from_f32(img.pixels.clone(), &[s_len, row], &self.device)?;
        let x = self.patch.forward(&x, None)?; // [S, D]
        crate::probe::record(|| "vision.patch_embed".into(), &x);
        let idx = Tensor::from_u32(order, &[1, s_len], &self.device)?;
        let mut x = x.reshape(&[1, s_len, d])?.gather_rows(&idx)?.reshape(&[s_len, d])?;
        let (cos, sin) = rope_tables(&win, img.grid_w, v);
        let cos = Tensor::from_f32(cos, &[s_len, hd / 2], &self.device)?;
        let sin = Tensor::from_f32(sin, &[s_len, hd / 2], &self.device)?;
        let full = [0, s_len];
        let mut token_scores = None;
        for (bi, blk) in self.blocks.iter().enumerate() {
            let bounds: &[usize] = if v.fullatt_block_indexes.contains(&bi) { &full } else { &win.bounds };
            let h = x.rms_norm(&blk.norm1, 1e-6)?;
            let qkv = blk.qkv.forward(&h)?; // [S, 3D]
            if let Some((sb, which)) = score {
                if sb == bi {
                    let norms = |i: usize| qkv.narrow(1, i * d, d)?.row_norms();
                    let t = match which {
                        KqWhich::Key => norms(1)?,
                        KqWhich::Query => norms(0)?,
                        KqWhich::Both => norms(0)?.add(&norms(1)?)?,
                    };
                    token_scores = Some(t);
                }
            }
            let part = |i: usize| qkv.narrow(1, i * d, d)?.reshape(&[s_len, heads, hd]);
            let (q, k) = (part(0)?.rope(&cos, &sin)?, part(1)?.rope(&cos, &sin)?);
            let vv = part(2)?;
            let to_heads = |t: &Tensor| t.permute(&[1, 0, 2]); // [H, S, hd]
            let (q, k, vv) = (to_heads(&q)?, to_heads(&k)?, to_heads(&vv)?);
            let o = if let Some(n) = equal_windows(bounds) {
                // Windows of one size (every image whose sides are multiples of the window):
                // each window is a head of its own, one attention for all, nothing copied.
                let nw = (s_len / n.max(1)).max(1);
                let r = |t: &Tensor| t.reshape(&[1, heads * nw, n, hd]);
                Tensor::attention(&r(&q)?, &r(&k)?, &r(&vv)?, false)?
            } else {
                let mut outs = Vec::with_capacity(bounds.len());
                for w in bounds.windows(2) {
                    let (s0, n) = (w[0], w[1] - w[0]);
                    let seg = |t: &Tensor| t.narrow(1, s0, n).and_then(|t| t.reshape(&[1, heads, n, hd]));
                    outs.push(Tensor::attention(&seg(&q)?, &seg(&k)?, &seg(&vv)?, false)?);
                }
                if outs.len() == 1 {
                    outs.pop().ok_or_else(|| Error::arg("no window"))?
                } else {
                    Tensor::cat(&outs.iter().collect::<Vec<_>>(), 2)?
                }
            };
            let o = o.reshape(&[heads, s_len, hd])?.permute(&[1, 0, 2])?.reshape(&[s_len, d])?;
            // Residuals and the gate's SiLU in the projections' epilogues.
            x = blk.proj.forward_ex(&o, None, Some(&x))?;
            let h = x.rms_norm(&blk.norm2, 1e-6)?;
            let g = blk.gate.forward_ex(&h, Some(Activation::Silu), None)?.mul(&blk.up.forward(&h)?)?;
            x = blk.down.forward_ex(&g, None, Some(&x))?;
            crate::probe::record(|| format!("vision.block{bi}"), &x);
        }
        let merged = x.rms_norm(&self.ln_q, 1e-6)?.reshape(&[s_len / unit, d * unit])?;
        let merged = self.mlp2.forward(&self.mlp0.forward_ex(&merged, Some(Activation::Gelu), None)?)?; // [U, out], window order
                                                                                                        // Back to the original unit order.
        let mut reverse = vec![0u32; win.index.len()];
        for (j, &u) in win.index.iter().enumerate() {
            reverse[u] = j as u32;
        }
        let n_units = win.index.len();
        let ridx = Tensor::from_u32(reverse, &[1, n_units], &self.device)?;
        let embeds = merged.reshape(&[1, n_units, v.out_hidden_size])?.gather_rows(&ridx)?.reshape(&[n_units, v.out_hidden_size])?;
        crate::probe::record(|| "vision.merger".into(), &embeds);
        let unit_scores = match token_scores {
            Some(t) => {
                let per_token = t.to_vec_f32_async().await?;
                let mut scores = vec![0f32; n_units];
                for (j, &u) in win.index.iter().enumerate() {
                    scores[u] = per_token[j * unit..(j + 1) * unit].iter().sum::<f32>() / unit as f32;
                }
                Some(scores)
            }
            None => None,
        };
        Ok(VisionOut { embeds, unit_scores })
    }
}

#[cfg(test)]
mod tests {
    /// Windows of one size run as one attention (448² and 224² images); others per window.
    #[test]
    fn equal_windows_only_when_every_window_has_one_size() {
        use super::equal_windows;
        assert_eq!(equal_windows(&[0, 64, 128, 192]), Some(64));
        assert_eq!(equal_windows(&[0, 1024]), Some(1024));
        assert_eq!(equal_windows(&[0, 64, 100, 164]), None);
        assert_eq!(equal_windows(&[0]), None);
    }
}
