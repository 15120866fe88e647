//! A baseline JPEG decoder whose pixels equal libjpeg-turbo's with its default settings — the
//! decoder behind PIL, so behind transformers' image processors and the published accuracies:
//! the integer "islow" inverse DCT, "fancy" (triangular) chroma upsampling for 4:2:0 and
//! 4:2:2, and libjpeg's fixed-point YCbCr → RGB tables, all in libjpeg's integer arithmetic.
//! Rust, so the page (wasm) and the CLI decode alike.
//!
//! Covered: baseline, extended sequential and progressive Huffman JPEGs, 8-bit, greyscale or
//! YCbCr with 4:4:4, 4:2:2 or 4:2:0 sampling, interleaved or not, restart intervals. Anything
//! else (arithmetic coding, lossless, CMYK, Adobe RGB, other sampling) returns `Ok(None)` and
//! the caller decodes it with the `image` crate instead; so do corrupt files (`Err`), whose
//! handling is left to the general decoder.

mod color;
mod entropy;
mod idct;

use color::to_rgb;
use entropy::{decode_scan, Huffman, Scan};
use idct::idct_islow;
use image::RgbImage;

/// Zig-zag position → natural (row-major) index of an 8×8 block.
const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29,
    22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

type R<T> = std::result::Result<T, String>;

struct Component {
    id: u8,
    h: usize,
    v: usize,
    tq: usize,
    /// Samples of the component, `stride` = blocks across × 8, rows = blocks down × 8.
    plane: Vec<u8>,
    stride: usize,
    /// The component's real size (libjpeg's downsampled_width/height).
    width: usize,
    height: usize,
    dc: usize,
    ac: usize,
    pred: i32,
    /// Progressive JPEGs: the coefficients of every block (as libjpeg's 16-bit `JCOEF`),
    /// blocks row-major over the plane, inverse-transformed once all scans are in.
    coefs: Vec<i16>,
}

