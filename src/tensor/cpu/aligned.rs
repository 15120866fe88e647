//! Buffers that start on a cache line (64 bytes), for the packed operands the micro-kernels
//! load a row of 64 bytes at a time.
//!
//! A `Vec`'s storage is aligned only to its element (and a large allocation sits 16 bytes past
//! a page boundary), so every 64-byte load of a packed panel would straddle two cache lines.
//! AMX's tile loads pay for that in full. On a 2-core Xeon with AMX (`bench gemm`, one thread,
//! operands in L1) the AMX tiles ran at 1600–1860 GFLOP/s (bf16) and 3520–3620 (int8) with
//! their operands 16 bytes off a line, 2230 and 4010 on lines. The ViT-B/16 vision tower
//! (batch 1, 2 threads, the two builds run alternately) went from 35–37 to 29–30 ms a pass in
//! int8 and from 43–46 to 40–41 in bf16.

use std::fmt;
use std::ops::{Deref, DerefMut};

/// The bytes of a cache line; the unit of allocation.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// Element types whose all-zero bytes are the value zero, so that a buffer of zeroed lines is
/// a buffer of zeros.
///
/// # Safety
/// Implemented only for plain numbers: no padding, every bit pattern valid, zero bytes = 0.
pub(crate) unsafe trait Plain: Copy + Send + Sync + 'static {}
// SAFETY: plain numbers (IEEE, two's complement, or the `half` crate's `u16` wrappers).
unsafe impl Plain for f32 {}
unsafe impl Plain for i8 {}
unsafe impl Plain for i32 {}
unsafe impl Plain for u32 {}
unsafe impl Plain for half::f16 {}
unsafe impl Plain for half::bf16 {}

/// `len` values of `T` from a 64-byte boundary, zero when made; derefs to `[T]`.
pub(crate) struct Aligned<T: Plain> {
    lines: Vec<Line>,
    len: usize,
    _t: std::marker::PhantomData<T>,
}

impl<T: Plain> Aligned<T> {
    /// `len` zeros.
    pub(crate) fn zeroed(len: usize) -> Self {
        // Saturating: a length past memory fails to allocate rather than wrapping to a small
        // buffer that the slice would overrun.
        let bytes = len.saturating_mul(std::mem::size_of::<T>());
        Aligned { lines: vec![Line([0; 64]); bytes.div_ceil(64)], len, _t: std::marker::PhantomData }
    }

    /// `len` copies of `v`.
    pub(crate) fn filled(len: usize, v: T) -> Self {
        let mut a = Aligned::zeroed(len);
        a.fill(v);
        a
    }
}

impl<T: Plain> Deref for Aligned<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the lines hold at least `len · size_of::<T>()` initialised bytes, aligned to
        // 64 (≥ T's alignment), and every bit pattern is a valid `T` ([`Plain`]).
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr() as *const T, self.len) }
    }
}

impl<T: Plain> DerefMut for Aligned<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as for `deref`, borrowed uniquely through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr() as *mut T, self.len) }
    }
}

impl<T: Plain> fmt::Debug for Aligned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Aligned<{}>[{}]", std::any::type_name::<T>(), self.len)
    }
}

/// How many elements past `p` the next 64-byte boundary is (`T`'s size divides 64).
pub(crate) fn to_line<T>(p: *const T) -> usize {
    p.align_offset(64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_start_on_a_line_and_hold_zeros() {
        for len in [0usize, 1, 15, 16, 17, 1000] {
            let mut a = Aligned::<f32>::zeroed(len);
            assert_eq!(a.len(), len);
            assert_eq!(a.as_ptr() as usize % 64, 0);
            assert!(a.iter().all(|&v| v == 0.0));
            a.iter_mut().enumerate().for_each(|(i, v)| *v = i as f32);
            assert!(a.iter().enumerate().all(|(i, &v)| v == i as f32));
        }
        let b = Aligned::<i8>::zeroed(65);
        assert_eq!((b.len(), b.as_ptr() as usize % 64, b[64]), (65, 0, 0));
        let v = vec![0u32; 40];
        let off = to_line(v[1..].as_ptr());
        assert_eq!(v[1 + off..].as_ptr() as usize % 64, 0);
    }
}
