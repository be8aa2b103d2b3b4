"""GPTQ (Frantar et al., 2022) weight quantization of a dense or pruned model (paper Appendix E.4,
Table 17, Figure 6), and SparseGPT's joint prune-and-quantize mode.

GPTQ is SparseGPT's column loop with a rounding step: columns in blocks of 128, damping
0.01 x mean diag(H), the upper Cholesky factor of H^-1, each column rounded to its grid and its
error propagated to the later columns. Both therefore run through `sparsegpt.sparsegpt_prune_`
(one OBS loop in the code base): GPTQ of a pruned model is `ratio=0` with the pruned mask kept,
the joint mode is SparseGPT's ratio with the quantizer in the loop.

Grid: per output row (or per group of `group_size` input columns of a row) asymmetric min-max
with 2^bits levels: scale = (max(w, 0) - min(w, 0)) / (2^bits - 1), zero = round(-min / scale),
q(w) = scale * (clamp(round(w / scale) + zero, 0, 2^bits - 1) - zero). Where the grids are fitted
follows the reference (IST-DASLab/gptq, `GPTQ.fasterquant`): a per-row grid once, on the weights
before dead inputs (H_jj = 0) are zeroed (`find_params(W)` precedes `W[:, dead] = 0` there); a
group's grid when the loop reaches the group's first column, on the outer W's columns of the group
(`find_params(W[:, i1 + i : i1 + i + groupsize])`): they carry the error updates of the earlier
column blocks but not those of the earlier columns of the current block, which the reference
applies to its block copy W1 only. Pruned weights are excluded from the fit and stay exactly zero
(the reference has no pruned mask; 0 lies in every grid's range, so excluding them only matters
where error updates have moved a pruned entry).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..calibration import BlockVisit, CalibrationEngine
from ..models import decoder_blocks, linear_sublayers
from ..plan import SparsityPlan
from ..sparsegpt import sparsegpt_prune_

BITS = (2, 3, 4, 8)          # bit widths quantized; 16 means "not quantized" in the tables
MODES = ("gptq", "joint", "rtn")  # GPTQ after pruning; SparseGPT prune + quantize in one loop; round-to-nearest
BLOCKSIZE = 128              # GPTQ's column block


def check_quantization(bits: int, group_size: int | None, mode: str = "gptq") -> None:
    if bits not in BITS:
        raise ValueError(f"bits must be one of {', '.join(map(str, BITS))} (16 = unquantized), got {bits!r}")
    if group_size is not None and (not isinstance(group_size, int) or group_size <= 0
                                   or BLOCKSIZE % group_size):
        # a group never crosses a column block (its grid is fitted when the loop enters it)
        raise ValueError(f"group_size must divide the column block {BLOCKSIZE} (e.g. 32, 64, 128) or be None, "
                         f"got {group_size!r}")
    if mode not in MODES:
        raise ValueError(f"Unknown quantization mode {mode!r}; allowed: {', '.join(MODES)}")


def minmax_grid(W: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row asymmetric min-max grid of W (rows, cols) -> (scale, zero), each (rows,).

    The range always contains 0 (min <= 0 <= max); an all-zero row gets the range [-1, 1] (the
    reference's choice) so its scale is positive.
    """
    maxq = 2 ** bits - 1
    W = W.float()
    xmin = W.min(dim=1).values.clamp(max=0) if W.shape[1] else torch.zeros(W.shape[0], device=W.device)
    xmax = W.max(dim=1).values.clamp(min=0) if W.shape[1] else torch.zeros(W.shape[0], device=W.device)
    empty = (xmin == 0) & (xmax == 0)
    xmin, xmax = torch.where(empty, -1.0, xmin), torch.where(empty, 1.0, xmax)
    scale = (xmax - xmin) / maxq
    zero = torch.round(-xmin / scale)
    return scale, zero


