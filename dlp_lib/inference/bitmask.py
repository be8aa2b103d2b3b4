"""The bitmask-bf16 sparse format: one bit per weight position (row by row, 32-column words) plus
the kept weights packed as bf16, and the linear layer that multiplies it.

Bytes per kept weight: 2 (the bf16 value) + 1 / (8 density) (the mask) + a row pointer per row,
against 8 for torch's CSR (fp32 value + int32 column index): at 30% density 2.42 bytes, so the
weight-read bound over the fp32 dense model is 5.5x (2.8x over a bf16 dense model) where CSR's
is 1.6x. The values are the weights rounded to bf16 (round to nearest even); products and sums
are fp32, so the layer computes exactly the dense product of the bf16-rounded weights up to fp32
summation order. One token goes through the C++ kernel (native.py); several tokens (the prompt)
call it once per token.
"""
from __future__ import annotations

import ctypes
from functools import partial
from typing import Callable

import torch
from torch import nn

from . import native
from .bound_matvec import check_matvec_buffers

WORD_BITS = 32


def _words(cols: int) -> int:
    return -(-cols // WORD_BITS)


class BitmaskMatrix:
    """A (rows, cols) matrix as mask words (int32 bit patterns), packed bf16 values and int32 row
    offsets; `matvec(x)` multiplies one fp32 vector."""

    def __init__(self, mask: torch.Tensor, values: torch.Tensor, row_ptr: torch.Tensor, shape: tuple[int, int]):
        self.mask, self.values, self.row_ptr, self.shape = mask, values, row_ptr, tuple(shape)
        self._ptrs = (mask.data_ptr(), values.data_ptr(), row_ptr.data_ptr())
        self._gemv = native.load().dlp_bitmask_bf16_gemv

    @classmethod
    @torch.no_grad()
    def from_dense(cls, W: torch.Tensor) -> "BitmaskMatrix":
        """Pack W (rows, cols): the non-zeros of W are kept, as bf16."""
        if W.dim() != 2:
            raise ValueError(f"the bitmask format needs a 2-D weight (C_out, C_in), got shape {tuple(W.shape)}")
        if not W.is_floating_point():
            raise ValueError(f"the bitmask format needs a floating-point weight, got {W.dtype}")
        W = W.detach().to("cpu")
        rows, cols = W.shape
        if W.numel() >= 2**31:
            raise ValueError(f"the bitmask format indexes values with int32; a {rows}x{cols} matrix is too large")
        keep = W != 0
        padded = torch.zeros(rows, _words(cols) * WORD_BITS, dtype=torch.int64)
        padded[:, :cols] = keep.to(torch.int64)
        bits = (padded.view(rows, -1, WORD_BITS) << torch.arange(WORD_BITS, dtype=torch.int64)).sum(-1)
        mask = torch.where(bits >= 2**31, bits - 2**32, bits).to(torch.int32).contiguous()   # uint32 bit patterns
        # row-major order, then one word of padding: the kernel loads whole 32-value words
        values = torch.cat([W[keep].to(torch.bfloat16).view(torch.int16), torch.zeros(WORD_BITS, dtype=torch.int16)])
        row_ptr = torch.zeros(rows + 1, dtype=torch.int32)
        row_ptr[1:] = keep.sum(1).cumsum(0).to(torch.int32)
        return cls(mask, values, row_ptr, (rows, cols))

    @property
    def nnz(self) -> int:
        return int(self.row_ptr[-1])

    def nbytes(self) -> int:
        """Bytes read by one product: mask words + kept values + row offsets (the padding word is not read)."""
        return self.mask.numel() * 4 + self.nnz * 2 + self.row_ptr.numel() * 4

    def matvec(self, x: torch.Tensor, *, threads: int | None = None, vectorised: bool = True) -> torch.Tensor:
        """y = W x for one fp32 vector x (cols,) -> (rows,); `threads` defaults to torch's."""
        rows, cols = self.shape
        if x.shape != (cols,):
            raise ValueError(f"x must have shape ({cols},), got {tuple(x.shape)}")
        if x.dtype != torch.float32 or not x.is_contiguous():
            x = x.to(torch.float32).contiguous()
        y = torch.empty(rows, dtype=torch.float32)
        threads = torch.get_num_threads() if threads is None else int(threads)
        # a decoded token makes a few hundred of these calls: the pointers are taken once, at packing
        self._gemv(*self._ptrs, x.data_ptr(), y.data_ptr(), rows, cols, threads, int(vectorised))
        return y

    def bind_matvec(self, x: torch.Tensor, y: torch.Tensor, *, threads: int | None = None) -> Callable[[], None]:
        """A call that writes W x into y for whatever x holds then: the kernel with every argument
        converted once, here (`threads` defaults to torch's now). x and y must outlive the call."""
        rows, cols = self.shape
        check_matvec_buffers(cols, rows, x, y)
        threads = torch.get_num_threads() if threads is None else int(threads)
        args = [ctypes.c_void_p(p) for p in (*self._ptrs, x.data_ptr(), y.data_ptr())]
        return partial(self._gemv, *args, ctypes.c_int64(rows), ctypes.c_int64(cols), ctypes.c_int(threads),
                       ctypes.c_int(1))


class BitmaskLinear(nn.Module):
    """y = x W^T + b with W in the bitmask-bf16 format (module twin of `SparseLinear`)."""

    format = "bitmask"

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        self.W = BitmaskMatrix.from_dense(weight)
        self.out_features, self.in_features = self.W.shape
        self.bias = bias  # shared with the layer it came from
        self.nnz = self.W.nnz

    @classmethod
    def from_linear(cls, layer: nn.Linear) -> "BitmaskLinear":
        return cls(layer.weight, layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() == self.in_features:                          # one token: as few tensor ops as possible
            y = self.W.matvec(x.reshape(-1))                       # (C_out,)
        else:
            y = torch.stack([self.W.matvec(row) for row in x.reshape(-1, self.in_features)])  # (tokens, C_out)
        if self.bias is not None:
            y = y + self.bias
        if y.dtype != x.dtype:
            y = y.to(x.dtype)
        return y.view(*x.shape[:-1], self.out_features)

    def bind_matvec(self, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
        """The one-token product into preallocated buffers (the lean decoder's per-token call)."""
        product = self.W.bind_matvec(x, y)
        if self.bias is None:
            return product
        bias = self.bias

        def product_plus_bias() -> None:
            product()
            y.add_(bias)
        return product_plus_bias

    def stored_bytes(self) -> int:
        return self.W.nbytes()

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, format=bitmask, "
                f"density={self.nnz / (self.in_features * self.out_features):.3f}")
