"""The README's benchmark tables, generated from the committed benchmark JSONs in benchmarks/results/.

Each generator is pure: the JSON's dict (and the JSON's path, for the link) in, markdown out.
`BLOCKS` names, per README marker (`<!-- bench-<name>:begin -->` ... `:end -->`), the JSON and its
generator; `blocks()` reads the JSONs and returns every block's markdown, which scripts/verdicts.py
writes into the README and counts as a source of the README's numbers.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from dlp_studies import speed  # noqa: E402
from dlp_studies.paper import TABLE6_TIME  # noqa: E402
from dlp_studies.verdicts import COLLAPSE_FACTOR  # noqa: E402

TOLERANCE = 0.01   # the largest relative change of perplexity we accept from a cheaper dtype
TEXTS = {"brown": "Brown", "sotu": "SOTU", "mobydick": "Moby-Dick"}
METHODS = {"wanda": "Wanda", "sparsegpt": "SparseGPT", "magnitude": "Magnitude"}
ALLOCATIONS = {"uniform": "Uniform", "dlp": "DLP", "owl": "OWL"}


def _link(source: str) -> str:
    return f"[`{Path(source).name}`]({source})"


def _label(run: str) -> str:
    """'wanda/dlp 70%' -> 'Wanda + DLP 70%'; 'dense' stays."""
    method, _, rest = run.partition("/")
    if not rest:
        return run
    allocation, _, tail = rest.partition(" ")
    return f"{METHODS.get(method, method)} + {ALLOCATIONS.get(allocation, allocation)}" + (f" {tail}" if tail else "")


def _phase(d: dict, key: str) -> tuple[float, float]:
    return d[key]["seconds"], d[key]["seconds"] / d["floor"]["seconds"]


def cpu_cost_markdown(d: dict, source: str) -> str:
    """Cost of one configuration against its floor (three dense passes of the calibration set) on a
    CPU, from benchmarks/prune_speed.py's JSON."""
    i = d["info"]
    rows = [(f"floor: 3 dense passes of {i['nsamples']} x {i['seqlen']} tokens", "floor", False),
            ("DLP ratio pass (pass 1, once per model, calibration and seed; cached)", "pass1", False),
            ("Wanda pruning pass", "wanda", False), ("DLP + Wanda end to end", "dlp_wanda", True),
            ("SparseGPT pruning pass", "sparsegpt", False), ("DLP + SparseGPT end to end", "dlp_sparsegpt", False)]
    lines = [f"`{i['command'].split(' --out ')[0]}` on {i['device']}, {i['cpu_threads']} threads, "
             f"{i['dtype'].removeprefix('torch.')}, {i['model']} ({_link(source)}):", "",
             "| phase | seconds | x floor |", "|---|---:|---:|"]
    for name, key, bold in rows:
        s, x = _phase(d, key)
        cells = [name, f"{s:.1f}", f"{x:.2f}"]
        lines.append("| " + " | ".join(f"**{c}**" if bold else c for c in cells) + " |")
    one = d["floor"]["one_dense_pass_seconds"]
    per_block = (d["pass1"]["seconds"] - one) / i["blocks"]
    lines += ["", f"Pass 1 costs one dense forward ({one:.1f} s) plus the pool statistics of each block (the exact "
              f"median by `kthvalue` of {i['block_pool_numel'] / 1e6:.1f}M scores, and the OWL counts): "
              f"{per_block:.2f} s per block over {i['blocks']} blocks."]
    return "\n".join(lines)


def _collapsed(runs: dict, run: str, text: str) -> bool:
    dense = runs.get("dense", {}).get(text, {}).get("fp32")
    return dense is not None and runs[run][text]["fp32"] > COLLAPSE_FACTOR * dense