def quantize(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    """scale * (clamp(round(w / scale) + zero, 0, 2^bits - 1) - zero), per row (w: (rows,) or (rows, k))."""
    if w.dim() == 2:
        scale, zero = scale.unsqueeze(1), zero.unsqueeze(1)
    q = torch.clamp(torch.round(w / scale) + zero, 0, 2 ** bits - 1)
    return scale * (q - zero)


class MinMaxQuantizer:
    """The rounding step of the column loop; records every grid it used (for verification).

    scales, zeros: (rows, n_groups) after the loop, n_groups = 1 without groups.
    """

    def __init__(self, bits: int, group_size: int | None = None):
        check_quantization(bits, group_size)
        self.bits, self.group_size = bits, group_size
        self.scales: list[torch.Tensor] = []
        self.zeros: list[torch.Tensor] = []
        self.outer: torch.Tensor | None = None

    def _fit(self, W: torch.Tensor, mask: torch.Tensor | None) -> None:
        if mask is not None:
            W = W.masked_fill(mask, 0)  # pruned weights do not widen the range (0 is in it anyway)
        scale, zero = minmax_grid(W, self.bits)
        self.scales.append(scale)
        self.zeros.append(zero)

    def begin(self, W: torch.Tensor, mask: torch.Tensor | None) -> None:
        """W: the loop's outer working copy (updated in place after every column block)."""
        self.scales, self.zeros = [], []
        self.outer = W
        if self.group_size is None:
            self._fit(W, mask)

    def __call__(self, q: torch.Tensor, column: int, mask_tail: torch.Tensor) -> torch.Tensor:
        # q: (rows,) column `column` with pruned entries zero; mask_tail: (rows, block end - column) of the
        # current column block, the current column first (a group never crosses a block: it divides 128).
        if self.group_size is not None and column % self.group_size == 0:
            self._fit(self.outer[:, column:column + self.group_size], mask_tail[:, :self.group_size])
        return quantize(q, self.scales[-1], self.zeros[-1], self.bits)

    def grid(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.stack(self.scales, 1), torch.stack(self.zeros, 1)


@dataclass
class QuantizedLayer:
    """What quantizing one weight matrix produced: its grid and its zeros."""
    scale: torch.Tensor       # (rows, n_groups)
    zero: torch.Tensor        # (rows, n_groups) integer-valued zero points
    pruned: torch.Tensor      # (rows, cols) bool: the pruning mask (kept exactly zero)
    bits: int
    group_size: int | None


def _columns_group(cols: int, group_size: int | None, device) -> torch.Tensor:
    """Group index of every input column, (cols,)."""
    return torch.arange(cols, device=device) // (group_size or cols)


def grid_levels(W: torch.Tensor, layer: QuantizedLayer) -> tuple[torch.Tensor, torch.Tensor]:
    """(levels q = W / scale + zero, the same rounded), each (rows, cols), for verification."""
    g = _columns_group(W.shape[1], layer.group_size, W.device)
    scale, zero = layer.scale.to(W.device)[:, g], layer.zero.to(W.device)[:, g]
    q = W.float() / scale + zero
    return q, torch.round(q)


def verify_layer(W: torch.Tensor, layer: QuantizedLayer) -> dict:
    """Budgets actually met: every weight on its grid, every pruned weight zero. Counts, plain ints."""
    q, qr = grid_levels(W, layer)
    kept = ~layer.pruned.to(W.device)
    maxq = 2 ** layer.bits - 1
    residual = (q - qr).abs()[kept]
    return {"weights": W.numel(), "pruned": int(layer.pruned.sum()),
            "pruned_still_zero": int((W[~kept] == 0).sum()),
            "kept_rounded_to_zero": int((W[kept] == 0).sum()),
            "max_grid_residual": float(residual.max()) if residual.numel() else 0.0,
            "levels_in_range": bool(((qr[kept] >= 0) & (qr[kept] <= maxq)).all()),
            "zero_points_integer": bool((layer.zero == torch.round(layer.zero)).all()
                                        and ((layer.zero >= 0) & (layer.zero <= maxq)).all())}


@torch.no_grad()
def gptq_quantize_(weight: torch.Tensor, hessian: torch.Tensor, bits: int, *, group_size: int | None = None,
                   pruned: torch.Tensor | None = None, blocksize: int = BLOCKSIZE,
                   percdamp: float = 0.01) -> QuantizedLayer:
    """Quantize `weight` (C_out, C_in) in place with GPTQ, keeping the zeros of `pruned` (bool,
    default: the weights that are exactly zero now, i.e. a pruned model's mask; a dense weight has none)."""
    check_quantization(bits, group_size)
    if pruned is None:
        pruned = weight.data == 0
    quantizer = MinMaxQuantizer(bits, group_size)
    sparsegpt_prune_(weight, hessian, 0.0, blocksize=blocksize, percdamp=percdamp, keep_mask=pruned,
                     quantizer=quantizer)
    scale, zero = quantizer.grid()
    return QuantizedLayer(scale, zero, pruned.clone(), bits, group_size)


@torch.no_grad()
def sparsegpt_quantize_(weight: torch.Tensor, hessian: torch.Tensor, ratio: float, bits: int, *,
                        group_size: int | None = None, nm=None, blocksize: int = BLOCKSIZE,
                        percdamp: float = 0.01) -> QuantizedLayer:
    """SparseGPT's joint mode: prune `ratio` of `weight` and quantize the kept weights in the same loop."""
    check_quantization(bits, group_size)
    quantizer = MinMaxQuantizer(bits, group_size)
    mask = sparsegpt_prune_(weight, hessian, ratio, blocksize=blocksize, percdamp=percdamp, nm=nm,
                            quantizer=quantizer)
    scale, zero = quantizer.grid()
    return QuantizedLayer(scale, zero, mask, bits, group_size)


@torch.no_grad()
def rtn_quantize_(weight: torch.Tensor, bits: int, *, group_size: int | None = None,
                  pruned: torch.Tensor | None = None) -> QuantizedLayer:
    """Round-to-nearest on the same grids (no error propagation): GPTQ's baseline."""
    check_quantization(bits, group_size)
    W = weight.data.float()
    if pruned is None:
        pruned = W == 0
    W = W.masked_fill(pruned, 0)
    g = group_size or W.shape[1]
    scales, zeros, out = [], [], torch.empty_like(W)
    for c0 in range(0, W.shape[1], g):
        scale, zero = minmax_grid(W[:, c0:c0 + g], bits)
        out[:, c0:c0 + g] = quantize(W[:, c0:c0 + g], scale, zero, bits)
        scales.append(scale)
        zeros.append(zero)
    weight.data.copy_(out.masked_fill_(pruned, 0).to(weight.dtype))
    return QuantizedLayer(torch.stack(scales, 1), torch.stack(zeros, 1), pruned.clone(), bits, group_size)


def _sum_reports(reports: list[dict]) -> dict:
    out = {k: sum(r[k] for r in reports) for k in ("weights", "pruned", "pruned_still_zero", "kept_rounded_to_zero")}
    out["max_grid_residual"] = max((r["max_grid_residual"] for r in reports), default=0.0)
    out["levels_in_range"] = all(r["levels_in_range"] for r in reports)
    out["zero_points_integer"] = all(r["zero_points_integer"] for r in reports)
    return out


@torch.no_grad()
def quantize_model(model, calib_ids: torch.Tensor | None, bits: int, *, group_size: int | None = None,
                   mode: str = "gptq", plan: SparsityPlan | None = None, device=None, progress: bool = True,
                   percdamp: float = 0.01, **engine_options) -> dict:
    """Quantize every linear sublayer of the decoder blocks in place; returns the verified budgets.

    mode "gptq": GPTQ of the model as it is (dense, or pruned: its zeros are kept), block l
    calibrated on the outputs of the already quantized blocks < l (the ONE engine, Hessians,
    sequential). "joint": SparseGPT with `plan`'s ratios and the quantizer in its loop (the model
    must be dense). "rtn": round-to-nearest, no data. Embeddings and the output layer stay in
    full precision (GPTQ's setup).
    """
    check_quantization(bits, group_size, mode)
    if mode == "joint" and plan is None:
        raise ValueError("mode 'joint' prunes while quantizing: it needs the SparsityPlan (plan=...)")
    if mode != "joint" and plan is not None:
        raise ValueError(f"mode {mode!r} quantizes the model as it is; plan= is only for mode 'joint'")
    blocks = decoder_blocks(model)
    if plan is not None and len(plan.ratios) != len(blocks):
        raise ValueError(f"Plan has {len(plan.ratios)} ratios but the model has {len(blocks)} blocks")
    reports: list[dict] = []
    t0 = time.perf_counter()

    def visit(v: BlockVisit) -> bool:
        for name, layer in v.sublayers.items():
            if mode == "rtn":
                q = rtn_quantize_(layer.weight, bits, group_size=group_size)
            elif mode == "gptq":
                q = gptq_quantize_(layer.weight, v.stats["hessian"][name], bits, group_size=group_size,
                                   percdamp=percdamp)
            else:
                q = sparsegpt_quantize_(layer.weight, v.stats["hessian"][name], plan.ratio(v.index, name), bits,
                                        group_size=group_size, percdamp=percdamp)
            reports.append(verify_layer(layer.weight.data, q))
        return True

    if mode == "rtn":
        for index, block in enumerate(tqdm(blocks, desc="RTN quantization", disable=not progress, leave=False)):
            visit(BlockVisit(index, block, linear_sublayers(block)))
    else:
        if calib_ids is None:
            raise ValueError(f"mode {mode!r} needs calibration data (calib_ids)")
        engine = CalibrationEngine(model, calib_ids, device=device, progress=progress, **engine_options)
        engine.run(visit, statistics=("hessian",), sequential=True, desc=f"{mode} {bits}-bit quantization")
    out = _sum_reports(reports)
    out.update(bits=bits, group_size=group_size, mode=mode, seconds=time.perf_counter() - t0)
    return out
