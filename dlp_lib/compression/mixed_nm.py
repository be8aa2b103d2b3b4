"""Mixed N:M sparsity (paper Appendix E.2, Table 15): every block gets its own N of M kept.

A plan (DLP, OWL or uniform) for the target sparsity 1 - N/M gives block l the continuous keep
x_l = (1 - R_l) * M. Whole numbers N_l in [1, M] are chosen so that the model keeps exactly as many
weights as the uniform N:M pattern: sum_l P_l N_l = N sum_l P_l (P_l = the block's prunable
weights), by a largest-remainder rounding (floors, then +1 to the blocks furthest below their x_l,
or -1 to those furthest above, while that brings the total closer). With equal-sized blocks
(every LLaMA-family model) the total is met exactly; otherwise the closest total the greedy finds
is reported as the achieved density.

N_l = M is a dense block (nothing pruned there, its weight budget spent elsewhere); N_l = 0 is
never allowed (a block without weights). So 3:4 and 7:8 have room (some blocks dense, others
at 2:4 / 6:8 or below), and only N = 1 (1:4, 1:8) forces every block to N: DLP equals uniform
there.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Sequence

import numpy as np
import torch

from ..models import decoder_blocks, linear_sublayers
from ..plan import SparsityPlan
from ..pruning import prune_model
from ..scores import NMPattern

# Table 15's patterns (N kept of M)
PATTERNS = ("1:4", "2:4", "3:4", "1:8", "2:8", "3:8", "4:8", "5:8", "6:8", "7:8")


@dataclass
class MixedNM:
    """Per-block N:M patterns derived from a plan, with the budget they meet."""
    pattern: str                 # the uniform pattern whose total is matched, e.g. "2:4"
    n_kept: list[int]            # N_l per block, each in [1, M] (M: a dense block)
    m: int
    param_counts: list[int]      # P_l: prunable weights per block
    target_density: float       # N / M
    achieved_density: float     # sum_l P_l N_l / (M sum_l P_l)
    exact: bool                  # achieved total == uniform total
    room: bool                   # False where the grid forces every block to N (N = 1)

    def patterns(self) -> list[NMPattern | None]:
        """The mask pattern of every block; None for a dense block (N_l = M: nothing pruned)."""
        return [NMPattern(n, self.m) if n < self.m else None for n in self.n_kept]

    def to_dict(self) -> dict:
        return asdict(self)


def grid_has_room(pattern: NMPattern) -> bool:
    """Can any block deviate from N while 1 <= N_l <= M and the total stays N per M? (N < M always:
    one block can take N + 1 and another N - 1 unless N = 1.)"""
    return pattern.n_kept > 1


def allocate_nm(ratios: Sequence[float], param_counts: Sequence[int], pattern: NMPattern | str) -> MixedNM:
    """Per-block N (weights kept of every M) from per-block removal ratios; pure.

    ratios: the plan's per-block fraction removed, whose (parameter-weighted) mean should be
    1 - N/M; param_counts: prunable weights per block (each a multiple of M in practice).
    """
    pattern = NMPattern.parse(pattern) if isinstance(pattern, str) else pattern
    r = np.asarray(ratios, dtype=np.float64)
    P = np.asarray(param_counts, dtype=np.int64)
    if r.ndim != 1 or len(r) == 0 or len(r) != len(P):
        raise ValueError(f"need one ratio and one parameter count per block, got {len(r)} ratios and "
                         f"{len(P)} counts")
    if np.any(P <= 0):
        raise ValueError(f"parameter counts must be positive, got {P.tolist()}")
    if np.any((r < 0) | (r >= 1)):
        raise ValueError(f"ratios must lie in [0, 1), got {np.round(r, 4).tolist()}")
    n, m = pattern.n_kept, pattern.m
    lo, hi = 1, m
    x = np.clip(np.round((1.0 - r) * m, 9), lo, hi)  # rounding at 1e-9: 2.9999999999 is 3
    N = np.clip(np.floor(x).astype(np.int64), lo, hi)
    target = int(n) * int(P.sum())          # sum_l P_l N_l of the uniform pattern
    deficit = target - int((P * N).sum())
    while deficit != 0:
        up = deficit > 0
        movable = (N < hi) if up else (N > lo)
        gap = x - N                          # > 0: below its continuous share
        fits = movable & (P <= abs(deficit))
        if fits.any():
            candidates = fits
        elif (movable & (P < 2 * abs(deficit))).any():   # overshoots, but the total gets closer
            candidates = movable & (P < 2 * abs(deficit))
        else:
            break
        order = np.where(candidates, gap if up else -gap, -np.inf)
        l = int(np.argmax(order))           # ties: the first block
        N[l] += 1 if up else -1
        deficit -= int(P[l]) if up else -int(P[l])
    kept = int((P * N).sum())
    return MixedNM(pattern=str(pattern), n_kept=N.tolist(), m=m, param_counts=P.tolist(),
                   target_density=n / m, achieved_density=kept / (m * int(P.sum())), exact=kept == target,
                   room=grid_has_room(pattern))


def block_parameter_counts(model) -> list[int]:
    """P_l: weights of the linear sublayers of every decoder block (what N:M prunes)."""
    return [sum(layer.weight.numel() for layer in linear_sublayers(block).values())
            for block in decoder_blocks(model)]


def check_plan_for(plan: SparsityPlan, pattern: NMPattern) -> None:
    if plan.sublayer_ratios is not None:
        raise ValueError("mixed N:M assigns one pattern per block; the plan has per-sublayer ratios "
                         "(use granularity 'block')")
    if not math.isclose(plan.target, pattern.sparsity, abs_tol=1e-9):
        raise ValueError(f"the plan targets sparsity {plan.target}, but pattern {pattern} removes "
                         f"{pattern.sparsity}; build the plan for 1 - N/M")


def mixed_patterns(model, plan: SparsityPlan, pattern: NMPattern | str) -> MixedNM:
    pattern = NMPattern.parse(pattern) if isinstance(pattern, str) else pattern
    check_plan_for(plan, pattern)
    return allocate_nm(plan.ratios, block_parameter_counts(model), pattern)


def applied_plan(plan: SparsityPlan, mixed: MixedNM) -> SparsityPlan:
    """The plan the mixed N:M model actually meets: block l removes 1 - N_l/M, and the config records
    the per-block N under "mixed_nm" (what a saved checkpoint's plan.json holds)."""
    if len(mixed.n_kept) != plan.n_blocks:
        raise ValueError(f"{len(mixed.n_kept)} per-block N but the plan has {plan.n_blocks} blocks")
    return replace(plan, ratios=[1.0 - n / mixed.m for n in mixed.n_kept], sublayer_ratios=None,
                   config={**plan.config, "mixed_nm": {"pattern": mixed.pattern, "m": mixed.m,
                                                        "n_kept": list(mixed.n_kept),
                                                        "allocated_ratios": list(plan.ratios)}})


def prune_mixed_nm(model, plan: SparsityPlan, pattern: NMPattern | str, method: str,
                   calib_ids: torch.Tensor | None = None, **prune_options) -> MixedNM:
    """Prune `model` in place with the per-block patterns derived from `plan` (one engine run,
    `pruning.prune_model`); returns the allocation. A dense block (N_l = M) gets ratio 0 and no
    pattern: Wanda leaves it untouched (SparseGPT, as its reference, still zeroes dead inputs)."""
    mixed = mixed_patterns(model, plan, pattern)
    prune_model(model, applied_plan(plan, mixed), method, calib_ids, nm=mixed.patterns(), **prune_options)
    return mixed


def nm_compliance(model, mixed: MixedNM) -> dict:
    """Checks on the pruned weights themselves: kept count, and blocks whose every row group of M
    has at most / exactly N_l non-zeros (at most: a kept weight may be zero already)."""
    kept, total, at_most, exact = 0, 0, [], []
    for block, n in zip(decoder_blocks(model), mixed.n_kept):
        nz_ok, eq_ok = True, True
        for layer in linear_sublayers(block).values():
            W = layer.weight.data
            counts = (W != 0).reshape(W.shape[0], -1, mixed.m).sum(-1)
            nz_ok &= bool((counts <= n).all())
            eq_ok &= bool((counts == n).all())
            kept += int((W != 0).sum())
            total += W.numel()
        at_most.append(nz_ok)
        exact.append(eq_ok)
    return {"nonzero": kept, "weights": total, "density": kept / total, "blocks_at_most_n": all(at_most),
            "blocks_exactly_n": all(exact)}
