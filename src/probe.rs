//! Per-stage intermediate tensors for fidelity checks: a model calls [`record`] at its stage
//! boundaries (after the patch embedding, each block, the merger, each decoder layer, …), which
//! costs one thread-local check unless a caller is inside [`capture`]. The goldens compare these
//! stages with transformers' (hooks on the same modules), so a divergence is located at the
//! first stage that differs, not only seen in the logits.

use crate::tensor::Tensor;
use std::cell::RefCell;

thread_local! {
    static STAGES: RefCell<Option<Vec<(String, Tensor)>>> = const { RefCell::new(None) };
}

/// Keeps `t` under `name` when a [`capture`] is running on this thread (the tensor is shared,
/// not copied; a GPU tensor is read back only by whoever inspects it).
pub fn record(name: impl FnOnce() -> String, t: &Tensor) {
    STAGES.with(|s| {
        if let Some(v) = s.borrow_mut().as_mut() {
            v.push((name(), t.clone()));
        }
    });
}

/// Runs `f` and returns what it recorded, in order.
pub fn capture<R>(f: impl FnOnce() -> R) -> (R, Vec<(String, Tensor)>) {
    let outer = STAGES.with(|s| s.borrow_mut().replace(Vec::new()));
    // The pass must report on this thread (CPU passes otherwise move into the pool).
    let r = crate::tensor::on_this_thread(f);
    let got = STAGES.with(|s| std::mem::replace(&mut *s.borrow_mut(), outer)).unwrap_or_default();
    (r, got)
}
