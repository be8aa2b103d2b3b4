"""Layerwise allocators of the paper's Table 9 (Appendix A) that need the weights, and the granularity
variant of Appendix C.

Global, ER, ER-Plus, LAMP and AlphaPruning have a PARAMETER-COUNT budget (SPEC, "Other allocators"):
the kept weights are (1-p) * total, so the parameter-weighted mean sparsity is p. ER, ER-Plus, LAMP
and Global give one ratio per sublayer (plan.sublayer_ratios; plan.ratios[b] is then the
parameter-weighted mean of block b's sublayer ratios); AlphaPruning gives one ratio per block.
No ratio leaves [0, MAX_RATIO]: out-of-range ratios are clamped and re-balanced with
`allocation.rebalance(weights=param counts)`, with a warning.

The pure functions work on shapes, tensors and arrays; the `plan_*` wrappers read the model and
are registered in `plan.WEIGHT_ALLOCATORS` when dlp_lib is imported.
"""
from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from typing import Sequence

import numpy as np
import torch

from . import allocation as alloc
from .models import decoder_blocks, linear_sublayers
from .plan import WEIGHT_ALLOCATORS, SparsityPlan
from .scores import check_ratio, magnitude_scores

ALPHAPRUNING_EPSILON = {"magnitude": 0.3, "wanda": 0.2, "sparsegpt": 0.2}  # released scripts (LLaMA-7B, 70%)


# ------------------------------------------------------------------------------------- helpers
def _layout(model) -> list[dict[str, torch.nn.Linear]]:
    return [linear_sublayers(b) for b in decoder_blocks(model)]


def _flatten(layout: list[dict]) -> tuple[list[tuple[int, str]], list]:
    keys = [(b, n) for b, subs in enumerate(layout) for n in subs]
    return keys, [layout[b][n] for b, n in keys]


def sublayer_plan(allocation: str, sparsity: float, keys: Sequence[tuple[int, str]], ratios: Sequence[float],
                  numels: Sequence[int], config: dict, **fields) -> SparsityPlan:
    """Plan with per-sublayer ratios; per-block ratio = parameter-weighted mean of its sublayers'."""
    n_blocks = max(b for b, _ in keys) + 1
    sub = [dict() for _ in range(n_blocks)]
    kept = np.zeros(n_blocks)
    size = np.zeros(n_blocks)
    for (b, name), r, n in zip(keys, ratios, numels):
        sub[b][name] = float(r)
        kept[b] += r * n
        size[b] += n
    return SparsityPlan(allocation, sparsity, (kept / size).tolist(), config, sublayer_ratios=sub, **fields)


def _budgeted(ratios, numels, sparsity: float, strict: bool, what: str) -> np.ndarray:
    """Clamp into [0, MAX_RATIO] keeping the parameter-weighted mean sparsity (rebalance, warns)."""
    return alloc.rebalance(ratios, sparsity, weights=numels, strict=strict, what=what)


# ------------------------------------------------------------------------------- ER / ER-Plus
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
                      *, min_density: float = 1 - alloc.MAX_RATIO) -> np.ndarray:
    """ER-Plus (Liu et al., 2022b; SPEC): ER with the last block dense, total kept unchanged (falls back to ER)."""
    shapes = np.asarray(shapes, dtype=np.float64)
    last = np.asarray(last, dtype=bool)
    n = shapes[:, 0] * shapes[:, 1]
    budget = density * n.sum()
    rest = budget - n[last].sum()
    if rest < min_density * n[~last].sum():
        warnings.warn(f"ER-Plus: the last block ({n[last].sum() / n.sum():.1%} of the weights) cannot be dense at "
                      f"density {density:.3f}; using plain ER", alloc.RatioRangeWarning, stacklevel=2)
        return er_densities(shapes, density)
    d = np.ones(len(n))
    d[~last] = er_densities(shapes[~last], density, budget=rest)
    return d


