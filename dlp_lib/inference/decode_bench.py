"""Decoding latency of DLP-pruned models against the dense model on the same matmul path
(the Table 5 analogue), with the weight-read bound beside every measured speedup."""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass

import torch
from tqdm.auto import tqdm

from ..runs.auto_allocation import selected
from .break_even import break_even_density, machine_id
from .decode import check_runtime, greedy_decode
from .lean_decode import check_lean_model
from .sparsify import sparsify_model

# A fixed prompt: every model decodes its continuation; the same tokens for every sparsity.
PROMPT = ("The history of the city begins with a small settlement on the river, where traders "
          "from the north and the south met to exchange")


@dataclass(frozen=True)
class DecodeGrid:
    """What one decode benchmark measures."""
    sparsities: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # DLP target sparsities
    threads: tuple[int, ...] = (1, 2)     # torch intra-op threads
    new_tokens: int = 128                 # greedy tokens decoded after the prompt
    repeats: int = 3                      # interleaved dense/sparse runs per (sparsity, threads)
    fmt: str = "csr"                      # compressed format of layers below the break-even (csr/bsr/coo/bitmask)
    break_even: float | None = None       # None: measured per (shape, threads); a number overrides
    break_even_repeats: int = 7           # repeats of each break-even timing
    method: str = "wanda"                 # pruning metric (paper Table 5: Wanda)
    allocation: str = "dlp"               # layerwise allocation (paper Table 5: DLP)
    runtime: str = "lean"                 # decoding loop of both arms: lean (no HF per-token overhead) or hf

    def __post_init__(self):
        if not self.sparsities or any(not (0 < s < 1) for s in self.sparsities):
            raise ValueError(f"sparsities must be in (0, 1), got {self.sparsities}")
        if not self.threads or any(int(t) < 1 for t in self.threads):
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.new_tokens < 1 or self.repeats < 1:
            raise ValueError(f"new_tokens and repeats must be >= 1, got {self.new_tokens}, {self.repeats}")
        if self.break_even is not None and not 0 <= self.break_even <= 1:   # nan fails too
            raise ValueError(f"break_even = {self.break_even} is not allowed; expected a density in [0, 1]")
        check_runtime(self.runtime)


def iqr(values) -> float:
    """Interquartile range (inclusive quartiles); 0 for a single value."""
    values = sorted(values)
    if len(values) < 2:
        return 0.0
    q = statistics.quantiles(values, n=4, method="inclusive")
    return float(q[2] - q[0])


def ms_per_token(model, prompt_ids, new_tokens, runtime) -> tuple[float, float, torch.Tensor]:
    """(wall ms per token, CPU ms per token, tokens) of one greedy decode."""
    cpu: list[float] = []
    tokens, times = greedy_decode(model, prompt_ids, new_tokens, runtime=runtime, cpu_times=cpu)
    return 1e3 * sum(times) / len(times), 1e3 * sum(cpu) / len(cpu), tokens


def _reference_model(model, fmt: str):
    """What the compressed model must decode exactly: the masked model itself, or for the bitmask
    format (bf16 values) a copy whose block weights are rounded to bf16 as the format stores them."""
    if fmt != "bitmask":
        return model
    import copy
    from ..models import decoder_blocks, linear_modules, linear_sublayers
    ref = copy.deepcopy(model)
    for block in decoder_blocks(ref):
        for layer in linear_modules(linear_sublayers(block), "bf16 rounding").values():
            layer.weight.data = layer.weight.data.to(torch.bfloat16).to(layer.weight.dtype)
    return ref


def _format_dense_entry(runs: dict, format_dense, sparse_bytes: int) -> dict:
    """The unpruned model in the compressed format, timed in the same interleaved repeats: its speedup over
    the dense model (what the format's value type alone buys) and the pruned model's over it (what pruning
    alone buys), each the median of paired ratios with its IQR, and the latter's memory-traffic bound. The
    twin stores every layer in the format, so the pruning ratio is like-for-like only where the pruned model
    does too (no layer above the break-even): `comparable_twin` says where."""
    f, d, s = runs["format_dense"], runs["dense"], runs["sparse"]
    over_dense = [a / b for a, b in zip(d, f)]
    pruning = [a / b for a, b in zip(f, s)]
    return {"ms_per_token": f, "median_ms": statistics.median(f),
            "memory_bound_speedup": format_dense.memory_bound_speedup(),
            "speedup_paired_median": statistics.median(over_dense), "speedup_paired_iqr": iqr(over_dense),
            "pruning_speedup_paired_median": statistics.median(pruning), "pruning_speedup_paired_iqr": iqr(pruning),
            "pruning_memory_bound_speedup": format_dense.bytes_per_token()["stored"] / sparse_bytes}


