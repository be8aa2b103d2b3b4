"""What pruning buys and costs: decoding speedup (paper Table 5) and pruning-metric time (Table 6).

The paper's numbers, the per-profile grids of notebook 12, the tables it shows, and one tested
verdict function per claim. Every verdict respects the measured noise: a speedup is compared
with its interquartile range over interleaved repeats, metric times with 95% t-intervals.
"""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from . import verdicts

# -- the paper ---------------------------------------------------------------------------------
# Table 5: LLaMA2-7B-chat-hf, DLP + Wanda, DeepSparse on a 24-core Xeon Gold 6248R.
PAPER_TABLE5_SPARSITIES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
PAPER_TABLE5_LATENCY_MS = (353.42, 352.40, 338.37, 323.49, 273.43, 200.17, 164.31, 124.76, 100.30, 96.86)
PAPER_TABLE5_THROUGHPUT = (2.83, 2.84, 2.96, 3.09, 3.66, 4.99, 6.08, 8.01, 9.97, 10.32)
PAPER_TABLE5_SPEEDUP = (1.0, 1.0, 1.1, 1.1, 1.3, 1.8, 2.2, 2.8, 3.5, 3.7)

# Table 6: seconds of computing the pruning metric across the layers (forwards and the ratio
# computation excluded), LLaMA1 7B / 13B / 30B, on the authors' GPU.
PAPER_TABLE6 = {
    ("magnitude", "uniform"): (1.66, 6.82, 11.04), ("magnitude", "dlp"): (1.68, 6.65, 11.01),
    ("sparsegpt", "uniform"): (254.32, 511.30, 1052.48), ("sparsegpt", "dlp"): (257.48, 487.44, 1051.55),
    ("wanda", "uniform"): (0.95, 5.30, 8.64), ("wanda", "dlp"): (0.98, 5.50, 8.50),
}
PAPER_TABLE6_MODELS = ("LLaMA1-7B", "LLaMA1-13B", "LLaMA1-30B")

# -- grids ---------------------------------------------------------------------------------------
# smoke: tiny-llama, seconds. default: the committed JSONs from benchmarks/ (smollm2-135m on this
# 2-core CPU), or the --quick grid when run live. paper: the paper's grid (LLaMA2-7B, 10..90%).
GRIDS = {
    "smoke": {"deepsparse_json": "benchmarks/results/deepsparse_tiny-llama.json",
              "decode": dict(sparsities=(0.5, 0.9), threads=(1,), new_tokens=8, repeats=2, break_even=0.5),
              "metric": dict(methods=("magnitude", "wanda", "sparsegpt"), repeats=2, sparsity=0.7, blocks=(0, 1)),
              "calibration": dict(nsamples=2, seqlen=32)},
    "default": {"decode": dict(sparsities=(0.5, 0.7, 0.9), threads=(1,), new_tokens=32, repeats=2,
                               break_even_repeats=3),
                "metric": dict(methods=("magnitude", "wanda", "sparsegpt"), repeats=5, sparsity=0.7),
                "calibration": dict(nsamples=8, seqlen=256),
                "decode_json": "benchmarks/results/decode_smollm2-135m.json",
                "bitmask_json": "benchmarks/results/decode_smollm2-135m_bitmask.json",
                "deepsparse_json": "benchmarks/results/deepsparse_smollm2-135m.json",
                "metric_json": "benchmarks/results/metric_time_smollm2-135m.json"},
    "paper": {"decode": dict(sparsities=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), threads=(1, 2),
                             new_tokens=128, repeats=3),
              "metric": dict(methods=("magnitude", "wanda", "sparsegpt"), repeats=5, sparsity=0.7),
              "calibration": dict(nsamples=128, seqlen=2048)},
}


def grid(profile: str) -> dict:
    if profile not in GRIDS:
        raise ValueError(f"Unknown profile {profile!r}; allowed: {', '.join(GRIDS)}")
    return GRIDS[profile]


