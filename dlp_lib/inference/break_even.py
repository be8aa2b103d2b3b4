"""The density below which a compressed matrix-vector product beats the dense one, measured on
this machine for one (shape, threads, format).

Decoding reads the whole model once per token, far more than the CPU's caches hold, so each
timing cycles through enough copies of the matrix (`cold_bytes` in all) that every product reads
its weights from memory, as in the model; a single hot matrix would sit in cache and make dense
look faster than it is in a decode. Dense and sparse timings alternate within each repeat.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field

import torch

from .sparse_linear import SPARSE_FORMATS, to_compressed

DENSITY_GRID = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6)
# the bitmask-bf16 format reads fewer bytes than fp32 dense at every density (2.125 bytes per
# weight at density 1), so its grid runs to 1: the crossing may lie anywhere
BITMASK_DENSITY_GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass
class BreakEven:
    """Measured dense vs compressed matvec times of one (C_out, C_in) shape."""
    shape: tuple[int, int]                 # (C_out, C_in)
    threads: int                           # torch.get_num_threads() while measuring
    format: str                            # csr / bsr / coo
    density: float                         # break-even: compressed is faster below it (0: never; `crossing`)
    densities: list[float] = field(default_factory=list)   # the grid measured
    dense_us: float = 0.0                  # median dense matvec time, microseconds
    sparse_us: list[float] = field(default_factory=list)   # median compressed time at each grid density
    machine: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "BreakEven":
        return cls(**{**d, "shape": tuple(d["shape"])})


def machine_id() -> str:
    """CPU model, core count and torch version: what a break-even is valid for."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name} x{os.cpu_count()} torch {torch.__version__}"


def crossing(densities, dense_us: float, sparse_us) -> float:
    """Density where the compressed time reaches the dense time, from a robust straight-line fit
    t(d) = a + b d of the compressed times (Theil-Sen: the median of pairwise slopes, so one
    timing disturbed by another process does not move it), clipped to [0, top of the grid];
    0 if the fitted time never drops below dense."""
    d = [float(v) for v in densities]
    t = [float(v) for v in sparse_us]
    if len(d) != len(t) or not d:
        raise ValueError(f"densities and times must be non-empty and of equal length, got {len(d)} and {len(t)}")
    if len(d) == 1:
        return d[0] if t[0] < dense_us else 0.0
    slopes = [(t[j] - t[i]) / (d[j] - d[i]) for i in range(len(d)) for j in range(i + 1, len(d)) if d[j] != d[i]]
    b = statistics.median(slopes)
    a = statistics.median([ti - b * di for di, ti in zip(d, t)])
    top = max(d)
    if b <= 0:  # compressed time does not grow with density: faster everywhere or nowhere
        return top if a < dense_us else 0.0
    return float(min(max((dense_us - a) / b, 0.0), top))


def _sweep_time(fn, items) -> float:
    """Mean seconds per item of one sweep through `items`."""
    t0 = time.perf_counter()
    for it in items:
        fn(it)
    return (time.perf_counter() - t0) / len(items)


@torch.no_grad()
def measure_break_even(shape: tuple[int, int], *, fmt: str = "csr", threads: int | None = None,
                       densities=None, repeats: int = 7, cold_bytes: int = 96 << 20,
                       max_copies: int = 64, seed: int = 0) -> BreakEven:
    """Time y = W x dense and compressed at each density of `densities` (random masks) and return
    the break-even density. `threads` sets torch's intra-op threads (and the bitmask kernel's
    OpenMP threads) for the measurement; `densities` defaults to the format's grid."""
    rows, cols = (int(s) for s in shape)
    if rows <= 0 or cols <= 0:
        raise ValueError(f"shape must be two positive sizes (C_out, C_in), got {shape}")
    if fmt not in SPARSE_FORMATS:
        raise ValueError(f"Unknown sparse format {fmt!r}; allowed: {', '.join(SPARSE_FORMATS)}")
    if densities is None:
        densities = BITMASK_DENSITY_GRID if fmt == "bitmask" else DENSITY_GRID
    if not densities or any(not (0 < d <= 1) for d in densities):
        raise ValueError(f"densities must be in (0, 1], got {densities}")
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        gen = torch.Generator().manual_seed(seed)
        copies = max(2, min(max_copies, -(-cold_bytes // (rows * cols * 4))))
        W = torch.randn(rows, cols, generator=gen)
        x = torch.randn(cols, generator=gen)
        dense = [W.clone() for _ in range(copies)]
        dense_mv = lambda w: torch.mv(w, x)  # noqa: E731
        dense_mv(dense[0])
        dense_times, sparse_t = [], []
        xcol = x.view(-1, 1)
        for d in densities:
            mask = torch.rand(rows, cols, generator=gen) < d
            mats = [_compressed(W * mask, fmt) for _ in range(copies)]
            mv = _matvec(fmt, x, xcol)
            mv(mats[0])
            times = []
            for _ in range(repeats):  # dense and sparse sweeps alternate, so load drift hits both
                dense_times.append(_sweep_time(dense_mv, dense))
                times.append(_sweep_time(mv, mats))
            sparse_t.append(statistics.median(times))
            del mats
        dense_t = statistics.median(dense_times)
        return BreakEven((rows, cols), torch.get_num_threads(), fmt,
                         crossing(densities, dense_t, sparse_t), list(densities), dense_t * 1e6,
                         [t * 1e6 for t in sparse_t], machine_id())
    finally:
        torch.set_num_threads(old_threads)


def _compressed(W: torch.Tensor, fmt: str):
    if fmt == "bitmask":
        from .bitmask import BitmaskMatrix
        return BitmaskMatrix.from_dense(W)
    return to_compressed(W, fmt)


def _matvec(fmt: str, x: torch.Tensor, xcol: torch.Tensor):
    """The product each layer of `fmt` computes for one token (as SparseLinear / BitmaskLinear do)."""
    if fmt == "bitmask":
        return lambda s: s.matvec(x)
    if fmt == "csr":
        return lambda s: torch.mv(s, x)
    return lambda s: torch.sparse.mm(s, xcol)


_MEASURED: dict = {}


def break_even_density(shape: tuple[int, int], *, fmt: str = "csr", threads: int | None = None,
                       use_cache: bool = True, **options) -> BreakEven:
    """`measure_break_even`, once per (shape, threads, format, machine) in this process and, with
    `use_cache`, on disk (dlp_lib cache, kind "break_even")."""
    threads = torch.get_num_threads() if threads is None else int(threads)
    from ..cache import versioned
    key = versioned(("inference",), shape=[int(s) for s in shape], fmt=fmt, threads=threads, machine=machine_id(),
                    **{k: list(v) if isinstance(v, tuple) else v for k, v in options.items()})
    mem_key = repr(sorted(key.items()))
    if mem_key not in _MEASURED:
        from ..cache import cached
        d = cached("break_even", key, lambda: measure_break_even(shape, fmt=fmt, threads=threads,
                                                                  **options).to_dict(), enabled=use_cache)
        _MEASURED[mem_key] = BreakEven.from_dict(d)
    return _MEASURED[mem_key]
