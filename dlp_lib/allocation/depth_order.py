"""Does a plan run against depth? DLP's statistic can rank blocks opposite to the depth order that
the paper's own Empirical Study II found ("earlier layers are more important"): on Gemma-3-270M
the first blocks hold the largest Wanda scores' median and DLP prunes them hardest."""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

MIN_DEPTH_RHO = -0.5   # Spearman(depth, ratio) below this: the plan prunes shallow blocks harder


class AgainstDepthWarning(UserWarning):
    """A DLP plan that prunes shallow blocks harder than deep ones."""


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, tied values sharing their average rank (as Spearman's rho uses them)."""
    _, inverse, counts = np.unique(np.asarray(values, dtype=np.float64), return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]


def depth_rank_correlation(ratios: Sequence[float]) -> float:
    """Spearman rank correlation of block depth and block ratio (0.0 when the ratios are all equal)."""
    r = np.asarray(ratios, dtype=np.float64)
    if len(r) < 2 or np.ptp(r) == 0:
        return 0.0
    return float(np.corrcoef(np.arange(len(r), dtype=np.float64), average_ranks(r))[0, 1])


def runs_against_depth(ratios: Sequence[float]) -> bool:
    """Spearman(depth, ratio) < MIN_DEPTH_RHO, or the first block alone gets the largest ratio."""
    r = np.asarray(ratios, dtype=np.float64)
    if len(r) < 2 or np.ptp(r) == 0:
        return False
    first_largest = r[0] == r.max() and np.count_nonzero(r == r.max()) == 1
    return depth_rank_correlation(r) < MIN_DEPTH_RHO or bool(first_largest)


def warn_if_against_depth(allocation: str, ratios: Sequence[float]) -> None:
    """Warn (AgainstDepthWarning) when `ratios` run against depth, naming the study and the remedy."""
    if not runs_against_depth(ratios):
        return
    r = np.asarray(ratios, dtype=np.float64)
    warnings.warn(
        f"{allocation}'s plan runs against depth (Spearman(depth, ratio) = {depth_rank_correlation(r):+.2f}; "
        f"block 0 gets {r[0]:.3f}, the largest is {r.max():.3f} at block {int(r.argmax())}): its statistic ranks "
        "the shallow blocks as least important, the opposite of the paper's Empirical Study II. On such models "
        "DLP can lose to Uniform (notebook 15, 'Where DLP holds'); try --allocation auto, which keeps DLP only "
        "if it beats Uniform on held-out calibration text", AgainstDepthWarning, stacklevel=4)
