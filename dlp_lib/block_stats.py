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


_BIN_SHIFT = 16                      # histogram of the top 16 bits of an order-preserving key
_NBINS = 1 << (32 - _BIN_SHIFT)
_CHUNK = 1 << 23                     # scores materialised at once (32 MB in fp32)


def _bins(s: torch.Tensor) -> torch.Tensor:
    """Bin index (0.._NBINS-1) of fp32 values, monotone in the value: the top bits of the float's
    bit pattern made order-preserving for negatives (non-negative scores use it unchanged)."""
    bits = s.view(torch.int32)
    key = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    return (key >> _BIN_SHIFT) + (_NBINS // 2)


class _Pool:
    """Exact statistics of a pool of scores seen in parts, in two passes, where the parts live.

    Pass 1: n, float64 sum, max (and, in histogram mode, a histogram of bins). Between: mean and
    the OWL thresholds M * mean. Pass 2: float64 sum of squared deviations and the counts above
    every threshold (one bucketize). The lower median (as torch.median) is the k-th value, k =
    (n-1)//2: in histogram mode found without concatenating the pool: the bin holding it is read
    off the histogram and only that bin's values are kept in pass 2 for a kthvalue (used on GPUs,
    where a 7B block's 200M scores would need 800 MB more); otherwise kthvalue of the pool.
    """

    def __init__(self, owl_m, device, histogram: bool):
        self.owl_m = tuple(float(m) for m in owl_m)
        self.order = sorted(range(len(self.owl_m)), key=lambda i: self.owl_m[i])
        self.device, self.histogram = device, histogram
        self.n = 0
        self.sum = torch.zeros((), dtype=torch.float64, device=device)
        self.max = None
        self.hist = torch.zeros(_NBINS, dtype=torch.int64, device=device) if histogram else None

    def pass1(self, s: torch.Tensor, bins: torch.Tensor | None) -> None:
        self.n += s.numel()
        self.sum += s.sum(dtype=torch.float64)
        m = s.max()
        self.max = m if self.max is None else torch.maximum(self.max, m)
        if self.histogram:
            self.hist += torch.bincount(bins, minlength=_NBINS)

    def between(self) -> None:
        if self.n == 0:
            raise ValueError("statistics of an empty pool")
        self.mean = (self.sum / self.n).float()
        self.k = (self.n - 1) // 2                 # lower median, as torch.median
        if self.histogram:
            cum = self.hist.cumsum(0)
            b = int(torch.searchsorted(cum, torch.tensor([self.k], device=cum.device), right=True)[0])
            self.median_bin, self.median_rank = b, self.k - (int(cum[b - 1]) if b > 0 else 0)
            self.candidates = []
        ms = torch.tensor([self.owl_m[i] for i in self.order], dtype=torch.float32, device=self.device)
        self.thresholds = ms * self.mean           # M * mean(A), fp32, ascending
        self.sq = torch.zeros((), dtype=torch.float64, device=self.device)
        self.above = torch.zeros(len(self.owl_m) + 1, dtype=torch.int64, device=self.device)

    def pass2(self, s: torch.Tensor, bins: torch.Tensor | None) -> None:
        self.sq += (s - self.mean).square_().sum(dtype=torch.float64)
        idx = torch.bucketize(s, self.thresholds, out_int32=True)   # number of thresholds below s
        self.above += torch.bincount(idx, minlength=len(self.owl_m) + 1)
        if self.histogram:
            self.candidates.append(s[bins == self.median_bin])

    def result(self, pool: torch.Tensor | None = None) -> dict:
        if self.histogram:
            median = torch.kthvalue(torch.cat(self.candidates), self.median_rank + 1).values
        else:
            median = torch.kthvalue(pool, self.k + 1).values
        above = self.above.flip(0).cumsum(0).flip(0)[1:].tolist()    # count(A > threshold_j)
        total, var, mx, med = torch.stack([self.sum, self.sq / self.n, self.max.double(),
                                           median.double()]).tolist()  # one device sync
        ratio = [0.0] * len(self.owl_m)
        for j, i in enumerate(self.order):
            ratio[i] = above[j] * 100.0 / self.n
        return {
            "sum": total, "mean": total / self.n, "median": med, "max": mx, "var": var, "sd": var ** 0.5,
            "numel": int(self.n),
            "outlier_ratio": {str(m): r for m, r in zip(self.owl_m, ratio)},
        }


def _chunks(part, chunk: int = _CHUNK):
    """fp32 score chunks (flat) of one part: a tensor of scores, or (weight, column_norms) whose
    Wanda scores are computed a few rows at a time (the same values as wanda_scores(weight, norms))."""
    if isinstance(part, tuple):
        weight, norms = part
        step = max(1, chunk // max(weight.shape[1], 1))
        for r0 in range(0, weight.shape[0], step):
            yield wanda_scores(weight[r0:r0 + step], norms).flatten()
    else:
        flat = part.detach().flatten()
        for i in range(0, flat.numel(), chunk):
            yield flat[i:i + chunk].float()


def grouped_pool_statistics(parts: dict, owl_m: tuple[float, ...] = OWL_M_GRID, *,
                            histogram: bool | None = None) -> tuple[dict, dict[str, dict]]:
    """Statistics of the union of `parts` (the block pool) and of every part (sublayer).

    parts: name -> scores tensor, or (weight, column_norms) for Wanda scores. Computed on the
    device where the parts live. `histogram` (default: on CUDA) never concatenates the pool: two
    passes over the parts, chunk by chunk, scores recomputed in each (a 7B block holds 200M
    scores; peak extra memory is a few chunks). Otherwise the scores are materialised once and
    the medians are kthvalues of the concatenations (faster on CPUs). Both give the same values.
    """
    if not parts:
        raise ValueError("no parts to pool")
    first = next(iter(parts.values()))
    device = (first[0] if isinstance(first, tuple) else first).device
    if histogram is None:
        histogram = device.type == "cuda"
    block = _Pool(owl_m, device, histogram)
    subs = {name: _Pool(owl_m, device, histogram) for name in parts}
    if histogram:
        def chunks(name):
            for s in _chunks(parts[name]):
                yield s, _bins(s)
    else:
        scores = {name: torch.cat(list(_chunks(part))) for name, part in parts.items()}

        def chunks(name):
            yield scores[name], None
    for name in parts:
        for s, bins in chunks(name):
            subs[name].pass1(s, bins)
            block.pass1(s, bins)
    block.between()
    for acc in subs.values():
        acc.between()
    for name in parts:
        for s, bins in chunks(name):
            subs[name].pass2(s, bins)
            block.pass2(s, bins)
    if histogram:
        return block.result(), {name: acc.result() for name, acc in subs.items()}
    out = {name: acc.result(scores[name]) for name, acc in subs.items()}
    pool = torch.cat(list(scores.values())) if len(scores) > 1 else next(iter(scores.values()))
    return block.result(pool), out


def pool_statistics(pool: torch.Tensor, owl_m: tuple[float, ...] = OWL_M_GRID, *,
                    histogram: bool | None = None) -> dict:
    """All layer statistics F of one flat pool of scores, computed where the pool lives.

    median is the lower median (as torch.median; kthvalue, or histogram + kthvalue on CUDA, so
    pools above 2^24 values, which torch.quantile refuses, are fine). var/sd are population moments (float64
    accumulation). Outlier ratio (OWL): 100 * #(A > M * mean(A)) / numel.
    """
    return grouped_pool_statistics({"pool": pool}, owl_m, histogram=histogram)[0]


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
                             stream_activations: bool = False, **engine_options) -> DenseStatistics:
    """One dense forward per block; the block's pool is reduced on the compute device, chunk by
    chunk (no concatenation, nothing pooled on the CPU). engine_options go to CalibrationEngine
    (batch_size, offload, prefetch, pin_memory)."""
    result = DenseStatistics()

    def visit(v: BlockVisit):
        parts = {n: (layer.weight, v.stats["wanda"][n]) for n, layer in v.sublayers.items()}
        block, sublayers = grouped_pool_statistics(parts, owl_m)
        result.blocks.append(block)
        result.sublayers.append(sublayers)
        return False

    engine = CalibrationEngine(model, calib_ids, device=device, act_dtype=act_dtype, progress=progress,
                               stream_activations=stream_activations, **engine_options)
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
