"""Global: one threshold over the scores of all blocks at once (Frankle & Carbin, 2019)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Sequence

import numpy as np
import torch

from ..plan import SparsityPlan
from ..scores import check_ratio, magnitude_scores, wanda_scores
from .rebalance import flatten_layout, rebalance, sublayer_plan
from .registry import register


@contextmanager
def one_thread():
    """Run LAPACK/sort work single-threaded: on a shared, oversubscribed CPU, multi-threaded SVDs were
    measured 10-100x slower than one thread (0.1 s vs 2-30 s for a 576x1536 matrix)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _sorted_flat(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    with one_thread():
        return [torch.sort(t.detach().float().flatten()).values for t in tensors]


def _kth_sorted(sorted_flat: Sequence[torch.Tensor], k: int) -> float:
    """k-th smallest (1-based) over ascending non-negative float32 vectors: bisection on the IEEE-754
    bit patterns (ordered like the values for x >= 0), counting with searchsorted."""
    total = sum(s.numel() for s in sorted_flat)
    if not 1 <= k <= total:
        raise ValueError(f"k must be in [1, {total}], got {k}")
    if any(s.numel() and float(s[0]) < 0 for s in sorted_flat):
        raise ValueError("a global threshold needs non-negative scores")
    lo, hi = 0, 0x7F800000  # +0.0 .. +inf
    while lo < hi:
        mid = (lo + hi) // 2
        t = torch.tensor([mid], dtype=torch.int32).view(torch.float32)
        if sum(int(torch.searchsorted(s, t, right=True)) for s in sorted_flat) >= k:
            hi = mid
        else:
            lo = mid + 1
    return float(torch.tensor([lo], dtype=torch.int32).view(torch.float32))


def threshold_ratios_sorted(sorted_flat: Sequence[torch.Tensor], sparsity: float) -> np.ndarray:
    """Per-tensor fraction of entries below the one global threshold that removes `sparsity` of all
    entries, from each tensor's ascending values."""
    n = np.array([s.numel() for s in sorted_flat], dtype=np.int64)
    k = int(sparsity * n.sum())
    if k == 0:
        return np.zeros(len(n))
    t = torch.tensor([_kth_sorted(sorted_flat, k)], dtype=torch.float32)
    below = np.array([int(torch.searchsorted(s, t)) for s in sorted_flat])
    ties = np.array([int(torch.searchsorted(s, t, right=True)) for s in sorted_flat]) - below
    before = np.concatenate([[0], np.cumsum(ties)[:-1]])
    take = np.clip(k - below.sum() - before, 0, ties)  # ties at the threshold: pruned in sublayer order
    return (below + take) / n


def threshold_ratios(scores: Sequence[torch.Tensor], sparsity: float) -> np.ndarray:
    """Per-tensor fraction pruned by ONE global threshold: the int(p * total) lowest scores overall."""
    check_ratio(sparsity)
    return threshold_ratios_sorted(_sorted_flat(scores), sparsity)


@register("global", needs=("weights", "stats"), stats_not_for=("magnitude",),
          source="Frankle & Carbin, 2019 (global magnitude threshold); paper Table 9")
def plan_global(inputs, sparsity, *, strict=False) -> SparsityPlan:
    """Scores are |W| for magnitude and Wanda's |W| ||X_j|| otherwise (also the proxy for SparseGPT),
    with the dense-input norms that pass 1 stored in the statistics. Returns the per-sublayer ratio
    implied by the global threshold, with a parameter-count budget."""
    keys, weights = flatten_layout(inputs.layout)
    if inputs.method == "magnitude":
        scores = [magnitude_scores(w) for w in weights]
        score_name = "magnitude"
    else:
        if not inputs.stats.column_norms:
            raise ValueError(f"Global with {inputs.method} needs the column norms of pass 1's dense statistics")
        scores = [wanda_scores(w, inputs.stats.column_norms[b][n]) for (b, n), w in zip(keys, weights)]
        score_name = "wanda"
    numels = [s.numel() for s in scores]
    r = rebalance(threshold_ratios(scores, sparsity), sparsity, weights=numels, strict=strict, what="Global ratio")
    return sublayer_plan("global", sparsity, keys, r, numels, {"global_score": score_name})
