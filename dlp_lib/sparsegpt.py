"""SparseGPT (Frantar & Alistarh, 2023): mask selection by OBS saliency and error-compensating update.

The arithmetic is the reference's, operation for operation. For speed on a GPU only: no
host-device synchronisation inside the column loop (the pruned entries are zeroed with
masked_fill instead of boolean indexing), and the loop over the 128 columns of a full block is
captured once per shape as a CUDA graph and replayed (the same kernels in the same order, so
the same results as running them one by one; set DLP_SPARSEGPT_GRAPHS=0 to turn it off).
"""
from __future__ import annotations

import os

import torch

from .scores import NMPattern


def _prune_columns_(W1: torch.Tensor, Q1: torch.Tensor, Err1: torch.Tensor, Hinv1: torch.Tensor,
                    mask1: torch.Tensor, nm: NMPattern | None, quantizer=None, i1: int = 0) -> None:
    """The reference's inner loop over the columns of one block, in place on W1, Q1, Err1, mask1.

    With a `quantizer` (GPTQ, joint prune-and-quantize) the kept weights of each column are
    rounded to its grid after the mask is applied, and the pruned ones are set to zero again
    (a zero need not be a grid point), before the error is propagated.
    """
    count = W1.shape[1]
    for i in range(count):
        w = W1[:, i]
        d = Hinv1[i, i]
        if nm is not None and i % nm.m == 0 and i + nm.m <= count:
            sal = W1[:, i:i + nm.m] ** 2 / (torch.diag(Hinv1)[i:i + nm.m].reshape(1, -1)) ** 2
            idx = torch.topk(sal, nm.m - nm.n_kept, dim=1, largest=False).indices
            mask1.scatter_(1, i + idx, True)
        q = w.masked_fill(mask1[:, i], 0)  # = w.clone(); q[mask1[:, i]] = 0, without a sync
        if quantizer is not None:
            q = quantizer(q, i1 + i, mask1[:, i:]).masked_fill_(mask1[:, i], 0)
        Q1[:, i] = q
        err = (w - q) / d
        W1[:, i:] -= err.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
        Err1[:, i] = err


class _ColumnGraph:
    """`_prune_columns_` on static buffers of one shape, captured as a CUDA graph."""

    def __init__(self, rows: int, count: int, nm: NMPattern | None, device: torch.device):
        self.W1 = torch.zeros(rows, count, device=device)
        self.Q1 = torch.zeros(rows, count, device=device)
        self.Err1 = torch.zeros(rows, count, device=device)
        self.Hinv1 = torch.eye(count, device=device)
        self.mask1 = torch.zeros(rows, count, dtype=torch.bool, device=device)
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up (library handles, workspaces) off the capture
            _prune_columns_(self.W1, self.Q1, self.Err1, self.Hinv1, self.mask1, nm)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            _prune_columns_(self.W1, self.Q1, self.Err1, self.Hinv1, self.mask1, nm)

    def __call__(self, W1, Hinv1, mask1):
        self.W1.copy_(W1)
        self.Hinv1.copy_(Hinv1)
        self.mask1.copy_(mask1)
        self.graph.replay()  # writes every column of Q1 and Err1
        return self.Q1, self.Err1, self.mask1


_GRAPHS: dict = {}
_GRAPHS_BROKEN: set = set()


def _column_graph(rows: int, count: int, nm: NMPattern | None, device: torch.device) -> _ColumnGraph | None:
    if os.environ.get("DLP_SPARSEGPT_GRAPHS", "1") == "0":
        return None
    key = (str(device), rows, count, None if nm is None else (nm.n_kept, nm.m))
    if key in _GRAPHS_BROKEN:
        return None
    if key not in _GRAPHS:
        try:
            _GRAPHS[key] = _ColumnGraph(rows, count, nm, device)
        except RuntimeError:  # capture not possible here: run the loop eagerly
            _GRAPHS_BROKEN.add(key)
            return None
    return _GRAPHS[key]


def clear_graph_cache() -> None:
    """Free the captured column-loop graphs and their buffers."""
    _GRAPHS.clear()


@torch.no_grad()
def sparsegpt_prune_(weight: torch.Tensor, hessian: torch.Tensor, ratio: float, *, blocksize: int = 128,
                     percdamp: float = 0.01, nm: NMPattern | None = None, keep_mask: torch.Tensor | None = None,
                     quantizer=None) -> torch.Tensor:
    """Prune `weight` (C_out, C_in) in place with SparseGPT; returns the boolean mask of zeros.

    Follows the reference: dead inputs (H_jj = 0) get H_jj = 1 and W[:, j] = 0, damping
    percdamp * mean(diag H), upper Cholesky factor of H^-1, columns in blocks of `blocksize`
    where the mask is chosen from W^2 / diag(H^-1)^2 pooled over the block's rows and columns
    (exactly int(rows * blocksize * ratio) weights), then the OBS update.

    keep_mask (C_out, C_in) bool: weights already pruned, zero in the result whatever `ratio`
    adds (GPTQ of a pruned model passes ratio 0 and its zeros). quantizer: an object with
    `begin(W, mask)` (called once with the working copy of the weights before dead inputs are
    zeroed; the copy is then updated in place block by block, as the reference's outer W) and
    `__call__(q, column, mask_tail) -> q rounded` (see `compression.gptq`); the reference's joint
    prune-and-quantize mode.
    """
    if keep_mask is not None and nm is not None:
        raise ValueError("keep_mask and nm cannot be combined: an N:M mask is chosen in the loop")
    W = weight.data.float().clone()
    rows, cols = W.shape
    if keep_mask is not None:
        keep_mask = keep_mask.to(W.device)
    if quantizer is not None:  # as the reference: grids see the weights before dead inputs are zeroed
        quantizer.begin(W, keep_mask)
    H = hessian.clone().float()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    damp = percdamp * torch.mean(torch.diag(H))
    H.diagonal().add_(damp)
    H = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(H)
    Hinv = torch.linalg.cholesky(H, upper=True)
    del H
    if keep_mask is not None:
        W.masked_fill_(keep_mask, 0)

    mask = torch.zeros_like(W, dtype=torch.bool)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Hinv1 = Hinv[i1:i2, i1:i2]
        mask1 = torch.zeros_like(W1, dtype=torch.bool)
        if nm is None:
            saliency = W1 ** 2 / (torch.diag(Hinv1).reshape(1, -1)) ** 2
            k = int(saliency.numel() * ratio)
            if k:
                idx = torch.sort(saliency.flatten(), stable=True).indices[:k]
                mask1.view(-1)[idx] = True
        if keep_mask is not None:
            mask1 |= keep_mask[:, i1:i2]
        use_graph = W.is_cuda and count == blocksize and quantizer is None
        graph = _column_graph(rows, count, nm, W.device) if use_graph else None
        if graph is not None:
            Q1, Err1, mask1 = graph(W1, Hinv1, mask1)
        else:
            Q1 = torch.zeros_like(W1)
            Err1 = torch.zeros_like(W1)
            _prune_columns_(W1, Q1, Err1, Hinv1, mask1, nm, quantizer, i1)
        W[:, i1:i2] = Q1
        mask[:, i1:i2] = mask1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    weight.data.copy_(W.to(weight.dtype))
    return mask
