"""Pass 1 of DLP/OWL: per-block statistics of the dense model's Wanda scores (cached on disk).

One dense pass collects, for every block, the pool of all Wanda scores of its sublayers and
reduces it to every layer statistic F of Table 1 (sum, mean, median, max, var, sd) and to OWL's
outlier ratios for a grid of M. Per-sublayer statistics are kept too (granularity study), and so
are the dense input-column norms ||X_j||_2 of every sublayer (the Wanda scores of the Global
allocator). Changing alpha, lambda, M (within the grid) or the allocator never redoes this pass.
The same pass measures each block's influence on its input (`BlockInfluence`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from .cache import cached
from .calibration import BlockVisit, CalibrationEngine
from .engine.replay import runs_own_forward
from .scores import wanda_scores

LAYER_STATISTICS = ("sum", "mean", "median", "max", "var", "sd")
OWL_M_GRID = tuple(float(m) for m in range(1, 21))


_CHUNK = 1 << 23            # scores materialised at once (32 MB in fp32)
_SAMPLE_EVERY = 64          # chunked mode: one sampled score in 64 brackets the median
_WINDOW_SIGMAS = 8.0        # half-width of the bracket, in standard deviations of the sample quantile
_BIN_SHIFT = 16             # fallback: histogram of the top 16 bits of an order-preserving key
_NBINS = 1 << (32 - _BIN_SHIFT)


def _bins(s: torch.Tensor) -> torch.Tensor:
    """Bin index (0.._NBINS-1) of fp32 values, monotone in the value: the top bits of the float's
    bit pattern made order-preserving for negatives (non-negative scores use it unchanged)."""
    bits = s.view(torch.int32)
    key = bits ^ ((bits >> 31) & 0x7FFFFFFF)
    return (key >> _BIN_SHIFT) + (_NBINS // 2)


def _bucket_counts(s: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Histogram of the number of thresholds (ascending) strictly below each value: one bucketize
    and a bincount of its few bins. (A broadcast comparison measured slower on an H200.)"""
    idx = torch.bucketize(s, thresholds, out_int32=True)
    return torch.bincount(idx, minlength=thresholds.numel() + 1)


def _above_from_buckets(hist: torch.Tensor) -> torch.Tensor:
    """#(s > threshold_j) for every j, from `_bucket_counts`."""
    return hist.flip(0).cumsum(0).flip(0)[1:]


def _kth(values: torch.Tensor, k: int) -> torch.Tensor:
    """k-th smallest (0-based). On CUDA a sort (device-wide radix sort): torch.kthvalue of one long
    slice runs in a single thread block there."""
    if values.is_cuda:
        return torch.sort(values).values[k]
    return torch.kthvalue(values, k + 1).values


def _kth_by_histogram(chunks, k: int) -> torch.Tensor:
    """k-th smallest (0-based) of the values yielded by chunks() (called twice), exactly, with
    bounded memory: a histogram of bins, then a kthvalue over the values of the bin holding it."""
    hist = None
    for s in chunks():
        h = torch.bincount(_bins(s), minlength=_NBINS)
        hist = h if hist is None else hist + h
    cum = hist.cumsum(0)
    b = int(torch.searchsorted(cum, torch.tensor([k], device=cum.device), right=True)[0])
    rank = k - (int(cum[b - 1]) if b > 0 else 0)
    return _kth(torch.cat([s[_bins(s) == b] for s in chunks()]), rank)


