"""Depth ramp: no statistic, a linear schedule over [p - alpha, p + alpha] with depth.

A control for DLP: the depth order of the paper's Empirical Study II ("earlier layers are more
important", Chen et al., 2025, Sec. 3) without any measurement, so that a gain of DLP over it is
its statistic's, not the depth schedule its statistic happens to track."""
from __future__ import annotations

import numpy as np

from ..plan import SparsityPlan
from ..scores import check_ratio
from .dlp import paper_alpha
from .rebalance import rebalance
from .registry import register


def allocate_depth_ramp(n_blocks: int, sparsity: float, alpha: float, *, strict: bool = False) -> np.ndarray:
    """R_l = p - alpha + 2 alpha l / (L - 1): block 0 gets p - alpha, the last block p + alpha, mean p."""
    check_ratio(sparsity)
    if not (0.0 <= alpha < 0.5):
        raise ValueError(f"alpha must be in [0, 0.5) (ratios span 2*alpha), got {alpha}")
    if n_blocks < 1:
        raise ValueError(f"n_blocks must be >= 1, got {n_blocks}")
    if n_blocks == 1:
        return np.full(1, float(sparsity))
    ratios = sparsity - alpha + 2.0 * alpha * np.arange(n_blocks) / (n_blocks - 1)
    return rebalance(ratios, sparsity, strict=strict, what="depth ramp ratio")


@register("depth_ramp", auto_candidate=True,
          source="a statistic-free control: linear in depth over [p - alpha, p + alpha], shallow blocks pruned "
                 "least (the depth order of Chen et al., 2025, Empirical Study II)")
def plan_depth_ramp(inputs, sparsity, *, alpha: float | None = None, strict=False) -> SparsityPlan:
    alpha = paper_alpha(sparsity) if alpha is None else float(alpha)
    ratios = allocate_depth_ramp(inputs.n_blocks, sparsity, alpha, strict=strict)
    return SparsityPlan("depth_ramp", sparsity, ratios.tolist(), {"alpha": alpha})
