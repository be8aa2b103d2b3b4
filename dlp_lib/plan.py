"""SparsityPlan: the serialisable result of allocation (ratios, RID, statistics, configuration)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import allocation as alloc
from .block_stats import DenseStatistics
from .cache import atomic_write_json


@dataclass
class SparsityPlan:
    """Per-block sparsity ratios, optionally refined per sublayer, with everything that produced them."""
    allocation: str
    target: float
    ratios: list[float]
    config: dict = field(default_factory=dict)
    rid: list[float] | None = None            # relative importance distribution (DLP)
    block_statistic: list[float] | None = None  # S_l (DLP) or outlier ratio D_l (OWL)
    sublayer_ratios: list[dict[str, float]] | None = None

    def ratio(self, block: int, sublayer: str | None = None) -> float:
        if self.sublayer_ratios is not None and sublayer is not None:
            return self.sublayer_ratios[block][sublayer]
        return self.ratios[block]

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


# Allocators that need only the dense statistics. Others (Global, ER, LAMP, AlphaPruning) need
# the weights and register themselves in WEIGHT_ALLOCATORS with the same call shape.
WEIGHT_ALLOCATORS: dict = {}


def build_plan(allocation: str, sparsity: float, *, stats: DenseStatistics | None = None, model=None,
               alpha: float | None = None, statistic: str = "median", lamda: float = 0.08,
               owl_m: float = 5.0, strict: bool = False, granularity: str = "block", **extra) -> SparsityPlan:
    """Allocate per-block sparsity with the named allocator.

    granularity="sublayer" (dlp, owl; paper Appendix C, Table 12): one ratio per sublayer from the
    same formula applied to all sublayers ranked across the model.
    """
    from .scores import check_ratio

    check_ratio(sparsity)
    known = alloc.ALLOCATIONS + tuple(WEIGHT_ALLOCATORS)
    if allocation not in known:
        raise ValueError(f"Unknown allocation {allocation!r}; allowed: {', '.join(known)}")
    cfg = {"allocation": allocation, "sparsity": sparsity, **(stats.config if stats else {})}
    if granularity == "sublayer":
        from .allocation_baselines import sublayer_granularity_plan
        alpha = alloc.paper_alpha(sparsity) if alpha is None else float(alpha)
        cfg.update(granularity=granularity, **(dict(alpha=alpha, statistic=statistic) if allocation == "dlp"
                                               else dict(lamda=lamda, owl_m=owl_m)))
        return sublayer_granularity_plan(allocation, sparsity, stats, cfg, alpha=alpha, statistic=statistic,
                                         lamda=lamda, owl_m=owl_m, strict=strict)
    if granularity != "block":
        raise ValueError(f"Unknown granularity {granularity!r}; allowed: block, sublayer")
    if allocation == "uniform":
        if stats is None and model is None:
            raise ValueError("uniform allocation needs stats or model to know the number of blocks")
        n = len(stats.blocks) if stats is not None else _n_blocks(model)
        return SparsityPlan("uniform", sparsity, alloc.allocate_uniform(n, sparsity).tolist(), cfg)
    if allocation == "dlp":
        alpha = alloc.paper_alpha(sparsity) if alpha is None else float(alpha)
        s = stats.layer_statistic(statistic)
        ratios = alloc.allocate_dlp(s, sparsity, alpha, strict=strict)
        cfg.update(alpha=alpha, statistic=statistic)
        return SparsityPlan("dlp", sparsity, ratios.tolist(), cfg, rid=alloc.relative_importance(s).tolist(),
                            block_statistic=list(s))
    if allocation == "owl":
        d = stats.outlier_ratios(owl_m)
        ratios = alloc.allocate_owl(d, sparsity, lamda, strict=strict)
        cfg.update(lamda=lamda, owl_m=owl_m)
        return SparsityPlan("owl", sparsity, ratios.tolist(), cfg, block_statistic=list(d))
    fn = WEIGHT_ALLOCATORS[allocation]
    return fn(sparsity=sparsity, stats=stats, model=model, config=cfg, strict=strict, **extra)


def _n_blocks(model) -> int:
    from .models import decoder_blocks
    return len(decoder_blocks(model))


from . import allocation_baselines as _baselines  # noqa: E402,F401  registers global, er, er_plus, lamp, alphapruning
