"""ER and ER-Plus: densities from the layers' shapes (Erdos-Renyi), a parameter-count budget."""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from ..plan import SparsityPlan
from ..scores import check_ratio
from .rebalance import MAX_RATIO, RatioRangeWarning, flatten_layout, rebalance, sublayer_plan
from .registry import register


def er_densities(shapes: Sequence[tuple[int, int]], density: float, *, budget: float | None = None) -> np.ndarray:
    """ER (Mocanu et al., 2018; SPEC): density_i = eps (C_in + C_out) / (C_in C_out), capped at 1, sum kept = budget.

    shapes are (C_out, C_in); budget (kept weights) defaults to density * total. As in RigL's ERK,
    the layer(s) with the largest raw density are made dense one at a time until eps is valid.
    """
    shapes = np.asarray(shapes, dtype=np.float64)
    n = shapes[:, 0] * shapes[:, 1]
    raw = (shapes[:, 0] + shapes[:, 1]) / n
    budget = density * n.sum() if budget is None else budget
    dense = np.zeros(len(n), dtype=bool)
    while True:
        free = ~dense
        if not free.any():
            return np.ones(len(n))
        eps = (budget - n[dense].sum()) / (raw[free] * n[free]).sum()
        d = np.where(dense, 1.0, eps * raw)
        if d[free].max() <= 1.0:
            return d
        dense |= free & np.isclose(raw, raw[free].max())


def er_plus_densities(shapes: Sequence[tuple[int, int]], last: Sequence[bool], density: float,
                      *, min_density: float = 1 - MAX_RATIO) -> np.ndarray:
    """ER-Plus (Liu et al., 2022b; SPEC): ER with the last block dense, total kept unchanged (falls back to ER)."""
    shapes = np.asarray(shapes, dtype=np.float64)
    last = np.asarray(last, dtype=bool)
    n = shapes[:, 0] * shapes[:, 1]
    budget = density * n.sum()
    rest = budget - n[last].sum()
    if rest < min_density * n[~last].sum():
        warnings.warn(f"ER-Plus: the last block ({n[last].sum() / n.sum():.1%} of the weights) cannot be dense at "
                      f"density {density:.3f}; using plain ER", RatioRangeWarning, stacklevel=2)
        return er_densities(shapes, density)
    d = np.ones(len(n))
    d[~last] = er_densities(shapes[~last], density, budget=rest)
    return d


def _plan_er(inputs, sparsity, strict: bool, plus: bool) -> SparsityPlan:
    check_ratio(sparsity)
    keys, weights = flatten_layout(inputs.layout)
    shapes = [tuple(w.shape) for w in weights]
    if plus:
        last = [b == len(inputs.layout) - 1 for b, _ in keys]
        d = er_plus_densities(shapes, last, 1 - sparsity)
    else:
        d = er_densities(shapes, 1 - sparsity)
    numels = [w.numel() for w in weights]
    name = "er_plus" if plus else "er"
    r = rebalance(1 - d, sparsity, weights=numels, strict=strict, what=f"{name} ratio")
    return sublayer_plan(name, sparsity, keys, r, numels, {})


@register("er", needs=("weights",), source="Mocanu et al., 2018 (Erdos-Renyi); paper Table 9")
def plan_er(inputs, sparsity, *, strict=False) -> SparsityPlan:
    return _plan_er(inputs, sparsity, strict, plus=False)


@register("er_plus", needs=("weights",), source="Liu et al., 2022b (ER-Plus: last block dense); paper Table 9")
def plan_er_plus(inputs, sparsity, *, strict=False) -> SparsityPlan:
    return _plan_er(inputs, sparsity, strict, plus=True)