def eval_dtype_markdown(d: dict, source: str) -> str:
    """fp32 against bf16 autocast evaluation of the same fp32-pruned models, from
    benchmarks/eval_dtype.py's JSON, with the summary over the models that have not collapsed."""
    p, runs = d["protocol"], d["runs"]
    lines = [f"{d['model']}, {p['neval']} windows of {p['seqlen']} tokens per text, {d['threads']} threads, "
             f"torch {d['torch']} ({_link(source)}):", "",
             "| model | text | fp32 | bf16 autocast | difference | seconds fp32 -> bf16 |", "|---|---|---:|---:|---:|---:|"]
    kept, fallen = [], []
    for run, by_text in runs.items():
        for text, r in by_text.items():
            collapsed = _collapsed(runs, run, text)
            (fallen if collapsed else kept).append((run, text, r))
            lines.append(f"| {_label(run)}{' (collapsed)' if collapsed else ''} | {TEXTS.get(text, text)} | "
                         f"{r['fp32']:.5g} | {r['autocast']:.5g} | {r['rel_autocast']:+.2%} | "
                         f"{r['seconds_fp32']:.0f} -> {r['seconds_autocast']:.0f} |")
    worst = max(kept, key=lambda k: abs(k[2]["rel_autocast"]))
    copy = max(r["rel_bf16_copy"] for _, _, r in kept)
    fp32_s = statistics.mean(r["seconds_fp32"] for *_, r in kept + fallen)
    auto_s = statistics.mean(r["seconds_autocast"] for *_, r in kept + fallen)
    within = all(abs(r["rel_autocast"]) <= TOLERANCE for *_, r in kept)
    lines += ["", f"Over the {len(kept)} (model, text) pairs that have not collapsed (perplexity below "
              f"{COLLAPSE_FACTOR:g}x dense), bf16 autocast changes perplexity by at most {worst[2]['rel_autocast']:+.2%} "
              f"({_label(worst[0])}, {TEXTS.get(worst[1], worst[1])}): "
              + (f"within the {TOLERANCE:.0%} we accept" if within else f"**outside the {TOLERANCE:.0%} we accept**")
              + f". A perplexity pass takes {auto_s:.1f} s instead of {fp32_s:.1f} s on average "
              f"({fp32_s / auto_s:.1f}x faster). A bf16 copy of the weights moves the same pairs by up to {copy:+.2%}."]
    for run, text, r in fallen:
        dense = runs["dense"][text]["fp32"]
        lines.append(f"Collapsed: {_label(run)} on {TEXTS.get(text, text)} (fp32 perplexity {r['fp32']:.2g}, "
                     f"{r['fp32'] / dense:.0f}x dense) moves by {r['rel_autocast']:+.2%}.")
    return "\n".join(lines)


def _pct(values, digits: int) -> str:
    """Relative differences as percentages, bold where one is outside TOLERANCE."""
    return ", ".join(f"**{v:+.{digits}%}**" if abs(v) > TOLERANCE else f"{v:+.{digits}%}" for v in values)


def cpu_dtype_markdown(d: dict, source: str) -> str:
    """The whole pipeline in fp32 against bf16, from benchmarks/cpu_dtype.py's JSON."""
    i, p, f32, b16, vs = d["info"], d["info"]["protocol"], d["float32"], d["bfloat16"], d["bfloat16_vs_float32"]
    texts = p["eval"]
    ratio_diff = max(r["max_ratio_diff"] for r in vs["runs"].values())
    lines = [f"{p['model']}, calibration {p['nsamples']} x {p['seqlen']} ({p['calib']}), {p['neval']} evaluation windows "
             f"per text ({', '.join(TEXTS.get(t, t) for t in texts)}), sparsity {i['sparsity']:.0%}, {i['threads']} threads, "
             f"torch {i['torch']} ({_link(source)}); bold: outside the {TOLERANCE:.0%} we accept:", "",
             "| | fp32 | bf16 | bf16 vs fp32 |", "|---|---:|---:|---|",
             f"| pass 1 (dense statistics) | {f32['pass1_seconds']:.1f} s | {b16['pass1_seconds']:.1f} s | plans equal "
             f"to {ratio_diff:.1e} (max per-block ratio difference) |",
             f"| dense perplexity, {len(texts)} texts | {f32['dense_eval_seconds']:.1f} s | {b16['dense_eval_seconds']:.1f} s "
             f"| {_pct([vs['dense_ppl_rel_diff'][t] for t in texts], 2)} |"]
    for run, r in vs["runs"].items():
        lines.append(f"| {_label(run)} {i['sparsity']:.0%} | {f32['runs'][run]['prune_seconds']:.1f} s prune | "
                     f"{b16['runs'][run]['prune_seconds']:.1f} s | perplexity {_pct([r['ppl_rel_diff'][t] for t in texts], 1)} |")
    lines.append(f"| everything above | | | {vs['total_speedup']:.2f}x faster |")
    pruned = max((abs(v), run) for run, r in vs["runs"].items() for v in r["ppl_rel_diff"].values())
    lines += ["", f"bf16 runs everything above {vs['total_speedup']:.1f}x faster; it changes a pruned model's perplexity "
              f"by up to {pruned[0]:.1%} ({_label(pruned[1])} {i['sparsity']:.0%}) and the dense model's by up to "
              f"{max(abs(v) for v in vs['dense_ppl_rel_diff'].values()):.2%}."]
    return "\n".join(lines)


