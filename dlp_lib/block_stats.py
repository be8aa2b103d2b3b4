"""Pass 1 of DLP/OWL: per-block statistics of the dense model's Wanda scores (cached on disk).

One dense pass collects, for every block, the pool of all Wanda scores of its sublayers and
reduces it to every layer statistic F of Table 1 (sum, mean, median, max, var, sd) and to OWL's
outlier ratios for a grid of M. Per-sublayer statistics are kept too (granularity study).
Changing alpha, lambda, M (within the grid) or the allocator never redoes this pass.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from .cache import cached
from .calibration import BlockVisit, CalibrationEngine
from .scores import wanda_scores

LAYER_STATISTICS = ("sum", "mean", "median", "max", "var", "sd")
OWL_M_GRID = tuple(float(m) for m in range(1, 21))


def pool_statistics(pool: torch.Tensor, owl_m: tuple[float, ...] = OWL_M_GRID) -> dict:
    """All layer statistics F of one flat pool of scores, computed where the pool lives.

    median is the lower median (torch.median/kthvalue: torch.quantile refuses > 2^24 values).
    var/sd are population moments. Outlier ratio (OWL): 100 * #(A > M * mean(A)) / numel.
    """
    pool = pool.float().flatten()
    mean = pool.mean()
    var = pool.var(unbiased=False)
    stats = {
        "sum": float(pool.double().sum()),
        "mean": float(mean),
        "median": float(pool.median()),
        "max": float(pool.max()),
        "var": float(var),
        "sd": float(var.sqrt()),
        "numel": int(pool.numel()),
        "outlier_ratio": {str(m): float((pool > m * mean).sum()) * 100.0 / pool.numel() for m in owl_m},
    }
    return stats


@dataclass
class DenseStatistics:
    """Per-block (and per-sublayer) statistics of the dense model's Wanda scores."""
    blocks: list[dict] = field(default_factory=list)          # one pool_statistics dict per block
    sublayers: list[dict[str, dict]] = field(default_factory=list)  # block -> sublayer -> stats
    config: dict = field(default_factory=dict)

    def layer_statistic(self, name: str) -> list[float]:
        if name not in LAYER_STATISTICS:
            raise ValueError(f"Unknown layer statistic {name!r}; allowed: {', '.join(LAYER_STATISTICS)}")
        return [b[name] for b in self.blocks]

    def outlier_ratios(self, m: float) -> list[float]:
        key = str(float(m))
        if key not in self.blocks[0]["outlier_ratio"]:
            raise ValueError(f"OWL M={m} is not in the computed grid {list(self.blocks[0]['outlier_ratio'])}")
        return [b["outlier_ratio"][key] for b in self.blocks]

    def to_dict(self) -> dict:
        return asdict(self)


def compute_dense_statistics(model, calib_ids: torch.Tensor, *, device=None, act_dtype=None,
                             owl_m: tuple[float, ...] = OWL_M_GRID, progress: bool = True,
                             stream_activations: bool = False) -> DenseStatistics:
    """One dense forward per block; the block's pool is reduced on the compute device."""
    result = DenseStatistics()

    def visit(v: BlockVisit):
        scores = {n: wanda_scores(layer.weight, v.stats["wanda"][n]) for n, layer in v.sublayers.items()}
        pool = torch.cat([s.flatten() for s in scores.values()])
        result.blocks.append(pool_statistics(pool, owl_m))
        result.sublayers.append({n: pool_statistics(s, owl_m) for n, s in scores.items()})
        return False

    engine = CalibrationEngine(model, calib_ids, device=device, act_dtype=act_dtype, progress=progress,
                               stream_activations=stream_activations)
    engine.run(visit, statistics=("wanda",), sequential=False, desc="dense statistics (pass 1)")
    return result


def dense_statistics(model, calib_ids: torch.Tensor, cache_config: dict | None, **kwargs) -> DenseStatistics:
    """Cached `compute_dense_statistics`; cache_config must identify model, data and numerics."""
    owl_m = tuple(kwargs.get("owl_m", OWL_M_GRID))

    def compute():
        return compute_dense_statistics(model, calib_ids, **kwargs).to_dict()

    cfg = {**(cache_config or {}), "owl_m": list(owl_m)}
    d = cached("dense_statistics", cfg, compute, enabled=cache_config is not None)
    return DenseStatistics(blocks=d["blocks"], sublayers=d["sublayers"], config=cfg)
