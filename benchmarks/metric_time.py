"""Time of computing the pruning metric per block, forwards excluded (the paper's Table 6
analogue): Magnitude / Wanda / SparseGPT x Uniform / DLP, interleaved repeats, 95% t-intervals,
and DLP's ratio computation (pass-1 statistics reduction + allocation) apart. A benchmark, not a test.

    OMP_NUM_THREADS=1 python benchmarks/metric_time.py                  # smollm2-135m on the CPU
    python benchmarks/metric_time.py --model tiny-llama --repeats 3     # seconds
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--methods", nargs="+", default=["magnitude", "wanda", "sparsegpt"],
                   choices=["magnitude", "wanda", "sparsegpt"])
    p.add_argument("--sparsity", type=float, default=0.7, help="target sparsity of both plans")
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats (>= 2)")
    p.add_argument("--blocks", type=int, nargs="+", help="time only these blocks (totals scaled to all blocks)")
    p.add_argument("--nsamples", type=int, default=8,
                   help="calibration windows for the statistics (the metric's cost does not depend on it)")
    p.add_argument("--seqlen", type=int, default=256)
    p.add_argument("--threads", type=int, default=1, help="torch threads while timing")
    p.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/metric_time_<model>.json)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    import os

    import torch

    from dlp_lib.experiment import ExperimentConfig, get_lab
    from dlp_lib.inference.break_even import machine_id
    from dlp_lib.inference.metric_time import MetricTimeGrid, run_metric_time
    from dlp_lib.inference.provenance import provenance

    torch.set_num_threads(args.threads)
    grid = MetricTimeGrid(methods=tuple(args.methods), sparsity=args.sparsity, repeats=args.repeats,
                          blocks=tuple(args.blocks) if args.blocks else None)
    profile = "smoke" if args.model == "tiny-llama" else "default"
    cfg = ExperimentConfig.from_profile(profile, model=args.model, method="wanda", allocation="dlp",
                                        sparsity=args.sparsity, nsamples=args.nsamples, seqlen=args.seqlen)
    lab = get_lab(cfg.model, cfg.device, cfg.dtype, progress=not args.no_progress)
    load_start = os.getloadavg()
    result = run_metric_time(lab, cfg, grid, progress=not args.no_progress)
    result.update(provenance=provenance(), machine=machine_id(), threads=args.threads, load_start=load_start,
                  load_end=os.getloadavg())
    out = args.out or ROOT / "benchmarks" / "results" / f"metric_time_{args.model}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    for m, d in result["ci95"].items():
        print(m, "  ".join(f"{a}: {c['mean']:.3f} s [{c['low']:.3f}, {c['high']:.3f}]" for a, c in d.items()))
    r = result["dlp_ratio_computation"]
    print(f"DLP ratios: statistics reduction {r['statistics_reduction_ci95']['mean']:.3f} s, "
          f"allocation {r['allocation_ci95']['mean'] * 1e3:.2f} ms")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
