//! Qwen2-VL's image processor, as transformers' (PIL backend): `smart_resize` to multiples of
//! 28 within [min_pixels, max_pixels] keeping the aspect ratio, bicubic resize, rescale and
//! normalise (CLIP mean/std), then 14-px patches flattened as (channel, time, row, column)
//! with the image repeated over the temporal patch size (2), in 2×2 merge-block order.

use super::config::{ProcessorConfig, VisionConfig};
use crate::error::{Error, Result};
use image::RgbImage;

/// Patch rows of one image and its grid (in patches).
#[derive(Clone, Debug)]
pub struct ImagePatches {
    /// `[grid_h · grid_w, C · T · P · P]`, row-major.
    pub pixels: Vec<f32>,
    pub grid_h: usize,
    pub grid_w: usize,
}

impl ImagePatches {
    /// Visual tokens the LLM sees: one per 2×2 merge unit.
    pub fn tokens(&self, merge: usize) -> usize {
        (self.grid_h / merge) * (self.grid_w / merge)
    }
}

/// transformers' `smart_resize`: the output (height, width).
pub fn smart_resize(height: usize, width: usize, factor: usize, min_pixels: usize, max_pixels: usize) -> Result<(usize, usize)> {
    if height < factor || width < factor {
        return Err(Error::Image(format!("{width}×{height} is too small: both sides must be at least {factor} px")));
    }
    let (h, w) = (height as f64, width as f64);
    if h.max(w) / h.min(w) > 200.0 {
        return Err(Error::Image(format!("{width}×{height}: the aspect ratio must be below 200")));
    }
    let f = factor as f64;
    // Python's round(): half to even.
    let round = |x: f64| x.round_ties_even();
    let (mut hb, mut wb) = (round(h / f) * f, round(w / f) * f);
    if hb * wb > max_pixels as f64 {
        let beta = (h * w / max_pixels as f64).sqrt();
        hb = f.max((h / beta / f).floor() * f);
        wb = f.max((w / beta / f).floor() * f);
    } else if hb * wb < min_pixels as f64 {
        let beta = (min_pixels as f64 / (h * w)).sqrt();
        hb = (h * beta / f).ceil() * f;
        wb = (w * beta / f).ceil() * f;
    }
    Ok((hb as usize, wb as usize))
}

/// Resizes, normalises and patchifies `img` for the vision tower.
pub fn preprocess(img: &RgbImage, v: &VisionConfig, p: &ProcessorConfig) -> Result<ImagePatches> {
    let (ps, m, t) = (v.patch_size, v.spatial_merge_size, v.temporal_patch_size);
    let (rh, rw) = smart_resize(img.height() as usize, img.width() as usize, ps * m, p.min_pixels, p.max_pixels)?;
    let resized = p.resample.resize(img, rw as u32, rh as u32);
    let norm = crate::image::Normalize::new(p.resample, p.mean, p.std);
    let raw = resized.as_raw();
    let (gh, gw) = (rh / ps, rw / ps);
    let c = 3;
    if v.in_channels != c {
        return Err(Error::arg(format!("the vision tower takes {} channels; images are RGB", v.in_channels)));
    }
    let row = c * t * ps * ps;
    let mut pixels = Vec::with_capacity(gh * gw * row);
    // Merge-block order: block rows, block columns, then the 2×2 patches inside each block.
    for bh in 0..gh / m {
        for bw in 0..gw / m {
            for mh in 0..m {
                for mw in 0..m {
                    let (py, px) = ((bh * m + mh) * ps, (bw * m + mw) * ps);
                    for ch in 0..c {
                        for _ in 0..t {
                            for y in 0..ps {
                                for x in 0..ps {
                                    pixels.push(norm.apply(ch, raw[((py + y) * rw + px + x) * 3 + ch]));
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(ImagePatches { pixels, grid_h: gh, grid_w: gw })
}