/// Decodes `data` if it is a JPEG this decoder covers (`Ok(None)` otherwise, or for any other
/// format). Size limits are the caller's: it checks the header first.
pub fn decode(data: &[u8]) -> R<Option<RgbImage>> {
    if data.len() < 4 || data[0] != 0xFF || data[1] != 0xD8 {
        return Ok(None);
    }
    let mut qt = [[0u16; 64]; 4];
    let mut dc_tables: [Option<Huffman>; 4] = Default::default();
    let mut ac_tables: [Option<Huffman>; 4] = Default::default();
    let mut comps: Vec<Component> = Vec::new();
    let (mut width, mut height) = (0usize, 0usize);
    let mut restart = 0usize;
    let mut adobe_transform: Option<u8> = None;
    let mut progressive = false;
    let mut pos = 2;
    loop {
        // Next marker (fill bytes skipped).
        while pos < data.len() && data[pos] != 0xFF {
            pos += 1;
        }
        while pos < data.len() && data[pos] == 0xFF {
            pos += 1;
        }
        let Some(&marker) = data.get(pos) else { return Err("no end of image".into()) };
        pos += 1;
        if marker == 0xD9 {
            break;
        }
        if (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
            continue;
        }
        let len = match data.get(pos..pos + 2) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]) as usize,
            None => return Err("truncated marker".into()),
        };
        let seg = data.get(pos + 2..pos + len).ok_or("truncated segment")?;
        if len < 2 {
            return Err("bad segment length".into());
        }
        pos += len;
        match marker {
            0xC0..=0xC2 => {
                progressive = marker == 0xC2;
                if seg.len() < 6 || seg[0] != 8 {
                    return Ok(None); // 12-bit samples
                }
                height = u16::from_be_bytes([seg[1], seg[2]]) as usize;
                width = u16::from_be_bytes([seg[3], seg[4]]) as usize;
                let n = seg[5] as usize;
                if width == 0 || height == 0 || !(n == 1 || n == 3) || seg.len() < 6 + 3 * n || !comps.is_empty() {
                    return Ok(None);
                }
                if (width * height) as u64 > super::MAX_PIXELS {
                    return Err(format!("{width}x{height} is over the pixel limit"));
                }
                for c in 0..n {
                    let s = &seg[6 + 3 * c..];
                    let (h, v) = if n == 1 { (1, 1) } else { ((s[1] >> 4) as usize, (s[1] & 15) as usize) };
                    if !(1..=4).contains(&h) || !(1..=4).contains(&v) || s[2] > 3 {
                        return Err("bad component".into());
                    }
                    comps.push(Component {
                        id: s[0],
                        h,
                        v,
                        tq: s[2] as usize,
                        plane: Vec::new(),
                        stride: 0,
                        width: 0,
                        height: 0,
                        dc: 0,
                        ac: 0,
                        pred: 0,
                        coefs: Vec::new(),
                    });
                }
                if !supported_sampling(&comps) {
                    return Ok(None);
                }
                let (hmax, vmax) = (comps.iter().map(|c| c.h).max().unwrap_or(1), comps.iter().map(|c| c.v).max().unwrap_or(1));
                let (mcux, mcuy) = (width.div_ceil(8 * hmax), height.div_ceil(8 * vmax));
                for c in &mut comps {
                    c.width = (width * c.h).div_ceil(hmax);
                    c.height = (height * c.v).div_ceil(vmax);
                    c.stride = mcux * c.h * 8;
                    c.plane = vec![0; c.stride * mcuy * c.v * 8];
                    if progressive {
                        c.coefs = vec![0; c.plane.len()];
                    }
                }
            }
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => return Ok(None),
            0xC4 => {
                let mut s = seg;
                while s.len() >= 17 {
                    let (class, id) = (s[0] >> 4, (s[0] & 15) as usize);
                    let counts: [u8; 16] = s[1..17].try_into().map_err(|_| "bad DHT")?;
                    let total: usize = counts.iter().map(|&c| c as usize).sum();
                    let syms = s.get(17..17 + total).ok_or("truncated DHT")?.to_vec();
                    if id > 3 || class > 1 || total > 256 {
                        return Err("bad DHT".into());
                    }
                    let t = Some(Huffman::new(&counts, syms)?);
                    if class == 0 {
                        dc_tables[id] = t;
                    } else {
                        ac_tables[id] = t;
                    }
                    s = &s[17 + total..];
                }
            }
            0xDB => {
                let mut s = seg;
                while !s.is_empty() {
                    let (p, id) = ((s[0] >> 4) as usize, (s[0] & 15) as usize);
                    let n = if p == 0 { 64 } else { 128 };
                    let vals = s.get(1..1 + n).ok_or("truncated DQT")?;
                    if id > 3 {
                        return Err("bad DQT".into());
                    }
                    for k in 0..64 {
                        qt[id][ZIGZAG[k]] = if p == 0 { vals[k] as u16 } else { u16::from_be_bytes([vals[2 * k], vals[2 * k + 1]]) };
                    }
                    s = &s[1 + n..];
                }
            }
            0xDD => restart = seg.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize).unwrap_or(0),
            0xEE if seg.len() >= 12 && &seg[..5] == b"Adobe" => adobe_transform = Some(seg[11]),
            0xDA => {
                if comps.is_empty() {
                    return Err("scan before frame".into());
                }
                let n = *seg.first().ok_or("bad SOS")? as usize;
                let spec = seg.get(1 + 2 * n..4 + 2 * n).ok_or("bad SOS")?;
                let scan = Scan { progressive, ss: spec[0] as usize, se: spec[1] as usize, ah: (spec[2] >> 4) as u32, al: (spec[2] & 15) as u32 };
                if progressive && (scan.se > 63 || scan.ss > scan.se || (scan.ss == 0) != (scan.se == 0) || (scan.ss > 0 && n != 1) || scan.al > 13) {
                    return Err("bad progressive scan".into());
                }
                let mut in_scan = Vec::with_capacity(n);
                for i in 0..n {
                    let s = seg.get(1 + 2 * i..3 + 2 * i).ok_or("bad SOS")?;
                    let ci = comps.iter().position(|c| c.id == s[0]).ok_or("scan names an unknown component")?;
                    comps[ci].dc = (s[1] >> 4) as usize;
                    comps[ci].ac = (s[1] & 15) as usize;
                    if comps[ci].dc > 3 || comps[ci].ac > 3 {
                        return Err("bad SOS table".into());
                    }
                    in_scan.push(ci);
                }
                if comps.len() == 3 && (adobe_transform == Some(0) || comps.iter().map(|c| c.id).eq(*b"RGB")) {
                    return Ok(None); // stored as RGB, not YCbCr
                }
                let used = decode_scan(&data[pos..], &mut comps, &in_scan, scan, &qt, &dc_tables, &ac_tables, restart, width, height)?;
                pos += used;
            }
            _ => {}
        }
    }
    if comps.is_empty() {
        return Err("no frame".into());
    }
    if progressive {
        for c in &mut comps {
            let (bw, bh) = (c.stride / 8, c.plane.len() / (8 * c.stride.max(1)));
            let q = qt[c.tq];
            for by in 0..bh {
                for bx in 0..bw {
                    let at = (by * bw + bx) * 64;
                    let stride = c.stride;
                    idct_islow(&c.coefs[at..at + 64], &q, &mut c.plane[by * 8 * stride + bx * 8..], stride);
                }
            }
        }
    }
    Ok(Some(to_rgb(&comps, width, height)))
}

/// 4:4:4 / greyscale, or luma at 2×2 or 2×1 with both chroma components at 1×1.
fn supported_sampling(c: &[Component]) -> bool {
    match c {
        [_] => true,
        [y, cb, cr] => (cb.h, cb.v, cr.h, cr.v) == (1, 1, 1, 1) && matches!((y.h, y.v), (1, 1) | (2, 2) | (2, 1)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::idct::range_limit;
    use super::*;

    #[test]
    fn flat_block_inverse_transforms_to_its_mean() {
        let mut coef = [0i16; 64];
        coef[0] = 8; // DC 8 × q 8 = 64 → +8 over mid-grey after the 1/8 scaling
        let mut out = [0u8; 64];
        idct_islow(&coef, &[8; 64], &mut out, 8);
        assert!(out.iter().all(|&v| v == 136), "{out:?}");
        assert_eq!((range_limit(-200), range_limit(300), range_limit(0)), (0, 255, 128));
    }

    #[test]
    fn non_jpeg_and_arithmetic_coding_are_left_to_the_general_decoder() {
        assert!(decode(b"\x89PNG....").unwrap().is_none());
        // SOI, then an arithmetic-coded frame header (SOF9).
        let sof9 = [0xFF, 0xD8, 0xFF, 0xC9, 0, 11, 8, 0, 1, 0, 1, 1, 1, 0x11, 0, 0xFF, 0xD9];
        assert!(decode(&sof9).unwrap().is_none());
        assert!(decode(&[0xFF, 0xD8, 0xFF, 0xDB, 0, 67, 0]).is_err(), "truncated tables are an error");
    }
}
