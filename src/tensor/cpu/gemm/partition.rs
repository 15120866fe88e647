//! How a product is split: row tiles balanced over M, output blocks over tasks (N first), and
//! the shared output pointer the tasks write through.

use crate::tensor::cpu::simd::threads;
use rayon::prelude::*;

/// An output pointer shared by tasks that write disjoint parts of it (tiles of a product,
/// heads of an attention output).
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: every user writes only its own disjoint part of the buffer.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}
impl SendPtr {
    pub(crate) fn get(&self) -> *mut f32 {
        self.0
    }
}

/// Tasks per thread a parallel product is split into: a few, so that a thread that finishes
/// early (a noisy core, a shorter last block) takes another instead of waiting.
const TASKS_PER_THREAD: usize = 3;

/// Runs `block(tiles, panels)` over the output blocks of a product of `tiles` row tiles ×
/// `panels` weight panels: split N first, so that every weight panel is read from memory once;
/// M too only when there are fewer panels than tasks wanted (3 a thread when `parallel`, else
/// one block on this thread). Shared by the f32 and the int8 engines.
pub(crate) fn for_each_block(tiles: usize, panels: usize, parallel: bool, block: impl Fn(std::ops::Range<usize>, std::ops::Range<usize>) + Sync) {
    let want = if parallel && threads() > 1 { TASKS_PER_THREAD * threads() } else { 1 };
    let task_rows = want.div_ceil(panels.max(1)).min(tiles).max(1);
    let tiles_per_task = tiles.div_ceil(task_rows);
    let panels_per_task = panels.div_ceil(want.div_ceil(task_rows)).max(1);
    let task_cols = panels.div_ceil(panels_per_task);
    let run = |task: usize| {
        let (tr, tc) = (task / task_cols, task % task_cols);
        block(tr * tiles_per_task..((tr + 1) * tiles_per_task).min(tiles), tc * panels_per_task..((tc + 1) * panels_per_task).min(panels));
    };
    let tasks = task_rows * task_cols;
    if tasks > 1 {
        (0..tasks).into_par_iter().for_each(run);
    } else {
        run(0);
    }
}

/// The row tiles of a product: `m` rows in `⌈m / MR⌉` tiles of `⌊m / tiles⌋` or one more
/// rows, balanced, so that no short last tile runs with too few accumulator chains to keep the
/// FMA units busy (99 rows: 9 tiles of 11 on AVX-512, not 8 of 12 and one of 3).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowTiles {
    m: usize,
    tiles: usize,
    /// `Some(mr)`: full tiles of `mr` rows and a short last one ([`RowTiles::full`]).
    full: Option<usize>,
}

impl RowTiles {
    pub(crate) fn new(m: usize, mr: usize) -> Self {
        RowTiles { m, tiles: m.div_ceil(mr.max(1)), full: None }
    }
    /// Full tiles and a short last one: for AMX, whose tile computes 16 or 32 rows whatever
    /// it holds (197 rows: 6 × 32 and 5 computed as 16, not 7 tiles of 28–29 computed as 32).
    pub(crate) fn full(m: usize, mr: usize) -> Self {
        RowTiles { m, tiles: m.div_ceil(mr.max(1)), full: Some(mr.max(1)) }
    }
    pub(crate) fn tiles(&self) -> usize {
        self.tiles
    }
    pub(crate) fn start(&self, t: usize) -> usize {
        if let Some(mr) = self.full {
            return t * mr;
        }
        let (q, r) = (self.m / self.tiles.max(1), self.m % self.tiles.max(1));
        t * q + t.min(r)
    }
    pub(crate) fn rows(&self, t: usize) -> usize {
        if let Some(mr) = self.full {
            return mr.min(self.m - t * mr);
        }
        let (q, r) = (self.m / self.tiles.max(1), self.m % self.tiles.max(1));
        q + usize::from(t < r)
    }
}
