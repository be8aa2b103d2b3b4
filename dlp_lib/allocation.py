"""Layerwise sparsity allocators: pure functions from per-block statistics to per-block ratios."""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from .scores import check_ratio

# Paper Table 19: alpha per target sparsity.
PAPER_ALPHA = {0.1: 0.06, 0.2: 0.02, 0.3: 0.04, 0.4: 0.02, 0.5: 0.04, 0.6: 0.10, 0.7: 0.15, 0.8: 0.12}
MAX_RATIO = 0.99  # a block is never pruned completely
ALLOCATIONS = ("uniform", "owl", "dlp")


class RatioRangeWarning(UserWarning):
    pass


def paper_alpha(sparsity: float) -> float:
    """Alpha of Table 19 for the nearest listed sparsity (exact for 10%..80%)."""
    key = min(PAPER_ALPHA, key=lambda s: abs(s - sparsity))
    return PAPER_ALPHA[key]


def rebalance(ratios: Sequence[float], target: float, *, weights: Sequence[float] | None = None,
              lo: float = 0.0, hi: float = MAX_RATIO, strict: bool = False, what: str = "ratio") -> np.ndarray:
    """Clamp ratios into [lo, hi] and shift the rest so the (weighted) mean stays `target`.

    Finds one shift c with mean(clip(r + c, lo, hi)) == target (bisection), which keeps the
    order of the ratios. With strict=True an out-of-range ratio is an error instead.
    """
    r = np.asarray(ratios, dtype=np.float64)
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


def allocate_uniform(n_blocks: int, sparsity: float) -> np.ndarray:
    """Uniform layerwise sparsity: every block gets the target (the Wanda/SparseGPT default)."""
    check_ratio(sparsity)
    return np.full(n_blocks, float(sparsity))


def relative_importance(unimportance: Sequence[float]) -> np.ndarray:
    """RID: I_l = 1 - S_l / sum_k S_k over all L blocks (paper Eq. 6, as in the released code)."""
    s = np.asarray(unimportance, dtype=np.float64)
    return 1.0 - s / s.sum()


def _minmax_scaled(values: np.ndarray, span: float) -> np.ndarray:
    rng = values.max() - values.min()
    if rng == 0:
        return np.zeros_like(values)
    return (values - values.min()) / rng * span


def allocate_dlp(unimportance: Sequence[float], sparsity: float, alpha: float, *, strict: bool = False) -> np.ndarray:
    """DLP (Algorithm 1): R_l = p + mean(d) - d_l, d = minmax(RID) * 2 alpha; mean(R) = p."""
    check_ratio(sparsity)
    if not (0.0 <= alpha < 0.5):
        raise ValueError(f"alpha must be in [0, 0.5) (ratios span up to 2*alpha), got {alpha}")
    d = _minmax_scaled(relative_importance(unimportance), 2 * alpha)
    ratios = sparsity + d.mean() - d
    return rebalance(ratios, sparsity, strict=strict, what="DLP ratio")


def allocate_owl(outlier_ratios: Sequence[float], sparsity: float, lamda: float, *, strict: bool = False) -> np.ndarray:
    """OWL (Eq. 4): R_l = p - (d_l - mean d), d = minmax(D) * 2 lambda; more outliers -> sparser less."""
    check_ratio(sparsity)
    if not (0.0 <= lamda < 0.5):
        raise ValueError(f"lambda must be in [0, 0.5), got {lamda}")
    d = _minmax_scaled(np.asarray(outlier_ratios, dtype=np.float64), 2 * lamda)
    ratios = sparsity - (d - d.mean())
    return rebalance(ratios, sparsity, strict=strict, what="OWL ratio")