def restore_memory_markdown(d: dict, source: str) -> str:
    """Peak resident memory of keeping the dense copy in RAM against on disk, from
    benchmarks/restore_memory.py's JSON."""
    modes = d["modes"]
    block_mib = next(iter(modes.values()))["block_bytes_mib"]
    lines = [f"{d['model']}, {block_mib:.0f} MiB of block weights, prune and restore at "
             f"{', '.join(f'{s:.0%}' for s in d['sparsities'])} ({_link(source)}):", "",
             "| dense copy | resident after keeping the copy | peak through the prune-and-restore cycles | restored exactly |",
             "|---|---:|---:|---|"]
    lines += [f"| `{m}` | +{r['resident_copy_mib']:.1f} MiB | +{r['cycle_peak_over_baseline_mib']:.1f} MiB | "
              f"{'yes' if r['restored_exactly'] else '**no**'} |" for m, r in modes.items()]
    return "\n".join(lines)


def gpu_speed_markdown(d: dict, source: str) -> str:
    """The Table 6 analogue: time and peak GPU memory of each phase against the floor, from
    benchmarks/prune_speed.py's JSON of a GPU run."""
    i = d["info"]
    paper = TABLE6_TIME["sparsegpt"]["uniform"]["llama1-7b"]

    def alloc(*keys):
        return max(d[k]["peak_allocated_gib"] for k in keys)

    rows = [("floor: 3 dense passes of the calibration set", "floor", ("floor",), False),
            ("DLP ratio pass (pass 1, all statistics on the GPU)", "pass1", ("pass1",), False),
            ("Wanda pruning pass", "wanda", ("wanda",), False),
            ("DLP + Wanda end to end", "dlp_wanda", ("pass1", "wanda"), True),
            ("SparseGPT pruning pass", "sparsegpt", ("sparsegpt",), False),
            (f"DLP + SparseGPT end to end (paper Table 6: {paper:.0f} s for SparseGPT's metric alone, A40)",
             "dlp_sparsegpt", ("pass1", "sparsegpt"), False)]
    lines = [f"`{i['command'].split(' --out ')[0]}` on a {i['model']}-shaped model, {i['nsamples']} x {i['seqlen']} "
             f"calibration tokens, {i['dtype'].removeprefix('torch.')}, on an {i['device']}, torch {i['torch']} "
             f"({_link(source)}):", "",
             "| phase | seconds | x floor | peak GPU GiB (allocated) |", "|---|---:|---:|---:|"]
    for name, key, peaks, bold in rows:
        s, x = _phase(d, key)
        cells = [name, f"{s:.1f}", f"{x:.2f}"]
        lines.append("| " + " | ".join(f"**{c}**" if bold else c for c in cells) + f" | {alloc(*peaks):.1f} |")
    if "dlp_wanda_stream" in d:
        s, x = _phase(d, "dlp_wanda_stream")
        reserved = [d[k]["peak_reserved_gib"] for k in ("pass1_stream", "wanda_stream")]
        lines.append(f"| DLP + Wanda with calibration activations streamed from CPU memory | {s:.1f} | {x:.2f} | "
                     f"{alloc('pass1_stream', 'wanda_stream'):.1f} (reserved {min(reserved):.1f}-{max(reserved):.1f}) |")
    return "\n".join(lines)


def _machine_line(d: dict, source: str) -> str:
    """Who measured a decode JSON, and whether other processes shared the cores (`speed.loaded`)."""
    p = d["provenance"]
    load = (d.get("load_start") or p["loadavg"])[0]
    c = speed.contention(d)
    how = f"1-min load {load:.2f} at the start" if c is None else f"single-thread wall / CPU time {c:.3f}"
    state = "not contended" if not speed.loaded(d) else "contended: not reportable"
    # which kernels ran: the bitmask kernel's vectorised path needs AVX-512 VBMI2 (else its scalar loop)
    isa = ("" if "cpu_flags" not in p else
           f", AVX-512 VBMI2 {'yes' if 'avx512_vbmi2' in p['cpu_flags'] else 'no'}")
    # the wait policy decides what a multi-thread product costs on top of its arithmetic (waking idle threads)
    policy = (f", OMP_WAIT_POLICY={p['omp_wait_policy'] or 'unset (libgomp: spin, then sleep)'}"
              if "omp_wait_policy" in p else "")
    return (f"{p['machine']}{isa}, commit `{p['commit'][:7]}`, {p['date'][:10]}{policy}, {how} ({state}), "
            f"{_link(source)}")


def _paper_speedup(sparsity: float) -> str:
    paper = dict(zip(speed.PAPER_TABLE5_SPARSITIES, speed.PAPER_TABLE5_SPEEDUP))
    return f"{paper[round(sparsity, 2)]:.1f}x" if round(sparsity, 2) in paper else ""


