//! Image decoding with limits, and CLIP preprocessing that matches transformers'
//! PIL-based CLIP image processor pixel for pixel: shortest side to 224 with PIL's bicubic
//! resampling (8-bit fixed point, horizontal pass first), centre crop, rescale, normalise.

use crate::error::{Error, Result};
use image::{ImageReader, RgbImage};
use std::io::Cursor;

/// Largest accepted side, checked from the header before any pixel buffer is allocated.
pub const MAX_SIDE: u32 = 16_384;
/// Largest accepted pixel count (≈ 64 MP).
pub const MAX_PIXELS: u64 = 64 << 20;
/// Encoded files larger than this are refused outright.
pub const MAX_FILE_BYTES: usize = 64 << 20;

pub const OPENAI_CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const OPENAI_CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// Decodes PNG, JPEG, GIF, WebP or BMP bytes to RGB as transformers does: grey expanded,
/// transparency composited onto white.
pub fn decode(bytes: &[u8]) -> Result<RgbImage> {
    if bytes.is_empty() {
        return Err(Error::Image("no image data (empty file)".into()));
    }
    if bytes.len() > MAX_FILE_BYTES {
        return Err(Error::Image(format!("file is {} bytes; the limit is {MAX_FILE_BYTES}", bytes.len())));
    }
    let reader = || ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| Error::Image(format!("cannot read image: {e}")));
    let r = reader()?;
    let Some(format) = r.format() else {
        return Err(Error::Image("unsupported or unrecognised image format (expected PNG, JPEG, GIF, WebP or BMP)".into()));
    };
    if !format.reading_enabled() {
        return Err(Error::Image(format!("unsupported image format {format:?} (expected PNG, JPEG, GIF, WebP or BMP)")));
    }
    let (w, h) = r.into_dimensions().map_err(|e| Error::Image(format!("corrupt {format:?} header: {e}")))?;
    if w == 0 || h == 0 {
        return Err(Error::Image(format!("image has an empty side ({w}x{h})")));
    }
    if w > MAX_SIDE || h > MAX_SIDE || (w as u64) * (h as u64) > MAX_PIXELS {
        return Err(Error::Image(format!("image is {w}x{h}; the limit is {MAX_SIDE} pixels a side and {MAX_PIXELS} pixels in all")));
    }
    if format == image::ImageFormat::Jpeg {
        // libjpeg-turbo's pixels (PIL's, so transformers'), where the file is one our decoder
        // covers; the general decoder otherwise, and for files it finds corrupt.
        if let Ok(Some(img)) = crate::jpeg::decode(bytes) {
            return Ok(img);
        }
    }
    let mut r = reader()?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_PIXELS * 8);
    r.limits(limits);
    let img = r.decode().map_err(|e| Error::Image(format!("cannot decode {format:?} image ({w}x{h}): {e}")))?;
    if img.color().has_alpha() {
        return Ok(composite_on_white(&img.to_rgba8()));
    }
    Ok(img.to_rgb8())
}

/// PIL's `alpha_composite(white, image).convert("RGB")`, which transformers applies to
/// images with transparency; integer arithmetic as in PIL's AlphaComposite.c.
fn composite_on_white(img: &image::RgbaImage) -> RgbImage {
    const PREC: u32 = 7;
    let div255 = |a: u32| ((a >> 8) + a) >> 8;
    RgbImage::from_fn(img.width(), img.height(), |x, y| {
        let p = img.get_pixel(x, y).0;
        let a = p[3] as u32;
        if a == 0 {
            return image::Rgb([255, 255, 255]);
        }
        let outa255 = a * 255 + 255 * (255 - a);
        let coef1 = a * 255 * 255 * (1 << PREC) / outa255;
        let coef2 = 255 * (1 << PREC) - coef1;
        let ch = |c: u8| (div255(c as u32 * coef1 + 255 * coef2 + (0x80 << PREC)) >> PREC) as u8;
        image::Rgb([ch(p[0]), ch(p[1]), ch(p[2])])
    })
}

