"""The identity of a model's weights for cache keys: every tensor's exact bytes.

Every parameter and buffer is hashed (names, shapes, dtypes and bytes), so a checkpoint rewritten
in place, one changed weight, or a different dtype gives a different fingerprint, and a cached
result of other weights can never be returned. Bytes, not a float checksum: a parallel float sum
depends on the thread count. A tensor shared under two names (tied embeddings) is read once.
Cost: one pass over the weights at load time (~0.3 s per GB on one core).
"""
from __future__ import annotations

import hashlib

import torch
from torch import nn


@torch.no_grad()
def model_fingerprint(model: nn.Module) -> str:
    h = hashlib.sha256()
    seen: dict[tuple, str] = {}
    for name, t in model.state_dict(keep_vars=False).items():
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        if t.device.type == "meta":
            raise ValueError(f"cannot fingerprint {name}: it is on the meta device (weights not loaded)")
        ident = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if t.numel() and ident in seen:
            h.update(f"alias:{seen[ident]}".encode())
            continue
        seen[ident] = name
        data = t.detach().contiguous().cpu()
        if data.numel():
            h.update(data.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()[:20]