def load_result(path: str | Path, root: str | Path | None = None) -> dict:
    path = Path(path)
    if not path.is_absolute() and root is not None:
        path = Path(root) / path
    if not path.exists():
        raise FileNotFoundError(f"No benchmark result at {path}; run the benchmark (see benchmarks/README.md)")
    return json.loads(path.read_text())


def load_optional(path: str | Path, root: str | Path | None = None) -> dict | None:
    """`load_result`, or None where the benchmark has not been run (shown as "not measured")."""
    try:
        return load_result(path, root)
    except FileNotFoundError:
        return None


# -- tables --------------------------------------------------------------------------------------
# The paths of the DeepSparse benchmark (benchmarks/deepsparse/bench.py), in table order: torch
# dense, ours, DeepSparse dense and sparse (ours in two formats and the bitmask format's dense twin).
DECODE_PATHS = ("torch-dense", "ours-csr", "ours-bitmask", "ours-bitmask-dense", "ds-dense", "ds-sparse")
NOT_MEASURED = "not measured"


def four_path_rows(result: dict | None, threads: int | str = 1, sparsities=(0.5, 0.6, 0.7, 0.8, 0.9),
                   allocations=("dlp", "uniform")) -> list[dict]:
    """One row per (allocation, sparsity): decode tokens/s of each path, the speedups the paper's
    Table 5 reports (DeepSparse sparse over DeepSparse dense), ours over torch dense and (the gain
    of sparsity alone) the bitmask path over the unpruned model in the same bf16 format, our
    formats' memory-traffic bounds, and the paper's speedup. Without a result (or a point it
    lacks), the measured cells say "not measured"."""
    t = str(threads)
    paper = dict(zip(PAPER_TABLE5_SPARSITIES, PAPER_TABLE5_SPEEDUP))
    measured = {}
    for c in (result or {}).get("configs", []):
        if c["allocation"] is not None and t in c["threads"] and c["threads"][t].get("paths"):
            measured[(c["allocation"], round(c["sparsity"], 2))] = c["threads"][t]
    rows = []
    for a in allocations:
        for sp in sparsities:
            row = {"allocation": a, "sparsity": sp, "paper speedup (DeepSparse, 7B)": paper.get(round(sp, 2))}
            m = measured.get((a, round(sp, 2)))
            paths = m["paths"] if m else {}
            for p in DECODE_PATHS:
                row[f"{p} tok/s"] = paths[p]["tokens_per_s"] if p in paths else NOT_MEASURED
            ds = paths.get("ds-sparse", {}).get("speedup_vs_ds-dense")
            row["DeepSparse sparse/dense"] = ds["median"] if ds else NOT_MEASURED
            row["DeepSparse sparse/dense IQR"] = ds["iqr"] if ds else NOT_MEASURED
            for fmt in ("csr", "bitmask"):
                sp_ = paths.get(f"ours-{fmt}", {}).get("speedup_vs_torch-dense")
                row[f"ours-{fmt}/torch-dense"] = sp_["median"] if sp_ else NOT_MEASURED
                bound = m.get(f"ours-{fmt}", {}).get("memory_bound_speedup") if m else None
                row[f"ours-{fmt} bound"] = bound if bound is not None else NOT_MEASURED
            alone = paths.get("ours-bitmask", {}).get("speedup_vs_ours-bitmask-dense")
            row["ours-bitmask/ours-bitmask-dense (sparsity alone)"] = alone["median"] if alone else NOT_MEASURED
            rows.append(row)
    return rows


