//! libjpeg-turbo's chroma upsampling ("fancy" triangular h2v2 / h2v1) and its fixed-point
//! YCbCr → RGB tables.

use super::Component;
use image::{Rgb, RgbImage};

/// (triangular) h2v2 / h2v1 when the plane is wider than 2 samples, else replication.
pub(super) fn upsample(c: &Component, hf: usize, vf: usize, width: usize, height: usize) -> Vec<u8> {
    let (cw, ch) = (c.width, c.height);
    let at = |x: usize, y: usize| c.plane[y.min(ch - 1) * c.stride + x] as i32;
    let mut out = vec![0u8; width * height];
    if hf == 1 && vf == 1 {
        for y in 0..height {
            out[y * width..][..width].copy_from_slice(&c.plane[y * c.stride..][..width]);
        }
        return out;
    }
    let fancy = cw > 2;
    let mut row = vec![0u8; cw * 2 + 2];
    for y in 0..height {
        let (iy, v) = (y / vf, y % vf);
        if !fancy {
            for x in 0..width {
                out[y * width + x] = at(x / hf, iy) as u8;
            }
            continue;
        }
        if vf == 2 {
            // Nearest row and the next nearest (above for the upper output row, below for the
            // lower; the edges repeat).
            let other = if v == 0 { iy.saturating_sub(1) } else { (iy + 1).min(ch - 1) };
            let colsum = |x: usize| at(x, iy) * 3 + at(x, other);
            let (mut this, mut next) = (colsum(0), colsum(1));
            row[0] = ((this * 4 + 8) >> 4) as u8;
            row[1] = ((this * 3 + next + 7) >> 4) as u8;
            let mut last = this;
            this = next;
            for x in 1..cw - 1 {
                next = colsum(x + 1);
                row[2 * x] = ((this * 3 + last + 8) >> 4) as u8;
                row[2 * x + 1] = ((this * 3 + next + 7) >> 4) as u8;
                last = this;
                this = next;
            }
            row[2 * cw - 2] = ((this * 3 + last + 8) >> 4) as u8;
            row[2 * cw - 1] = ((this * 4 + 7) >> 4) as u8;
        } else {
            let s = |x: usize| at(x, iy);
            row[0] = s(0) as u8;
            row[1] = ((s(0) * 3 + s(1) + 2) >> 2) as u8;
            for x in 1..cw - 1 {
                let v3 = s(x) * 3;
                row[2 * x] = ((v3 + s(x - 1) + 1) >> 2) as u8;
                row[2 * x + 1] = ((v3 + s(x + 1) + 2) >> 2) as u8;
            }
            row[2 * cw - 2] = ((s(cw - 1) * 3 + s(cw - 2) + 1) >> 2) as u8;
            row[2 * cw - 1] = s(cw - 1) as u8;
        }
        out[y * width..][..width].copy_from_slice(&row[..width]);
    }
    out
}

/// libjpeg's YCbCr → RGB (jdcolor.c): 16-bit fixed-point tables, rounded as there.
pub(super) fn to_rgb(comps: &[Component], width: usize, height: usize) -> RgbImage {
    if comps.len() == 1 {
        let c = &comps[0];
        return RgbImage::from_fn(width as u32, height as u32, |x, y| {
            let v = c.plane[y as usize * c.stride + x as usize];
            Rgb([v, v, v])
        });
    }
    const SCALEBITS: i64 = 16;
    const ONE_HALF: i64 = 1 << (SCALEBITS - 1);
    let fix = |x: f64| (x * (1i64 << SCALEBITS) as f64 + 0.5) as i64;
    // libjpeg's tables, indexed by the chroma sample (centred at 128).
    let table = |f: &dyn Fn(i64) -> i64| -> [i64; 256] { std::array::from_fn(|i| f(i as i64 - 128)) };
    let cr_r = table(&|x| (fix(1.40200) * x + ONE_HALF) >> SCALEBITS);
    let cb_b = table(&|x| (fix(1.77200) * x + ONE_HALF) >> SCALEBITS);
    let cr_g = table(&|x| -fix(0.71414) * x);
    let cb_g = table(&|x| -fix(0.34414) * x + ONE_HALF);
    let (hmax, vmax) = (comps[0].h, comps[0].v);
    let cb = upsample(&comps[1], hmax, vmax, width, height);
    let cr = upsample(&comps[2], hmax, vmax, width, height);
    let y = &comps[0];
    let clamp = |v: i64| v.clamp(0, 255) as u8;
    RgbImage::from_fn(width as u32, height as u32, |x, yy| {
        let (x, yy) = (x as usize, yy as usize);
        let l = y.plane[yy * y.stride + x] as i64;
        let (b, r) = (cb[yy * width + x] as usize, cr[yy * width + x] as usize);
        Rgb([clamp(l + cr_r[r]), clamp(l + ((cb_g[b] + cr_g[r]) >> SCALEBITS)), clamp(l + cb_b[b])])
    })
}