/// CLIP's preprocessing settings (`preprocessor_config.json` defaults).
#[derive(Clone, Debug)]
pub struct ClipPreprocess {
    pub shortest_edge: u32,
    pub crop: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl ClipPreprocess {
    pub fn new(image_size: u32) -> Self {
        ClipPreprocess { shortest_edge: image_size, crop: image_size, mean: OPENAI_CLIP_MEAN, std: OPENAI_CLIP_STD }
    }

    /// The resized and centre-cropped RGB image the model sees (also drawn by the overlay).
    pub fn crop_view(&self, img: &RgbImage) -> RgbImage {
        let (w, h) = img.dimensions();
        let (short, long) = if w <= h { (w, h) } else { (h, w) };
        let s = self.shortest_edge;
        let new_long = (s as f64 * long as f64 / short as f64) as u32;
        let (nw, nh) = if w <= h { (s, new_long) } else { (new_long, s) };
        let resized = resize_bicubic(img, nw, nh);
        let (c, rw, rh) = (self.crop, resized.width(), resized.height());
        let top = rh.saturating_sub(c) / 2;
        let left = rw.saturating_sub(c) / 2;
        image::imageops::crop_imm(&resized, left, top, c.min(rw), c.min(rh)).to_image()
    }

    /// `[3, crop, crop]` normalised pixel values, channel-major.
    pub fn pixel_values(&self, img: &RgbImage) -> Vec<f32> {
        let v = self.crop_view(img);
        let (w, h) = v.dimensions();
        let plane = (w * h) as usize;
        let mut out = vec![0f32; 3 * plane];
        for (i, p) in v.pixels().enumerate() {
            for c in 0..3 {
                out[c * plane + i] = (p[c] as f32 / 255.0 - self.mean[c]) / self.std[c];
            }
        }
        out
    }
}

// ---- PIL's resampling ------------------------------------------------------------------

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per output pixel: first input index, and fixed-point weights (PIL's `precompute_coeffs`
/// followed by `normalize_coeffs_8bpc`).
fn coeffs(in_size: u32, out_size: u32) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let w: Vec<f64> = (xmin..xmax.max(xmin)).map(|x| bicubic((x as f64 - center + 0.5) / filterscale)).collect();
            let sum: f64 = w.iter().sum();
            let fixed = w
                .iter()
                .map(|&k| {
                    let k = if sum != 0.0 { k / sum } else { k };
                    let v = k * (1u32 << PRECISION_BITS) as f64;
                    (if k < 0.0 { v - 0.5 } else { v + 0.5 }) as i32
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(ss: i32) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// PIL `Image.resize(..., BICUBIC)` on 8-bit RGB: separable, rounding to 8 bits after each
/// pass, a pass skipped when its size is unchanged. Horizontal first, except when the width
/// grows and the height shrinks: then Pillow runs the reducing (vertical) pass first, and so
/// do we (the order changes results by up to 2 levels).
pub fn resize_bicubic(img: &RgbImage, out_w: u32, out_h: u32) -> RgbImage {
    let (in_w, in_h) = img.dimensions();
    let src = img.as_raw().to_vec();
    let out = if out_w > in_w && out_h < in_h {
        let v = resize_vertical(&src, in_w, in_h, out_h);
        resize_horizontal(&v, in_w, out_h, out_w)
    } else {
        let h = resize_horizontal(&src, in_w, in_h, out_w);
        resize_vertical(&h, out_w, in_h, out_h)
    };
    RgbImage::from_raw(out_w, out_h, out).unwrap_or_default()
}

/// One horizontal pass over `[h, w, 3]` bytes: width `w` to `out_w`.
fn resize_horizontal(src: &[u8], w: u32, h: u32, out_w: u32) -> Vec<u8> {
    if out_w == w {
        return src.to_vec();
    }
    let cx = coeffs(w, out_w);
    let mut out = vec![0u8; (out_w * h * 3) as usize];
    for y in 0..h as usize {
        let row = &src[y * w as usize * 3..];
        for (x, (xmin, k)) in cx.iter().enumerate() {
            for c in 0..3 {
                let mut ss: i32 = 1 << (PRECISION_BITS - 1);
                for (i, &wt) in k.iter().enumerate() {
                    ss = ss.wrapping_add(row[(xmin + i) * 3 + c] as i32 * wt);
                }
                out[(y * out_w as usize + x) * 3 + c] = clip8(ss);
            }
        }
    }
    out
}

/// One vertical pass over `[h, w, 3]` bytes: height `h` to `out_h`.
fn resize_vertical(src: &[u8], w: u32, h: u32, out_h: u32) -> Vec<u8> {
    if out_h == h {
        return src.to_vec();
    }
    let cy = coeffs(h, out_h);
    let stride = w as usize * 3;
    let mut out = vec![0u8; stride * out_h as usize];
    for (y, (ymin, k)) in cy.iter().enumerate() {
        for i in 0..stride {
            let mut ss: i32 = 1 << (PRECISION_BITS - 1);
            for (j, &wt) in k.iter().enumerate() {
                ss = ss.wrapping_add(src[(ymin + j) * stride + i] as i32 * wt);
            }
            out[y * stride + i] = clip8(ss);
        }
    }
    out
}
