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


def default_group(method: str) -> str:
    """The comparison group each method's reference code uses: Magnitude compares a whole layer
    (Wanda's and the DLP authors' `prune_magnitude`), Wanda and SparseGPT each output row."""
    return "per_layer" if method == "magnitude" else "per_output"


def block_patterns(nm, n_blocks: int) -> list[NMPattern | None]:
    """One N:M pattern (or None) per block from a single pattern, None, or a per-block sequence."""
    if nm is None or isinstance(nm, NMPattern):
        return [nm] * n_blocks
    patterns = list(nm)
    if len(patterns) != n_blocks:
        raise ValueError(f"{len(patterns)} per-block N:M patterns given but the model has {n_blocks} blocks")
    if not all(p is None or isinstance(p, NMPattern) for p in patterns):
        raise ValueError("per-block N:M patterns must each be an NMPattern or None (a block the plan's ratio prunes)")
    return patterns


def _check(method: str, plan: SparsityPlan, group: str, nm, n_blocks: int) -> None:
    if method not in METHODS:
        raise ValueError(f"Unknown pruning method {method!r}; allowed: {', '.join(METHODS)}")
    if group not in GROUPS:
        raise ValueError(f"Unknown comparison group {group!r}; allowed: {', '.join(GROUPS)}")
    if len(plan.ratios) != n_blocks:
        raise ValueError(f"Plan has {len(plan.ratios)} ratios but the model has {n_blocks} blocks")
    if isinstance(nm, NMPattern) and len(set(plan.ratios)) > 1:
        # The reference code silently ignores layerwise ratios under N:M; we refuse instead. A
        # non-uniform plan is turned into per-block patterns by compression.mixed_nm.
        raise ValueError("one N:M pattern applies everywhere; use allocation 'uniform', or per-block patterns "
                         "(compression.mixed_nm) for a non-uniform plan")
    block_patterns(nm, n_blocks)


_SCORE_CHUNK = 1 << 22  # scores materialised at once (16 MB fp32) when the comparison group allows it


def prune_sublayers(v: BlockVisit, plan: SparsityPlan, method: str, group: str, nm: NMPattern | None) -> None:
    """Prune the block's sublayers where they are (on the GPU during an engine run). Per-output and
    N:M groups are row-local, so scores and masks are made a slice of rows at a time."""
    for name, layer in v.sublayers.items():
        ratio = plan.ratio(v.index, name)
        if method == "sparsegpt":
            W = layer.weight  # (C_out, C_in); a transposed view for Conv1D / transposed experts
            if W.is_contiguous():
                sparsegpt_prune_(W, v.stats["hessian"][name], ratio, nm=nm)
            else:
                dense = W.contiguous()
                sparsegpt_prune_(dense, v.stats["hessian"][name], ratio, nm=nm)
                W.copy_(dense)
            continue
        W = layer.weight.data
        norms = v.stats["wanda"][name] if method == "wanda" else None

        def scores(rows):
            return magnitude_scores(W[rows]) if norms is None else wanda_scores(W[rows], norms)

        if group == "per_layer" and nm is None:
            W.masked_fill_(prune_mask(scores(slice(None)), ratio, group, nm), 0)
            continue
        step = max(1, _SCORE_CHUNK // max(W.shape[1], 1))
        for r0 in range(0, W.shape[0], step):
            rows = slice(r0, r0 + step)
            W[rows].masked_fill_(prune_mask(scores(rows), ratio, group, nm), 0)


@torch.no_grad()
def prune_model(model, plan: SparsityPlan, method: str, calib_ids: torch.Tensor | None = None, *,
                group: str | None = None, nm=None, device=None, act_dtype=None,
                progress: bool = True, stream_activations: bool = False, **engine_options) -> None:
    """Prune `model` in place. Wanda/SparseGPT run sequentially: block l is calibrated on the
    outputs of the already pruned blocks < l. Magnitude needs no data. engine_options go to
    CalibrationEngine (batch_size, offload, prefetch, pin_memory). group None: the method's
    default (`default_group`: per_layer for Magnitude, per_output otherwise).

    nm: None, one NMPattern for every block, or a sequence of one NMPattern per block (mixed
    N:M, Appendix E.2); under N:M the pattern, not the plan's ratio, sets each block's sparsity."""
    blocks = decoder_blocks(model)
    if group is None and method in METHODS:
        group = default_group(method)
    _check(method, plan, group, nm, len(blocks))
    patterns = block_patterns(nm, len(blocks))
    if method == "magnitude":
        for index, block in enumerate(tqdm(blocks, desc="magnitude pruning", disable=not progress, leave=False)):
            prune_sublayers(BlockVisit(index, block, linear_sublayers(block)), plan, method, group,
                            patterns[index])
        return
    if calib_ids is None:
        raise ValueError(f"{method} needs calibration data (calib_ids)")
    stat = "hessian" if method == "sparsegpt" else "wanda"

    def visit(v: BlockVisit) -> bool:
        prune_sublayers(v, plan, method, group, patterns[v.index])
        return True

    engine = CalibrationEngine(model, calib_ids, device=device, act_dtype=act_dtype, progress=progress,
                               stream_activations=stream_activations, **engine_options)
    engine.run(visit, statistics=(stat,), sequential=True, desc=f"{method} pruning (pass 2)")
