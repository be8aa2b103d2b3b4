"""Bytes a batch-1 matrix-vector product reads in each weight format, and the speedup bound that
follows if decoding is weight-read bound (the bound beside every measured speedup).

The counts are the formats' own layouts (sparse_linear.py, bitmask.py), computed from the shape
and the number of kept weights only, so they can be quoted for a density before any layer exists.
BSR is absent: its bytes depend on how the kept weights fall into blocks, not on their count.
"""
from __future__ import annotations

TRAFFIC_FORMATS = ("dense", "dense-bf16", "csr", "coo", "bitmask")


def format_bytes(fmt: str, shape: tuple[int, int], nnz: int) -> int:
    """Bytes of a (C_out, C_in) weight with `nnz` kept weights stored in `fmt`: dense = fp32,
    dense-bf16 = bf16, csr = fp32 values + int32 column indices + int32 row pointers, coo = fp32
    values + two int64 indices, bitmask = a 32-bit mask word per 32 columns of each row + bf16
    values + int32 row offsets."""
    rows, cols = (int(s) for s in shape)
    if rows <= 0 or cols <= 0:
        raise ValueError(f"shape must be two positive sizes (C_out, C_in), got {shape}")
    if not 0 <= nnz <= rows * cols:
        raise ValueError(f"nnz must be in [0, {rows * cols}] for shape {tuple(shape)}, got {nnz}")
    if fmt == "dense":
        return rows * cols * 4
    if fmt == "dense-bf16":
        return rows * cols * 2
    if fmt == "csr":
        return nnz * (4 + 4) + (rows + 1) * 4
    if fmt == "coo":
        return nnz * (4 + 2 * 8)
    if fmt == "bitmask":
        return rows * (-(-cols // 32)) * 4 + nnz * 2 + (rows + 1) * 4
    raise ValueError(f"Unknown weight format {fmt!r}; allowed: {', '.join(TRAFFIC_FORMATS)}")


def bytes_per_kept_weight(fmt: str, shape: tuple[int, int], density: float) -> float:
    """`format_bytes` divided by the kept weights, at a density in (0, 1]."""
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}")
    nnz = max(1, round(density * shape[0] * shape[1]))
    return format_bytes(fmt, shape, nnz) / nnz


def memory_bound_speedup(fmt: str, shape: tuple[int, int], density: float, baseline: str = "dense") -> float:
    """Upper bound on the matrix-vector speedup of `fmt` at `density` over `baseline` (fp32 dense
    by default) if the product's time were the time of reading its bytes."""
    nnz = max(1, round(density * shape[0] * shape[1]))
    return format_bytes(baseline, shape, shape[0] * shape[1]) / format_bytes(fmt, shape, nnz)
