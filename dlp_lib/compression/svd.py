"""Low-rank (SVD) compression following a SparsityPlan: paper Appendix E.3, Table 16.

A block's plan ratio r is the fraction of its linear-sublayer parameters removed. Every linear
sublayer W (m x n) of the block keeps the fraction 1 - r of its mn weights as a rank-k
factorisation W' = B A, A (k x n), B (m x k), stored as two nn.Linear layers (bias on the second):
k = floor((1 - r) m n / (m + n)), so k(m + n) <= (1 - r) mn. A layer with r = 0, or whose rank
would not save parameters (k(m + n) >= mn), stays dense.

Variants (the paper does not say which; see SPEC_BEYOND_PERPLEXITY.md, Table 16):
- "plain":  truncated SVD of W (Eckart-Young optimal in ||W - W'||_F).
- "asvd":   ASVD's activation-aware scaling: S = diag(s), s_j = (mean_tokens |x_j|)^alpha
            (alpha = 0.5); SVD of W S, truncated, then unscaled: W' = (U_k Sigma_k V_k^T) S^-1.
- "svdllm": SVD-LLM's truncation-aware whitening: X^T X = L L^T (Cholesky), SVD of W L,
            W' = (U_k Sigma_k V_k^T) L^-1; optimal in the output error ||X W^T - X W'^T||_F.
The activation statistics come from the one calibration engine (statistics "abs_mean" and
"hessian", collected on the dense model's inputs, block by block).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from ..calibration import CalibrationEngine
from ..models import decoder_blocks, linear_modules, linear_sublayers
from ..plan import SparsityPlan
from .checkpoint import load_state_checked
from .report import BlockParameterReport

VARIANTS = ("plain", "asvd", "svdllm")


_VARIANT_STATISTIC = {"asvd": "abs_mean", "svdllm": "hessian"}


@dataclass(frozen=True)
class SVDConfig:
    """Technique parameters of SVD compression (all of them enter the cache key)."""
    variant: str = "asvd"           # plain | asvd | svdllm
    asvd_alpha: float = 0.5         # ASVD's exponent of mean |x_j| in the input scaling
    damping: float = 1e-2           # SVD-LLM: X^T X + damping * mean(diag) I before the Cholesky factor
    min_scale: float = 1e-6         # ASVD: floor of the scale s_j (dead input columns)

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"Unknown SVD variant {self.variant!r}; allowed: {', '.join(VARIANTS)}")
        if not self.asvd_alpha > 0:
            raise ValueError(f"asvd_alpha must be > 0, got {self.asvd_alpha}")
        if not self.damping >= 0:
            raise ValueError(f"damping must be >= 0, got {self.damping}")


def svd_rank(m: int, n: int, ratio: float) -> int | None:
    """Rank that keeps at most the fraction 1 - ratio of an (m x n) layer's mn weights, or None
    when the layer stays dense (ratio 0, or a rank that would not save parameters)."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    if ratio == 0.0:
        return None
    k = max(1, math.floor((1.0 - ratio) * m * n / (m + n)))
    if k * (m + n) >= m * n:
        return None
    return k