def _loop(grid: dict) -> str:
    """Which decoding loop both arms ran."""
    return {"hf": "Hugging Face's forward", "lean": "the lean decoder"}[grid["runtime"]]


def decode_markdown(d: dict, source: str) -> str:
    """Table 5 analogue in one of our formats: batch-1 greedy decoding of the pruned model against the dense
    model in the same run (paired, interleaved repeats), every sparsity and thread count of
    benchmarks/decode_speed.py's JSON. Consecutive sparsities whose every layer stayed dense (nothing below
    the break-even density: the model is the dense baseline) share one row."""
    g = d["grid"]
    n_layers = sum(next(iter(d["sparsities"][0]["threads"].values()))["format_counts"].values())
    # the bitmask format's third arm: the unpruned model in the same format (bf16 values alone)
    twin = any("format_dense" in r for e in d["sparsities"] for r in e["threads"].values())
    twin_head = "| unpruned in the format / dense | pruning alone (IQR) [bound] " if twin else ""
    lines = [f"`benchmarks/decode_speed.py --format {g['fmt']}`: {g['method']} + {g['allocation']}, "
             f"{g['new_tokens']} tokens, {g['repeats']} interleaved repeats, "
             f"{'all three' if twin else 'both'} arms through {_loop(g)}, "
             f"{_machine_line(d, source)}:", "",
             f"| sparsity | threads | {g['fmt']} layers | speedup (IQR) | memory-traffic bound | of the bound "
             f"{twin_head}| paper (DeepSparse, 7B) |", "| ---: " * (9 if twin else 7) + "|"]
    for t in g["threads"]:
        rows = speed.decode_rows(d, t)
        i = 0
        while i < len(rows):
            r = rows[i]
            if r["speedup"] is None:   # the dense model itself: merge the run of such rows
                j = i
                while j + 1 < len(rows) and rows[j + 1]["speedup"] is None:
                    j += 1
                span = f"{r['sparsity']:.0%}" if j == i else f"{r['sparsity']:.0%}-{rows[j]['sparsity']:.0%}"
                papers = sorted({_paper_speedup(x["sparsity"]) for x in rows[i:j + 1]})
                lines.append(f"| {span} | {t} | 0 | 1.00x (the dense model itself) | 1.00x | | {'| | ' if twin else ''}"
                             f"{papers[0] if len(papers) == 1 else papers[0] + '-' + papers[-1]} |")
                i = j + 1
                continue
            alone = ""
            if twin:
                alone = (f"{r['format alone']:.2f}x | {r['pruning speedup']:.2f}x ({r['pruning IQR']:.2f}) "
                         f"[{r['pruning bound']:.2f}x] | " if r["format alone"] is not None
                         else f"{r['note'] or 'not measured'} | | ")
            lines.append(f"| {r['sparsity']:.0%} | {t} | {r['compressed layers']} | {r['speedup']:.2f}x "
                         f"({r['speedup IQR']:.2f}) | {r['memory bound']:.2f}x | {r['fraction of bound']:.0%} | "
                         f"{alone}{_paper_speedup(r['sparsity'])} |")
            i += 1
    lines += ["", f"Layers: {n_layers} linear layers in the blocks (the tied lm_head stays dense and is counted in "
              "the bound)."]
    if twin:
        lines[-1] += (" A third arm, timed in the same interleaved repeats, is the unpruned model stored in the same "
                      "format (every mask bit set): its speedup over dense is what the bf16 values alone buy, and the "
                      "pruned model's speedup over it is what pruning alone buys, the ratio the paper's Table 5 "
                      "reports (sparse over dense in one engine), where the pruned model stores every layer in the "
                      "format (where it keeps some dense, the twin differs from it in more than its zeros).")
    ref = d.get("hf_dense", {}).get("1")
    if ref and g["runtime"] != "hf":
        lines[-1] += (f" The dense model, 1 thread: {ref['median']:.1f} ms/token as loaded, through Hugging Face's "
                      f"forward; {ref['dense_linear_median']:.1f} through {_loop(g)}, the baseline of the speedups.")
    return "\n".join(lines)


