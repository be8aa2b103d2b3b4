"""One-token products bound to preallocated buffers: the per-token call of the lean decoder.

A decoded token multiplies a few hundred small matrices by one vector each; going through a
module's forward costs ~9 us of dispatch per product (module call, shape checks, a fresh output),
as much as a sparse product's arithmetic. A bound product decides everything once: it reads the
input vector x and writes the output vector y, both preallocated, and does nothing else per call.
Each linear format (sparse_linear.py, bitmask.py) binds its own; this module holds what they share.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch


def check_matvec_buffers(in_features: int, out_features: int, x: torch.Tensor, y: torch.Tensor) -> None:
    """Raise ValueError unless x (C_in,) and y (C_out,) are contiguous fp32 CPU vectors, the buffers a
    bound product reads and writes."""
    for name, t, n in (("x", x, in_features), ("y", y, out_features)):
        if t.shape != (n,) or t.dtype != torch.float32 or not t.is_contiguous() or t.device.type != "cpu":
            raise ValueError(f"{name} must be a contiguous float32 CPU vector of shape ({n},), got "
                             f"{t.dtype} {tuple(t.shape)} on {t.device}")


def torch_matvec(weight: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor,
                 y: torch.Tensor) -> Callable[[], None]:
    """A call that writes W x (+ b) into y for whatever x holds then: `torch.mv` / `torch.addmv` with
    `out=`, nothing else per call. W (C_out, C_in), strided or sparse CSR (torch multiplies both into `out`
    without a temporary); call it under `torch.no_grad()`."""
    check_matvec_buffers(weight.shape[1], weight.shape[0], x, y)
    if bias is None:
        return partial(torch.mv, weight, x, out=y)
    return partial(torch.addmv, bias, weight, x, out=y)
