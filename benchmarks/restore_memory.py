"""Peak CPU memory of pruning with restore, dense copy in RAM vs on disk (a benchmark, not a test).

A Lab keeps the dense block weights aside to restore them between configurations. With
`dense_copy="memory"` that is a second resident copy of every block; with "disk" it is a
safetensors file in the cache, read back one tensor at a time into the model's own tensors. This measures
what each costs in resident memory on a real model, each mode in a fresh process:

  baseline  resident set after loading the model (the high-water mark is then reset)
  keep      peak over baseline while the dense copy is made (and, for "disk", written)
  cycle     peak over baseline through prune -> restore -> prune -> restore (Magnitude, Uniform:
            no calibration pass, so the peak is the restore path's and the pruning's own)

Peaks are the kernel's high-water mark of the resident set (VmHWM, reset through
/proc/self/clear_refs), so a restore through a memory map would count the mapped file's pages. Each process also
checks that the restored model's fingerprint equals the dense one.

    python benchmarks/restore_memory.py --model smollm2-135m --out benchmarks/results/restore_memory_smollm2-135m.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MIB = 2 ** 20


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} (this benchmark needs Linux)")


def _release_freed_heap() -> None:
    """Hand memory freed while loading back to the kernel (glibc keeps it otherwise), so that the
    baseline is what the model holds and a later allocation cannot hide inside freed pages."""
    import ctypes
    import gc
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # "5" resets VmHWM to the current VmRSS


def measure(model_name: str, mode: str, sparsities: list[float]) -> dict:
    """One mode, in this process: the resident-set deltas above (MiB)."""
    from dlp_lib.api import plan as build_plan
    from dlp_lib.dense_weights import DenseWeights
    from dlp_lib.fingerprint import model_fingerprint
    from dlp_lib.models import load_model
    from dlp_lib.pruning import prune_model

    model, _ = load_model(model_name)
    fingerprint = model_fingerprint(model)
    _release_freed_heap()
    _reset_peak()
    baseline = _status_kib("VmRSS")
    dense = DenseWeights(model, fingerprint, mode)
    keep_peak = _status_kib("VmHWM")
    _release_freed_heap()
    after_keep = _status_kib("VmRSS")
    _reset_peak()
    for sparsity in sparsities:
        plan = build_plan(None, "uniform", sparsity, model=model, method="magnitude")
        prune_model(model, plan, "magnitude", None, group="per_layer", progress=False)
        dense.restore(model)
    cycle_peak = _status_kib("VmHWM")
    restored = model_fingerprint(model) == fingerprint
    return {"mode": dense.mode, "block_bytes_mib": dense.nbytes / MIB, "baseline_mib": baseline / 1024,
            "keep_peak_over_baseline_mib": (keep_peak - baseline) / 1024,
            "resident_copy_mib": (after_keep - baseline) / 1024,
            "cycle_peak_over_baseline_mib": (cycle_peak - baseline) / 1024,
            "restored_exactly": restored}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.7])
    ap.add_argument("--out", help="write the JSON here")
    ap.add_argument("--one-mode", choices=["memory", "disk"], help=argparse.SUPPRESS)  # the child process
    args = ap.parse_args(argv)
    if args.one_mode:
        print(json.dumps(measure(args.model, args.one_mode, args.sparsities)))
        return {}
    from dlp_lib.inference.provenance import provenance
    out = {"model": args.model, "sparsities": args.sparsities, "provenance": provenance(ROOT), "modes": {}}
    with tempfile.TemporaryDirectory() as cache:  # "disk" writes its file here, not into the user's cache
        for mode in ("memory", "disk"):
            proc = subprocess.run([sys.executable, __file__, "--model", args.model, "--one-mode", mode,
                                   "--sparsities", *map(str, args.sparsities)], capture_output=True, text=True,
                                  env={**os.environ, "DLP_CACHE_DIR": cache})
            if proc.returncode:
                raise SystemExit(f"{mode}: {proc.stderr[-2000:]}")
            out["modes"][mode] = row = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{mode:6s} blocks {row['block_bytes_mib']:7.1f} MiB  baseline {row['baseline_mib']:7.1f}  "
                  f"keep peak +{row['keep_peak_over_baseline_mib']:7.1f}  resident copy +{row['resident_copy_mib']:7.1f}  "
                  f"prune/restore peak +{row['cycle_peak_over_baseline_mib']:7.1f} MiB  "
                  f"restored exactly: {row['restored_exactly']}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
