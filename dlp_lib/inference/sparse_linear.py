"""Linear layers that multiply a pruned weight in a compressed format, and the dense twin they are
compared against.

Batch-1 decoding multiplies every weight matrix by one vector per token, so its time is mostly
the time of reading the weights. A compressed format reads fewer bytes only below some density:
CSR stores a 4-byte value and a 4-byte column index per kept weight (plus one row pointer per
row), so it reads less than the dense fp32 matrix below ~50% density, and the kernel's irregular
access moves the real break-even lower still. The break-even is therefore *measured* on the
machine (`break_even.py`) and a layer is stored sparse only below it.

Both classes take x (..., C_in) and return (..., C_out) with the same arithmetic path for dense
and sparse (a plain `torch.mv` for one token, a matrix product otherwise) and the same few tensor
operations around it (a decoded token makes ~200 of these calls; each tensor operation costs a
microsecond or more), so a speedup measured between them is the format's, not the framework's.
They are deliberately not `nn.Linear` subclasses: `linear_sublayers` must not find them again and
prune a compressed matrix.
"""
from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch import nn

from .bound_matvec import check_matvec_buffers, torch_matvec

# Formats a pruned layer may be stored in: torch's (multiplied by kernels torch maintains on CPU)
# and the project's bitmask-bf16 format (bitmask.py, its own C++ kernel).
TORCH_SPARSE_FORMATS = ("csr", "bsr", "coo")
SPARSE_FORMATS = (*TORCH_SPARSE_FORMATS, "bitmask")
INDEX_BYTES = 4  # int32 indices (CSR/BSR); COO keeps int64 (torch requires it)