def factorize(W: torch.Tensor, k: int, variant: str = "plain", stat: torch.Tensor | None = None, *,
              asvd_alpha: float = 0.5, damping: float = 1e-2, min_scale: float = 1e-6
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank-k factors (A (k x n), B (m x k)) with W ~= B @ A, computed in fp32 (or W's fp64).

    stat: "asvd": mean |x_j| (n,); "svdllm": X^T X up to a positive factor (n x n).
    """
    m, n = W.shape
    if not 1 <= k <= min(m, n):
        raise ValueError(f"rank k must be in [1, {min(m, n)}] for a {m} x {n} matrix, got {k}")
    if variant not in VARIANTS:
        raise ValueError(f"Unknown SVD variant {variant!r}; allowed: {', '.join(VARIANTS)}")
    work = torch.float64 if W.dtype == torch.float64 else torch.float32
    W = W.to(work)
    if variant == "plain":
        U, S, Vh = torch.linalg.svd(W, full_matrices=False)
        root = S[:k].sqrt()
        return root[:, None] * Vh[:k], U[:, :k] * root[None, :]
    if stat is None:
        raise ValueError(f"variant {variant!r} needs activation statistics")
    stat = stat.to(device=W.device, dtype=work)
    if variant == "asvd":
        s = stat.clamp_min(min_scale).pow(asvd_alpha)            # (n,)
        U, S, Vh = torch.linalg.svd(W * s[None, :], full_matrices=False)
        root = S[:k].sqrt()
        A = root[:, None] * Vh[:k] / s[None, :]                   # (k x n): Sigma^1/2 V^T S^-1
        return A, U[:, :k] * root[None, :]
    # svdllm: W L with X^T X = L L^T; the damping keeps L invertible for rank-deficient inputs
    H = stat + damping * stat.diagonal().mean().clamp_min(1e-12) * torch.eye(n, dtype=work, device=W.device)
    L = torch.linalg.cholesky(H)                                  # lower triangular (n x n)
    U, S, Vh = torch.linalg.svd(W @ L, full_matrices=False)
    root = S[:k].sqrt()
    M = root[:, None] * Vh[:k]                                    # (k x n) = Sigma^1/2 V^T
    A = torch.linalg.solve_triangular(L, M, upper=False, left=False)  # A L = M
    return A, U[:, :k] * root[None, :]


def low_rank_linear(layer: nn.Linear, A: torch.Tensor, B: torch.Tensor) -> nn.Sequential:
    """Two nn.Linear layers: x -> A x (no bias) -> B (A x) + b, in the layer's dtype and device."""
    k = A.shape[0]
    first = nn.Linear(layer.in_features, k, bias=False, dtype=layer.weight.dtype, device=layer.weight.device)
    second = nn.Linear(k, layer.out_features, bias=layer.bias is not None, dtype=layer.weight.dtype,
                       device=layer.weight.device)
    with torch.no_grad():
        first.weight.copy_(A)
        second.weight.copy_(B)
        if layer.bias is not None:
            second.bias.copy_(layer.bias)
    return nn.Sequential(first, second)


@dataclass
class SVDReport(BlockParameterReport):
    """What was compressed: ranks per block and sublayer, parameter counts before and after."""
    ranks: list[dict[str, int | None]] = field(default_factory=list)   # None: kept dense
    block_params_before: list[int] = field(default_factory=list)        # linear weights + biases
    block_params_after: list[int] = field(default_factory=list)
    target_ratios: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"ranks": self.ranks, "block_params_before": self.block_params_before,
                "block_params_after": self.block_params_after, "target_ratios": self.target_ratios,
                "achieved_ratios": self.achieved_ratios, "achieved_reduction": self.achieved_reduction}


def _linear_params(layer: nn.Linear) -> int:
    return layer.weight.numel() + (layer.bias.numel() if layer.bias is not None else 0)


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


def svd_compress(model: nn.Module, plan: SparsityPlan, cfg: SVDConfig = SVDConfig(), *,
                 calib_ids: torch.Tensor | None = None, stats: dict | None = None, device=None,
                 progress: bool = True) -> SVDReport:
    """Replace every linear sublayer of every block by its low-rank factorisation (in place).

    The block's rank budget is plan.ratio(block, sublayer). Activation-aware variants need
    calib_ids (N, T) (their statistics are collected on the dense model's block inputs) or the
    statistics themselves, `stats[block][sublayer]`, collected on the dense model beforehand.
    """
    blocks = decoder_blocks(model)
    if len(plan.ratios) != len(blocks):
        raise ValueError(f"plan has {len(plan.ratios)} ratios for a model with {len(blocks)} blocks")
    if cfg.variant != "plain" and calib_ids is None and stats is None:
        raise ValueError(f"SVD variant {cfg.variant!r} needs calib_ids or precomputed stats")
    report = SVDReport(target_ratios=[float(r) for r in plan.ratios])
    factors: dict[int, dict[str, tuple[torch.Tensor, torch.Tensor] | None]] = {}
    compute_device = torch.device(device) if device is not None else next(model.parameters()).device

    def compress_block(index: int, weights: dict, stats: dict[str, torch.Tensor] | None):
        subs = linear_modules(weights, "SVD compression")
        out = {}
        for name, layer in subs.items():
            m, n = layer.weight.shape
            k = svd_rank(m, n, float(plan.ratio(index, name)))
            if k is None:
                out[name] = None
                continue
            W = layer.weight.detach().to(compute_device)   # the engine's device (a CPU-resident block: plain)
            A, B = factorize(W, k, cfg.variant, None if stats is None else stats[name],
                             asvd_alpha=cfg.asvd_alpha, damping=cfg.damping, min_scale=cfg.min_scale)
            out[name] = (A.cpu(), B.cpu())
        factors[index] = out

    if cfg.variant == "plain" or stats is not None:
        for index, block in enumerate(tqdm(blocks, desc=f"SVD ({cfg.variant})", disable=not progress, leave=False)):
            compress_block(index, linear_sublayers(block), None if stats is None else stats[index])
    else:
        stat_name = _VARIANT_STATISTIC[cfg.variant]

        def visit(v):
            compress_block(v.index, v.sublayers, v.stats[stat_name])
            return False  # factors are installed after the pass; the dense block feeds the next one

        CalibrationEngine(model, calib_ids, device=device, progress=progress).run(
            visit, statistics=(stat_name,), sequential=False, desc=f"SVD ({cfg.variant})")

    for index, block in enumerate(blocks):
        subs = linear_modules(linear_sublayers(block), "SVD compression")
        before = sum(_linear_params(l) for l in subs.values())
        ranks, after = {}, 0
        for name, layer in subs.items():
            f = factors[index][name]
            if f is None:
                ranks[name] = None
                after += _linear_params(layer)
                continue
            A, B = f
            new = low_rank_linear(layer, A.to(layer.weight.device), B.to(layer.weight.device))
            _set_submodule(block, name, new)
            ranks[name] = A.shape[0]
            after += sum(p.numel() for p in new.parameters())
        report.ranks.append(ranks)
        report.block_params_before.append(before)
        report.block_params_after.append(after)
    return report


SVD_CONFIG_FIELD = "dlp_svd_ranks"


def save_svd(model: nn.Module, tokenizer, directory, report: SVDReport):
    """save_pretrained with the ranks in config.dlp_svd_ranks (block -> sublayer -> rank or None)."""
    from pathlib import Path
    directory = Path(directory)
    setattr(model.config, SVD_CONFIG_FIELD, report.ranks)
    model.save_pretrained(directory)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    return directory


def load_svd(directory, *, dtype: torch.dtype | None = None, device="cpu") -> nn.Module:
    """Load a checkpoint written by save_svd: rebuild the two-layer factorisations, then the weights."""
    from pathlib import Path

    from transformers import AutoConfig, AutoModelForCausalLM

    directory = Path(directory)
    config = AutoConfig.from_pretrained(directory)
    ranks = getattr(config, SVD_CONFIG_FIELD, None)
    if ranks is None:
        raise ValueError(f"{directory} has no {SVD_CONFIG_FIELD} in its config: not written by save_svd")
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    blocks = decoder_blocks(model)
    if len(ranks) != len(blocks):
        raise ValueError(f"{SVD_CONFIG_FIELD} lists {len(ranks)} blocks, the config builds {len(blocks)}")
    for block, block_ranks in zip(blocks, ranks):
        subs = linear_modules(linear_sublayers(block), "SVD compression")
        for name, k in block_ranks.items():
            if k is not None:
                layer = subs[name]
                A = torch.zeros(k, layer.in_features, dtype=layer.weight.dtype)
                B = torch.zeros(layer.out_features, k, dtype=layer.weight.dtype)
                _set_submodule(block, name, low_rank_linear(layer, A, B))
    load_state_checked(model, directory)
    return model.to(device).eval()