# --------------------------------------------------------------------------- global threshold
@contextmanager
def _one_thread():
    """Run LAPACK/sort work single-threaded: on a shared, oversubscribed CPU, multi-threaded SVDs were
    measured 10-100x slower than one thread (0.1 s vs 2-30 s for a 576x1536 matrix)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _sorted_flat(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    with _one_thread():
        return [torch.sort(t.detach().float().flatten()).values for t in tensors]


def _kth_sorted(sorted_flat: Sequence[torch.Tensor], k: int) -> float:
    """k-th smallest (1-based) over ascending non-negative float32 vectors: bisection on the IEEE-754
    bit patterns (ordered like the values for x >= 0), counting with searchsorted."""
    total = sum(s.numel() for s in sorted_flat)
    if not 1 <= k <= total:
        raise ValueError(f"k must be in [1, {total}], got {k}")
    if any(s.numel() and float(s[0]) < 0 for s in sorted_flat):
        raise ValueError("a global threshold needs non-negative scores")
    lo, hi = 0, 0x7F800000  # +0.0 .. +inf
    while lo < hi:
        mid = (lo + hi) // 2
        t = torch.tensor([mid], dtype=torch.int32).view(torch.float32)
        if sum(int(torch.searchsorted(s, t, right=True)) for s in sorted_flat) >= k:
            hi = mid
        else:
            lo = mid + 1
    return float(torch.tensor([lo], dtype=torch.int32).view(torch.float32))


def kth_smallest(tensors: Sequence[torch.Tensor], k: int) -> float:
    """Exact k-th smallest (1-based) of non-negative scores spread over several tensors (never concatenated)."""
    return _kth_sorted(_sorted_flat(tensors), k)


def _threshold_ratios_sorted(sorted_flat: Sequence[torch.Tensor], sparsity: float) -> np.ndarray:
    n = np.array([s.numel() for s in sorted_flat], dtype=np.int64)
    k = int(sparsity * n.sum())
    if k == 0:
        return np.zeros(len(n))
    t = torch.tensor([_kth_sorted(sorted_flat, k)], dtype=torch.float32)
    below = np.array([int(torch.searchsorted(s, t)) for s in sorted_flat])
    ties = np.array([int(torch.searchsorted(s, t, right=True)) for s in sorted_flat]) - below
    before = np.concatenate([[0], np.cumsum(ties)[:-1]])
    take = np.clip(k - below.sum() - before, 0, ties)  # ties at the threshold: pruned in sublayer order
    return (below + take) / n


def threshold_ratios(scores: Sequence[torch.Tensor], sparsity: float) -> np.ndarray:
    """Per-tensor fraction pruned by ONE global threshold: the int(p * total) lowest scores overall."""
    check_ratio(sparsity)
    return _threshold_ratios_sorted(_sorted_flat(scores), sparsity)


# ------------------------------------------------------------------------------------- LAMP
def _sorted_lamp(weight: torch.Tensor) -> torch.Tensor:
    """LAMP scores in ascending-|w| order (they are non-decreasing along it)."""
    sorted_w2 = torch.sort(weight.detach().double().pow(2).flatten(), stable=True).values
    suffix = sorted_w2.flip(0).cumsum(0).flip(0).clamp_min(torch.finfo(torch.float64).tiny)
    return sorted_w2 / suffix


def lamp_scores(weight: torch.Tensor) -> torch.Tensor:
    """LAMP (Lee et al., 2021; SPEC): w_u^2 / sum_{v >= u} w_v^2 over the sublayer's weights in ascending order."""
    order = torch.sort(weight.detach().double().pow(2).flatten(), stable=True).indices
    out = torch.empty(weight.numel(), dtype=torch.float64)
    out[order] = _sorted_lamp(weight)
    return out.float().view_as(weight)


def lamp_ratios(weights: Sequence[torch.Tensor], sparsity: float) -> np.ndarray:
    """LAMP allocation: prune the globally lowest LAMP scores; returns each sublayer's pruned fraction."""
    check_ratio(sparsity)
    with _one_thread():
        scores = [torch.sort(_sorted_lamp(w).float()).values for w in weights]  # re-sort: rounding ties
    return _threshold_ratios_sorted(scores, sparsity)


# ------------------------------------------------------------------------------ AlphaPruning
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
    with _one_thread():
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
    return _budgeted(r, n, sparsity, strict, "AlphaPruning ratio")


# ------------------------------------------------------------------------ registered allocators
def plan_er(*, sparsity, model, config, strict=False, plus: bool = False, **_) -> SparsityPlan:
    """ER / ER-Plus over all sublayers (SPEC 'Other allocators'); parameter-count budget."""
    check_ratio(sparsity)
    layout = _layout(model)
    keys, layers = _flatten(layout)
    shapes = [tuple(layer.weight.shape) for layer in layers]
    if plus:
        last = [b == len(layout) - 1 for b, _ in keys]
        d = er_plus_densities(shapes, last, 1 - sparsity)
    else:
        d = er_densities(shapes, 1 - sparsity)
    numels = [layer.weight.numel() for layer in layers]
    name = "er_plus" if plus else "er"
    r = _budgeted(1 - d, numels, sparsity, strict, f"{name} ratio")
    return sublayer_plan(name, sparsity, keys, r, numels, config)


