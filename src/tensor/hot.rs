//! The pool kept awake through a CPU pass ([`hot`]).
//!
//! A model pass is a chain of parallel regions (a product, its activation packing, attention's
//! heads) with short serial stretches between them. Between two regions rayon's idle workers
//! spin a little, then sleep on a futex, and the next region waits for them to be woken (an
//! interrupt to another CPU, costly in a VM). ONNX Runtime's intra-op threads spin between ops
//! for this reason. [`hot`] does the same for the length of one pass: each other worker runs a
//! job that keeps asking the pool for work ([`rayon::yield_now`]) instead of going to sleep,
//! and ends when the pass ends — or after [`IDLE_LIMIT`] without finding any, so that a worker
//! whose own stack waits on something never holds it up for longer than that.
//! Measured on a 2-core Xeon with AMX (ViT-B/16 vision tower, batch 1, builds with and without
//! run alternately, three rounds): int8 −4..9 %, bf16 −3..10 %, f32 −6..7 %; int8 at keep 0.5
//! −7..9 %.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Passes running now, on any thread.
static PASSES: AtomicUsize = AtomicUsize::new(0);
/// Spinner jobs launched and not yet returned (every worker gets one per launch).
static SPINNERS: AtomicUsize = AtomicUsize::new(0);
/// A spinner that finds no work for this long goes back to rayon's own idling: longer than a
/// pass's serial stretches (pruning's scores and gathers at layer 1 take about a millisecond on
/// one thread; with a 1 ms limit the workers slept through the rest of a pruned pass).
const IDLE_LIMIT: Duration = Duration::from_millis(5);

thread_local! {
    /// This thread is running a pass (a spinner here would stand on the pass's stack).
    static IN_PASS: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` (called from a pool thread: [`super::on_pool`]) with the pool's other workers
/// kept awake until it returns. Nested and concurrent passes share one set of spinners (one
/// set at a time, in the pool that launched it).
pub(crate) fn hot<R>(f: impl FnOnce() -> R) -> R {
    let threads = rayon::current_num_threads();
    if threads < 2 || rayon::current_thread_index().is_none() {
        return f();
    }
    /// Ends the pass however `f` ends.
    struct Pass(bool);
    impl Drop for Pass {
        fn drop(&mut self) {
            PASSES.fetch_sub(1, Ordering::AcqRel);
            IN_PASS.set(self.0);
        }
    }
    let _pass = Pass(IN_PASS.replace(true));
    PASSES.fetch_add(1, Ordering::AcqRel);
    if SPINNERS.compare_exchange(0, threads, Ordering::AcqRel, Ordering::Acquire).is_ok() {
        rayon::spawn_broadcast(|_| spin());
    }
    f()
}

/// One worker's share: run whatever the pool has while any pass runs.
fn spin() {
    /// Counts this spinner out however it ends.
    struct Out;
    impl Drop for Out {
        fn drop(&mut self) {
            SPINNERS.fetch_sub(1, Ordering::AcqRel);
        }
    }
    let _out = Out;
    if IN_PASS.get() {
        return;
    }
    let mut idle_since: Option<Instant> = None;
    while PASSES.load(Ordering::Acquire) > 0 {
        match rayon::yield_now() {
            Some(rayon::Yield::Executed) => idle_since = None,
            _ => {
                if idle_since.get_or_insert_with(Instant::now).elapsed() > IDLE_LIMIT {
                    return;
                }
                std::hint::spin_loop();
            }
        }
    }
}

/// Spinner jobs not yet returned (tests: none once every pass has ended and they noticed).
#[cfg(test)]
pub(crate) fn spinners() -> usize {
    SPINNERS.load(Ordering::Acquire)
}

#[cfg(test)]
mod tests {
    use super::{hot, spinners};
    use rayon::prelude::*;
    use std::time::{Duration, Instant};

    /// Passes nested in passes, passes on several threads at once, parallel work inside each:
    /// all finish (a deadlock fails the test after two minutes instead of hanging it) with the
    /// right sums, and the spinners all return soon after.
    #[test]
    fn hot_passes_nest_and_overlap_and_their_spinners_end() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
            let sums: Vec<u64> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..4u64)
                    .map(|t| {
                        let pool = &pool;
                        s.spawn(move || {
                            pool.install(|| {
                                hot(|| (0..64u64).into_par_iter().map(|i| hot(|| (0..1000u64).into_par_iter().map(|j| j * i + t).sum::<u64>())).sum::<u64>())
                            })
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let _ = tx.send(sums);
        });
        let sums = rx.recv_timeout(Duration::from_secs(120)).expect("the hot passes finished (no deadlock)");
        for (t, s) in sums.iter().enumerate() {
            let want: u64 = (0..64u64).map(|i| (0..1000u64).map(|j| j * i + t as u64).sum::<u64>()).sum();
            assert_eq!(*s, want);
        }
        let t0 = Instant::now();
        while spinners() > 0 {
            // Other tests' passes share the count: a generous bound.
            assert!(t0.elapsed() < Duration::from_secs(60), "{} spinners still running after every pass ended", spinners());
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
