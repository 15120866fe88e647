//! Entropy decoding: Huffman tables, the bit reader (with restart markers), and the
//! coefficients of one scan — baseline, or a progressive first pass or refinement.

use super::{idct::idct_islow, Component, R, ZIGZAG};

/// A Huffman table as canonical codes: for each length, the largest code and the index of its
/// first symbol (libjpeg's maxcode / valoffset).
#[derive(Clone, Default)]
pub(super) struct Huffman {
    pub(super) maxcode: [i32; 18],
    pub(super) valoff: [i32; 17],
    pub(super) symbols: Vec<u8>,
}

impl Huffman {
    pub(super) fn new(counts: &[u8; 16], symbols: Vec<u8>) -> R<Self> {
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
pub(super) struct Bits<'a> {
    pub(super) data: &'a [u8],
    pub(super) pos: usize,
    pub(super) acc: u64,
    pub(super) n: u32,
    pub(super) marker: bool,
}

impl<'a> Bits<'a> {
    pub(super) fn fill(&mut self) {
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
    pub(super) fn bits(&mut self, k: u32) -> i32 {
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
    pub(super) fn decode(&mut self, h: &Huffman) -> R<u8> {
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
    pub(super) fn receive_extend(&mut self, s: u8) -> i32 {
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
    pub(super) fn restart(&mut self) {
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

/// What a scan codes: baseline (all of each block), or a progressive band `ss..=se` of the
/// coefficients, first pass (`ah = 0`) or refinement, at bit position `al`.
#[derive(Clone, Copy)]
pub(super) struct Scan {
    pub(super) progressive: bool,
    pub(super) ss: usize,
    pub(super) se: usize,
    pub(super) ah: u32,
    pub(super) al: u32,
}

/// One scan's entropy-coded data (from just after SOS): baseline blocks decoded and
/// inverse-transformed into their planes, progressive ones into their coefficients. Returns the
/// bytes consumed (up to the marker that ends the data).
#[allow(clippy::too_many_arguments)]
pub(super) fn decode_scan(
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
pub(super) fn dc_first(bits: &mut Bits, t: &Huffman, pred: &mut i32, block: &mut [i16], al: u32) -> R<()> {
    let s = bits.decode(t)?;
    *pred = pred.wrapping_add(bits.receive_extend(s));
    block[0] = (*pred << al) as i16;
    Ok(())
}

/// A progressive AC band's first pass for one block (libjpeg's `decode_mcu_AC_first`); with the
/// band 1..=63 at bit 0, a baseline block's AC coefficients.
pub(super) fn ac_first(bits: &mut Bits, t: &Huffman, block: &mut [i16], scan: Scan, eobrun: &mut u32) -> R<()> {
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
pub(super) fn ac_refine(bits: &mut Bits, t: &Huffman, block: &mut [i16], scan: Scan, eobrun: &mut u32) -> R<()> {
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
