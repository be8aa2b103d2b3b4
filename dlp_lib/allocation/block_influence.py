"""Block influence: per-block sparsity from how much each dense block changes its input.

BI_l = 1 - E_t[cos(x_in_t, x_out_t)] over the calibration tokens of pass 1 (ShortGPT, Men et al.,
2024, Eq. 2; the cosine layer importance of LLM-Streamline, Chen et al., 2024). A block that barely
turns its input is redundant. Mapped to ratios with DLP's Algorithm 1 with BI as the importance
(higher influence -> more important -> pruned less): d = minmax(BI) * 2 alpha, R_l = p + mean(d) - d_l.
DLP's RID 1 - S_l / sum S is affine in S, so this is exactly Algorithm 1 run on S = -BI."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..plan import SparsityPlan
from ..scores import check_ratio
from .dlp import paper_alpha
from .rebalance import minmax_scaled, rebalance
from .registry import register


def allocate_block_influence(influence: Sequence[float], sparsity: float, alpha: float, *,
                             strict: bool = False) -> np.ndarray:
    """R_l = p + mean(d) - d_l, d = minmax(BI) * 2 alpha: the most influential block gets p - alpha + ..."""
    check_ratio(sparsity)
    if not (0.0 <= alpha < 0.5):
        raise ValueError(f"alpha must be in [0, 0.5) (ratios span 2*alpha), got {alpha}")
    bi = np.asarray(influence, dtype=np.float64)
    if not np.all(np.isfinite(bi)):
        raise ValueError(f"block influences are not finite ({bi.tolist()})")
    d = minmax_scaled(bi, 2 * alpha)
    return rebalance(sparsity + d.mean() - d, sparsity, strict=strict, what="block influence ratio")


@register("block_influence", needs=("stats",), auto_candidate=True,
          source="Men et al., 2024 (ShortGPT), Eq. 2; Chen et al., 2024 (LLM-Streamline): BI = 1 - E[cos(x_in, "
                 "x_out)], mapped with DLP's Algorithm 1")
def plan_block_influence(inputs, sparsity, *, alpha: float | None = None, strict=False) -> SparsityPlan:
    alpha = paper_alpha(sparsity) if alpha is None else float(alpha)
    bi = inputs.stats.block_influence
    if not bi:
        raise ValueError("these dense statistics hold no block influence (computed by an older pass 1); "
                         "recompute them")
    ratios = allocate_block_influence(bi, sparsity, alpha, strict=strict)
    return SparsityPlan("block_influence", sparsity, ratios.tolist(), {"alpha": alpha}, block_statistic=list(bi))
