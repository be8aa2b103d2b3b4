"""Perplexity on non-overlapping windows, achieved sparsity, and the LOD of Table 2."""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .calibration import CalibrationEngine
from .models import decoder_blocks, linear_sublayers
from .scores import wanda_scores


def evaluation_numerics(device, model_dtype: torch.dtype, compute_dtype: torch.dtype | None):
    """The context an evaluation's forward runs in: the weights' own dtype, or autocast to a
    16-bit compute dtype over fp32 weights (matmuls in bf16 with fp32 accumulation; norms,
    softmax and the loss stay fp32), which leaves the weights, and so the masks, untouched."""
    if compute_dtype is None or compute_dtype == model_dtype:
        return contextlib.nullcontext()
    if model_dtype != torch.float32 or compute_dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"evaluation compute dtype {compute_dtype} over {model_dtype} weights is not allowed; "
                         "allowed: the weights' dtype, or bfloat16/float16 autocast over float32 weights")
    return torch.autocast(device_type=torch.device(device).type, dtype=compute_dtype)


@torch.no_grad()
def perplexity(model, windows: torch.Tensor, *, device=None, batch_size: int = 1, progress: bool = True,
               desc: str = "perplexity", compute_dtype: torch.dtype | None = None) -> float:
    """exp(mean next-token NLL) over non-overlapping windows (paper: T=2048, batch 1).

    compute_dtype: None (the weights' dtype) or a 16-bit autocast dtype over fp32 weights."""
    first = next(model.parameters())
    device = torch.device(device) if device is not None else first.device
    total_nll, total_tokens = 0.0, 0
    for batch in tqdm(windows.split(batch_size), desc=desc, disable=not progress, leave=False):
        batch = batch.to(device)
        with evaluation_numerics(device, first.dtype, compute_dtype):
            logits = model(batch, use_cache=False).logits
        logits = logits[:, :-1].float()
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum")
        total_nll += float(nll)
        total_tokens += batch[:, 1:].numel()
    return math.exp(total_nll / total_tokens)


@torch.no_grad()
def achieved_sparsity(model) -> dict:
    """Fraction of exact zeros.

    overall: over the prunable weights of all blocks (what the method prunes); per_block and
    per_sublayer likewise; overall_block_params: over EVERY parameter of every decoder block (norms,
    biases, routers included); prunable_share: the fraction of the blocks' parameters that are
    prunable weights (so overall_block_params ~ overall * prunable_share after pruning).
    """
    per_block, per_sublayer = [], []
    zeros_total = numel_total = 0
    block_zeros = block_numel = 0
    for block in decoder_blocks(model):
        z = n = 0
        subs = {}
        for name, layer in linear_sublayers(block).items():
            lz, ln = int((layer.weight == 0).sum()), layer.weight.numel()
            subs[name] = lz / ln
            z, n = z + lz, n + ln
        per_block.append(z / n)
        per_sublayer.append(subs)
        zeros_total, numel_total = zeros_total + z, numel_total + n
        for p in block.parameters():
            block_zeros += int((p == 0).sum())
            block_numel += p.numel()
    return {"overall": zeros_total / numel_total, "mean_over_blocks": sum(per_block) / len(per_block),
            "overall_block_params": block_zeros / block_numel, "prunable_share": numel_total / block_numel,
            "per_block": per_block, "per_sublayer": per_sublayer}


@torch.no_grad()
def layer_outlier_distribution(model, calib_ids: torch.Tensor, m: float = 7.0, *, device=None,
                               progress: bool = True) -> dict:
    """LOD (Table 2): per block, % of weights with Wanda score > m * mean score, zeros included."""
    per_block = []

    def visit(v):
        pool = torch.cat([wanda_scores(l.weight, v.stats["wanda"][n]).flatten() for n, l in v.sublayers.items()])
        per_block.append(float((pool > m * pool.mean()).sum()) * 100.0 / pool.numel())
        return False

    CalibrationEngine(model, calib_ids, device=device, progress=progress).run(
        visit, statistics=("wanda",), desc=f"LOD (M={m})")
    return {"mean": sum(per_block) / len(per_block), "per_block": per_block, "m": m}