def plan_er_plus(**kwargs) -> SparsityPlan:
    """ER-Plus: ER with the last block kept dense where possible (SPEC)."""
    return plan_er(plus=True, **kwargs)


def plan_lamp(*, sparsity, model, config, strict=False, **_) -> SparsityPlan:
    """LAMP on the weight magnitudes (the method is magnitude-based); parameter-count budget."""
    keys, layers = _flatten(_layout(model))
    numels = [layer.weight.numel() for layer in layers]
    r = _budgeted(lamp_ratios([layer.weight for layer in layers], sparsity), numels, sparsity, strict, "LAMP ratio")
    return sublayer_plan("lamp", sparsity, keys, r, numels, config)


def plan_global(*, sparsity, model, config, strict=False, method: str = "wanda", stats=None, **_) -> SparsityPlan:
    """Global: one threshold over the scores of all blocks at once (Frankle & Carbin, 2019; SPEC).

    Scores are |W| for magnitude and Wanda's |W| ||X_j|| otherwise (also the proxy for SparseGPT),
    with the dense-input norms that pass 1 (`block_stats`) stored in `stats`. Returns the
    per-sublayer ratio implied by the global threshold.
    """
    layout = _layout(model)
    keys, layers = _flatten(layout)
    if method == "magnitude":
        scores = [magnitude_scores(layer.weight) for layer in layers]
        score_name = "magnitude"
    else:
        if stats is None or not stats.column_norms:
            raise ValueError(f"Global with {method} needs the dense statistics of pass 1 (their column norms "
                             "give the Wanda scores); pass stats=...")
        scores = [s for block in stats.wanda_scores(model) for s in block]
        score_name = "wanda"
    numels = [s.numel() for s in scores]
    r = _budgeted(threshold_ratios(scores, sparsity), numels, sparsity, strict, "Global ratio")
    return sublayer_plan("global", sparsity, keys, r, numels, {**config, "global_score": score_name})


def plan_alphapruning(*, sparsity, model, config, strict=False, method: str = "wanda", epsilon: float | None = None,
                      scale: str = "sparsity", cache_config: dict | None = None, **_) -> SparsityPlan:
    """AlphaPruning, block-wise mapping (released code's default): mean alpha_hat of each block's sublayers."""
    from .cache import cached

    layout = _layout(model)
    epsilon = ALPHAPRUNING_EPSILON.get(method, 0.2) if epsilon is None else float(epsilon)
    block_alpha = cached(  # depends on the weights only
        "esd_alpha", {"fingerprint": (cache_config or {}).get("fingerprint"), "estimator": "hill_xmin_peak_ks"},
        lambda: [float(np.mean([esd_alpha(layer.weight) for layer in subs.values()])) for subs in layout],
        enabled=bool(cache_config and cache_config.get("fingerprint")))
    block_numel = [sum(layer.weight.numel() for layer in subs.values()) for subs in layout]
    r = alphapruning_ratios(block_alpha, block_numel, sparsity, epsilon, scale=scale, strict=strict)
    return SparsityPlan("alphapruning", sparsity, r.tolist(), {**config, "epsilon": epsilon, "scale": scale},
                        block_statistic=block_alpha)


# ---------------------------------------------------------------- granularity (Appendix C)
def sublayer_granularity_plan(allocation: str, sparsity: float, stats, config: dict, *, alpha: float,
                              statistic: str, lamda: float, owl_m: float, strict: bool = False) -> SparsityPlan:
    """Appendix C 'per-block' DLP (or OWL): the same formula over ALL sublayers ranked across the model,
    one ratio per sublayer; the unweighted mean over sublayers is p (Table 12)."""
    keys = [(b, n) for b, subs in enumerate(stats.sublayers) for n in subs]
    cells = [stats.sublayers[b][n] for b, n in keys]
    numels = [c["numel"] for c in cells]
    if allocation == "dlp":
        values = [c[statistic] for c in cells]
        r = alloc.allocate_dlp(values, sparsity, alpha, strict=strict)
        return sublayer_plan("dlp", sparsity, keys, r, numels, config, rid=None, block_statistic=None)
    if allocation == "owl":
        values = [c["outlier_ratio"][str(float(owl_m))] for c in cells]
        r = alloc.allocate_owl(values, sparsity, lamda, strict=strict)
        return sublayer_plan("owl", sparsity, keys, r, numels, config)
    raise ValueError(f"granularity='sublayer' is defined for dlp and owl, not {allocation!r}")


WEIGHT_ALLOCATORS.update({"global": plan_global, "er": plan_er, "er_plus": plan_er_plus, "lamp": plan_lamp,
                          "alphapruning": plan_alphapruning})
