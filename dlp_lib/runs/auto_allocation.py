"""`--allocation auto`: choose the layerwise allocation from calibration data only (beyond the paper).

Which allocation helps depends on the model: DLP's statistic tracks depth on LLaMA-like models and
runs against it on Gemma-3 (notebook 15, "Where DLP holds"). So for a model of the user's own,
every candidate allocator (those registered with `auto_candidate=True`: Uniform, DLP, its mirror,
the depth ramp, block influence; each that takes `alpha` over `AUTO_ALPHA_GRID`) prunes the model
exactly as `Lab.run` would, and is scored by the next-token NLL of the pruned model on held-out
calibration windows (`runs.auto_alpha.heldout_score`, the machinery of `--alpha auto`: windows of the
calibration source's train split drawn with another seed; no evaluation text is read).

The rule (`pick`): a candidate replaces Uniform only if its score is lower than Uniform's by more
than `TIE_NATS` nats/token; among those, the lowest score wins, equal scores going to the first in
candidate order (registry order, alphas ascending). Uniform is always a candidate, so the choice is
never worse than Uniform on the held-out calibration windows, by construction (not on other text).

Cost: pass 1 once (shared), then one pruning and one held-out forward per candidate (a score read
back from the cache costs nothing); the selection records how many prunings and seconds it took
and is cached as a whole, keyed by the configuration, the candidates, the criterion and the held-out
set.
"""
from __future__ import annotations

import time
import warnings

from ..allocation import AgainstDepthWarning, RatioRangeWarning, auto_candidates, get_allocator
from .auto_alpha import heldout_score, heldout_spec
from ..cache import cached

AUTO_ALPHA_GRID = (0.05, 0.1, 0.15)  # alphas tried for each candidate that takes one
TIE_NATS = 1e-3                      # a candidate must beat Uniform by more (0.1% in perplexity)
BASELINE = "uniform"


def candidates(alpha_grid=None) -> list[dict]:
    """[{"allocation", "alpha"}] in candidate order; alpha None for allocators without one.
    alpha_grid: None for AUTO_ALPHA_GRID."""
    grid = sorted(float(a) for a in (AUTO_ALPHA_GRID if alpha_grid is None else alpha_grid))
    if not grid:
        raise ValueError("empty alpha grid")
    out = []
    for name in auto_candidates():
        if "alpha" in get_allocator(name).params:
            out.extend({"allocation": name, "alpha": a} for a in grid)
        else:
            out.append({"allocation": name, "alpha": None})
    if not any(c["allocation"] == BASELINE for c in out):
        raise ValueError(f"the auto candidates {auto_candidates()} must include {BASELINE!r}")
    return out


def pick(scores: list[dict], tie_nats: float = TIE_NATS) -> dict:
    """The chosen candidate of scored candidates [{"allocation", "alpha", "score"}] (in candidate order):
    Uniform unless another scores lower by more than `tie_nats`; then the lowest, first on equal scores."""
    base = next(c for c in scores if c["allocation"] == BASELINE)
    best = min(scores, key=lambda c: c["score"])   # min keeps the first of equal scores
    return best if best["score"] < base["score"] - tie_nats else base


def _check(cfg) -> None:
    if cfg.allocation != "auto":
        raise ValueError(f"select_allocation chooses for allocation 'auto', got {cfg.allocation!r}")
    if cfg.alpha is not None:
        raise ValueError(f"alpha = {cfg.alpha} is not used by allocation 'auto' (it tries {list(AUTO_ALPHA_GRID)} "
                         "for every candidate that takes an alpha); leave it unset")


def select_allocation(lab, cfg, alpha_grid=None, *, criterion: str = "calib_nll",
                      nheldout: int | None = None, use_cache: bool = True) -> dict:
    """Choose the allocation for `cfg` (allocation "auto") from calibration data only.

    Returns {"pick" {"allocation", "alpha"}, "scores" [{"allocation", "alpha", "score"}] (nats/token,
    candidate order), "uniform_score", "tie_nats", "criterion", "heldout", "alpha_grid",
    "cost" {"candidates", "prunings", "seconds"}}. `cost` is what computing the selection took
    (prunings: candidates scored rather than read from the score cache)."""
    _check(cfg)
    cands = candidates(alpha_grid)
    lab.dense_statistics(cfg)  # pass 1 once (cached), shared by every candidate

    def compute():
        t0, tally = time.perf_counter(), {"prunings": 0}
        scores = []
        with warnings.catch_warnings():
            # a candidate's own plan warnings are about that candidate, not about the choice
            warnings.simplefilter("ignore", AgainstDepthWarning)
            warnings.simplefilter("ignore", RatioRangeWarning)
            for c in cands:
                score = heldout_score(lab, cfg.replace(**c), criterion=criterion, nheldout=nheldout,
                                      use_cache=use_cache, tally=tally)
                scores.append({**c, "score": float(score)})
        chosen = pick(scores)
        return {"pick": {"allocation": chosen["allocation"], "alpha": chosen["alpha"]}, "scores": scores,
                "uniform_score": next(c["score"] for c in scores if c["allocation"] == BASELINE),
                "tie_nats": TIE_NATS, "criterion": criterion, "heldout": heldout_spec(cfg, nheldout),
                "alpha_grid": sorted({c["alpha"] for c in cands if c["alpha"] is not None}),
                "cost": {"candidates": len(cands), "prunings": tally["prunings"],
                         "seconds": time.perf_counter() - t0}}

    key = cfg.key("prune", lab.fingerprint, code=("eval",), candidates=cands, tie_nats=TIE_NATS, criterion=criterion,
                  heldout=heldout_spec(cfg, nheldout))
    return cached("allocation_selection", key, compute, enabled=use_cache and lab.use_cache)


def chosen_config(cfg, selection: dict):
    """`cfg` with the selection's pick in place of allocation "auto"."""
    return cfg.replace(allocation=selection["pick"]["allocation"], alpha=selection["pick"]["alpha"])


def selected(lab, cfg):
    """cfg itself, or for allocation "auto" the candidate chosen on held-out calibration text (cached)."""
    return cfg if cfg.allocation != "auto" else chosen_config(cfg, select_allocation(lab, cfg))


def run_auto(lab, cfg, *, use_cache: bool | None = None) -> dict:
    """`Lab.run` of cfg; for allocation "auto" of the chosen candidate, with the selection under
    "allocation_selection"."""
    if cfg.allocation != "auto":
        return lab.run(cfg, use_cache=use_cache)
    selection = select_allocation(lab, cfg, use_cache=use_cache is not False)
    result = dict(lab.run(chosen_config(cfg, selection), use_cache=use_cache))
    result["allocation_selection"] = selection
    return result


def format_selection(selection: dict) -> str:
    """The candidates' held-out scores, the pick and the cost, one line each (for the CLI)."""
    def label(c):
        return c["allocation"] if c["alpha"] is None else f"{c['allocation']}(alpha={c['alpha']:g})"
    lines = [f"allocation auto: held-out calibration NLL (nats/token, {selection['heldout']['n']} windows of "
             f"{selection['heldout']['source']} train, seed {selection['heldout']['seed']}); ties within "
             f"{selection['tie_nats']:g} go to uniform"]
    for c in selection["scores"]:
        mark = " <- pick" if {"allocation": c["allocation"], "alpha": c["alpha"]} == selection["pick"] else ""
        lines.append(f"  {label(c):32s} {c['score']:.4f}{mark}")
    cost = selection["cost"]
    lines.append(f"  cost: {cost['candidates']} candidates, {cost['prunings']} prunings, {cost['seconds']:.0f} s")
    return "\n".join(lines)
