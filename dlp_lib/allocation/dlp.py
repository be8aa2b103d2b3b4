"""DLP: per-block sparsity from the Relative Importance Distribution of the Wanda scores."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..plan import SparsityPlan
from ..scores import check_ratio
from .depth_order import warn_if_against_depth
from .rebalance import minmax_scaled, rebalance, sublayer_plan
from .registry import register

# Paper Table 19: alpha per target sparsity.
PAPER_ALPHA = {0.1: 0.06, 0.2: 0.02, 0.3: 0.04, 0.4: 0.02, 0.5: 0.04, 0.6: 0.10, 0.7: 0.15, 0.8: 0.12}
# Paper Appendix G: the alphas searched.
ALPHA_GRID = (0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2)


def paper_alpha(sparsity: float) -> float:
    """Alpha of Table 19 for the nearest listed sparsity (exact for 10%..80%)."""
    key = min(PAPER_ALPHA, key=lambda s: abs(s - sparsity))
    return PAPER_ALPHA[key]


def relative_importance(unimportance: Sequence[float]) -> np.ndarray:
    """RID: I_l = 1 - S_l / sum_k S_k over all L blocks (paper Eq. 6, as in the released code)."""
    s = np.asarray(unimportance, dtype=np.float64)
    total = s.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError(
            f"the layer statistic is {s.tolist()[:4]}... (sum {total}): the RID is undefined. A median of 0 in "
            "every block means over half of each block's Wanda scores are 0, i.e. the model is already at "
            "least 50% sparse; DLP's median is degenerate there. Prune the dense model, or use --statistic mean")
    return 1.0 - s / total


def allocate_dlp(unimportance: Sequence[float], sparsity: float, alpha: float, *, strict: bool = False) -> np.ndarray:
    """DLP (Algorithm 1): R_l = p + mean(d) - d_l, d = minmax(RID) * 2 alpha; mean(R) = p."""
    check_ratio(sparsity)
    if not (0.0 <= alpha < 0.5):
        raise ValueError(f"alpha must be in [0, 0.5) (ratios span up to 2*alpha), got {alpha}")
    d = minmax_scaled(relative_importance(unimportance), 2 * alpha)
    ratios = sparsity + d.mean() - d
    return rebalance(ratios, sparsity, strict=strict, what="DLP ratio")


@register("dlp", needs=("stats",), granularities=("block", "sublayer"),
          source="Chen et al., 2025, Algorithm 1 (per-sublayer variant: Appendix C, Table 12)", auto_candidate=True)
def plan_dlp(inputs, sparsity, *, alpha: float | None = None, statistic: str = "median", strict=False,
             granularity: str = "block") -> SparsityPlan:
    alpha = paper_alpha(sparsity) if alpha is None else float(alpha)
    config = {"alpha": alpha, "statistic": statistic}
    stats = inputs.stats
    if granularity == "sublayer":  # the same formula over all sublayers ranked across the model
        keys = [(b, n) for b, subs in enumerate(stats.sublayers) for n in subs]
        cells = [stats.sublayers[b][n] for b, n in keys]
        r = allocate_dlp([c[statistic] for c in cells], sparsity, alpha, strict=strict)
        return sublayer_plan("dlp", sparsity, keys, r, [c["numel"] for c in cells], config)
    s = stats.layer_statistic(statistic)
    ratios = allocate_dlp(s, sparsity, alpha, strict=strict)
    warn_if_against_depth("DLP", ratios)
    return SparsityPlan("dlp", sparsity, ratios.tolist(), config, rid=relative_importance(s).tolist(),
                        block_statistic=list(s))
