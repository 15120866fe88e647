"""The keep count of every pruning step, for the fixture and reference scripts: round(keep·n)
(half up), at least one, at most n. effarch's own is `n_keep` in src/num.rs (the page asks the
core for it through the wasm API's `nKeep`); this is the one Python copy."""

import math


def n_keep(keep, n):
    return min(n, max(1, int(math.floor(keep * n + 0.5))))