class DenseLinear(nn.Module):
    """y = x W^T + b through `torch.mv` (one token) or `x @ W^T`; W (C_out, C_in) dense, shared with
    the layer it came from (a tied lm_head keeps sharing the embedding's storage)."""

    format = "dense"

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        if weight.dim() != 2:
            raise ValueError(f"DenseLinear needs a 2-D weight (C_out, C_in), got shape {tuple(weight.shape)}")
        self.weight = weight if isinstance(weight, nn.Parameter) else nn.Parameter(weight, requires_grad=False)
        self.bias = bias
        self.out_features, self.in_features = weight.shape

    @classmethod
    def from_linear(cls, layer: nn.Linear) -> "DenseLinear":
        return cls(layer.weight, layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() == self.in_features:                          # one token: as few tensor ops as possible
            y = torch.mv(self.weight, x.reshape(-1))               # (C_out,)
        else:
            y = x.reshape(-1, self.in_features) @ self.weight.t()  # (tokens, C_out)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features)

    def bind_matvec(self, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
        """The one-token product into preallocated buffers (the lean decoder's per-token call)."""
        return torch_matvec(self.weight, self.bias, x, y)

    def stored_bytes(self) -> int:
        """Bytes of the weight read per token (the bias is counted by the caller's report)."""
        return self.weight.numel() * self.weight.element_size()

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, format=dense"


def to_compressed(W: torch.Tensor, fmt: str, blocksize: int = 4) -> torch.Tensor:
    """The (C_out, C_in) matrix W in torch's `fmt`, explicit zeros dropped; CSR/BSR with int32 indices."""
    if fmt not in TORCH_SPARSE_FORMATS:
        raise ValueError(f"Unknown torch sparse format {fmt!r}; allowed: {', '.join(TORCH_SPARSE_FORMATS)}")
    W = W.detach()
    with warnings.catch_warnings():  # "sparse CSR support is in beta": said once per process, not per layer
        warnings.simplefilter("ignore", UserWarning)
        return _compress(W, fmt, blocksize)


def _compress(W: torch.Tensor, fmt: str, blocksize: int) -> torch.Tensor:
    if fmt == "csr":
        c = W.to_sparse_csr()
        return torch.sparse_csr_tensor(c.crow_indices().to(torch.int32), c.col_indices().to(torch.int32),
                                       c.values(), W.shape, check_invariants=False)
    if fmt == "bsr":
        if W.shape[0] % blocksize or W.shape[1] % blocksize:
            raise ValueError(f"BSR with blocksize {blocksize} needs both dimensions divisible by it, "
                             f"got shape {tuple(W.shape)}")
        b = W.to_sparse_bsr((blocksize, blocksize))
        return torch.sparse_bsr_tensor(b.crow_indices().to(torch.int32), b.col_indices().to(torch.int32),
                                       b.values(), W.shape, check_invariants=False)
    return W.to_sparse().coalesce()


def compressed_bytes(S: torch.Tensor) -> int:
    """Bytes of a compressed matrix: values + indices (+ row pointers), as stored."""
    layout = S.layout
    if layout in (torch.sparse_csr, torch.sparse_bsr):
        parts = (S.values(), S.col_indices(), S.crow_indices())
    elif layout == torch.sparse_coo:
        parts = (S.values(), S.indices())
    else:
        raise ValueError(f"not a compressed matrix: layout {layout}")
    return sum(p.numel() * p.element_size() for p in parts)


class SparseLinear(nn.Module):
    """y = x W^T + b with W stored compressed (CSR, BSR or COO); one token: `torch.mv` (CSR) or
    `torch.sparse.mm(W, x^T)`; the prompt: `torch.sparse.mm(W, X^T)^T`."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, *, fmt: str = "csr",
                 blocksize: int = 4):
        super().__init__()
        if weight.dim() != 2:
            raise ValueError(f"SparseLinear needs a 2-D weight (C_out, C_in), got shape {tuple(weight.shape)}")
        self.format = fmt
        self.out_features, self.in_features = weight.shape
        self.W = to_compressed(weight, fmt, blocksize)            # (C_out, C_in), compressed
        self.bias = bias  # shared with the layer it came from
        self.nnz = int((weight != 0).sum())

    @classmethod
    def from_linear(cls, layer: nn.Linear, fmt: str = "csr", blocksize: int = 4) -> "SparseLinear":
        return cls(layer.weight, layer.bias, fmt=fmt, blocksize=blocksize)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() == self.in_features and self.format == "csr":  # one token
            y = torch.mv(self.W, x.reshape(-1))                      # (C_out,)
        else:
            y = torch.sparse.mm(self.W, x.reshape(-1, self.in_features).t().contiguous()).t()  # (tokens, C_out)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def bind_matvec(self, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
        """The one-token product into preallocated buffers (the lean decoder's per-token call)."""
        if self.format == "csr":
            return torch_matvec(self.W, self.bias, x, y)
        check_matvec_buffers(self.in_features, self.out_features, x, y)
        W, bias, X = self.W, self.bias, x.view(-1, 1)

        def product() -> None:   # BSR and COO have no out= product: one temporary, then a copy
            y.copy_(torch.sparse.mm(W, X).view(-1))
            if bias is not None:
                y.add_(bias)
        return product

    def stored_bytes(self) -> int:
        return compressed_bytes(self.W)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, format={self.format}, "
                f"density={self.nnz / (self.in_features * self.out_features):.3f}")


def compressed_linear(layer: nn.Linear, fmt: str) -> nn.Module:
    """`layer` with its weight stored in `fmt` (a torch format or the bitmask-bf16 format)."""
    if fmt == "bitmask":
        from .bitmask import BitmaskLinear
        return BitmaskLinear.from_linear(layer)
    return SparseLinear.from_linear(layer, fmt)


def semi_structured_linear(layer: nn.Linear) -> nn.Module:
    """2:4 semi-structured weight (`torch.sparse.to_sparse_semi_structured`, NVIDIA sparse tensor
    cores). Only on a CUDA device with a 2:4 weight; refuses otherwise (there is no CPU kernel,
    and a silent dense fallback would report a speedup that did not happen). Unmeasured here."""
    W = layer.weight
    if W.device.type != "cuda":
        raise ValueError(f"2:4 semi-structured kernels need a CUDA device; the weight is on {W.device.type}")
    groups = (W.detach().reshape(W.shape[0], -1, 4) != 0).sum(-1)
    if W.shape[1] % 4 or bool((groups > 2).any()):
        raise ValueError("2:4 semi-structured needs at most 2 non-zeros in every 4 consecutive inputs "
                         "(prune with --nm 2:4)")
    from torch.sparse import to_sparse_semi_structured
    out = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None,
                    device=W.device, dtype=W.dtype)
    out.weight = nn.Parameter(to_sparse_semi_structured(W.detach()), requires_grad=False)
    if layer.bias is not None:
        out.bias = layer.bias
    return out
