"""AlphaPruning: block sparsity from the heavy-tail exponent of the weights' spectra (Lu et al., 2024)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from ..plan import SparsityPlan
from ..scores import check_ratio
from .global_threshold import one_thread
from .rebalance import rebalance
from .registry import register

ALPHAPRUNING_EPSILON = {"magnitude": 0.3, "wanda": 0.2, "sparsegpt": 0.2}  # released scripts (LLaMA-7B, 70%)


def hill_alpha(eigs: torch.Tensor, *, bins: int = 100) -> float:
    """Power-law exponent of an ESD tail (AlphaPruning's 'alpha_peak'; Lu et al., 2024): continuous MLE
    alpha = 1 + n / sum log(lambda_i / xmin) over lambda_i >= xmin, xmin with the smallest KS distance
    among the eigenvalues in [0.95, 1.5] x the peak of the log10-histogram (all of them if none)."""
    e = torch.sort(eigs.detach().double().flatten()).values
    e = e[e > 0]
    if e.numel() < 3:
        raise ValueError("need at least 3 positive eigenvalues to fit a power law")
    log_e = e.log()
    counts = torch.histc(log_e / math.log(10), bins)
    lo, hi = float(log_e.min() / math.log(10)), float(log_e.max() / math.log(10))
    peak = 10 ** (lo + (hi - lo) * int(counts.argmax()) / bins)
    head = e[:-1]
    cand = torch.nonzero((head >= 0.95 * peak) & (head <= 1.5 * peak)).flatten().tolist()
    cand = cand or list(range(e.numel() - 1))
    best = (math.inf, math.nan)
    for i in cand:
        n = e.numel() - i
        denom = float(log_e[i:].sum() - n * log_e[i])
        if denom <= 0:
            continue
        a = 1.0 + n / denom
        ks = float((1 - (e[i:] / e[i]) ** (1 - a) - torch.arange(n, dtype=e.dtype) / n).abs().max())
        if ks < best[0]:
            best = (ks, a)
    return best[1]


def esd_alpha(weight: torch.Tensor) -> float:
    """alpha_hat of one sublayer: Hill/MLE tail exponent of the eigenvalues of W^T W (squared singular values)."""
    with one_thread():
        return hill_alpha(torch.linalg.svdvals(weight.detach().float()).pow(2))


def alphapruning_ratios(block_alpha: Sequence[float], block_numel: Sequence[float], sparsity: float,
                        epsilon: float = 0.2, *, scale: str = "sparsity", strict: bool = False) -> np.ndarray:
    """AlphaPruning (Lu et al., 2024; SPEC): alpha_hat min-max mapped to [1-e, 1+e], scaled to the weighted budget.

    scale="sparsity" (released code, default): r_l = m_l * p * N / sum_k n_k m_k, m increasing in alpha.
    scale="density": density_l = m'_l * (1-p) * N / sum_k n_k m'_k with m' = 2 - m (decreasing in alpha).
    Either way a heavier tail (smaller alpha_hat) gets a lower sparsity.
    """
    check_ratio(sparsity)
    if not 0 <= epsilon < 1:
        raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
    a = np.asarray(block_alpha, dtype=np.float64)
    n = np.asarray(block_numel, dtype=np.float64)
    span = a.max() - a.min()
    m = np.ones_like(a) if span == 0 else (a - a.min()) / span * 2 * epsilon + (1 - epsilon)
    if scale == "sparsity":
        r = m * sparsity * n.sum() / (n * m).sum()
    elif scale == "density":
        r = 1 - (2 - m) * (1 - sparsity) * n.sum() / (n * (2 - m)).sum()
    else:
        raise ValueError(f"scale must be 'sparsity' or 'density', got {scale!r}")
    return rebalance(r, sparsity, weights=n, strict=strict, what="AlphaPruning ratio")


@register("alphapruning", needs=("weights",), source="Lu et al., 2024 (AlphaPruning, released code's block-wise mapping); paper Table 9")
def plan_alphapruning(inputs, sparsity, *, epsilon: float | None = None, scale: str = "sparsity",
                      strict=False) -> SparsityPlan:
    """Block-wise mapping (released code's default): mean alpha_hat of each block's sublayers."""
    from ..cache import cached, versioned

    epsilon = ALPHAPRUNING_EPSILON.get(inputs.method, 0.2) if epsilon is None else float(epsilon)
    fingerprint = (inputs.cache_config or {}).get("fingerprint")
    block_alpha = cached(  # depends on the weights only
        "esd_alpha", versioned(("plan",), fingerprint=fingerprint, estimator="hill_xmin_peak_ks"),
        lambda: [float(np.mean([esd_alpha(w) for w in subs.values()])) for subs in inputs.layout],
        enabled=bool(fingerprint))
    block_numel = [sum(w.numel() for w in subs.values()) for subs in inputs.layout]
    r = alphapruning_ratios(block_alpha, block_numel, sparsity, epsilon, scale=scale, strict=strict)
    return SparsityPlan("alphapruning", sparsity, r.tolist(), {"epsilon": epsilon, "scale": scale},
                        block_statistic=block_alpha)
