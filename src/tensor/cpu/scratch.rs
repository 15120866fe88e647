//! Per-thread scratch buffers for the packed operands and score blocks that every product and
//! attention head needs for the length of one call: taken from a small pool and handed back
//! on drop, so that the hot path neither allocates nor zeroes them each time (a ViT-B/16
//! forward packs ~200 such buffers; their `memset` alone was ~3 % of an int8 pass).
//!
//! A buffer comes back holding whatever its last user left there (always initialised values):
//! callers write every element they read. Re-entrant use (a thread that steals another task
//! while it holds a buffer) simply takes another one. Buffers larger than [`KEEP_BYTES`] are
//! not kept, so the pool stays a few MB per thread whatever the batch.

use std::cell::Cell;
use std::ops::{Deref, DerefMut};
use std::thread::LocalKey;

/// Largest buffer kept for reuse.
const KEEP_BYTES: usize = 4 << 20;
/// Buffers kept per thread and element type.
const SLOTS: usize = 3;

type Pool<T> = Cell<Vec<Vec<T>>>;

thread_local! {
    static F32: Pool<f32> = const { Cell::new(Vec::new()) };
    static I32: Pool<i32> = const { Cell::new(Vec::new()) };
    static U32: Pool<u32> = const { Cell::new(Vec::new()) };
}

/// Element types with a pool of their own.
pub(crate) trait Pooled: Copy + Default + 'static {
    fn pool() -> &'static LocalKey<Pool<Self>>;
}

impl Pooled for f32 {
    fn pool() -> &'static LocalKey<Pool<Self>> {
        &F32
    }
}
impl Pooled for i32 {
    fn pool() -> &'static LocalKey<Pool<Self>> {
        &I32
    }
}
impl Pooled for u32 {
    fn pool() -> &'static LocalKey<Pool<Self>> {
        &U32
    }
}

/// `len` elements of scratch (stale contents; new elements are `T::default()`), back to this
/// thread's pool when dropped.
pub(crate) struct Scratch<T: Pooled> {
    buf: Vec<T>,
    /// Where the handed-out elements start: the first 64-byte boundary of `buf`
    /// ([`super::aligned`]: packed operands are loaded a cache line at a time).
    off: usize,
    len: usize,
}

impl<T: Pooled> Scratch<T> {
    pub(crate) fn new(len: usize) -> Self {
        // Room to start on a cache line wherever the allocation lies.
        let room = len + 64 / std::mem::size_of::<T>();
        let mut buf = T::pool()
            .try_with(|p| {
                let mut pool = p.take();
                // The smallest buffer that holds `len`, else the largest (grown below).
                let fit = (0..pool.len()).filter(|&i| pool[i].len() >= room).min_by_key(|&i| pool[i].len());
                let pick = fit.or_else(|| (0..pool.len()).max_by_key(|&i| pool[i].len()));
                let buf = pick.map(|i| pool.swap_remove(i)).unwrap_or_default();
                p.set(pool);
                buf
            })
            .unwrap_or_default();
        if buf.len() < room {
            buf.resize(room, T::default());
        }
        let off = super::aligned::to_line(buf.as_ptr());
        Scratch { buf, off, len }
    }
}

impl<T: Pooled> Drop for Scratch<T> {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.capacity() * std::mem::size_of::<T>() > KEEP_BYTES {
            return;
        }
        let _ = T::pool().try_with(|p| {
            let mut pool = p.take();
            if pool.len() < SLOTS {
                pool.push(buf);
            } else if let Some(small) = pool.iter_mut().min_by_key(|b| b.len()).filter(|b| b.len() < buf.len()) {
                *small = buf;
            }
            p.set(pool);
        });
    }
}

impl<T: Pooled> Deref for Scratch<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.buf[self.off..self.off + self.len]
    }
}

impl<T: Pooled> DerefMut for Scratch<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.buf[self.off..self.off + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_nested_and_sized() {
        let p = {
            let mut a = Scratch::<f32>::new(100);
            assert_eq!(a.len(), 100);
            a.iter_mut().for_each(|v| *v = 7.0);
            // Nested use while `a` is held gets a buffer of its own.
            let b = Scratch::<f32>::new(50);
            assert_eq!(b.len(), 50);
            assert_ne!(a.as_ptr(), b.as_ptr());
            a.as_ptr()
        };
        // Back from the pool: the smallest that fits (`a`'s, 100 ≥ 80), contents stale.
        let c = Scratch::<f32>::new(80);
        assert_eq!((c.as_ptr(), c.len(), c[0]), (p, 80, 7.0));
        // Larger than any kept buffer: grown, the new part zero.
        let d = Scratch::<f32>::new(1000);
        assert_eq!((d.len(), d[999]), (1000, 0.0));
        // Each starts on a cache line (`a` as well: `c` is its buffer at the same place).
        assert!([c.as_ptr(), d.as_ptr()].iter().all(|&p| p as usize % 64 == 0));
        drop((c, d));
        // Over the limit: handed out, not kept.
        let big = Scratch::<i32>::new(KEEP_BYTES / 4 + 1);
        assert_eq!(big.len(), KEEP_BYTES / 4 + 1);
        drop(big);
        let largest = I32.with(|p| {
            let pool = p.take();
            let most = pool.iter().map(|b| b.capacity() * 4).max().unwrap_or(0);
            p.set(pool);
            most
        });
        assert!(largest <= KEEP_BYTES, "{largest}");
    }
}
