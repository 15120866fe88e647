//! Image decoding with limits, and CLIP preprocessing that matches transformers' CLIP image
//! processor pixel for pixel: shortest side to 224 with the bicubic resampling of either of
//! its backends (torchvision's, the default, or PIL's: [`Resample`]), centre crop, rescale,
//! normalise.

pub mod jpeg;

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
        if let Ok(Some(img)) = jpeg::decode(bytes) {
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
    /// Whose resize (and normalisation arithmetic) to reproduce: transformers' default
    /// torchvision backend unless the config names a PIL processor.
    pub resample: Resample,
}

impl ClipPreprocess {
    pub fn new(image_size: u32) -> Self {
        ClipPreprocess { shortest_edge: image_size, crop: image_size, mean: OPENAI_CLIP_MEAN, std: OPENAI_CLIP_STD, resample: Resample::default() }
    }

    /// The resized and centre-cropped RGB image the model sees (also drawn by the overlay).
    pub fn crop_view(&self, img: &RgbImage) -> RgbImage {
        let (w, h) = img.dimensions();
        let (short, long) = if w <= h { (w, h) } else { (h, w) };
        let s = self.shortest_edge;
        let new_long = (s as f64 * long as f64 / short as f64) as u32;
        let (nw, nh) = if w <= h { (s, new_long) } else { (new_long, s) };
        let resized = self.resample.resize(img, nw, nh);
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
        let norm = Normalize::new(self.resample, self.mean, self.std);
        for (i, p) in v.pixels().enumerate() {
            for c in 0..3 {
                out[c * plane + i] = norm.apply(c, p[c]);
            }
        }
        out
    }
}

/// Rescale-and-normalise of a byte, in the arithmetic of each transformers backend: the PIL
/// one computes `(b / 255 − mean) / std`, the torchvision one fuses the rescale into the
/// statistics (`(b − 255·mean) / (255·std)`, the products rounded to f32 first).
#[derive(Clone, Copy, Debug)]
pub struct Normalize {
    fused: bool,
    mean: [f32; 3],
    std: [f32; 3],
}

impl Normalize {
    pub fn new(r: Resample, mean: [f32; 3], std: [f32; 3]) -> Normalize {
        match r {
            Resample::Pil => Normalize { fused: false, mean, std },
            Resample::Torchvision => Normalize { fused: true, mean: mean.map(|m| m * 255.0), std: std.map(|s| s * 255.0) },
        }
    }

    #[inline(always)]
    pub fn apply(&self, c: usize, b: u8) -> f32 {
        if self.fused {
            (b as f32 - self.mean[c]) / self.std[c]
        } else {
            (b as f32 / 255.0 - self.mean[c]) / self.std[c]
        }
    }
}

// ---- Bicubic resampling: PIL's and PyTorch's ----------------------------------------------

/// Which library's 8-bit bicubic resize to reproduce. transformers 5 has two image-processor
/// backends: the default (`CLIPImageProcessor`, `Qwen2VLImageProcessor`) resizes with
/// torchvision (PyTorch's antialiased uint8 kernel), the `…Pil` classes with Pillow. Both are
/// separable with 8-bit rounding after each pass and the same cubic (a = −0.5); they differ
/// in the fixed-point weights (PIL: 22 bits, PyTorch: int16 at the largest precision the
/// axis's biggest weight allows) and in the pass order, so about 0.3 % of the bytes differ
/// by one level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Resample {
    /// torchvision's `resize(antialias=True)` on uint8 (transformers' default backend).
    #[default]
    Torchvision,
    /// Pillow's `Image.resize(BICUBIC)` (transformers' `…ImageProcessorPil`).
    Pil,
}

impl Resample {
    /// The backend a `preprocessor_config.json` asks for: PIL when its `backend` is `"pil"`
    /// (what transformers' `from_pretrained(…, backend="pil")` selects; transformers itself
    /// saves both backends' configs alike, so a checkpoint made with the PIL processor says so
    /// with this key) or its `image_processor_type` names a `…Pil` class; otherwise
    /// torchvision, transformers 5's default wherever torchvision is installed.
    pub fn from_config(v: &serde_json::Value) -> Resample {
        let pil_type = v.get("image_processor_type").and_then(|t| t.as_str()).is_some_and(|t| t.ends_with("Pil"));
        let pil_backend = v.get("backend").and_then(|t| t.as_str()).is_some_and(|t| t.eq_ignore_ascii_case("pil"));
        if pil_type || pil_backend {
            Resample::Pil
        } else {
            Resample::Torchvision
        }
    }

    /// Resizes 8-bit RGB to `out_w × out_h`.
    ///
    /// ```
    /// use effarch::image::Resample;
    /// let img = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 128]));
    /// let small = Resample::Torchvision.resize(&img, 20, 15);
    /// assert_eq!(small.dimensions(), (20, 15));
    /// // The same size is no resize at all, in either backend.
    /// assert_eq!(Resample::Pil.resize(&img, 40, 30), img);
    /// ```
    pub fn resize(self, img: &RgbImage, out_w: u32, out_h: u32) -> RgbImage {
        let (in_w, in_h) = img.dimensions();
        let (hx, vy) = (Axis::new(self, in_w, out_w), Axis::new(self, in_h, out_h));
        let src = img.as_raw();
        // PIL runs the reducing (vertical) pass first when the width grows and the height
        // shrinks; PyTorch always runs the horizontal pass first.
        let out = if self == Resample::Pil && out_w > in_w && out_h < in_h {
            let v = resize_vertical(src, in_w, &vy);
            resize_horizontal(&v, in_w, out_h, &hx)
        } else {
            let h = resize_horizontal(src, in_w, in_h, &hx);
            resize_vertical(&h, out_w, &vy)
        };
        RgbImage::from_raw(out_w, out_h, out).unwrap_or_default()
    }
}

