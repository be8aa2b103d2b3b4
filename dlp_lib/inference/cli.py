"""Command-line entry point of the decoding benchmark in the shape of every subcommand:
`add_arguments(p)`, `checked_config(args)` (every option checked, before a model loads) and
`run(args, cfg, lab)` (used by benchmarks/decode_speed.py; the main CLI mounts it as `decode-bench`).

The folder the default output goes to is the caller's to say (`add_arguments(p, results_dir)`); the
library never writes next to its own files."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESULTS_DIR = Path("benchmarks") / "results"   # relative to the current directory
QUICK = dict(sparsities=(0.5, 0.7, 0.9), threads=(1,), new_tokens=32, repeats=2, break_even_repeats=3)


def add_arguments(p: argparse.ArgumentParser, results_dir: Path = RESULTS_DIR) -> argparse.ArgumentParser:
    """Arguments of `decode-bench` (decoding speed of DLP-pruned models, paper Table 5); without --out
    the JSON goes into `results_dir`."""
    from ..allocation import allocator_names
    from ..pruning import METHODS
    from .decode import RUNTIMES
    p.add_argument("--model", default="smollm2-135m", help="model name (smollm2-135m, tiny-llama, a checkpoint)")
    p.add_argument("--sparsities", type=float, nargs="+", help="DLP target sparsities (default 0.1 .. 0.9)")
    p.add_argument("--threads", type=int, nargs="+", help="torch thread counts (default 1 2)")
    p.add_argument("--new-tokens", type=int, help="greedy tokens decoded after the prompt (default 128)")
    p.add_argument("--repeats", type=int, help="interleaved dense/sparse runs per point (default 3)")
    p.add_argument("--format", dest="fmt", default="csr", choices=("csr", "bsr", "coo", "bitmask"),
                   help="compressed format for layers below the break-even density")
    p.add_argument("--runtime", default="lean", choices=RUNTIMES,
                   help="decoding loop of both arms: lean (Llama-style models, no HF per-token overhead) or hf "
                        "(HF's forward, any model)")
    p.add_argument("--break-even", type=float, default=None,
                   help="override the measured break-even density (a layer is compressed below it)")
    # no argparse choices for registry names: run() checks them with validation's functions, so a bad
    # name gets the same one-line error as prune's (exit code 2 from the CLI), before the model loads
    p.add_argument("--method", default="wanda", metavar="METHOD", help=f"pruning method, one of {', '.join(METHODS)}")
    p.add_argument("--allocation", default="dlp", metavar="ALLOCATION",
                   help=f"layerwise allocator, one of {', '.join(allocator_names())}")
    p.add_argument("--nsamples", type=int, default=8,
                   help="calibration windows for pruning (speed depends on the layer densities, not on "
                        "which weights are kept, so fewer than the default profile's 32)")
    p.add_argument("--seqlen", type=int, default=256, help="calibration window length in tokens")
    p.add_argument("--quick", action="store_true", help="3 sparsities, 1 thread, 32 tokens, 2 repeats")
    where = "" if results_dir.is_absolute() else ", relative to the current directory"
    p.add_argument("--out", type=Path, help=f"JSON path (default {results_dir}/decode_<model>[_<format>][_quick].json"
                   f"{where}; the format is left out for csr)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(results_dir=results_dir)
    return p


def grid_from_args(args: argparse.Namespace):
    """The benchmark's grid (sparsities, threads, tokens, repeats, format, pruning), checked."""
    from .decode_bench import DecodeGrid
    grid_args = dict(QUICK) if args.quick else {}
    for name in ("sparsities", "threads", "new_tokens", "repeats"):
        if getattr(args, name) is not None:
            grid_args[name] = tuple(getattr(args, name)) if isinstance(getattr(args, name), list) else getattr(args, name)
    return DecodeGrid(**grid_args, fmt=args.fmt, break_even=args.break_even, method=args.method,
                      allocation=args.allocation, runtime=args.runtime)


def output_path(args: argparse.Namespace) -> Path:
    fmt_tag = "" if args.fmt == "csr" else f"_{args.fmt}"  # csr keeps the historical name
    return args.out or args.results_dir / f"decode_{args.model}{fmt_tag}{'_quick' if args.quick else ''}.json"


def checked_config(args: argparse.Namespace):
    """The pruning configuration the benchmark prunes with, after every option was checked (before
    any model loads)."""
    from ..cache import check_writable
    from ..experiment import ExperimentConfig
    from ..validation import (check_context_length, check_output_file, cost_notice, input_paths,
                              model_context_limit)
    grid_from_args(args)
    profile = "smoke" if args.model == "tiny-llama" else "default"
    # fp32 whatever the profile says: torch's CPU sparse kernels (CSR/BSR/COO matmul) have no bf16
    # implementation, and dense and compressed layers must run the same arithmetic (the bitmask
    # format rounds its stored weights to bf16 but computes in fp32 too)
    cfg = ExperimentConfig.from_profile(profile, model=args.model, method=args.method, allocation=args.allocation,
                                        nsamples=args.nsamples, seqlen=args.seqlen, dtype="float32")
    check_output_file(output_path(args), "--out", input_paths(cfg.model, (cfg.calib,)))
    check_context_length("--seqlen", cfg.seqlen, model_context_limit(cfg.model), cfg.model)
    check_writable()
    notice = cost_notice(cfg, ExperimentConfig.from_profile(profile))
    if notice:
        print(notice, file=sys.stderr)
    return cfg


def run(args: argparse.Namespace, cfg, lab) -> dict:
    """Prune at every sparsity, time dense vs compressed decoding, write the JSON, print a summary."""
    from .decode_bench import comparable_twin, run_decode_benchmark
    from .provenance import provenance

    grid = grid_from_args(args)
    out = output_path(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    prov = provenance()

    def write(partial: dict, complete: bool = False) -> None:
        out.write_text(json.dumps({"provenance": prov, "complete": complete, **partial}, indent=1))

    result = run_decode_benchmark(lab, cfg, grid, progress=not args.no_progress, checkpoint=write)
    write(result, complete=True)
    result = {"provenance": prov, "complete": True, **result}
    for e in result["sparsities"]:
        for t, r in e["threads"].items():
            if r.get("identical_to_dense"):
                print(f"sparsity {e['sparsity']:.0%} threads {t}: no layer below the break-even (= dense)")
                continue
            print(f"sparsity {e['sparsity']:.0%} threads {t}: dense {r['dense_median_ms']:.1f} ms/token, sparse "
                  f"{r['sparse_median_ms']:.1f}, speedup {r['speedup_paired_median']:.2f}x (IQR "
                  f"{r['speedup_paired_iqr']:.2f}, bound {r['memory_bound_speedup']:.2f}x) {r['format_counts']}")
            f = comparable_twin(r, args.fmt)
            if f is not None:
                print(f"  unpruned model in the format: {f['speedup_paired_median']:.2f}x over dense; pruning alone "
                      f"{f['pruning_speedup_paired_median']:.2f}x (IQR {f['pruning_speedup_paired_iqr']:.2f}, "
                      f"bound {f['pruning_memory_bound_speedup']:.2f}x)")
    print(f"wrote {out}")
    return result
