"""OWL: per-block sparsity from the blocks' outlier ratios (Yin et al., 2024)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..plan import SparsityPlan
from ..scores import check_ratio
from .rebalance import minmax_scaled, rebalance, sublayer_plan
from .registry import register


def allocate_owl(outlier_ratios: Sequence[float], sparsity: float, lamda: float, *, strict: bool = False) -> np.ndarray:
    """OWL (Eq. 4): R_l = p - (d_l - mean d), d = minmax(D) * 2 lambda; more outliers -> sparser less."""
    check_ratio(sparsity)
    if not (0.0 <= lamda < 0.5):
        raise ValueError(f"lambda must be in [0, 0.5), got {lamda}")
    d = minmax_scaled(np.asarray(outlier_ratios, dtype=np.float64), 2 * lamda)
    ratios = sparsity - (d - d.mean())
    return rebalance(ratios, sparsity, strict=strict, what="OWL ratio")


@register("owl", needs=("stats",), granularities=("block", "sublayer"),
          source="Yin et al., 2024 (OWL), paper Eq. 4; per-sublayer variant: Appendix C")
def plan_owl(inputs, sparsity, *, lamda: float = 0.08, owl_m: float = 5.0, strict=False,
             granularity: str = "block") -> SparsityPlan:
    config = {"lamda": lamda, "owl_m": owl_m}
    stats = inputs.stats
    if granularity == "sublayer":
        keys = [(b, n) for b, subs in enumerate(stats.sublayers) for n in subs]
        cells = [stats.sublayers[b][n] for b, n in keys]
        r = allocate_owl([c["outlier_ratio"][str(float(owl_m))] for c in cells], sparsity, lamda, strict=strict)
        return sublayer_plan("owl", sparsity, keys, r, [c["numel"] for c in cells], config)
    d = stats.outlier_ratios(owl_m)
    return SparsityPlan("owl", sparsity, allocate_owl(d, sparsity, lamda, strict=strict).tolist(), config,
                        block_statistic=list(d))
