"""A pruned model's block weights stored compactly, so configurations that prune identically and
measure different things (other texts, the LOD, zero-shot, fine-tuning) prune once per cache.

Pruning changes only the prunable weights of the decoder blocks. Magnitude and Wanda only zero
weights: a keep-mask of one bit per weight, applied to the dense weights, gives the pruned model
back bit for bit. SparseGPT also updates the kept weights (the OBS step), so their values are
stored too. Entries are cached by the pruning key (`ExperimentConfig.key("prune", ...)`), which holds
the weights' fingerprint and the code version of every stage up to pruning.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .models import decoder_blocks, linear_sublayers

# Methods whose pruning changes the values of the kept weights, not only which weights are zero.
WEIGHT_UPDATING_METHODS = ("sparsegpt",)
# A pruned model whose entry would be larger than this is not stored (a 7B model's SparseGPT entry
# is ~4 GB; re-pruning it on a GPU takes about a minute).
MAX_ENTRY_BYTES = 1 << 30


def entry_bytes(model: nn.Module, with_values: bool, density: float) -> int:
    """Size of the entry `capture` would make (masks: 1 bit per weight; values: the kept ones)."""
    total = 0
    for block in decoder_blocks(model):
        for layer in linear_sublayers(block).values():
            W = layer.weight
            total += (W.numel() + 7) // 8
            if with_values:
                total += int(W.numel() * density) * W.element_size()
    return total


@torch.no_grad()
def capture(model: nn.Module, with_values: bool) -> dict:
    """{"masks": {(block, sublayer): packed keep bits}, "values": {...: kept weights} or None}."""
    masks, values = {}, ({} if with_values else None)
    for index, block in enumerate(decoder_blocks(model)):
        for name, layer in linear_sublayers(block).items():
            W = layer.weight  # (C_out, C_in), possibly a transposed view
            keep = (W != 0).cpu()
            key = f"{index}.{name}"
            masks[key] = torch.from_numpy(np.packbits(keep.reshape(-1).numpy()))
            if with_values:
                values[key] = W[keep.to(W.device)].cpu().clone()
    return {"masks": masks, "values": values}


@torch.no_grad()
def apply_(model: nn.Module, entry: dict) -> None:
    """Prune the model (holding its DENSE weights) to the captured state, in place."""
    masks, values = entry["masks"], entry["values"]
    seen = 0
    for index, block in enumerate(decoder_blocks(model)):
        for name, layer in linear_sublayers(block).items():
            key = f"{index}.{name}"
            if key not in masks:
                raise ValueError(f"stored pruned weights have no mask for block {index} sublayer {name}")
            W = layer.weight
            bits = np.unpackbits(masks[key].numpy(), count=W.numel())
            keep = torch.from_numpy(bits.astype(bool)).reshape(W.shape).to(W.device)
            W.masked_fill_(~keep, 0)
            if values is not None:
                W[keep] = values[key].to(device=W.device, dtype=W.dtype)
            seen += 1
    if seen != len(masks):
        raise ValueError(f"stored pruned weights hold {len(masks)} sublayers, the model has {seen}")
