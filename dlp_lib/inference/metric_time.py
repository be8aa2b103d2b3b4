"""Time of computing the pruning metric, block by block, with the forwards excluded (the paper's
Table 6 analogue), and DLP's own ratio computation timed apart.

The calibration statistics each method reads (Wanda's column norms, SparseGPT's Hessians) are
collected once by the calibration engine; then for every block the metric alone is timed on a
copy of its layers: scores + mask for Magnitude and Wanda, the mask selection + OBS update for
SparseGPT, with the plan's ratio for that block (Uniform: the same everywhere; DLP: per block).
This is exactly the library's pruning code (`pruning.prune_sublayers`). The statistics come from
the dense model's block inputs, not from the sequentially pruned ones: the metric's cost depends
on shapes and ratios, not on the values. Repeats are interleaved over (method, allocation).
"""
from __future__ import annotations

import copy
import math
import statistics
import time
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from ..calibration import BlockVisit, CalibrationEngine
from ..models import decoder_blocks, linear_sublayers
from ..pruning import METHODS, prune_sublayers


@dataclass(frozen=True)
class MetricTimeGrid:
    """What one metric-time benchmark measures."""
    methods: tuple[str, ...] = ("magnitude", "wanda", "sparsegpt")   # pruning metrics
    allocations: tuple[str, ...] = ("uniform", "dlp")                # layerwise sparsity
    sparsity: float = 0.7            # target sparsity of both plans
    repeats: int = 5                 # interleaved repeats (>= 2 for an interval)
    blocks: tuple[int, ...] | None = None  # blocks timed (None: all); totals scale to the whole model

    def __post_init__(self):
        bad = set(self.methods) - set(METHODS)
        if bad or not self.methods:
            raise ValueError(f"Unknown methods {sorted(bad)}; allowed: {', '.join(METHODS)}")
        if self.repeats < 2:
            raise ValueError(f"repeats must be >= 2 for a confidence interval, got {self.repeats}")


def t_interval(values, confidence: float = 0.95) -> dict:
    """Mean and the two-sided Student-t confidence interval of the mean over repeats."""
    from scipy import stats
    values = [float(v) for v in values]
    n = len(values)
    if n < 2:
        raise ValueError(f"a t-interval needs at least 2 values, got {n}")
    mean = statistics.fmean(values)
    sd = statistics.stdev(values)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "sd": sd, "n": n, "low": mean - half, "high": mean + half, "half_width": half,
            "confidence": confidence}


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def collect_block_statistics(model, calib_ids, *, device=None, progress: bool = True) -> list[dict]:
    """Per block: the Wanda column norms and SparseGPT Hessians of every sublayer (dense inputs)."""
    out = []

    def visit(v: BlockVisit):
        out.append({"wanda": {n: t.detach().clone() for n, t in v.stats["wanda"].items()},
                    "hessian": {n: t.detach().clone() for n, t in v.stats["hessian"].items()}})
        return False

    CalibrationEngine(model, calib_ids, device=device, progress=progress).run(
        visit, statistics=("wanda", "hessian"), sequential=False, desc="statistics for metric timing")
    return out


@torch.no_grad()
def time_block_metric(block, index: int, stats: dict, plan, method: str, *, device="cpu",
                      group="per_output") -> tuple[float, float]:
    """(wall, CPU) seconds of the metric on copies of one block's layers (copies made outside the
    timers). CPU time is the process's, all threads: on a shared machine it leaves out the time
    spent waiting for a core, which the wall time includes."""
    work = copy.deepcopy(block).to(device)  # an offloaded block is timed where the engine prunes it
    stats = {k: {n: t.to(device) for n, t in v.items()} for k, v in stats.items()}
    subs = linear_sublayers(work)
    visit = BlockVisit(index, work, subs, stats)
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    prune_sublayers(visit, plan, method, group, None)
    _sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