def four_paths_markdown(d: dict, source: str) -> str:
    """Table 5 with the paper's own engine: decode speed of the DLP model in torch (dense), our two formats
    and DeepSparse 1.8.0 (dense and sparse), from benchmarks/deepsparse/bench.py's JSON. Each speedup is
    the median of paired ratios over interleaved repeats (IQR in brackets); the paper's Table 5 is
    DeepSparse sparse over DeepSparse dense."""
    g = d["grid"]
    checks = [c["logit_check"] for c in d["configs"] if "logit_check" in c]
    worst = max(c["deepsparse_vs_torch_max_abs"] for c in checks) if checks else None
    lines = [f"`benchmarks/deepsparse/bench.py`: {g['method']} + DLP, {g['new_tokens']} tokens, {g['repeats']} "
             f"interleaved repeats, torch paths through {_loop(g)}, {_machine_line(d, source)}. "
             "DeepSparse's logits match torch's within "
             + (f"{worst:.1e} (tolerance {d['logit_tolerance']:g}, logits up to "
                f"{max(c['logit_scale'] for c in checks):.0f}, same argmax: "
                f"{all(c['argmax_agree'] for c in checks)}) on {checks[0]['steps']} tokens of each model."
                if checks else "(not checked)."), "",
             "| sparsity | threads | torch dense tok/s | ours CSR (IQR) [bound] | ours bitmask-bf16 (IQR) [bound, of bound] "
             "| ours bitmask-bf16 / its unpruned twin (pruning alone) "
             "| DeepSparse dense / torch dense | DeepSparse sparse / dense | DeepSparse sparse / torch dense "
             "| paper (DeepSparse sparse / dense, 7B) |",
             "| ---: " * 10 + "|"]

    def x(paths, path, over):
        s = paths.get(path, {}).get(f"speedup_vs_{over}")
        return f"{s['median']:.2f}x ({s['iqr']:.2f})" if s else speed.NOT_MEASURED

    for t in g["threads"]:
        for c in sorted((c for c in d["configs"] if c["allocation"] == "dlp"), key=lambda c: c["sparsity"]):
            e = c["threads"].get(str(t), {})
            paths = e.get("paths") or {}
            if not paths:
                continue
            csr, bm = e.get("ours-csr", {}), e.get("ours-bitmask", {})
            bm_x = paths.get("ours-bitmask", {}).get("speedup_vs_torch-dense")
            of = f", {bm_x['median'] / bm['memory_bound_speedup']:.0%}" if bm_x and bm else ""
            lines.append(f"| {c['sparsity']:.0%} | {t} | {paths['torch-dense']['tokens_per_s']:.1f} "
                         f"| {x(paths, 'ours-csr', 'torch-dense')} [{csr.get('memory_bound_speedup', 0):.2f}x] "
                         f"| {x(paths, 'ours-bitmask', 'torch-dense')} [{bm.get('memory_bound_speedup', 0):.2f}x{of}] "
                         f"| {x(paths, 'ours-bitmask', 'ours-bitmask-dense')} "
                         f"| {x(paths, 'ds-dense', 'torch-dense')} | {x(paths, 'ds-sparse', 'ds-dense')} "
                         f"| {x(paths, 'ds-sparse', 'torch-dense')} | {_paper_speedup(c['sparsity'])} |")
    return "\n".join(lines)


RESULTS = "benchmarks/results"
BLOCKS = {   # README marker name: (JSON under benchmarks/results/, generator)
    "bench-cpu-cost": ("cpu_smollm2-135m_default16.json", cpu_cost_markdown),
    "bench-eval-dtype": ("eval_dtype_smollm2-135m.json", eval_dtype_markdown),
    "bench-cpu-dtype": ("cpu_dtype_smollm2-135m.json", cpu_dtype_markdown),
    "bench-restore-memory": ("restore_memory_smollm2-135m.json", restore_memory_markdown),
    # run 3 is the run the README's Table 6 analogue has always shown (benchmarks/README.md compares runs 3 and 4)
    "bench-gpu-speed": ("h200_llama2-7b_run3.json", gpu_speed_markdown),
    "bench-decode-csr": ("decode_smollm2-135m.json", decode_markdown),
    "bench-decode-bitmask": ("decode_smollm2-135m_bitmask.json", decode_markdown),
    "bench-four-paths": ("deepsparse_smollm2-135m.json", four_paths_markdown),
    # the same grids on a CPU without AVX-512 (the bitmask kernel's scalar loop)
    "bench-decode-bitmask-amd": ("decode_smollm2-135m_bitmask_amd_epyc.json", decode_markdown),
    "bench-decode-csr-amd": ("decode_smollm2-135m_amd_epyc.json", decode_markdown),
}


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def blocks(root: Path = ROOT) -> dict[str, str]:
    """Every block's markdown, generated from the committed JSONs."""
    out = {}
    for name, (file, generate) in BLOCKS.items():
        source = f"{RESULTS}/{file}"
        out[name] = generate(json.loads((root / source).read_text()), source)
    return out

