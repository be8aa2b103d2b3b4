"""Per-weight importance scores (paper Eq. 2-3) and the masks that zero the lowest of them."""
from __future__ import annotations

from dataclasses import dataclass

import torch

GROUPS = ("per_output", "per_layer")


def magnitude_scores(weight: torch.Tensor) -> torch.Tensor:
    """|W_ij| (Eq. 2)."""
    return weight.detach().abs().float()


def wanda_scores(weight: torch.Tensor, column_norms: torch.Tensor) -> torch.Tensor:
    """|W_ij| * ||X_j||_2 (Eq. 3, Wanda)."""
    return weight.detach().abs().float() * column_norms.to(weight.device).float().view(1, -1)


@dataclass(frozen=True)
class NMPattern:
    """N:M semi-structured sparsity: `n_kept` non-zero weights in every `m` consecutive inputs.

    "2:4" in the literature and in the paper's Table 15 means 2 of every 4 weights are KEPT.
    """
    n_kept: int
    m: int

    def __post_init__(self):
        if not (0 < self.n_kept < self.m):
            raise ValueError(f"N:M pattern needs 0 < N (kept) < M, got {self.n_kept}:{self.m}")

    @classmethod
    def parse(cls, text: str) -> "NMPattern":
        try:
            n, m = (int(v) for v in text.split(":"))
        except ValueError:
            raise ValueError(f"N:M pattern must look like '2:4' (N kept of M), got {text!r}") from None
        return cls(n, m)

    @property
    def sparsity(self) -> float:
        return 1.0 - self.n_kept / self.m

    def __str__(self) -> str:
        return f"{self.n_kept}:{self.m}"


def check_ratio(ratio: float, what: str = "sparsity") -> float:
    ratio = float(ratio)
    if not (0.0 <= ratio < 1.0):
        raise ValueError(f"{what} must be in [0, 1), got {ratio}")
    return ratio


def prune_mask(scores: torch.Tensor, ratio: float, group: str = "per_output",
               nm: NMPattern | None = None) -> torch.Tensor:
    """Boolean mask of the weights to zero: the lowest scores within each comparison group.

    per_output: int(C_in * ratio) per output row (Wanda's default); per_layer: int(numel * ratio)
    over the whole matrix; nm: the M - N lowest of every M consecutive inputs of each row.
    Ties are broken by position so counts are exact.
    """
    if nm is not None:
        rows, cols = scores.shape
        if cols % nm.m:
            raise ValueError(f"N:M with M={nm.m} needs C_in divisible by M, got C_in={cols}")
        groups = scores.reshape(rows, cols // nm.m, nm.m)
        idx = torch.topk(groups, nm.m - nm.n_kept, dim=-1, largest=False).indices
        mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, idx, True)
        return mask.reshape(rows, cols)
    check_ratio(ratio)
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if group == "per_output":
        k = int(scores.shape[1] * ratio)
        if k:
            idx = torch.sort(scores, dim=1, stable=True).indices[:, :k]
            mask.scatter_(1, idx, True)
    elif group == "per_layer":
        k = int(scores.numel() * ratio)
        if k:
            idx = torch.sort(scores.flatten(), stable=True).indices[:k]
            mask.view(-1)[idx] = True
    else:
        raise ValueError(f"Unknown comparison group {group!r}; allowed: {', '.join(GROUPS)}")
    return mask
