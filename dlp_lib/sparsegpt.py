"""SparseGPT (Frantar & Alistarh, 2023): mask selection by OBS saliency and error-compensating update."""
from __future__ import annotations

import torch

from .scores import NMPattern


@torch.no_grad()
def sparsegpt_prune_(weight: torch.Tensor, hessian: torch.Tensor, ratio: float, *, blocksize: int = 128,
                     percdamp: float = 0.01, nm: NMPattern | None = None) -> torch.Tensor:
    """Prune `weight` (C_out, C_in) in place with SparseGPT; returns the boolean mask of zeros.

    Follows the reference: dead inputs (H_jj = 0) get H_jj = 1 and W[:, j] = 0, damping
    percdamp * mean(diag H), upper Cholesky factor of H^-1, columns in blocks of `blocksize`
    where the mask is chosen from W^2 / diag(H^-1)^2 pooled over the block's rows and columns
    (exactly int(rows * blocksize * ratio) weights), then the OBS update.
    """
    W = weight.data.float().clone()
    rows, cols = W.shape
    H = hessian.clone().float()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    damp = percdamp * torch.mean(torch.diag(H))
    H.diagonal().add_(damp)
    H = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(H)
    Hinv = torch.linalg.cholesky(H, upper=True)

    mask = torch.zeros_like(W, dtype=torch.bool)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        if nm is None:
            saliency = W1 ** 2 / (torch.diag(Hinv1).reshape(1, -1)) ** 2
            k = int(saliency.numel() * ratio)
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
            if k:
                idx = torch.sort(saliency.flatten(), stable=True).indices[:k]
                mask1.view(-1)[idx] = True
        else:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if nm is not None and i % nm.m == 0 and i + nm.m <= count:
                sal = W1[:, i:i + nm.m] ** 2 / (torch.diag(Hinv1)[i:i + nm.m].reshape(1, -1)) ** 2
                idx = torch.topk(sal, nm.m - nm.n_kept, dim=1, largest=False).indices
                mask1.scatter_(1, i + idx, True)
            q = w.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            err = (w - q) / d
            W1[:, i:] -= err.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        mask[:, i1:i2] = mask1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    weight.data.copy_(W.to(weight.dtype))
    return mask
