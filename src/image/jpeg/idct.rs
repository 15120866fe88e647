//! libjpeg's "islow" integer inverse DCT (jidctint.c), bit for bit.

pub(super) const CONST_BITS: i32 = 13;
pub(super) const PASS1_BITS: i32 = 2;
pub(super) const FIX_0_298631336: i64 = 2446;
pub(super) const FIX_0_390180644: i64 = 3196;
pub(super) const FIX_0_541196100: i64 = 4433;
pub(super) const FIX_0_765366865: i64 = 6270;
pub(super) const FIX_0_899976223: i64 = 7373;
pub(super) const FIX_1_175875602: i64 = 9633;
pub(super) const FIX_1_501321110: i64 = 12299;
pub(super) const FIX_1_847759065: i64 = 15137;
pub(super) const FIX_1_961570560: i64 = 16069;
pub(super) const FIX_2_053119869: i64 = 16819;
pub(super) const FIX_2_562915447: i64 = 20995;
pub(super) const FIX_3_072711026: i64 = 25172;

pub(super) fn descale(x: i64, n: i32) -> i64 {
    (x + (1 << (n - 1))) >> n
}

/// libjpeg's post-IDCT range limit: `x + 128` clamped to 0..=255 for |x| < 512, wrapping as
/// its 1024-entry table does beyond (only corrupt data gets there).
pub(super) fn range_limit(x: i64) -> u8 {
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
pub(super) fn idct_1d(i: [i64; 8]) -> [i64; 8] {
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
pub(super) fn idct_islow(coef: &[i16], q: &[u16; 64], out: &mut [u8], stride: usize) {
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
