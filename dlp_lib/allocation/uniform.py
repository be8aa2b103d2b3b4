"""Uniform: every block gets the target sparsity."""
from __future__ import annotations

import numpy as np

from ..plan import SparsityPlan
from ..scores import check_ratio
from .registry import register


def allocate_uniform(n_blocks: int, sparsity: float) -> np.ndarray:
    """Uniform layerwise sparsity: every block gets the target (the Wanda/SparseGPT default)."""
    check_ratio(sparsity)
    return np.full(n_blocks, float(sparsity))


@register("uniform", source="Wanda (Sun et al., 2024) and SparseGPT (Frantar & Alistarh, 2023): one ratio for all",
          auto_candidate=True)
def plan_uniform(inputs, sparsity, *, strict=False) -> SparsityPlan:
    return SparsityPlan("uniform", sparsity, allocate_uniform(inputs.n_blocks, sparsity).tolist())
