"""What produced a benchmark number: date, commit, versions, machine, load."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path


def provenance(root: Path | None = None) -> dict:
    import torch
    import transformers

    from .break_even import machine_id
    root = Path(root or Path(__file__).resolve().parents[2])
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        # results a benchmark run rewrites (measure_all.sh writes several JSONs in turn) are not code changes
        dirty = bool(subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--",
                                     ".", ":!benchmarks/results"], capture_output=True, text=True,
                                    check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = None, None
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "commit": commit,
            "dirty": dirty, "machine": machine_id(), "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "platform": platform.platform(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "cpu_flags": vector_flags(), "loadavg": os.getloadavg(),
            "command": " ".join(sys.argv)}


def vector_flags() -> list[str]:
    """The CPU's vector extensions, which decide the kernels that run (the bitmask kernel's vectorised path
    needs AVX-512 VBMI2): the avx*, amx*, fma, f16c and sse4* flags of `native.cpu_flags`."""
    from .native import cpu_flags
    return sorted(f for f in cpu_flags() if f.startswith(("avx", "amx", "fma", "f16c", "sse4")))
