"""LAMP: layer-adaptive magnitude scores pruned under one global threshold (Lee et al., 2021)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..plan import SparsityPlan
from ..scores import check_ratio
from .global_threshold import one_thread, threshold_ratios_sorted
from .rebalance import flatten_layout, rebalance, sublayer_plan
from .registry import register


def _sorted_lamp(weight: torch.Tensor) -> torch.Tensor:
    """LAMP scores (Lee et al., 2021; SPEC: w_u^2 / sum_{v >= u} w_v^2 over the sublayer's weights in
    ascending order), in ascending-|w| order (they are non-decreasing along it)."""
    sorted_w2 = torch.sort(weight.detach().double().pow(2).flatten(), stable=True).values
    suffix = sorted_w2.flip(0).cumsum(0).flip(0).clamp_min(torch.finfo(torch.float64).tiny)
    return sorted_w2 / suffix


def lamp_ratios(weights: Sequence[torch.Tensor], sparsity: float) -> np.ndarray:
    """LAMP allocation: prune the globally lowest LAMP scores; returns each sublayer's pruned fraction."""
    check_ratio(sparsity)
    with one_thread():
        scores = [torch.sort(_sorted_lamp(w).float()).values for w in weights]  # re-sort: rounding ties
    return threshold_ratios_sorted(scores, sparsity)


@register("lamp", needs=("weights",), source="Lee et al., 2021 (LAMP, on |W|); paper Table 9")
def plan_lamp(inputs, sparsity, *, strict=False) -> SparsityPlan:
    keys, weights = flatten_layout(inputs.layout)
    numels = [w.numel() for w in weights]
    r = rebalance(lamp_ratios(weights, sparsity), sparsity, weights=numels, strict=strict, what="LAMP ratio")
    return sublayer_plan("lamp", sparsity, keys, r, numels, {})
