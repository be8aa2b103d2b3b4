"""DLP mirrored: DLP's ratios reflected about the target, R'_l = 2p - R_l (same mean, same spread).

A control for the direction of DLP's statistic: where DLP's statistic ranks blocks against depth
(Gemma-3: the first blocks hold the largest Wanda scores), its mirror prunes those blocks least."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..plan import SparsityPlan
from .dlp import allocate_dlp, paper_alpha
from .rebalance import rebalance
from .registry import register


def allocate_dlp_mirror(unimportance: Sequence[float], sparsity: float, alpha: float, *,
                        strict: bool = False) -> np.ndarray:
    """2p - R_DLP; re-balanced (same rule as every allocator) where a reflected ratio leaves [0, MAX_RATIO]."""
    dlp = allocate_dlp(unimportance, sparsity, alpha, strict=strict)
    return rebalance(2.0 * sparsity - dlp, sparsity, strict=strict, what="mirrored DLP ratio")


@register("dlp_mirror", needs=("stats",), auto_candidate=True,
          source="DLP (Chen et al., 2025, Algorithm 1) with its ratios reflected about p: a control for the "
                 "direction of its statistic")
def plan_dlp_mirror(inputs, sparsity, *, alpha: float | None = None, statistic: str = "median",
                    strict=False) -> SparsityPlan:
    alpha = paper_alpha(sparsity) if alpha is None else float(alpha)
    s = inputs.stats.layer_statistic(statistic)
    ratios = allocate_dlp_mirror(s, sparsity, alpha, strict=strict)
    return SparsityPlan("dlp_mirror", sparsity, ratios.tolist(), {"alpha": alpha, "statistic": statistic},
                        block_statistic=list(s))
