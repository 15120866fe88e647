"""MRSS (the multi-resolution selective scan) written in numpy from its definition, for the
checks that compare effarch's scan with it: tests/fixtures/make_generation_fixtures.py
(mrss-130m.json) and scripts/typeseg_check.py (typeseg's real weights). Not a port of the
Rust loop: vectorised over channels, a loop over time."""
import numpy as np

MAX_RUN_DECAY = 0.3


def mrss_reference(x, dt, bm, cm, a, d, tau):
    """The merged selective scan from MRSS's definition (as in scripts/typeseg_check.py's, for
    one sequence): per channel, steps with Δ < τ join a run that holds the state h₀ and
    accumulates ΣΔ and U = Σ Δ·x·B; such a step outputs C·(h₀·(1 + ΣΔ·A) + U) + D·x; the run
    is applied (h = exp(ΣΔ·A)·h₀ + U) at the next step with Δ ≥ τ, at the end, or before a step
    that would take ΣΔ·max|A| past 0.3. x, dt [L, C]; bm, cm [L, N]; a [C, N]; d [C]."""
    L, ch = x.shape
    amax = np.abs(a).max(axis=1)
    h = np.zeros(a.shape, np.float32)
    acc_u, acc_dt, open_run = np.zeros_like(h), np.zeros(ch, np.float32), np.zeros(ch, bool)
    merged, runs = np.zeros(ch, np.int64), np.zeros(ch, np.int64)
    y = np.empty((L, ch), np.float32)

    def close(mask):
        h[mask] = np.exp(acc_dt[mask, None] * a[mask]) * h[mask] + acc_u[mask]
        acc_u[mask], acc_dt[mask], open_run[mask] = 0.0, 0.0, False
        runs[mask] += 1

    for t in range(L):
        dv = dt[t]
        slow = dv < tau
        close(open_run & (~slow | ((acc_dt + dv) * amax > MAX_RUN_DECAY)))
        f = ~slow
        h[f] = np.exp(dv[f, None] * a[f]) * h[f] + (dv[f] * x[t, f])[:, None] * bm[t][None, :]
        acc_dt[slow] += dv[slow]
        acc_u[slow] += (dv[slow] * x[t, slow])[:, None] * bm[t][None, :]
        open_run |= slow
        read = np.where(slow[:, None], h * (1.0 + acc_dt[:, None] * a) + acc_u, h)
        y[t] = (read * cm[t][None, :]).sum(axis=1) + x[t] * d
        merged += slow
    close(open_run.copy())  # a copy: close() clears open_run, which must not clear its own mask
    return y, h, merged, runs