def format_bound_rows(shape: tuple[int, int], sparsities=(0.5, 0.6, 0.7, 0.8, 0.9)) -> list[dict]:
    """Bytes per kept weight and the matvec memory-traffic bound over fp32 dense of each of our
    formats for one (C_out, C_in) shape (computed from the layouts, not measured). DeepSparse's
    own sparse layout is not published, so it has no row."""
    from dlp_lib.inference.traffic import TRAFFIC_FORMATS, bytes_per_kept_weight, memory_bound_speedup
    rows = []
    for fmt in TRAFFIC_FORMATS:
        for sp in sparsities:
            density = 1.0 - sp  # a dense format stores the pruned zeros too: 4 / density bytes per kept weight
            rows.append({"format": fmt, "sparsity": sp,
                         "bytes per kept weight": bytes_per_kept_weight(fmt, shape, density),
                         "bound over fp32 dense": memory_bound_speedup(fmt, shape, density)})
    return rows



def decode_rows(result: dict, threads: int | str = 1) -> list[dict]:
    """One row per sparsity: our latencies, speedup (with the paired IQR), bound, paper's numbers, and what
    pruning alone buys ("pruning speedup", IQR, bound): for the bitmask format the pruned model over the
    unpruned one in the same bf16 format (the benchmark's third arm; None where the JSON lacks it, since bf16
    values alone halve the bytes, or where some layers of the pruned model stayed dense fp32, since the twin
    stores every layer in the format), for torch's formats the speedup itself (fp32 values, like the baseline)."""
    from dlp_lib.inference.decode_bench import comparable_twin
    from dlp_lib.inference.sparse_linear import TORCH_SPARSE_FORMATS
    t = str(threads)
    same_values = result["grid"]["fmt"] in TORCH_SPARSE_FORMATS
    paper = dict(zip(PAPER_TABLE5_SPARSITIES, zip(PAPER_TABLE5_LATENCY_MS, PAPER_TABLE5_SPEEDUP)))
    rows = []
    for e in sorted(result["sparsities"], key=lambda e: e["sparsity"]):
        if t not in e["threads"]:
            continue
        r = e["threads"][t]
        p = paper.get(round(e["sparsity"], 2), (None, None))
        row = {"sparsity": e["sparsity"], "achieved": e["achieved_sparsity"]["overall"],
               "compressed layers": r["format_counts"].get(result["grid"]["fmt"], 0),
               "memory bound": r["memory_bound_speedup"], "paper ms/token": p[0], "paper speedup": p[1]}
        if r.get("identical_to_dense"):  # no layer below the break-even: the dense baseline itself, not timed
            row.update({"dense ms/token": None, "sparse ms/token": None, "speedup": None, "speedup IQR": None,
                        "CPU-time speedup": None, "fraction of bound": None, "format alone": None,
                        "pruning speedup": None, "pruning IQR": None, "pruning bound": None,
                        "note": "all layers dense (= baseline)"})
        else:
            f = comparable_twin(r, result["grid"]["fmt"])
            mixed = f is None and "format_dense" in r
            pruning = ((f["pruning_speedup_paired_median"], f["pruning_speedup_paired_iqr"],
                        f["pruning_memory_bound_speedup"]) if f else
                       (r["speedup_paired_median"], r["speedup_paired_iqr"], r["memory_bound_speedup"]) if same_values
                       else (None, None, None))
            row.update({"dense ms/token": r["dense_median_ms"], "sparse ms/token": r["sparse_median_ms"],
                        "speedup": r["speedup_paired_median"], "speedup IQR": r["speedup_paired_iqr"],
                        "CPU-time speedup": r["cpu_speedup_paired_median"],
                        "fraction of bound": r["speedup_paired_median"] / r["memory_bound_speedup"],
                        "format alone": f["speedup_paired_median"] if f else None,
                        **dict(zip(("pruning speedup", "pruning IQR", "pruning bound"), pruning)),
                        "note": "layers kept dense: no like-for-like unpruned twin" if mixed else ""})
        rows.append(row)
    return rows


