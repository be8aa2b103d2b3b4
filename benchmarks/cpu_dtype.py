"""bf16 vs fp32 on a CPU at the default profile's protocol (a benchmark, not a test).

Runs the very pipeline the notebooks use (`Lab.run`: pass 1, plan, prune, evaluate on every
text of the profile) once per compute dtype and reports, per configuration, the largest
per-block ratio difference of the plan, the perplexity difference relative to fp32 and the
wall time of each stage. Statistics (Wanda norms, Hessians) are accumulated in fp32 in both
cases; only the weights and the activations the blocks compute are 16-bit.

    python benchmarks/cpu_dtype.py --out benchmarks/results/cpu_dtype_smollm2-135m.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dlp_lib.experiment import ExperimentConfig, Lab  # noqa: E402
from dlp_lib.validation import cpu_supports_bf16  # noqa: E402


def run_dtype(dtype: str, configs: list[tuple[str, str]], sparsity: float, base: dict) -> dict:
    t0 = time.perf_counter()
    lab = Lab(base["model"], dtype=dtype, progress=False, use_cache=False)
    out = {"load_seconds": time.perf_counter() - t0, "runs": {}}
    first = ExperimentConfig(**base, dtype=dtype, method="wanda", allocation="dlp", sparsity=sparsity)
    t0 = time.perf_counter()
    lab.dense_statistics(first)
    out["pass1_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out["dense_ppl"] = lab.dense_perplexity(first)
    out["dense_eval_seconds"] = time.perf_counter() - t0
    for method, allocation in configs:
        cfg = first.replace(method=method, allocation=allocation)
        t0 = time.perf_counter()
        r = lab.run(cfg)
        out["runs"][f"{method}/{allocation}"] = {
            "ratios": r["ratios"], "ppl": r["perplexity"]["pruned"], "prune_seconds": r["prune_seconds"],
            "seconds": time.perf_counter() - t0, "achieved": r["achieved_sparsity"]["overall"]}
        print(f"  {dtype:9s} {method}/{allocation}: {r['perplexity']['pruned']}  "
              f"[{time.perf_counter() - t0:.0f} s]", flush=True)
    return out


def compare(ref: dict, other: dict) -> dict:
    """Differences of `other` from the fp32 reference."""
    rel = lambda a, b: {k: a[k] / b[k] - 1 for k in b}  # noqa: E731
    out = {"dense_ppl_rel_diff": rel(other["dense_ppl"], ref["dense_ppl"]), "runs": {}}
    for key, r0 in ref["runs"].items():
        r = other["runs"][key]
        out["runs"][key] = {"max_ratio_diff": max(abs(a - b) for a, b in zip(r["ratios"], r0["ratios"])),
                            "ppl_rel_diff": rel(r["ppl"], r0["ppl"]),
                            "speedup": r0["seconds"] / r["seconds"]}
    t_ref = ref["pass1_seconds"] + ref["dense_eval_seconds"] + sum(r["seconds"] for r in ref["runs"].values())
    t = other["pass1_seconds"] + other["dense_eval_seconds"] + sum(r["seconds"] for r in other["runs"].values())
    out["total_speedup"] = t_ref / t
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--sparsity", type=float, default=0.7)
    ap.add_argument("--configs", nargs="*", default=["wanda/dlp", "wanda/uniform", "sparsegpt/dlp"],
                    help="method/allocation pairs")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from dlp_lib.experiment import PROFILES
    p = PROFILES["default"]
    base = dict(model=args.model, calib=p["calib"], nsamples=p["nsamples"], seqlen=p["seqlen"],
                eval=tuple(p["eval"]) + tuple(p["extra_eval"]), neval=p["neval"], device="cpu")
    configs = [tuple(c.split("/")) for c in args.configs]
    info = {"cpu_bf16": cpu_supports_bf16(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "cpu": os.uname().machine, "protocol": base, "sparsity": args.sparsity}
    print(json.dumps(info), flush=True)
    res = {"info": info, "float32": run_dtype("float32", configs, args.sparsity, base),
           "bfloat16": run_dtype("bfloat16", configs, args.sparsity, base)}
    res["bfloat16_vs_float32"] = compare(res["float32"], res["bfloat16"])
    print(json.dumps(res["bfloat16_vs_float32"], indent=1), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
