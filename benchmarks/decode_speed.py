"""Decoding speed of DLP-pruned models on this CPU (the paper's Table 5 analogue). A benchmark,
not a test: greedy batch-1 decoding with the KV cache, dense vs compressed layers on the same
plain matmul path, interleaved repeats, and the weight-read bound beside each speedup.

    OMP_NUM_THREADS=2 python benchmarks/decode_speed.py                 # the full grid (~25 min on 2 cores)
    python benchmarks/decode_speed.py --quick                           # 3 sparsities, 1 thread, 32 tokens
    python benchmarks/decode_speed.py --model tiny-llama --quick        # seconds
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> dict:
    from dlp_lib.experiment import lab_for
    from dlp_lib.inference.cli import add_arguments, checked_config, run
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    args = add_arguments(p, results_dir=ROOT / "benchmarks" / "results").parse_args(argv)
    cfg = checked_config(args)  # every option fails here, before the model loads
    return run(args, cfg, lab_for(cfg, progress=not args.no_progress))


if __name__ == "__main__":
    main()
