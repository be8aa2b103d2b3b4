"""The one allocator registry: name -> what the allocator reads, its parameters, its paper source.

An allocator is a small pure function from its inputs (pass-1 statistics of the dense model,
the dense weights, or nothing but the number of blocks) to a budget (`SparsityPlan`). It is
declared once, with `@register`, in its own module of this package; the CLI's choices, the
configuration's validation, `Lab.plan` and the notebooks all read this registry.
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..plan import SparsityPlan
from ..scores import check_ratio
from .rebalance import rebalance

NEEDS = ("stats", "weights")  # pass-1 statistics of the dense model; the dense weights


@dataclass(frozen=True)
class AllocationInputs:
    """What an allocator may read. Only what it declared in `needs` is filled in."""
    n_blocks: int
    stats: object | None = None                         # DenseStatistics (pass 1)
    layout: list[dict[str, object]] | None = None       # block -> sublayer name -> weight (C_out, C_in)
    method: str = "wanda"                               # the pruning method the budget is for
    cache_config: dict | None = None                    # identity of weights+data, for allocators that cache


@dataclass(frozen=True)
class Allocator:
    name: str
    fn: Callable[..., SparsityPlan]       # fn(inputs, sparsity, *, strict, **params) -> SparsityPlan
    needs: frozenset[str]                 # subset of NEEDS
    params: tuple[str, ...]               # keyword parameters the allocator reads (beyond sparsity, strict)
    source: str                           # where it comes from, one line
    granularities: tuple[str, ...] = ("block",)
    stats_not_for: tuple[str, ...] = field(default=())  # methods for which "stats" is not needed
    auto_candidate: bool = False          # tried by `--allocation auto` (dlp_lib.runs.auto_allocation)

    def needs_stats(self, method: str) -> bool:
        return "stats" in self.needs and method not in self.stats_not_for

    @property
    def needs_weights(self) -> bool:
        return "weights" in self.needs


_REGISTRY: dict[str, Allocator] = {}


def register(name: str, *, needs: tuple[str, ...] = (), source: str, granularities: tuple[str, ...] = ("block",),
             stats_not_for: tuple[str, ...] = (), auto_candidate: bool = False):
    """Decorator declaring an allocator. Its parameters are read off the function's keyword-only
    arguments other than `strict` (and `granularity`), so a misspelled parameter is an error.
    `auto_candidate`: `--allocation auto` tries it (over its alpha grid if it takes `alpha`)."""
    bad = set(needs) - set(NEEDS)
    if bad:
        raise ValueError(f"allocator {name!r}: unknown needs {sorted(bad)}; allowed: {', '.join(NEEDS)}")

    def wrap(fn):
        sig = inspect.signature(fn)
        params = tuple(p for p, v in sig.parameters.items()
                       if v.kind is inspect.Parameter.KEYWORD_ONLY and p not in ("strict", "granularity"))
        if name in _REGISTRY and _REGISTRY[name].fn is not fn:
            raise ValueError(f"allocator {name!r} is already registered")
        _REGISTRY[name] = Allocator(name, fn, frozenset(needs), params, source, tuple(granularities),
                                    tuple(stats_not_for), bool(auto_candidate))
        return fn
    return wrap


def allocator_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def auto_candidates() -> tuple[str, ...]:
    """The allocators `--allocation auto` chooses among, in registration order (uniform first)."""
    return tuple(n for n, a in _REGISTRY.items() if a.auto_candidate)


def get_allocator(name: str) -> Allocator:
    if name not in _REGISTRY:
        raise ValueError(f"Unknown allocation {name!r}; allowed: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def _layout(model) -> list[dict[str, object]]:
    from ..models import decoder_blocks, linear_sublayers
    return [{n: layer.weight for n, layer in linear_sublayers(b).items()} for b in decoder_blocks(model)]


def _block_sizes(stats, layout) -> list[int] | None:
    """Prunable weights per block, from pass 1's per-sublayer counts or the model's weights."""
    if stats is not None and stats.sublayers:
        return [int(sum(c["numel"] for c in subs.values())) for subs in stats.sublayers]
    if layout is not None:
        return [int(sum(w.numel() for w in subs.values())) for subs in layout]
    return None


def _at_weighted_target(plan: SparsityPlan, sizes: list[int] | None, target: float, strict: bool) -> SparsityPlan:
    """Blocks of different sizes (a dense first block before mixture-of-experts blocks, ...): shift
    every ratio by one constant so that the fraction of ALL prunable weights removed is the target.

    The allocators keep the plain mean of the ratios at p, as the paper's equal-sized blocks make
    equivalent; with unequal blocks that mean would miss the requested overall sparsity (70% of the
    ratios' mean can be 64% of the weights). One shift keeps the allocator's order and spread."""
    if sizes is None or len(set(sizes)) <= 1 or len(sizes) != len(plan.ratios):
        return plan
    w = np.asarray(sizes, dtype=np.float64) / sum(sizes)
    r = np.asarray(plan.ratios, dtype=np.float64)
    if abs(float(w @ r) - target) < 1e-12:
        return plan
    shifted = r + (target - float(w @ r))          # exact when nothing leaves the range
    out = rebalance(shifted, target, weights=w, strict=strict, what=f"{plan.allocation} ratio")
    config = {**plan.config, "weighted_by_block_size": True, "unweighted_mean": float(r.mean())}
    return dataclasses.replace(plan, ratios=out.tolist(), config=config)


def build_plan(allocation: str, sparsity: float, *, stats=None, model=None, strict: bool = False,
               granularity: str = "block", method: str = "wanda", cache_config: dict | None = None,
               **params) -> SparsityPlan:
    """Allocate per-block budgets with the named allocator.

    `params` are the allocator's own parameters (e.g. alpha and statistic for DLP; None means its
    default); a parameter it does not read is an error, so a misspelling never goes unnoticed.
    """
    allocator = get_allocator(allocation)
    check_ratio(sparsity)
    unknown = set(params) - set(allocator.params)
    if unknown:
        raise ValueError(f"allocation {allocation!r} takes {', '.join(allocator.params) or 'no parameters'}; "
                         f"got {', '.join(sorted(unknown))}")
    if granularity not in allocator.granularities:
        raise ValueError(f"granularity {granularity!r} is not defined for {allocation!r}; "
                         f"allowed: {', '.join(allocator.granularities)}")
    if allocator.needs_stats(method) and stats is None:
        raise ValueError(f"allocation {allocation!r} with {method} needs the dense statistics of pass 1 (stats=...)")
    if (allocator.needs_weights or stats is None) and model is None:
        raise ValueError(f"allocation {allocation!r} needs the model (model=...)")
    layout = _layout(model) if model is not None else None
    n_blocks = len(stats.blocks) if stats is not None else len(layout)
    inputs = AllocationInputs(n_blocks=n_blocks, stats=stats if allocator.needs_stats(method) else None,
                              layout=layout if allocator.needs_weights else None, method=method,
                              cache_config=cache_config)
    given = {k: v for k, v in params.items() if v is not None}
    if len(allocator.granularities) > 1:
        given["granularity"] = granularity
    plan = allocator.fn(inputs, sparsity, strict=strict, **given)
    if granularity == "block":
        plan = _at_weighted_target(plan, _block_sizes(stats, layout), sparsity, strict)
    plan.config = {"allocation": allocation, "sparsity": sparsity, **(stats.config if stats is not None else {}),
                   **plan.config}
    if granularity != "block":
        plan.config["granularity"] = granularity
    return plan
