"""Automatic choice of DLP's alpha from calibration data only (beyond the paper).

The paper tunes alpha per sparsity on the evaluation text (Appendix G, Table 19). Here alpha is
chosen without touching any evaluation text: for every alpha of a small grid the model is pruned
exactly as `Lab.run` would prune it, and scored by the next-token NLL of the pruned model on
*held-out calibration windows*: windows of the calibration source's TRAIN split drawn with a
different seed (`cfg.seed + HELDOUT_SEED_OFFSET`). The lowest score wins (ties: smallest alpha).

Costs: the dense statistics (pass 1) are shared with every other run of the Lab; each alpha costs
one pass-2 pruning plus one forward over the held-out windows. A pruning is skipped when the
Lab's model is already pruned with that configuration (e.g. right after `lab.run(cfg)` computed
it), so a notebook that evaluates an alpha grid pays the pruning once per alpha. Per-alpha scores
and the whole selection are cached on disk (`dlp_lib.cache.cached`), keyed by the configuration,
the grid, the criterion and the held-out set.
"""
from __future__ import annotations

import math

from ..allocation.dlp import ALPHA_GRID
from ..cache import cached
from ..data import TextSource
from ..evaluation import perplexity

CRITERIA = ("calib_nll",)
HELDOUT_SEED_OFFSET = 10_007   # held-out windows: a seed no calibration default uses
MAX_HELDOUT = 16               # default held-out windows: min(cfg.nsamples, MAX_HELDOUT)

def heldout_windows(lab, cfg, nheldout: int | None = None):
    """(n, seqlen) windows of the calibration source's train split, seed cfg.seed + HELDOUT_SEED_OFFSET."""
    n = min(cfg.nsamples, MAX_HELDOUT) if nheldout is None else int(nheldout)
    if n < 1:
        raise ValueError(f"nheldout must be >= 1, got {n}")
    return lab.windows("heldout", cfg.calib, n, cfg.seqlen, cfg.seed + HELDOUT_SEED_OFFSET)


def heldout_spec(cfg, nheldout: int | None) -> dict:
    """The identity of the held-out calibration windows (part of every cache key that scores on them)."""
    n = min(cfg.nsamples, MAX_HELDOUT) if nheldout is None else int(nheldout)
    return {"source": TextSource(cfg.calib).identity(), "split": "train", "n": n, "seqlen": cfg.seqlen,
            "seed": cfg.seed + HELDOUT_SEED_OFFSET}


def heldout_score(lab, cfg, *, criterion: str = "calib_nll", nheldout: int | None = None, use_cache: bool = True,
                  tally: dict | None = None) -> float:
    """Calibration-only score of `cfg` (lower is better): mean next-token NLL (nats/token) of the
    model pruned as `cfg` says on held-out calibration windows. Cached per configuration;
    `tally["prunings"]` (if given) counts the scores computed rather than read from the cache."""
    if criterion not in CRITERIA:
        raise ValueError(f"Unknown criterion {criterion!r}; allowed: {', '.join(CRITERIA)}")

    def compute():
        lab.ensure(cfg)
        ppl = perplexity(lab.model, heldout_windows(lab, cfg, nheldout), device=lab.device,
                         progress=lab.progress, desc=f"held-out calibration NLL ({cfg.allocation}, "
                                                     f"alpha={cfg.resolved_alpha()})")
        if tally is not None:
            tally["prunings"] = tally.get("prunings", 0) + 1
        return math.log(ppl)

    key = cfg.key("prune", lab.fingerprint, code=("eval",), criterion=criterion, heldout=heldout_spec(cfg, nheldout))
    return cached("heldout_score", key, compute, enabled=use_cache and lab.use_cache)


def alpha_score(lab, cfg, alpha: float, *, criterion: str = "calib_nll", nheldout: int | None = None,
                use_cache: bool = True) -> float:
    """`heldout_score` of DLP with `alpha`."""
    if cfg.allocation != "dlp":
        raise ValueError(f"alpha is a DLP hyperparameter; allocation is {cfg.allocation!r}")
    return heldout_score(lab, cfg.replace(alpha=float(alpha)), criterion=criterion, nheldout=nheldout,
                         use_cache=use_cache)


def select_alpha(lab, cfg, grid=ALPHA_GRID, *, criterion: str = "calib_nll", nheldout: int | None = None,
                 use_cache: bool = True) -> dict:
    """Choose DLP's alpha for `cfg` (its own alpha is ignored) from calibration data only.

    Returns {"alpha", "criterion", "scores" {alpha: score}, "grid", "heldout"}; `heldout` describes
    the held-out calibration windows. Alphas whose ratios fall outside [0, 1) are clamped and
    re-balanced by the allocator exactly as in any DLP run.
    """
    if cfg.allocation != "dlp":
        raise ValueError(f"--alpha auto needs allocation 'dlp', got {cfg.allocation!r}")
    grid = tuple(sorted(float(a) for a in grid))
    if not grid:
        raise ValueError("empty alpha grid")
    lab.dense_statistics(cfg)  # pass 1 once (cached), shared by every alpha

    def compute():
        scores = {a: alpha_score(lab, cfg, a, criterion=criterion, nheldout=nheldout, use_cache=use_cache)
                  for a in grid}
        best = min(grid, key=lambda a: (scores[a], a))
        return {"alpha": best, "criterion": criterion, "scores": scores, "grid": list(grid),
                "heldout": heldout_spec(cfg, nheldout)}

    key = {**cfg.replace(alpha=0.0).key("prune", lab.fingerprint, code=("eval",), grid=list(grid), criterion=criterion,
                                        heldout=heldout_spec(cfg, nheldout)), "alpha": None}
    out = cached("alpha_selection", key, compute, enabled=use_cache and lab.use_cache)
    out = dict(out)
    out["alpha"] = float(out["alpha"])
    out["scores"] = {float(a): float(v) for a, v in out["scores"].items()}  # JSON keys come back as str
    return out