class _Pool:
    """Exact statistics of a pool of scores seen in parts, where the parts live.

    Pass 1: n, float64 sums of s and s^2 (mean, population variance), max; in chunked mode also
    a fixed pseudo-random sample. Between: the OWL thresholds M * mean and, in chunked mode, a
    bracket [lo, hi] of the lower median (as torch.median: the k-th value, k = (n-1)//2) read off
    the sorted sample. Pass 2: the counts above every threshold (one bucketize) and, in chunked
    mode, the count below lo and the values inside the bracket. The median is the kthvalue of the
    bracket if it holds rank k (checked; otherwise an exact histogram selection runs): the pool is
    never concatenated (a 7B block holds 200M scores). Otherwise it is the kthvalue of the pool.
    """

    def __init__(self, owl_m, device, chunked: bool):
        self.owl_m = tuple(float(m) for m in owl_m)
        self.order = sorted(range(len(self.owl_m)), key=lambda i: self.owl_m[i])
        self.device, self.chunked = device, chunked
        self.n = 0
        self.sum = torch.zeros((), dtype=torch.float64, device=device)
        self.sumsq = torch.zeros((), dtype=torch.float64, device=device)
        self.max = None
        self.sample: list[torch.Tensor] = []

    def pass1(self, s: torch.Tensor, sample: torch.Tensor | None) -> None:
        self.n += s.numel()
        self.sum += s.sum(dtype=torch.float64)
        self.sumsq += s.square().sum(dtype=torch.float64)
        m = s.max()
        self.max = m if self.max is None else torch.maximum(self.max, m)
        if sample is not None:
            self.sample.append(sample)

    def between(self) -> None:
        if self.n == 0:
            raise ValueError("statistics of an empty pool")
        self.mean = (self.sum / self.n).float()
        self.k = (self.n - 1) // 2                 # lower median, as torch.median
        ms = torch.tensor([self.owl_m[i] for i in self.order], dtype=torch.float32, device=self.device)
        self.thresholds = ms * self.mean           # M * mean(A), fp32, ascending
        self.buckets = torch.zeros(len(self.owl_m) + 1, dtype=torch.int64, device=self.device)
        if self.chunked:
            sample = torch.sort(torch.cat(self.sample)).values
            self.sample = []
            m = sample.numel()
            p = (self.k + 0.5) / self.n
            half = _WINDOW_SIGMAS * (p * (1 - p) / max(m, 1)) ** 0.5 + 2.0 / max(m, 1)
            lo_i, hi_i = int((p - half) * m), int((p + half) * m) + 1
            inf = torch.tensor(float("inf"), device=self.device)
            self.lo = sample[lo_i] if 0 <= lo_i < m else -inf
            self.hi = sample[hi_i] if 0 <= hi_i < m else inf
            self.below = torch.zeros((), dtype=torch.int64, device=self.device)
            self.inside: list[torch.Tensor] = []

    def pass2(self, s: torch.Tensor) -> None:
        self.buckets += _bucket_counts(s, self.thresholds)
        if self.chunked:
            self.below += (s < self.lo).sum()
            self.inside.append(s[(s >= self.lo) & (s <= self.hi)])

    def median(self, pool: torch.Tensor | None = None, chunks=None) -> torch.Tensor:
        if not self.chunked:
            return torch.kthvalue(pool, self.k + 1).values
        inside = torch.cat(self.inside)
        self.inside = []
        below = int(self.below)
        if below <= self.k < below + inside.numel():
            return _kth(inside, self.k - below)
        return _kth_by_histogram(chunks, self.k)   # the sample missed (never seen): exact fallback

    def result(self, median: torch.Tensor) -> dict:
        above = _above_from_buckets(self.buckets).tolist()    # count(A > threshold_j)
        total, sumsq, mx, med = torch.stack([self.sum, self.sumsq, self.max.double(),
                                             median.double()]).tolist()  # one device sync
        mean = total / self.n
        var = max(sumsq / self.n - mean * mean, 0.0)
        ratio = [0.0] * len(self.owl_m)
        for j, i in enumerate(self.order):
            ratio[i] = above[j] * 100.0 / self.n
        return {
            "sum": total, "mean": mean, "median": med, "max": mx, "var": var, "sd": var ** 0.5,
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
                            chunked: bool | None = None) -> tuple[dict, dict[str, dict]]:
    """Statistics of the union of `parts` (the block pool) and of every part (sublayer).

    parts: name -> scores tensor, or (weight, column_norms) for Wanda scores. Computed on the
    device where the parts live. `chunked` (default: on CUDA) never concatenates the pool: two
    passes over the parts, chunk by chunk, scores recomputed in each (a 7B block holds 200M
    scores; the extra memory is a few chunks). Otherwise the scores are materialised once and the
    medians are kthvalues of the concatenations (faster on CPUs). Both give the same values.
    """
    if not parts:
        raise ValueError("no parts to pool")
    first = next(iter(parts.values()))
    device = (first[0] if isinstance(first, tuple) else first).device
    if chunked is None:
        chunked = device.type == "cuda"
    block = _Pool(owl_m, device, chunked)
    subs = {name: _Pool(owl_m, device, chunked) for name in parts}
    if chunked:
        gen = torch.Generator(device=device)
        gen.manual_seed(0)

        def chunks(name):
            return _chunks(parts[name])

        for name in parts:
            for s in chunks(name):
                n_sample = -(-s.numel() // _SAMPLE_EVERY)
                sample = s[torch.randint(0, s.numel(), (n_sample,), generator=gen, device=device)]
                subs[name].pass1(s, sample)
                block.pass1(s, sample)
    else:
        scores = {name: torch.cat(list(_chunks(part))) for name, part in parts.items()}

        def chunks(name):
            yield scores[name]

        for name in parts:
            subs[name].pass1(scores[name], None)
            block.pass1(scores[name], None)
    block.between()
    for acc in subs.values():
        acc.between()
    for name in parts:
        for s in chunks(name):
            subs[name].pass2(s)
            block.pass2(s)
    if chunked:
        def all_chunks():
            for name in parts:
                yield from chunks(name)
        out = {name: acc.result(acc.median(chunks=lambda name=name: chunks(name))) for name, acc in subs.items()}
        return block.result(block.median(chunks=all_chunks)), out
    out = {name: acc.result(acc.median(scores[name])) for name, acc in subs.items()}
    pool = torch.cat(list(scores.values())) if len(scores) > 1 else next(iter(scores.values()))
    return block.result(block.median(pool)), out


def pool_statistics(pool: torch.Tensor, owl_m: tuple[float, ...] = OWL_M_GRID, *,
                    chunked: bool | None = None) -> dict:
    """All layer statistics F of one flat pool of scores, computed where the pool lives.

    median is the lower median (as torch.median; kthvalue of the pool, or of a bracket of it on
    CUDA, so pools above 2^24 values, which torch.quantile refuses, are fine). var/sd are
    population moments (float64 sums of s and s^2). Outlier ratio (OWL): 100 * #(A > M * mean(A)) / numel.
    """
    return grouped_pool_statistics({"pool": pool}, owl_m, chunked=chunked)[0]


class BlockInfluence:
    """BI = 1 - mean over tokens of cos(x_in, x_out) of one decoder block (ShortGPT, Men et al., 2024),
    accumulated in fp32 by hooks on the block during the dense pass.

    Only the engine's own block forwards count: the replay check and the capture call a block with
    its forward replaced by a stand-in (a pass-through or a recorder, see `runs_own_forward`) and
    reset what was accumulated, so the calls after the last such call are the dense pass's."""

    def __init__(self, block: torch.nn.Module):
        self.block = block
        self.cos_sum = 0.0
        self.ntokens = 0
        self.handles = [block.register_forward_pre_hook(self._reset_on_replaced),
                        block.register_forward_hook(self._add, with_kwargs=True)]

    def _replaced(self) -> bool:
        return not runs_own_forward(self.block)

    def _reset_on_replaced(self, _module, _args):
        if self._replaced():
            self.cos_sum, self.ntokens = 0.0, 0

    def _add(self, _module, args, kwargs, output):
        if self._replaced():
            return
        x_in = args[0] if args else kwargs["hidden_states"]
        x_out = output[0] if isinstance(output, (tuple, list)) else output
        cos = torch.nn.functional.cosine_similarity(x_in.float(), x_out.float(), dim=-1)
        self.cos_sum += float(cos.sum(dtype=torch.float64))
        self.ntokens += cos.numel()

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def finish(self) -> float:
        if self.ntokens == 0:
            raise RuntimeError("block influence: the block was never run by the dense pass")
        return 1.0 - self.cos_sum / self.ntokens


@dataclass
class DenseStatistics:
    """Per-block (and per-sublayer) statistics of the dense model's Wanda scores."""
    blocks: list[dict] = field(default_factory=list)          # one pool_statistics dict per block
    sublayers: list[dict[str, dict]] = field(default_factory=list)  # block -> sublayer -> stats
    config: dict = field(default_factory=dict)
    # block -> sublayer -> ||X_j||_2 of the dense inputs (fp32, CPU): Wanda scores without another pass
    column_norms: list[dict[str, torch.Tensor]] = field(default_factory=list, repr=False)
    # block -> 1 - E[cos(x_in, x_out)] over the calibration tokens (BlockInfluence)
    block_influence: list[float] = field(default_factory=list)

    def layer_statistic(self, name: str) -> list[float]:
        if name not in LAYER_STATISTICS:
            raise ValueError(f"Unknown layer statistic {name!r}; allowed: {', '.join(LAYER_STATISTICS)}")
        return [b[name] for b in self.blocks]

    def outlier_ratios(self, m: float) -> list[float]:
        key = str(float(m))
        if key not in self.blocks[0]["outlier_ratio"]:
            raise ValueError(f"OWL M={m} is not in the computed grid {list(self.blocks[0]['outlier_ratio'])}")
        return [b["outlier_ratio"][key] for b in self.blocks]

    def wanda_scores(self, model) -> list[list[torch.Tensor]]:
        """Dense Wanda scores |W| * ||X_j|| of every block's sublayers (block -> list, sublayer order)."""
        from .models import decoder_blocks, linear_sublayers
        if not self.column_norms:
            raise ValueError("these dense statistics were computed without column norms")
        return [[wanda_scores(layer.weight, norms[name]) for name, layer in linear_sublayers(block).items()]
                for block, norms in zip(decoder_blocks(model), self.column_norms)]

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
        result.column_norms.append({n: t.detach().float().cpu() for n, t in v.stats["wanda"].items()})
        return False

    from .models import decoder_blocks
    engine = CalibrationEngine(model, calib_ids, device=device, act_dtype=act_dtype, progress=progress,
                               stream_activations=stream_activations, **engine_options)
    influence = [BlockInfluence(block) for block in decoder_blocks(model)]
    try:
        engine.run(visit, statistics=("wanda",), sequential=False, desc="dense statistics (pass 1)")
    finally:
        for acc in influence:
            acc.remove()
    result.block_influence = [acc.finish() for acc in influence]
    return result


def dense_statistics(model, calib_ids: torch.Tensor, cache_config: dict | None, *, use_cache: bool = True,
                     **kwargs) -> DenseStatistics:
    """Cached `compute_dense_statistics`; cache_config must identify model, data and numerics
    (None: not cached); use_cache=False recomputes and overwrites the entry."""
    owl_m = tuple(kwargs.get("owl_m", OWL_M_GRID))

    def compute():
        return compute_dense_statistics(model, calib_ids, **kwargs).to_dict()

    cfg = {**(cache_config or {}), "owl_m": list(owl_m)}
    # a torch file: the column norms are tensors
    d = cached("dense_statistics", cfg, compute, fmt="torch",
               enabled=use_cache and cache_config is not None)
    return DenseStatistics(blocks=d["blocks"], sublayers=d["sublayers"], config=cfg, column_norms=d["column_norms"],
                           block_influence=d["block_influence"])
