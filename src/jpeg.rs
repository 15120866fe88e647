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

use image::{Rgb, RgbImage};

/// Zig-zag position → natural (row-major) index of an 8×8 block.
const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29,
    22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

type R<T> = std::result::Result<T, String>;

/// A Huffman table as canonical codes: for each length, the largest code and the index of its
/// first symbol (libjpeg's maxcode / valoffset).
#[derive(Clone, Default)]
struct Huffman {
    maxcode: [i32; 18],
    valoff: [i32; 17],
    symbols: Vec<u8>,
}

impl Huffman {
    fn new(counts: &[u8; 16], symbols: Vec<u8>) -> R<Self> {
        let mut h = Huffman { maxcode: [-1; 18], valoff: [0; 17], symbols };
        let (mut code, mut k) = (0i32, 0i32);
        for len in 1..=16 {
            let n = counts[len - 1] as i32;
            h.valoff[len] = k - code;
            code += n;
            k += n;
            h.maxcode[len] = if n > 0 { code - 1 } else { -1 };
            if code > (1 << len) {
                return Err("bad Huffman table (code lengths overflow)".into());
            }
            code <<= 1;
        }
        h.maxcode[17] = i32::MAX; // ends the search on corrupt data
        Ok(h)
    }
}

/// Entropy-coded bits, with 0xFF00 unstuffed; a marker ends the data (zeros after it, as
/// libjpeg supplies).
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u64,
    n: u32,
    marker: bool,
}