def metric_rows(result: dict) -> list[dict]:
    """One row per (method, allocation): our mean wall seconds with the 95% CI (and CPU seconds,
    which leave out waiting for a core), the paper's LLaMA1 7B / 13B / 30B."""
    rows = []
    for m, d in result["ci95"].items():
        for a, c in d.items():
            paper = PAPER_TABLE6.get((m, a), (None, None, None))
            row = {"method": m, "allocation": a, "seconds": c["mean"], "ci95 low": c["low"], "ci95 high": c["high"]}
            cpu = result.get("cpu_ci95", {}).get(m, {}).get(a)
            if cpu is not None:
                row.update({"CPU seconds": cpu["mean"], "CPU ci95 low": cpu["low"], "CPU ci95 high": cpu["high"]})
            rows.append({**row, **dict(zip(PAPER_TABLE6_MODELS, paper))})
    return rows


# -- verdicts ------------------------------------------------------------------------------------
def speedup_verdict(speedup: float, iqr: float, bound: float, sparsity: float) -> str:
    """Table 5 at one sparsity: is there a speedup beyond the repeats' spread, and how much of the
    memory-traffic bound does it reach?"""
    if speedup <= 0 or bound <= 0 or iqr < 0:
        raise ValueError(f"speedup and bound must be > 0 and iqr >= 0, got {speedup}, {bound}, {iqr}")
    head = f"at {sparsity:.0%}: measured speedup {speedup:.2f}x (IQR {iqr:.2f}), memory bound {bound:.2f}x"
    if abs(speedup - 1.0) <= max(iqr, 0.02):
        return f"{head}: no speedup beyond noise."
    if speedup < 1.0:
        return f"{head}: the compressed model is SLOWER than dense ({1 / speedup:.2f}x)."
    if speedup > bound + max(iqr, 0.02):
        return (f"{head}: ABOVE the bound, so this time is not weight-read bound (the dense path loses time "
                f"elsewhere, or the spread understates the noise).")
    gain = f" ({(speedup - 1.0) / (bound - 1.0):.0%} of the bound's gain over dense)" if bound > 1.05 else ""
    return f"{head}: a real speedup, {speedup / bound:.0%} of the bound{gain}."


def trend_verdict(sparsities, speedups, iqrs) -> str:
    """The paper's claim that the speedup grows with sparsity: do successive points rise, fall,
    or stay within the spread (IQR) of each other?"""
    pts = sorted(zip(sparsities, speedups, iqrs))
    if len(pts) < 2:
        raise ValueError("the trend needs at least two sparsities")
    falls = [(a[0], b[0]) for a, b in zip(pts, pts[1:]) if b[1] < a[1] - max(a[2], b[2], 0.02)]
    rises = [(a[0], b[0]) for a, b in zip(pts, pts[1:]) if b[1] > a[1] + max(a[2], b[2], 0.02)]
    lo, hi = pts[0], pts[-1]
    span = f"{lo[1]:.2f}x at {lo[0]:.0%} to {hi[1]:.2f}x at {hi[0]:.0%}"
    if falls:
        where = ", ".join(f"{a:.0%}->{b:.0%}" for a, b in falls)
        return f"speedup does NOT grow monotonically with sparsity ({span}; falls beyond noise at {where})."
    if not rises:
        return f"speedup is flat within noise across sparsity ({span})."
    return f"speedup grows with sparsity ({span}; no fall beyond noise), as in the paper's Table 5."


def paired_difference(a, b, confidence: float = 0.95) -> dict:
    """t-interval of the mean of b_r - a_r over interleaved repeats r."""
    from dlp_lib.inference.metric_time import t_interval
    if len(a) != len(b):
        raise ValueError(f"paired repeats must have equal lengths, got {len(a)} and {len(b)}")
    return t_interval([y - x for x, y in zip(a, b)], confidence)