/// One axis of a resize: per output pixel the first input index and its fixed-point weights,
/// which sum to `1 << precision`; `None` when the size does not change (the pass is skipped).
struct Axis {
    taps: Option<Vec<(usize, Vec<i32>)>>,
    precision: u32,
}

impl Axis {
    fn new(r: Resample, in_size: u32, out_size: u32) -> Axis {
        if in_size == out_size {
            return Axis { taps: None, precision: 0 };
        }
        let real = real_weights(r, in_size, out_size);
        let precision = match r {
            Resample::Pil => PIL_PRECISION_BITS,
            // `_compute_index_ranges_int16_weights`: the most bits under which the largest
            // weight, doubled, still rounds below 2^15.
            Resample::Torchvision => {
                let w_max = real.iter().flat_map(|(_, w)| w.iter().copied()).fold(0f64, f64::max);
                (0..22u32).find(|&p| (0.5 + w_max * (1u64 << (p + 1)) as f64) as i64 >= 1 << 15).unwrap_or(22)
            }
        };
        let one = (1u64 << precision) as f64;
        let taps = real
            .into_iter()
            .map(|(first, w)| (first, w.iter().map(|&k| if k < 0.0 { (k * one - 0.5) as i32 } else { (k * one + 0.5) as i32 }).collect()))
            .collect();
        Axis { taps: Some(taps), precision }
    }

    /// The weighted sum of `n` samples `at(i)` starting at `first`, rounded and clamped to 8 bits.
    #[inline(always)]
    fn sample(&self, k: &[i32], at: impl Fn(usize) -> u8) -> u8 {
        let mut ss: i32 = 1 << (self.precision - 1);
        for (i, &wt) in k.iter().enumerate() {
            ss = ss.wrapping_add(at(i) as i32 * wt);
        }
        (ss >> self.precision).clamp(0, 255) as u8
    }
}

const PIL_PRECISION_BITS: u32 = 32 - 8 - 2;

/// The bicubic kernel (a = −0.5) in each library's own evaluation order, so the f64 weights
/// round as theirs do.
fn cubic(r: Resample, x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    match (r, x < 1.0, x < 2.0) {
        (_, true, _) => ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0,
        (Resample::Pil, false, true) => (((x - 5.0) * x + 8.0) * x - 4.0) * A,
        (Resample::Torchvision, false, true) => ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A,
        _ => 0.0,
    }
}

/// Per output pixel: the first input index and the normalised f64 weights (PIL's
/// `precompute_coeffs`; PyTorch's `_compute_indices_min_size_weights_aa`, the same support,
/// centring and normalisation; PyTorch caps the taps at `2·⌈support⌉ + 1`).
fn real_weights(r: Resample, in_size: u32, out_size: u32) -> Vec<(usize, Vec<f64>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let max_taps = support.ceil() as usize * 2 + 1;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let mut xmax = ((center + support + 0.5) as i64).min(in_size as i64).max(xmin as i64) as usize;
            if r == Resample::Torchvision {
                xmax = xmax.min(xmin + max_taps);
            }
            let mut w: Vec<f64> = (xmin..xmax).map(|x| cubic(r, (x as f64 - center + 0.5) / filterscale)).collect();
            let sum: f64 = w.iter().sum();
            if sum != 0.0 {
                w.iter_mut().for_each(|k| *k /= sum);
            }
            (xmin, w)
        })
        .collect()
}

/// PIL's `Image.resize(..., BICUBIC)` on 8-bit RGB (see [`Resample::Pil`]).
pub fn resize_bicubic(img: &RgbImage, out_w: u32, out_h: u32) -> RgbImage {
    Resample::Pil.resize(img, out_w, out_h)
}

/// One horizontal pass over `[h, w, 3]` bytes.
fn resize_horizontal(src: &[u8], w: u32, h: u32, ax: &Axis) -> Vec<u8> {
    let Some(taps) = &ax.taps else { return src.to_vec() };
    let out_w = taps.len();
    let mut out = vec![0u8; out_w * h as usize * 3];
    for y in 0..h as usize {
        let row = &src[y * w as usize * 3..];
        for (x, (xmin, k)) in taps.iter().enumerate() {
            for c in 0..3 {
                out[(y * out_w + x) * 3 + c] = ax.sample(k, |i| row[(xmin + i) * 3 + c]);
            }
        }
    }
    out
}

/// One vertical pass over `[h, w, 3]` bytes.
fn resize_vertical(src: &[u8], w: u32, ax: &Axis) -> Vec<u8> {
    let Some(taps) = &ax.taps else { return src.to_vec() };
    let stride = w as usize * 3;
    let mut out = vec![0u8; stride * taps.len()];
    for (y, (ymin, k)) in taps.iter().enumerate() {
        for i in 0..stride {
            out[y * stride + i] = ax.sample(k, |j| src[(ymin + j) * stride + i]);
        }
    }
    out
}
