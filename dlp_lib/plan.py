"""SparsityPlan: the budget an allocator produces and every compressor consumes.

A budget says how much of each block (optionally of each sublayer) to remove: `ratios[b]` is the
fraction of block b's prunable weights to drop, `keep(b)` = 1 - ratio. What consumes it is a
separate step: unstructured masks (Magnitude, Wanda, SparseGPT), per-block N:M patterns, SVD
ranks, structured channel counts, quantization after pruning. The plan records the allocator's
inputs (RID, block statistic) and configuration, so it is serialisable and self-describing.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .cache import atomic_write_json


@dataclass
class SparsityPlan:
    """Per-block sparsity ratios, optionally refined per sublayer, with everything that produced them."""
    allocation: str                              # the allocator's registry name
    target: float                                # target mean sparsity p
    ratios: list[float]                          # one fraction removed per block (mean = p)
    config: dict = field(default_factory=dict)   # the allocator's inputs' identity and parameters
    rid: list[float] | None = None               # relative importance distribution (DLP)
    block_statistic: list[float] | None = None   # S_l (DLP), outlier ratio D_l (OWL), alpha_hat (AlphaPruning)
    sublayer_ratios: list[dict[str, float]] | None = None  # block -> sublayer -> fraction removed

    def ratio(self, block: int, sublayer: str | None = None) -> float:
        if self.sublayer_ratios is not None and sublayer is not None:
            return self.sublayer_ratios[block][sublayer]
        return self.ratios[block]

    def keep(self, block: int, sublayer: str | None = None) -> float:
        """Fraction of the block's (sublayer's) prunable weights to keep."""
        return 1.0 - self.ratio(block, sublayer)

    @property
    def n_blocks(self) -> int:
        return len(self.ratios)

    @property
    def mean_ratio(self) -> float:
        return float(np.mean(self.ratios))

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        atomic_write_json(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "SparsityPlan":
        return cls(**json.loads(Path(path).read_text()))