def metric_time_verdict(method: str, uniform_s, dlp_s, what: str = "metric time") -> str:
    """Table 6: is DLP's metric time equal to Uniform's? Paired 95% t-interval of DLP - Uniform."""
    d = paired_difference(uniform_s, dlp_s)
    base = statistics.fmean(uniform_s)
    rel = f"{d['mean'] / base:+.1%} [{d['low'] / base:+.1%}, {d['high'] / base:+.1%}]"
    if d["low"] <= 0.0 <= d["high"]:
        return f"{method}: DLP's {what} equals Uniform's within the 95% CI (DLP - Uniform {rel})."
    word = "slower" if d["mean"] > 0 else "faster"
    return f"{method}: DLP's {what} is {word} than Uniform's beyond the 95% CI (DLP - Uniform {rel})."


def ratio_cost_verdict(ratio_seconds: float, metric_seconds: float, method: str = "wanda") -> str:
    """DLP's own extra work (statistics reduction + allocation) against the metric's time."""
    if metric_seconds <= 0 or ratio_seconds < 0:
        raise ValueError(f"times must be positive, got {ratio_seconds}, {metric_seconds}")
    return (f"DLP's ratio computation (forwards excluded) takes {ratio_seconds:.2f} s, "
            f"{ratio_seconds / metric_seconds:.1f}x the {method} metric time ({metric_seconds:.2f} s).")


# -- headline ------------------------------------------------------------------------------------
LOAD_MAX = 0.5   # 1-minute load average at a benchmark's start above which other processes may have shared the cores
CONTENTION_MAX = 1.05   # single-thread wall time / CPU time above which the benchmark waited for a core


def contention(result: dict) -> float | None:
    """How much the JSON's single-thread timings were stretched by other processes: the median wall / CPU
    time of its paired timings where it records both (decode JSONs: ms per token; the DeepSparse benchmark:
    ms per token of its torch paths; metric-time JSONs: total seconds per method and allocation, one
    thread). None where the JSON records no CPU times. Unlike the load average, this does not count the
    benchmark's own earlier work (measure_all.sh runs its steps back to back)."""
    if "sparsities" in result:   # decode_speed.py
        ratios = [w / c for e in result["sparsities"] for r in [e["threads"].get("1", {})]
                  for wall, cpu in (("dense_ms_per_token", "dense_cpu_ms_per_token"),
                                    ("sparse_ms_per_token", "sparse_cpu_ms_per_token"))
                  if wall in r and cpu in r for w, c in zip(r[wall], r[cpu]) if c > 0]
        return statistics.median(ratios) if ratios else None
    if "cpu_seconds" in result and result.get("threads", 1) == 1:   # metric_time.py
        ratios = [sum(wall) / sum(result["cpu_seconds"][m][a]) for m, d in result["seconds"].items()
                  for a, wall in d.items() if sum(result["cpu_seconds"].get(m, {}).get(a, [0])) > 0]
        return statistics.median(ratios) if ratios else None
    if "configs" in result:   # the DeepSparse benchmark (benchmarks/deepsparse/bench.py)
        ratios = [w / c for cfg in result["configs"] for p in cfg["threads"].get("1", {}).get("paths", {}).values()
                  if "cpu_ms_per_token" in p for w, c in zip(p["ms_per_token"], p["cpu_ms_per_token"]) if c > 0]
        return statistics.median(ratios) if ratios else None
    return None


def loaded(result: dict) -> bool:
    """Whether a benchmark JSON was measured while other processes shared the cores: by its `contention`
    where the JSON records CPU times, else by its 1-minute load average at the start."""
    c = contention(result)
    if c is not None:
        return c > CONTENTION_MAX
    start = result.get("load_start") or result.get("provenance", {}).get("loadavg")
    if not start:
        raise ValueError("the benchmark JSON records no load average (load_start / provenance.loadavg)")
    return float(start[0]) > LOAD_MAX


