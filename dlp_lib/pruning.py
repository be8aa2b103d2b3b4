"""Pass 2: prune block by block with Magnitude, Wanda or SparseGPT following a SparsityPlan."""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .calibration import BlockVisit, CalibrationEngine
from .models import decoder_blocks, linear_sublayers
from .plan import SparsityPlan
from .scores import GROUPS, NMPattern, magnitude_scores, prune_mask, wanda_scores
from .sparsegpt import sparsegpt_prune_

METHODS = ("magnitude", "wanda", "sparsegpt")


def _check(method: str, plan: SparsityPlan, group: str, nm: NMPattern | None, n_blocks: int) -> None:
    if method not in METHODS:
        raise ValueError(f"Unknown pruning method {method!r}; allowed: {', '.join(METHODS)}")
    if group not in GROUPS:
        raise ValueError(f"Unknown comparison group {group!r}; allowed: {', '.join(GROUPS)}")
    if len(plan.ratios) != n_blocks:
        raise ValueError(f"Plan has {len(plan.ratios)} ratios but the model has {n_blocks} blocks")
    if nm is not None and len(set(plan.ratios)) > 1:
        # The reference code silently ignores layerwise ratios under N:M; we refuse instead.
        raise ValueError("N:M pruning applies one pattern everywhere; use allocation 'uniform' with --nm")


def _prune_sublayers(v: BlockVisit, plan: SparsityPlan, method: str, group: str, nm: NMPattern | None) -> None:
    for name, layer in v.sublayers.items():
        ratio = plan.ratio(v.index, name)
        if method == "sparsegpt":
            sparsegpt_prune_(layer.weight, v.stats["hessian"][name], ratio, nm=nm)
            continue
        scores = (magnitude_scores(layer.weight) if method == "magnitude"
                  else wanda_scores(layer.weight, v.stats["wanda"][name]))
        layer.weight.data[prune_mask(scores, ratio, group, nm)] = 0


@torch.no_grad()
def prune_model(model, plan: SparsityPlan, method: str, calib_ids: torch.Tensor | None = None, *,
                group: str = "per_output", nm: NMPattern | None = None, device=None, act_dtype=None,
                progress: bool = True, stream_activations: bool = False) -> None:
    """Prune `model` in place. Wanda/SparseGPT run sequentially: block l is calibrated on the
    outputs of the already pruned blocks < l. Magnitude needs no data."""
    blocks = decoder_blocks(model)
    _check(method, plan, group, nm, len(blocks))
    if method == "magnitude":
        for index, block in enumerate(tqdm(blocks, desc="magnitude pruning", disable=not progress, leave=False)):
            _prune_sublayers(BlockVisit(index, block, linear_sublayers(block)), plan, method, group, nm)
        return
    if calib_ids is None:
        raise ValueError(f"{method} needs calibration data (calib_ids)")
    stat = "hessian" if method == "sparsegpt" else "wanda"

    def visit(v: BlockVisit) -> bool:
        _prune_sublayers(v, plan, method, group, nm)
        return True

    engine = CalibrationEngine(model, calib_ids, device=device, act_dtype=act_dtype, progress=progress,
                               stream_activations=stream_activations)
    engine.run(visit, statistics=(stat,), sequential=True, desc=f"{method} pruning (pass 2)")