impl<'a> Bits<'a> {
    fn fill(&mut self) {
        while self.n <= 56 {
            let mut byte = 0u8;
            if !self.marker && self.pos < self.data.len() {
                byte = self.data[self.pos];
                if byte == 0xFF {
                    match self.data.get(self.pos + 1) {
                        Some(0) => self.pos += 2,
                        _ => {
                            self.marker = true;
                            byte = 0;
                        }
                    }
                } else {
                    self.pos += 1;
                }
            }
            self.acc |= (byte as u64) << (56 - self.n);
            self.n += 8;
        }
    }
    fn bits(&mut self, k: u32) -> i32 {
        if k == 0 {
            return 0;
        }
        if self.n < k {
            self.fill();
        }
        let v = (self.acc >> (64 - k)) as i32;
        self.acc <<= k;
        self.n -= k;
        v
    }
    fn decode(&mut self, h: &Huffman) -> R<u8> {
        let mut code = self.bits(1);
        let mut len = 1;
        while code > h.maxcode[len] {
            code = (code << 1) | self.bits(1);
            len += 1;
        }
        if len > 16 {
            return Err("corrupt Huffman code".into());
        }
        h.symbols.get((code + h.valoff[len]) as usize).copied().ok_or_else(|| "corrupt Huffman code".to_string())
    }
    /// A coefficient of `s` bits, sign-extended as JPEG codes it.
    fn receive_extend(&mut self, s: u8) -> i32 {
        let s = s as u32;
        if s == 0 || s > 16 {
            return 0;
        }
        let v = self.bits(s);
        if v < (1 << (s - 1)) {
            v - (1 << s) + 1
        } else {
            v
        }
    }
    /// At a restart marker: drop the partial byte, skip the marker.
    fn restart(&mut self) {
        self.acc = 0;
        self.n = 0;
        self.marker = false;
        while self.pos + 1 < self.data.len() && self.data[self.pos] == 0xFF && self.data[self.pos + 1] == 0xFF {
            self.pos += 1;
        }
        if self.pos + 1 < self.data.len() && self.data[self.pos] == 0xFF && (0xD0..=0xD7).contains(&self.data[self.pos + 1]) {
            self.pos += 2;
        }
    }
}

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
                if (width * height) as u64 > crate::image::MAX_PIXELS {
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

/// What a scan codes: baseline (all of each block), or a progressive band `ss..=se` of the
/// coefficients, first pass (`ah = 0`) or refinement, at bit position `al`.
#[derive(Clone, Copy)]
struct Scan {
    progressive: bool,
    ss: usize,
    se: usize,
    ah: u32,
    al: u32,
}

/// One scan's entropy-coded data (from just after SOS): baseline blocks decoded and
/// inverse-transformed into their planes, progressive ones into their coefficients. Returns the
/// bytes consumed (up to the marker that ends the data).
#[allow(clippy::too_many_arguments)]
fn decode_scan(
    data: &[u8],
    comps: &mut [Component],
    in_scan: &[usize],
    scan: Scan,
    qt: &[[u16; 64]; 4],
    dc: &[Option<Huffman>; 4],
    ac: &[Option<Huffman>; 4],
    restart: usize,
    width: usize,
    height: usize,
) -> R<usize> {
    let mut bits = Bits { data, pos: 0, acc: 0, n: 0, marker: false };
    // Which tables a block needs: DC for baseline and progressive DC first passes, AC for
    // baseline and progressive AC bands.
    let (need_dc, need_ac) = if scan.progressive { (scan.ss == 0 && scan.ah == 0, scan.ss > 0) } else { (true, true) };
    for &ci in in_scan {
        comps[ci].pred = 0;
        if (need_dc && dc[comps[ci].dc].is_none()) || (need_ac && ac[comps[ci].ac].is_none()) {
            return Err("scan uses a missing Huffman table".into());
        }
    }
    let (hmax, vmax) = (comps.iter().map(|c| c.h).max().unwrap_or(1), comps.iter().map(|c| c.v).max().unwrap_or(1));
    // Interleaved: MCUs of h×v blocks per component; one component: one block per MCU, over
    // the component's own blocks.
    let (mcus_x, mcus_y) = if in_scan.len() == 1 {
        let c = &comps[in_scan[0]];
        (c.width.div_ceil(8), c.height.div_ceil(8))
    } else {
        (width.div_ceil(8 * hmax), height.div_ceil(8 * vmax))
    };
    let mut coef = [0i16; 64];
    let mut eobrun = 0u32;
    let mut mcu = 0usize;
    for my in 0..mcus_y {
        for mx in 0..mcus_x {
            if restart > 0 && mcu > 0 && mcu.is_multiple_of(restart) {
                bits.restart();
                eobrun = 0;
                for &ci in in_scan {
                    comps[ci].pred = 0;
                }
            }
            mcu += 1;
            for &ci in in_scan {
                let (bh, bv) = if in_scan.len() == 1 { (1, 1) } else { (comps[ci].h, comps[ci].v) };
                for by in 0..bv {
                    for bx in 0..bh {
                        let c = &mut comps[ci];
                        let (x, y) = ((mx * bh + bx) * 8, (my * bv + by) * 8);
                        let stride = c.stride;
                        if x + 8 > stride || (y + 8) * stride > c.plane.len() {
                            return Err("block outside its plane".into());
                        }
                        if scan.progressive {
                            let at = ((y / 8) * (stride / 8) + x / 8) * 64;
                            let block = &mut c.coefs[at..at + 64];
                            if scan.ss == 0 {
                                if scan.ah == 0 {
                                    dc_first(&mut bits, dc[c.dc].as_ref().ok_or("no DC table")?, &mut c.pred, block, scan.al)?;
                                } else if bits.bits(1) != 0 {
                                    block[0] |= (1i32 << scan.al) as i16;
                                }
                            } else if scan.ah == 0 {
                                ac_first(&mut bits, ac[c.ac].as_ref().ok_or("no AC table")?, block, scan, &mut eobrun)?;
                            } else {
                                ac_refine(&mut bits, ac[c.ac].as_ref().ok_or("no AC table")?, block, scan, &mut eobrun)?;
                            }
                            continue;
                        }
                        // Baseline: the whole block in one pass, then straight to its pixels (a
                        // baseline block has no EOB runs, so the run counter is the block's own).
                        coef.fill(0);
                        dc_first(&mut bits, dc[c.dc].as_ref().ok_or("no DC table")?, &mut c.pred, &mut coef, 0)?;
                        let all = Scan { progressive: false, ss: 1, se: 63, ah: 0, al: 0 };
                        ac_first(&mut bits, ac[c.ac].as_ref().ok_or("no AC table")?, &mut coef, all, &mut 0)?;
                        idct_islow(&coef, &qt[c.tq], &mut c.plane[y * stride + x..], stride);
                    }
                }
            }
        }
    }
    // Up to the next marker.
    let mut p = bits.pos;
    while p + 1 < data.len() && !(data[p] == 0xFF && data[p + 1] != 0 && !(0xD0..=0xD7).contains(&data[p + 1])) {
        p += 1;
    }
    Ok(p)
}

/// A block's DC coefficient, first (or only) pass: the difference to the component's last DC,
/// at bit position `al`.
fn dc_first(bits: &mut Bits, t: &Huffman, pred: &mut i32, block: &mut [i16], al: u32) -> R<()> {
    let s = bits.decode(t)?;
    *pred = pred.wrapping_add(bits.receive_extend(s));
    block[0] = (*pred << al) as i16;
    Ok(())
}

/// A progressive AC band's first pass for one block (libjpeg's `decode_mcu_AC_first`); with the
/// band 1..=63 at bit 0, a baseline block's AC coefficients.
fn ac_first(bits: &mut Bits, t: &Huffman, block: &mut [i16], scan: Scan, eobrun: &mut u32) -> R<()> {
    if *eobrun > 0 {
        *eobrun -= 1;
        return Ok(());
    }
    let mut k = scan.ss;
    while k <= scan.se {
        let rs = bits.decode(t)?;
        let (r, s) = ((rs >> 4) as u32, rs & 15);
        if s != 0 {
            k += r as usize;
            if k > 63 {
                return Err("corrupt block (coefficient past 63)".into());
            }
            block[ZIGZAG[k]] = (bits.receive_extend(s) << scan.al) as i16;
        } else if r == 15 {
            k += 15;
        } else {
            *eobrun = (1 << r) - 1;
            if r > 0 {
                *eobrun += bits.bits(r) as u32;
            }
            break;
        }
        k += 1;
    }
    Ok(())
}

/// A progressive AC band's refinement for one block (libjpeg's `decode_mcu_AC_refine`): one
/// correction bit for every coefficient already non-zero, new ones of size 1.
fn ac_refine(bits: &mut Bits, t: &Huffman, block: &mut [i16], scan: Scan, eobrun: &mut u32) -> R<()> {
    let (p1, m1) = ((1i32 << scan.al) as i16, (-1i32 << scan.al) as i16);
    let refine = |bits: &mut Bits, c: &mut i16| {
        if bits.bits(1) != 0 && (*c & p1) == 0 {
            *c = c.wrapping_add(if *c >= 0 { p1 } else { m1 });
        }
    };
    let mut k = scan.ss;
    if *eobrun == 0 {
        while k <= scan.se {
            let rs = bits.decode(t)?;
            let (mut r, s) = ((rs >> 4) as i32, rs & 15);
            let mut value = 0i16;
            if s != 0 {
                value = if bits.bits(1) != 0 { p1 } else { m1 };
            } else if r != 15 {
                *eobrun = 1 << r;
                if r > 0 {
                    *eobrun += bits.bits(r as u32) as u32;
                }
                break;
            }
            // Past the non-zero coefficients (each gets its correction bit) and r zero ones.
            while k <= scan.se {
                let z = ZIGZAG[k];
                if block[z] != 0 {
                    refine(bits, &mut block[z]);
                } else {
                    r -= 1;
                    if r < 0 {
                        break;
                    }
                }
                k += 1;
            }
            if value != 0 && k <= 63 {
                block[ZIGZAG[k]] = value;
            }
            k += 1;
        }
    }
    if *eobrun > 0 {
        while k <= scan.se {
            let z = ZIGZAG[k];
            if block[z] != 0 {
                refine(bits, &mut block[z]);
            }
            k += 1;
        }
        *eobrun -= 1;
    }
    Ok(())
}

const CONST_BITS: i32 = 13;
const PASS1_BITS: i32 = 2;
const FIX_0_298631336: i64 = 2446;
const FIX_0_390180644: i64 = 3196;
const FIX_0_541196100: i64 = 4433;
const FIX_0_765366865: i64 = 6270;
const FIX_0_899976223: i64 = 7373;
const FIX_1_175875602: i64 = 9633;
const FIX_1_501321110: i64 = 12299;
const FIX_1_847759065: i64 = 15137;
const FIX_1_961570560: i64 = 16069;
const FIX_2_053119869: i64 = 16819;
const FIX_2_562915447: i64 = 20995;
const FIX_3_072711026: i64 = 25172;

fn descale(x: i64, n: i32) -> i64 {
    (x + (1 << (n - 1))) >> n
}

/// libjpeg's post-IDCT range limit: `x + 128` clamped to 0..=255 for |x| < 512, wrapping as
/// its 1024-entry table does beyond (only corrupt data gets there).
fn range_limit(x: i64) -> u8 {
    let i = (x & 1023) as i32;
    match i {
        0..=127 => (i + 128) as u8,
        128..=511 => 255,
        512..=895 => 0,
        _ => (i - 896) as u8,
    }
}

/// The butterfly both passes share: returns the 8 outputs before descaling, from the 8 inputs
/// (already dequantized, even inputs scaled by `CONST_BITS` inside).
fn idct_1d(i: [i64; 8]) -> [i64; 8] {
    // Even part.
    let (z2, z3) = (i[2], i[6]);
    let z1 = (z2 + z3) * FIX_0_541196100;
    let tmp2 = z1 + z3 * -FIX_1_847759065;
    let tmp3 = z1 + z2 * FIX_0_765366865;
    let tmp0 = (i[0] + i[4]) << CONST_BITS;
    let tmp1 = (i[0] - i[4]) << CONST_BITS;
    let (tmp10, tmp13, tmp11, tmp12) = (tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2);
    // Odd part.
    let (t0, t1, t2, t3) = (i[7], i[5], i[3], i[1]);
    let (z1, z2, z3, z4) = (t0 + t3, t1 + t2, t0 + t2, t1 + t3);
    let z5 = (z3 + z4) * FIX_1_175875602;
    let (t0, t1, t2, t3) = (t0 * FIX_0_298631336, t1 * FIX_2_053119869, t2 * FIX_3_072711026, t3 * FIX_1_501321110);
    let (z1, z2) = (z1 * -FIX_0_899976223, z2 * -FIX_2_562915447);
    let z3 = z3 * -FIX_1_961570560 + z5;
    let z4 = z4 * -FIX_0_390180644 + z5;
    let (t0, t1, t2, t3) = (t0 + z1 + z3, t1 + z2 + z4, t2 + z2 + z3, t3 + z1 + z4);
    [tmp10 + t3, tmp11 + t2, tmp12 + t1, tmp13 + t0, tmp13 - t0, tmp12 - t1, tmp11 - t2, tmp10 - t3]
}

/// libjpeg's `jpeg_idct_islow` (jidctint.c): columns into a workspace scaled by `PASS1_BITS`,
/// then rows, descaled and range-limited into `out` (rows `stride` apart).
fn idct_islow(coef: &[i16], q: &[u16; 64], out: &mut [u8], stride: usize) {
    let mut ws = [0i64; 64];
    for col in 0..8 {
        let input: [i64; 8] = std::array::from_fn(|r| coef[r * 8 + col] as i64 * q[r * 8 + col] as i64);
        let o = idct_1d(input);
        for r in 0..8 {
            // The workspace is `int` in libjpeg.
            ws[r * 8 + col] = descale(o[r], CONST_BITS - PASS1_BITS) as i32 as i64;
        }
    }
    for r in 0..8 {
        let row: [i64; 8] = std::array::from_fn(|c| ws[r * 8 + c]);
        let o = idct_1d(row);
        for c in 0..8 {
            out[r * stride + c] = range_limit(descale(o[c], CONST_BITS + PASS1_BITS + 3));
        }
    }
}

/// Chroma plane at full resolution with libjpeg-turbo's upsampler for its factors: `fancy`
/// (triangular) h2v2 / h2v1 when the plane is wider than 2 samples, else replication.
fn upsample(c: &Component, hf: usize, vf: usize, width: usize, height: usize) -> Vec<u8> {
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
fn to_rgb(comps: &[Component], width: usize, height: usize) -> RgbImage {
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

#[cfg(test)]
mod tests {
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
