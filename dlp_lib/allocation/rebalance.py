"""The range rule every allocator obeys: ratios in [0, MAX_RATIO], the (weighted) mean kept at p."""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

MAX_RATIO = 0.99  # a block is never pruned completely


class RatioRangeWarning(UserWarning):
    pass


def rebalance(ratios: Sequence[float], target: float, *, weights: Sequence[float] | None = None,
              lo: float = 0.0, hi: float = MAX_RATIO, strict: bool = False, what: str = "ratio") -> np.ndarray:
    """Clamp ratios into [lo, hi] and shift the rest so the (weighted) mean stays `target`.

    Finds one shift c with mean(clip(r + c, lo, hi)) == target (bisection), which keeps the
    order of the ratios. With strict=True an out-of-range ratio is an error instead.
    """
    r = np.asarray(ratios, dtype=np.float64)
    if not np.all(np.isfinite(r)):
        raise ValueError(f"{what}s are not finite ({r.tolist()}); the allocator's inputs are degenerate")
    w = np.ones_like(r) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    if np.all((r >= lo) & (r <= hi)):
        return r
    bad = r[(r < lo) | (r > hi)]
    if strict:
        raise ValueError(f"{what}s {np.round(bad, 4).tolist()} fall outside [{lo}, {hi}]; lower alpha/lambda "
                         "or allow rebalancing")
    if not (lo <= target <= hi):
        raise ValueError(f"target {target} outside [{lo}, {hi}]")
    a, b = -1.0, 1.0
    for _ in range(200):
        c = (a + b) / 2
        if float((np.clip(r + c, lo, hi) * w).sum()) < target:
            a = c
        else:
            b = c
    out = np.clip(r + (a + b) / 2, lo, hi)
    warnings.warn(f"{len(bad)} {what}(s) {np.round(bad, 4).tolist()} were outside [{lo}, {hi}]; clamped and "
                  f"re-balanced so the mean stays {target}", RatioRangeWarning, stacklevel=3)
    return out


def minmax_scaled(values: np.ndarray, span: float) -> np.ndarray:
    """Values min-max mapped onto [0, span] (all zeros if they are all equal)."""
    rng = values.max() - values.min()
    if rng == 0:
        return np.zeros_like(values)
    return (values - values.min()) / rng * span


def sublayer_plan(allocation: str, sparsity: float, keys, ratios, numels, config: dict, **fields):
    """Plan with per-sublayer ratios; per-block ratio = parameter-weighted mean of its sublayers'."""
    from ..plan import SparsityPlan
    n_blocks = max(b for b, _ in keys) + 1
    sub = [dict() for _ in range(n_blocks)]
    kept = np.zeros(n_blocks)
    size = np.zeros(n_blocks)
    for (b, name), r, n in zip(keys, ratios, numels):
        sub[b][name] = float(r)
        kept[b] += r * n
        size[b] += n
    return SparsityPlan(allocation, sparsity, (kept / size).tolist(), config, sublayer_ratios=sub, **fields)


def flatten_layout(layout):
    """((block, sublayer) keys, weights) of a block -> sublayer -> weight layout, in order."""
    keys = [(b, n) for b, subs in enumerate(layout) for n in subs]
    return keys, [layout[b][n] for b, n in keys]
