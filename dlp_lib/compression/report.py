"""What every compressor that removes parameters reports against its budget, and how parameters are counted."""
from __future__ import annotations

from torch import nn


def count_parameters(model: nn.Module) -> int:
    """Distinct parameters of the model (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())



class BlockParameterReport:
    """Mixin for a report with per-block `block_params_before` / `block_params_after` counts."""
    block_params_before: list[int]
    block_params_after: list[int]

    @property
    def achieved_ratios(self) -> list[float]:
        """Fraction of each block's (counted) parameters removed."""
        return [1 - a / b for a, b in zip(self.block_params_after, self.block_params_before)]

    @property
    def achieved_reduction(self) -> float:
        """Fraction of all blocks' (counted) parameters removed."""
        return 1 - sum(self.block_params_after) / sum(self.block_params_before)
