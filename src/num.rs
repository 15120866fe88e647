//! Small numeric helpers that import nothing of ours, so every layer may use them without
//! pointing back up: keep counts, top-k selection, the splitmix64 stream, FNV-1a, max |a − b|.

/// Tokens kept out of `n` at ratio `keep`: round half up, at least one.
pub fn n_keep(keep: f32, n: usize) -> usize {
    let k = (keep as f64 * n as f64 + 0.5).floor() as usize;
    k.clamp(1.min(n), n)
}

/// Indices of the `k` largest scores (ties: lower index first), in ascending index order.
/// NaN scores sort last.
pub fn top_k_ascending(scores: &[f32], k: usize) -> Vec<u32> {
    let mut order: Vec<u32> = (0..scores.len() as u32).collect();
    let key = |i: &u32| {
        let s = scores[*i as usize];
        if s.is_nan() {
            f32::NEG_INFINITY
        } else {
            s
        }
    };
    order.sort_by(|a, b| key(b).total_cmp(&key(a)).then(a.cmp(b)));
    order.truncate(k.min(scores.len()));
    order.sort_unstable();
    order
}

/// One step of the splitmix64 generator: advances `state` and returns 64 random bits.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Random scores in [0, 1) for `batch × n` tokens: one stream per (seed, step), rows in order.
/// The fixture script implements the same stream so the control is testable too.
pub fn random_scores(seed: u64, step: usize, batch: usize, n: usize) -> Vec<f32> {
    let mut state = seed ^ (step as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
    (0..batch * n).map(|_| (splitmix64(&mut state) >> 40) as f32 / (1u64 << 24) as f32).collect()
}

/// Largest |a - b| over two equally long slices (∞ when lengths differ).
///
/// ```
/// use effarch::num::max_abs_diff;
/// assert_eq!(max_abs_diff(&[1.0, 2.0], &[1.0, 2.5]), 0.5);
/// // A NaN (or an infinity) anywhere is an infinite difference, never "no difference".
/// assert_eq!(max_abs_diff(&[1.0, f32::NAN], &[1.0, 2.0]), f32::INFINITY);
/// ```
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return f32::INFINITY;
    }
    a.iter().zip(b).map(|(&x, &y)| abs_diff(x, y)).fold(0.0, nan_max)
}

/// |x − y|, with a NaN or an infinity on either side (other than the same infinity on both)
/// counted as an infinite difference: a comparison built on it cannot pass on NaN.
#[inline]
pub fn abs_diff(x: f32, y: f32) -> f32 {
    if x == y {
        return 0.0; // also equal infinities
    }
    let d = (x - y).abs();
    if d.is_nan() {
        f32::INFINITY
    } else {
        d
    }
}

/// The larger of two differences, where NaN wins (`f32::max` drops a NaN, which would let a
/// NaN output score as no difference at all).
#[inline]
pub fn nan_max(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::INFINITY
    } else {
        a.max(b)
    }
}

/// 64-bit FNV-1a of `bytes`.
/// Cosine similarity of two vectors, summed in f64 (for comparing precisions: f32 sums would
/// blur the fifth decimal of a cos near 1). NaN if either is zero or holds NaN.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += x as f64 * y as f64;
        aa += x as f64 * x as f64;
        bb += y as f64 * y as f64;
    }
    ab / (aa.sqrt() * bb.sqrt())
}

pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01B3))
}

/// Deterministic pseudo-random values in [-scale, scale) (an xorshift64 stream): the weights of
/// the benchmark models and of warm-up inputs. The other two generators have other jobs:
/// [`splitmix64`] draws the `random` scorer's scores (a stream a user can reseed), and
/// `testing::seeded_values` makes real-width test checkpoints that the Python fixture scripts
/// reproduce bit for bit (value i from the seed and the tensor's name, independent of order).
pub fn random_values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_nan_or_infinity_fails_every_tolerance() {
        let want = vec![1.0f32; 64];
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for at in [0, 31, 63] {
                let mut got = want.clone();
                got[at] = bad;
                assert_eq!(max_abs_diff(&got, &want), f32::INFINITY, "{bad} at {at}");
                assert_eq!(max_abs_diff(&want, &got), f32::INFINITY, "{bad} at {at}, other side");
            }
        }
        assert_eq!(max_abs_diff(&[f32::INFINITY], &[f32::INFINITY]), 0.0);
        assert_eq!(max_abs_diff(&want, &want), 0.0);
        assert!((max_abs_diff(&[1.0, 2.0], &[1.5, 2.0]) - 0.5).abs() < 1e-7);
        assert_eq!(max_abs_diff(&[1.0], &[1.0, 2.0]), f32::INFINITY, "length mismatch");
    }
}
