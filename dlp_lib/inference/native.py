"""Build and load the project's C++ kernels: the bitmask-bf16 matrix-vector product
(bitmask_kernel.cpp) and the lean decoder's one-token attention, RMSNorm and gated activation
(lean_kernels.cpp).

Why a plain shared library through ctypes, not `torch.utils.cpp_extension.load` or numba: the
kernel needs only the system C++ compiler (g++ with OpenMP, present wherever torch's own CPU
build tools are), while `cpp_extension.load` also needs ninja and the Python headers and must
match torch's C++ ABI, and numba pins numpy versions and has no bf16 type (the bit widening would
be emulated). The library is compiled once per (source, compiler flags, CPU) into the dlp_lib
cache, with `-march=native` so the AVX-512 path is used where the CPU has it; ctypes costs a few
microseconds per call (a few hundred calls per decoded token: well under a millisecond).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCES = tuple(Path(__file__).with_name(name) for name in ("bitmask_kernel.cpp", "lean_kernels.cpp"))
CXX_FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++17")

_LIB: ctypes.CDLL | None = None


class KernelBuildError(RuntimeError):
    """The C++ compiler is missing or failed on the kernel source."""


def cpu_flags() -> list[str]:
    """Every flag /proc/cpuinfo lists for the CPU (empty where it cannot be read): what `-march=native`
    compiles for, so part of the library's cache key."""
    try:
        with open("/proc/cpuinfo") as fh:
            line = next((line for line in fh if line.startswith("flags")), "")
    except OSError:
        return []
    return line.split(":", 1)[-1].split()


def compiler() -> str:
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        raise KernelBuildError("no C++ compiler found (set CXX or install g++: apt-get install -y g++); the "
                               "bitmask format and the lean decoder need it, the torch formats (csr, bsr, coo) do not")
    return cxx


def library_path() -> Path:
    """Where the library compiled from these sources, compiler flags and CPU lives."""
    from ..cache import cache_root
    digest = hashlib.sha256(b"".join(src.read_bytes() for src in SOURCES) + " ".join(CXX_FLAGS).encode()
                            + " ".join(cpu_flags()).encode())
    return cache_root() / "kernels" / f"dlp_kernels_{digest.hexdigest()[:16]}.so"


def load() -> ctypes.CDLL:
    """The kernel library, compiled on first use (a few seconds)."""
    global _LIB
    if _LIB is not None:
        return _LIB
    path = library_path()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            out = Path(tmp) / path.name
            proc = subprocess.run([compiler(), *CXX_FLAGS, *map(str, SOURCES), "-o", str(out)], capture_output=True,
                                  text=True)
            if proc.returncode != 0:
                raise KernelBuildError(f"compiling {', '.join(src.name for src in SOURCES)} failed:\n{proc.stderr.strip()}")
            os.replace(out, path)  # atomic: a concurrent process sees the whole library or none
    lib = ctypes.CDLL(str(path))
    lib.dlp_bitmask_bf16_gemv.restype = None
    lib.dlp_bitmask_bf16_gemv.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int64, ctypes.c_int64, ctypes.c_int,
                                                                  ctypes.c_int]
    lib.dlp_bitmask_has_avx512.restype = ctypes.c_int
    lib.dlp_rope_attend.restype = None
    lib.dlp_rope_attend.argtypes = [ctypes.c_void_p] * 7 + [ctypes.c_int64] * 5 + [ctypes.c_float, ctypes.c_void_p]
    lib.dlp_rms_norm.restype = None
    lib.dlp_rms_norm.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_void_p]
    lib.dlp_silu_mul.restype = None
    lib.dlp_silu_mul.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
    _LIB = lib
    return lib


def has_avx512() -> bool:
    """Whether the vectorised (AVX-512 VBMI2) path was compiled in on this CPU."""
    return bool(load().dlp_bitmask_has_avx512())