def comparable_twin(threads_entry: dict, fmt: str) -> dict | None:
    """A decode result's unpruned-twin entry (`_format_dense_entry`) where it differs from the pruned model in
    its zeros only, i.e. the pruned model stores every layer in `fmt` too; else (or without a twin) None."""
    twin = threads_entry.get("format_dense")
    return twin if twin is not None and set(threads_entry["format_counts"]) == {fmt} else None


def _thresholds(model, grid: DecodeGrid, threads: int) -> dict:
    from ..models import decoder_blocks, linear_sublayers
    shapes = sorted({tuple(l.weight.shape) for b in decoder_blocks(model) for l in linear_sublayers(b).values()})
    if grid.break_even is not None:
        return {s: {"density": float(grid.break_even), "measured": False} for s in shapes}
    out = {}
    for s in shapes:
        be = break_even_density(s, fmt=grid.fmt, threads=threads, repeats=grid.break_even_repeats)
        out[s] = {"density": be.density, "measured": True, "dense_us": be.dense_us,
                  "densities": be.densities, "sparse_us": be.sparse_us}
    return out


@torch.no_grad()
def run_decode_benchmark(lab, base_cfg, grid: DecodeGrid, *, progress: bool = True, checkpoint=None) -> dict:
    """For every sparsity: prune with `grid.method` + `grid.allocation`, swap layers (compressed
    below the break-even, `DenseLinear` above), and time greedy decoding of the pruned and the
    dense model (both on the plain matmul path, both through `grid.runtime`'s loop) in alternating
    runs; for the bitmask format also the unpruned model in that format (`_format_dense_entry`). The HF
    dense model through HF's own loop is timed too, for reference only. `checkpoint(out)` is called
    after every sparsity (to write partial results: on a shared machine a long grid may not finish)."""
    old_threads = torch.get_num_threads()
    prompt_ids = lab.tokenizer(PROMPT, return_tensors="pt").input_ids[:, :64]
    lab.ensure(None)
    if grid.runtime == "lean":  # before any pruning: the model must be one the lean loop runs
        check_lean_model(lab.model)
    dense_report = sparsify_model(lab.model, fmt=grid.fmt, break_even=0.0, inplace=False)
    dense_model = dense_report.model
    # the bitmask format stores bf16 values, which alone halve the bytes of every weight: its third arm is the
    # unpruned model in the same format (every layer, all mask bits set), so what pruning buys is measured apart
    format_dense = (sparsify_model(lab.model, fmt="bitmask", break_even=1.0, inplace=False)
                    if grid.fmt == "bitmask" else None)
    out = {"grid": {**asdict(grid), "sparsities": list(grid.sparsities), "threads": list(grid.threads)},
           "prune_config": {k: v for k, v in base_cfg.to_dict().items() if k not in ("sparsity", "alpha")},
           "prompt_tokens": int(prompt_ids.shape[1]), "machine": machine_id(),
           "dense_bytes_per_token": dense_report.bytes_per_token()["dense"],
           "format_dense_bytes_per_token": format_dense.bytes_per_token()["stored"] if format_dense else None,
           "break_even": {}, "hf_dense": {},
           "sparsities": [], "load_start": os.getloadavg()}
    try:
        thresholds = {}
        for t in grid.threads:
            torch.set_num_threads(t)
            thresholds[t] = _thresholds(lab.model, grid, t)
            out["break_even"][str(t)] = {f"{s[0]}x{s[1]}": v for s, v in thresholds[t].items()}
            hf = [ms_per_token(lab.model, prompt_ids, grid.new_tokens, "hf")[0] for _ in range(max(1, grid.repeats // 2))]
            dl = [ms_per_token(dense_model, prompt_ids, grid.new_tokens, grid.runtime)[0]
                  for _ in range(max(1, grid.repeats // 2))]
            out["hf_dense"][str(t)] = {"ms_per_token": hf, "median": statistics.median(hf),
                                       "dense_linear_ms_per_token": dl, "dense_linear_median": statistics.median(dl)}
        for sparsity in tqdm(grid.sparsities, desc="decode benchmark", disable=not progress):
            cfg = base_cfg.replace(sparsity=sparsity, method=grid.method, allocation=grid.allocation)
            t0 = time.perf_counter()
            lab.ensure(selected(lab, cfg))  # allocation auto: the candidate chosen on held-out text
            prune_s = time.perf_counter() - t0
            from ..evaluation import achieved_sparsity
            achieved = achieved_sparsity(lab.model)
            entry = {"sparsity": sparsity, "achieved_sparsity": {k: achieved[k] for k in ("overall", "per_block")}, "prune_seconds": prune_s,
                     "load_before": os.getloadavg(), "threads": {}, "tokens_checked": False}
            reports = {}
            for t in grid.threads:
                torch.set_num_threads(t)
                reports[t] = sparsify_model(lab.model, fmt=grid.fmt, threads=t, inplace=False,
                                            break_even={s: v["density"] for s, v in thresholds[t].items()})
            runs = {t: {"dense": [], "sparse": [], "dense_cpu": [], "sparse_cpu": [], "format_dense": []}
                    for t in grid.threads}
            compressed = {t: any(l.format != "dense" for l in reports[t].layers) for t in grid.threads}
            sparse_tokens = None
            for _ in range(grid.repeats):  # interleaved: dense, sparse, for each thread count, then again
                for t in grid.threads:
                    if not compressed[t]:  # every layer dense: the very model of the baseline, not timed
                        continue
                    torch.set_num_threads(t)
                    d_ms, d_cpu, _ = ms_per_token(dense_model, prompt_ids, grid.new_tokens, grid.runtime)
                    if format_dense is not None:
                        runs[t]["format_dense"].append(
                            ms_per_token(format_dense.model, prompt_ids, grid.new_tokens, grid.runtime)[0])
                    s_ms, s_cpu, sparse_tokens = ms_per_token(reports[t].model, prompt_ids, grid.new_tokens,
                                                               grid.runtime)
                    for k, v in (("dense", d_ms), ("sparse", s_ms), ("dense_cpu", d_cpu), ("sparse_cpu", s_cpu)):
                        runs[t][k].append(v)
            for t in grid.threads:
                r, rep = runs[t], reports[t]
                b = rep.bytes_per_token()
                common = {"bytes_per_token_dense": b["dense"], "bytes_per_token_stored": b["stored"],
                          "memory_bound_speedup": rep.memory_bound_speedup(), "format_counts": rep.format_counts(),
                          "layer_densities": [l.density for l in rep.layers],
                          "layer_formats": [l.format for l in rep.layers]}
                if not compressed[t]:
                    entry["threads"][str(t)] = {"identical_to_dense": True, **common}
                    continue
                ratios = [d / s for d, s in zip(r["dense"], r["sparse"])]
                cpu_ratios = [d / s for d, s in zip(r["dense_cpu"], r["sparse_cpu"])]
                entry["threads"][str(t)] = {"identical_to_dense": False, **common,
                    "dense_cpu_ms_per_token": r["dense_cpu"], "sparse_cpu_ms_per_token": r["sparse_cpu"],
                    "cpu_speedup_paired_median": statistics.median(cpu_ratios),
                    "cpu_speedup_paired_iqr": iqr(cpu_ratios),
                    "dense_ms_per_token": r["dense"], "sparse_ms_per_token": r["sparse"],
                    "dense_median_ms": statistics.median(r["dense"]), "dense_iqr_ms": iqr(r["dense"]),
                    "sparse_median_ms": statistics.median(r["sparse"]), "sparse_iqr_ms": iqr(r["sparse"]),
                    "speedup": statistics.median(r["dense"]) / statistics.median(r["sparse"]),
                    "speedup_paired_median": statistics.median(ratios), "speedup_paired_iqr": iqr(ratios)}
                if format_dense is not None:
                    entry["threads"][str(t)]["format_dense"] = _format_dense_entry(r, format_dense, b["stored"])
            entry["load_after"] = os.getloadavg()
            # the compressed model must decode what the masked HF model decodes through HF's own loop
            # (bf16-rounded for the bitmask format; fp32 sums in another order may flip a near-tie
            # late in a long continuation: the first differing step is kept)
            if sparse_tokens is not None:
                hf_tokens, _ = greedy_decode(_reference_model(lab.model, grid.fmt), prompt_ids, grid.new_tokens)
                diff = (hf_tokens != sparse_tokens).nonzero()
                entry["first_token_differing_from_masked_hf"] = int(diff[0]) if len(diff) else None
                entry["tokens_checked"] = True
            out["sparsities"].append(entry)
            del reports
            if checkpoint is not None:
                checkpoint(out)
    finally:
        torch.set_num_threads(old_threads)
        lab.ensure(None)
    out["load_end"] = os.getloadavg()
    return out