@torch.no_grad()
def time_dlp_ratios(lab, cfg) -> dict:
    """DLP's own cost apart from the forwards: the per-block reduction of the Wanda-score pool to
    its statistics (pass 1 without its forward) and the allocation from them (`lab.plan` with the
    statistics already in memory)."""
    from ..block_stats import grouped_pool_statistics
    lab.ensure(None)
    stats = lab.dense_statistics(cfg)  # column norms of the dense inputs (cached pass 1)
    t_reduce = c_reduce = 0.0
    for block, norms in zip(decoder_blocks(lab.model), stats.column_norms):
        parts = {n: (layer.weight, norms[n]) for n, layer in linear_sublayers(block).items()}
        t0, c0 = time.perf_counter(), time.process_time()
        grouped_pool_statistics(parts)
        t_reduce += time.perf_counter() - t0
        c_reduce += time.process_time() - c0
    t0 = time.perf_counter()
    lab.plan(cfg)  # the statistics are in the Lab's memory now: this is the allocation alone
    t_alloc = time.perf_counter() - t0
    return {"statistics_reduction_s": t_reduce, "statistics_reduction_cpu_s": c_reduce, "allocation_s": t_alloc}


@torch.no_grad()
def run_metric_time(lab, base_cfg, grid: MetricTimeGrid, *, progress: bool = True) -> dict:
    """Seconds of the pruning metric summed over the model's blocks, per (method, allocation),
    `grid.repeats` interleaved repeats, with 95% t-intervals; DLP's ratio computation apart."""
    lab.ensure(None)
    blocks = decoder_blocks(lab.model)
    timed = list(range(len(blocks))) if grid.blocks is None else list(grid.blocks)
    if any(not (0 <= b < len(blocks)) for b in timed):
        raise ValueError(f"blocks must be in [0, {len(blocks)}), got {grid.blocks}")
    plans = {a: lab.plan(base_cfg.replace(allocation=a, sparsity=grid.sparsity)) for a in grid.allocations}
    lab.ensure(None)
    block_stats = collect_block_statistics(lab.model, lab.calibration(base_cfg), device=lab.device, progress=progress)
    scale = len(blocks) / len(timed)
    times = {m: {a: [] for a in grid.allocations} for m in grid.methods}
    cpu_times = {m: {a: [] for a in grid.allocations} for m in grid.methods}
    per_block = {m: {a: [[0.0] * len(timed) for _ in range(grid.repeats)] for a in grid.allocations}
                 for m in grid.methods}
    steps = grid.repeats * len(grid.methods) * len(grid.allocations)
    bar = tqdm(total=steps, desc="metric time", disable=not progress)
    for r in range(grid.repeats):
        for m in grid.methods:
            for a in grid.allocations:
                total = cpu_total = 0.0
                for j, b in enumerate(timed):
                    stat = {"wanda": "wanda", "sparsegpt": "hessian"}.get(m)
                    s = {stat: block_stats[b][stat]} if stat else {}
                    t, c = time_block_metric(blocks[b], b, s, plans[a], m, device=lab.device)
                    per_block[m][a][r][j] = t
                    total, cpu_total = total + t, cpu_total + c
                times[m][a].append(total * scale)
                cpu_times[m][a].append(cpu_total * scale)
                bar.update()
    bar.close()
    dlp_cfg = base_cfg.replace(allocation="dlp", sparsity=grid.sparsity)
    ratio_runs = [time_dlp_ratios(lab, dlp_cfg) for _ in range(grid.repeats)]
    return {"grid": {**asdict(grid), "methods": list(grid.methods), "allocations": list(grid.allocations)},
            "prune_config": dlp_cfg.to_dict(), "timed_blocks": timed, "n_blocks": len(blocks),
            "ratios": {a: p.ratios for a, p in plans.items()},
            "seconds": times, "cpu_seconds": cpu_times, "per_block_seconds": per_block,
            "ci95": {m: {a: t_interval(v) for a, v in d.items()} for m, d in times.items()},
            "cpu_ci95": {m: {a: t_interval(v) for a, v in d.items()} for m, d in cpu_times.items()},
            "dlp_ratio_computation": {
                "runs": ratio_runs,
                "statistics_reduction_ci95": t_interval([r["statistics_reduction_s"] for r in ratio_runs]),
                "statistics_reduction_cpu_ci95": t_interval([r["statistics_reduction_cpu_s"] for r in ratio_runs]),
                "allocation_ci95": t_interval([r["allocation_s"] for r in ratio_runs])}}