def _source(result: dict) -> str:
    p = result.get("provenance", {})
    start = result.get("load_start") or p["loadavg"]
    c = contention(result)
    return (f"commit {str(p.get('commit', '?'))[:7]}{'+uncommitted' if p.get('dirty') else ''}, load {start[0]:.1f}"
            + (f", contention {c:.2f}" if c is not None else "")
            + (f", OMP_WAIT_POLICY {p['omp_wait_policy'] or 'unset'}" if "omp_wait_policy" in p else ""))


def _judged(row: dict) -> dict:
    """The speedup a Table 5 claim judges: the paper's is sparse over dense in one engine and value type, so
    pruning's own where `decode_rows` knows it ("pruning speedup"), else the speedup as measured."""
    pruning = row.get("pruning speedup") is not None
    x, iqr, bound = ((row["pruning speedup"], row["pruning IQR"], row["pruning bound"]) if pruning
                     else (row["speedup"], row["speedup IQR"], row["memory bound"]))
    return {**row, "x": x, "iqr": iqr, "bound": bound, "pruning": pruning,
            "what": "pruning speeds decoding up" if pruning else "decoding is faster"}


def headline_verdict(table5: list[dict], metric: dict, decode: dict, threads: int, four: dict | None = None) -> dict:
    """Notebook 12's headline over Tables 5 and 6. Rows: our decode speedup at each timed sparsity, pruning's
    own where known (`_judged`; real when it exceeds 1 by more than its IQR), its trend with sparsity
    (`trend_verdict`'s rule), where `four` (the DeepSparse benchmark's JSON) is given the paper's own ratio
    (DeepSparse sparse over DeepSparse dense, DLP) at each sparsity by the same rule, and per method whether
    DLP's metric time is no more than Uniform's (paired 95% CI). A JSON measured on a loaded machine decides
    nothing: its rows are 'cannot tell'. table5: `decode_rows` of the shown thread count for `decode` (our best
    format's JSON)."""
    v = verdicts
    rows, words = [], []
    decode_loaded, metric_loaded = loaded(decode), loaded(metric)
    paper = dict(zip(PAPER_TABLE5_SPARSITIES, PAPER_TABLE5_SPEEDUP))
    timed = [_judged(r) for r in table5 if r.get("speedup") is not None and not math.isnan(r["speedup"])]
    for r in timed:
        s, x, iqr = r["sparsity"], r["x"], r["iqr"]
        words.append(v.NOISE if decode_loaded else v.HOLDS if x - 1.0 > max(iqr, 0.02) else v.FAILS)
        ours = f"{x:.2f}x (IQR {iqr:.2f}; bound {r['bound']:.2f}x)"
        if r.get("format alone") is not None:
            ours = (f"{ours} over the unpruned model in the same format; {r['speedup']:.2f}x over fp32 dense, "
                    f"{r['format alone']:.2f}x of it the format's bf16 values alone")
        elif "pruning speedup" in r and not r["pruning"]:   # a bitmask grid without a like-for-like twin
            ours = f"{ours} over fp32 dense: the format's bf16 values and pruning together"
        rows.append(v.row(f"Table 5: {r['what']} at {s:.0%} ({threads} thread{'s' if threads > 1 else ''})", ours,
                          f"{paper[round(s, 1)]:.1f}x (7B, DeepSparse)" if round(s, 1) in paper else "", words[-1]))
    if len(timed) >= 2:
        trend = trend_verdict([r["sparsity"] for r in timed], [r["x"] for r in timed], [r["iqr"] for r in timed])
        words.append(v.NOISE if decode_loaded or "flat" in trend else v.FAILS if "NOT" in trend else v.HOLDS)
        lo, hi = timed[0], timed[-1]
        rows.append(v.row("Table 5: the speedup grows with sparsity", f"{lo['x']:.2f}x at {lo['sparsity']:.0%} "
                          f"to {hi['x']:.2f}x at {hi['sparsity']:.0%}", "1.8x at 50% to 3.7x at 90%", words[-1]))
    ds_best = None
    if four is not None:
        four_loaded = loaded(four)
        for r in four_path_rows(four, threads, allocations=("dlp",)):
            ds, iqr = r["DeepSparse sparse/dense"], r["DeepSparse sparse/dense IQR"]
            if ds == NOT_MEASURED:
                continue
            words.append(v.NOISE if four_loaded else v.HOLDS if ds - 1.0 > max(iqr, 0.02) else v.FAILS)
            rows.append(v.row(f"Table 5 in DeepSparse: sparse decodes faster than dense at {r['sparsity']:.0%} "
                              f"({threads} thread{'s' if threads > 1 else ''})", f"{ds:.2f}x (IQR {iqr:.2f})",
                              f"{paper[round(r['sparsity'], 1)]:.1f}x (7B)" if round(r["sparsity"], 1) in paper
                              else "", words[-1]))
            if ds_best is None or ds > ds_best[0]:
                ds_best = (ds, r["sparsity"])
    cpu = "cpu_seconds" in metric   # CPU time where measured: wall time also counts the waits for a core
    for m, d in metric["cpu_seconds" if cpu else "seconds"].items():
        if "uniform" not in d or "dlp" not in d:
            continue
        diff, base = paired_difference(d["uniform"], d["dlp"]), statistics.fmean(d["uniform"])
        words.append(v.NOISE if metric_loaded else v.FAILS if diff["low"] > 0.0 else v.HOLDS)
        p = PAPER_TABLE6.get((m, "uniform")), PAPER_TABLE6.get((m, "dlp"))
        rows.append(v.row(f"Table 6: {m} metric {'CPU ' if cpu else ''}time with DLP no more than Uniform's",
                          f"DLP - Uniform {diff['mean'] / base:+.1%} [{diff['low'] / base:+.1%}, "
                          f"{diff['high'] / base:+.1%}]",
                          f"{p[0][0]} s vs {p[1][0]} s (LLaMA1-7B)" if p[0] and p[1] else "", words[-1]))
    if not words:
        raise ValueError("no timed sparsity and no metric time to judge")
    decided = [w for w in words if w != v.NOISE]
    overall = (v.NOISE if not decided else v.HOLDS if all(w == v.HOLDS for w in words)
               else v.FAILS if all(w == v.FAILS for w in decided) else v.PARTLY)
    why = []
    fmt = decode.get("grid", {}).get("fmt")
    if timed:
        best = max(timed, key=lambda r: r["x"])
        alone = f"; {best['speedup']:.2f}x with bf16 values" if best.get("format alone") is not None else ""
        why.append(f"best {'pruning' if best['pruning'] else 'decode'} speedup {best['x']:.2f}x at "
                   f"{best['sparsity']:.0%}" + (f" ({fmt}{alone})" if fmt else "")
                   + (f" vs the paper's {paper[round(best['sparsity'], 1)]:.1f}x" if round(best["sparsity"], 1) in paper
                      else ""))
    if ds_best:
        why.append(f"DeepSparse {ds_best[0]:.2f}x at {ds_best[1]:.0%}")
    bad = [n for n, is_loaded in (("Table 5", decode_loaded), ("Table 6", metric_loaded),
                                  ("DeepSparse", four is not None and loaded(four))) if is_loaded]
    if bad:
        why.append("timings from a loaded machine: " + ", ".join(bad))
    notes = [f"Sources: decode JSON {_source(decode)}; metric-time JSON {_source(metric)}"
             + (f"; DeepSparse JSON {_source(four)}" if four is not None else "") + ". A JSON whose "
             f"contention (`speed.contention`: single-thread wall / CPU time) exceeds {CONTENTION_MAX}, or, where "
             f"it cannot be computed, whose 1-minute load average at the start exceeds {LOAD_MAX}, was measured "
             "while other processes shared the cores: its rows say 'cannot tell'."]
    return v.finish(overall, "Sparsity speeds decoding up at no extra metric cost (Tables 5, 6)", "; ".join(why),
                    rows, notes)
