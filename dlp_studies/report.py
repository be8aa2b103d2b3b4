"""Helpers that keep the notebooks thin: profile set-up, figure saving, paper-vs-ours tables."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from dlp_lib.experiment import PROFILES, ExperimentConfig, get_lab


_PROFILE = {"name": "smoke"}  # the profile of the last setup(): figures of one profile never overwrite another's


def set_profile(profile: str) -> None:
    """Send this notebook's figures to figures/<profile>/ (what setup() does, for notebooks without a Lab)."""
    _PROFILE["name"] = profile


def figures_dir() -> Path:
    """$DLP_FIGURES_DIR (the batch and the tests set it), else figures/<profile of the last setup()>."""
    default = Path(__file__).resolve().parent.parent / "figures" / _PROFILE["name"]
    d = Path(os.environ.get("DLP_FIGURES_DIR", default))
    d.mkdir(parents=True, exist_ok=True)
    return d


def save_figure(fig, name: str) -> Path:
    """Save under a stable name (PNG) in figures/; returns the path."""
    path = figures_dir() / f"{name}.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def setup(profile: str, **overrides):
    """(base ExperimentConfig, Lab, profile dict) for a notebook's `profile` parameter."""
    base = ExperimentConfig.from_profile(profile, **overrides)
    _PROFILE["name"] = profile
    if profile == "smoke":  # tiny matrices: extra threads only add synchronisation (seconds per op on a busy CPU)
        import torch
        torch.set_num_threads(1)
    lab = get_lab(base.model, base.device, base.dtype)
    return base, lab, PROFILES[profile]


def describe(cfg: ExperimentConfig) -> str:
    return (f"model `{cfg.model}`, calibration `{cfg.calib}` {cfg.nsamples} x {cfg.seqlen} tokens (seed {cfg.seed}), "
            f"evaluation {', '.join(cfg.eval)} in non-overlapping {cfg.seqlen}-token windows"
            + (f" (first {cfg.neval})" if cfg.neval else "") + f", {cfg.dtype} on {cfg.device}"
            + (f"; perplexity computed with {cfg.eval_dtype} autocast over the {cfg.dtype} weights (calibration, "
               "scores and masks in " + cfg.dtype + ")" if cfg.eval_dtype != cfg.dtype else ""))


def fmt_ppl(x: float) -> str:
    return f"{x:.3g}" if x >= 1e4 else f"{x:.2f}"


# ---------------------------------------------------------------- study notebooks 01/03/04/05/08
# Per-profile grids. `smoke` runs everything the notebook shows on the tiny model in about a
# minute; `default` is reduced toward a cold batch of two hours on 2 CPU cores (README, "Wall time
# of the default batch"; the reduction is printed by the notebook); `paper` is the paper's full grid. A profile missing here gets the
# paper's grid. Notebook parameters left as None are filled from here (`study_grid`).
_ALL_STATS = ("sum", "mean", "median", "max", "var", "sd")
_ALL_METHODS = ("magnitude", "sparsegpt", "wanda")
_PAPER_SPARSITIES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
_ALPHA_GRID = (0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2)  # paper Appendix G (= dlp_studies.paper.ALPHA_GRID)
# calibration seeds (cfg.replace(seed=s)) of the comparisons a verdict hinges on; seed 0 is every
# other run's seed, so the first seed shares its cache entries with the single-seed runs
_SMOKE_SEEDS = (0, 1)
_SEEDS = (0, 1, 2)

STUDY_GRIDS: dict[str, dict[str, dict]] = {
    "01_statistics": {
        "smoke": dict(sparsity=0.7, runs={"magnitude": _ALL_STATS, "sparsegpt": ("median", "mean"),
                                          "wanda": _ALL_STATS},
                      seeds=_SMOKE_SEEDS, seeded={m: ("median", "mean") for m in _ALL_METHODS},
                      note="smoke: all six statistics for Magnitude and Wanda, median/mean for SparseGPT; "
                           "median and mean over 2 calibration seeds."),
        "default": dict(sparsity=0.7, runs={"magnitude": ("median", "mean"), "sparsegpt": ("median", "mean"),
                                            "wanda": _ALL_STATS},
                        seeds=_SEEDS, seeded={"wanda": ("median", "mean")},
                        note="default (reduced): all six statistics with Wanda; only median (paper) and mean "
                             "(released code) with Magnitude and SparseGPT; median and mean over 3 calibration "
                             "seeds for Wanda, everything else on seed 0 only (Magnitude at 70% collapses, above "
                             "1e5 perplexity on every seed, so its seed spread says nothing; SparseGPT's seeds "
                             "cost a quarter of this notebook and are in the paper profile)."),
        "paper": dict(sparsity=0.7, runs={m: _ALL_STATS for m in _ALL_METHODS}, seeds=_SEEDS,
                      seeded={m: ("median", "mean") for m in _ALL_METHODS},
                      note="paper: full Table 1 grid; median and mean over 3 calibration seeds."),
    },
    "03_owl_vs_dlp": {
        "smoke": dict(sparsity=0.7, methods=_ALL_METHODS, owl_m=7.0, lod_m=7.0, m_grid=(3, 5, 7, 10),
                      figure_method="wanda", note="smoke: full Table 2; Figure 2 with M in {3, 5, 7, 10}."),
        "default": dict(sparsity=0.7, methods=_ALL_METHODS, owl_m=7.0, lod_m=7.0, m_grid=(5, 7, 10),
                        figure_method="wanda",
                        note="default (reduced): full Table 2 (3 methods x 3 allocations); Figure 2 with Wanda "
                             "only and M in {5, 7, 10} (M=7 is Table 2's OWL run)."),
        "paper": dict(sparsity=0.7, methods=_ALL_METHODS, owl_m=7.0, lod_m=7.0, m_grid=(1, 3, 5, 7, 10, 15, 20),
                      figure_method="wanda", note="paper: full Table 2; Figure 2 with M in 1..20 (7 values)."),
    },
    "04_main_results": {
        "smoke": dict(sparsity=0.7, methods=_ALL_METHODS, note="smoke: 3 methods x 3 allocations x every text."),
        "default": dict(sparsity=0.7, methods=("wanda",),
                        note="default (reduced): Wanda only (Magnitude and SparseGPT at 70% are in notebook 03's "
                             "Table 2 on the main text), x 3 allocations x every evaluation text."),
        "paper": dict(sparsity=0.7, methods=_ALL_METHODS, note="paper: 3 methods x 3 allocations x 3 texts."),
    },
    "05_sweep": {
        "smoke": dict(sparsities=(0.5, 0.6, 0.7, 0.8), methods=("sparsegpt", "wanda"), seeds=_SMOKE_SEEDS,
                      seed_sparsities=(0.5,),
                      note="smoke: 50-80% with SparseGPT and Wanda; 50% over 2 calibration seeds."),
        "default": dict(sparsities=(0.5, 0.6, 0.7, 0.8), methods=("wanda",), seeds=_SEEDS, seed_sparsities=(0.5,),
                        note="default (reduced): Wanda only, at 50, 60, 70 and 80% (the high-sparsity half of "
                             "Table 10, Figure 4's Wanda panel); 50%, where the allocations are closest, over 3 "
                             "calibration seeds, the others on seed 0 only."),
        "paper": dict(sparsities=_PAPER_SPARSITIES, methods=_ALL_METHODS, seeds=_SEEDS, seed_sparsities=(0.5,),
                      note="paper: full Table 10 grid; 50% over 3 calibration seeds."),
    },
    "08_alpha": {
        "smoke": dict(method="wanda", alphas={0.5: _ALPHA_GRID, 0.7: _ALPHA_GRID}, seeds=_SMOKE_SEEDS,
                      seed_sparsities=(0.5,),
                      note="smoke: the full alpha grid at 50% and 70% with Wanda; 50% over 2 calibration seeds."),
        "default": dict(method="wanda", alphas={0.5: (0.04, 0.15), 0.7: (0.08, 0.15, 0.2)},
                        seeds=_SEEDS, seed_sparsities=(0.5,),
                        note="default (reduced): Wanda; alpha in {0.08, 0.15, 0.2} at 70% and "
                             "{0.04, 0.15} at 50% (both include Table 19's value: 0.15 at 70%, 0.04 at 50%); "
                             "the 50% grid, where the alphas are closest, over 3 calibration seeds, 70% on seed 0 "
                             "only."),
        "paper": dict(method="wanda", alphas={s: _ALPHA_GRID for s in _PAPER_SPARSITIES}, seeds=_SEEDS,
                      seed_sparsities=(0.5, 0.7),
                      note="paper: the full Appendix G grid at every sparsity of Table 19, with Wanda; 50% and "
                           "70% over 3 calibration seeds."),
    },
    "06_layerwise_baselines": {
        "smoke": dict(sparsities=(0.5, 0.7), note="smoke: the 8 allocators of Table 9 at 50% and 70%."),
        "default": dict(sparsities=(0.7,),
                        note="default (reduced): the 8 allocators of Table 9 at 70% only (8 runs)."),
        "paper": dict(sparsities=_PAPER_SPARSITIES, note="paper: full Table 9 grid (8 allocators x 10-80%)."),
    },
    "07_granularity": {
        "smoke": dict(sparsity=0.7, group_sparsities=(0.5, 0.7), seeds=_SMOKE_SEEDS, seed_sparsities=(0.5,),
                      note="smoke: Appendix C at 70%; Appendix D (per-output vs per-layer) at 50% and 70%, 50% "
                           "over 2 calibration seeds."),
        "default": dict(sparsity=0.7, group_sparsities=(0.5, 0.7), seeds=_SEEDS, seed_sparsities=(0.5,),
                        note="default (reduced): Appendix C at 70%; Appendix D at 50 and 70% only, 50% (the "
                             "smallest gap) over 3 calibration seeds, 70% on seed 0 only."),
        "paper": dict(sparsity=0.7, group_sparsities=_PAPER_SPARSITIES, seeds=_SEEDS, seed_sparsities=(0.5,),
                      note="paper: Appendix C at 70%; Appendix D over the full Table 13 grid (10-80%), 50% over "
                           "3 calibration seeds."),
    },
    "09_zero_shot": {
        "smoke": dict(limit=4, methods=_ALL_METHODS, note="smoke: 3 methods x 3 allocations, 4 examples per task."),
        "default": dict(limit=200, methods=("wanda",),
                        note="default (reduced): Wanda only (3 allocations), 200 examples per task; one pruned "
                             "configuration costs ~5 minutes on 2 CPU cores."),
        "paper": dict(limit=None, methods=_ALL_METHODS,
                      note="paper: 3 methods x 3 allocations on every example of the seven tasks (Table 4)."),
    },
}


def study_grid(notebook: str, profile: str, **params) -> dict:
    """The notebook's grid for `profile`, with every parameter given (not None) overriding it."""
    grids = STUDY_GRIDS[notebook]
    grid = dict(grids.get(profile, grids["paper"]))
    changed = {k: v for k, v in params.items() if v is not None}
    grid.update(changed)
    if changed:
        grid["note"] = grid["note"] + " Overridden by the notebook parameters: " + \
            ", ".join(f"{k}={v}" for k, v in changed.items()) + "."
    return grid


def run_configs(lab, configs, *, share_identical_plans: bool = False, atol: float = 1e-6) -> dict:
    """`lab.run` for every configuration of a {key: ExperimentConfig} mapping, in order.

    With share_identical_plans, a configuration that prunes exactly like an earlier one (same
    everything except the DLP statistic, and per-block ratios equal to `atol`) reuses that result
    instead of pruning again; the copy says so in "same_plan_as" and "max_ratio_difference".
    """
    out, seen = {}, []
    for key, cfg in configs.items():
        if share_identical_plans:
            ratios = np.asarray(lab.plan(cfg).ratios)
            for other_key, other_cfg, other_ratios in seen:
                if other_cfg.replace(statistic=cfg.statistic) == cfg and np.allclose(ratios, other_ratios,
                                                                                     rtol=0, atol=atol):
                    out[key] = {**out[other_key], "same_plan_as": other_key,
                                "max_ratio_difference": float(np.abs(ratios - other_ratios).max())}
                    break
            else:
                seen.append((key, cfg, ratios))
        if key not in out:
            out[key] = lab.run(cfg)
    return out


def run_seeds(lab, configs, seeds, *, seeded=lambda key: True, **kwargs) -> dict:
    """`run_configs` over calibration seeds: {key: [result per seed]}.

    Every configuration runs with `cfg.replace(seed=s)` for each of `seeds` when `seeded(key)` is
    true, otherwise once with its own seed (a one-element list), so callers can treat both alike.
    """
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("seeds must name at least one calibration seed")
    expanded = {(key, s): cfg.replace(seed=s) for key, cfg in configs.items()
                for s in (seeds if seeded(key) else (cfg.seed,))}
    runs = run_configs(lab, expanded, **kwargs)
    out: dict = {}
    for (key, _), r in runs.items():
        out.setdefault(key, []).append(r)
    return out


def ppl_of(results, text: str) -> list[float]:
    """Pruned perplexity on `text` of a list of lab.run results (one per seed)."""
    return [r["perplexity"]["pruned"][text] for r in results]


def study_config(base: ExperimentConfig, method: str, allocation: str, owl_m: float | None = None) -> ExperimentConfig:
    """base with `method` and `allocation`; only OWL gets `owl_m`, so the other allocators keep the
    default fields and share their cache entries with the other notebooks."""
    cfg = base.replace(method=method, allocation=allocation)
    return cfg.replace(owl_m=float(owl_m)) if allocation == "owl" and owl_m is not None else cfg


def sparsity_map(plan, sublayers, order=()) -> pd.DataFrame:
    """block x sublayer matrix of a SparsityPlan's ratios for the qualified sublayer names
    `sublayers` (e.g. self_attn.q_proj); columns by short name, in `order` first (the paper's
    column order), then the rest."""
    sublayers = list(sublayers)
    if not sublayers:
        raise ValueError("sparsity_map needs at least one sublayer name")
    m = pd.DataFrame([{n.split(".")[-1]: plan.ratio(b, n) for n in sublayers} for b in range(len(plan.ratios))])
    return m[[c for c in order if c in m.columns] + [c for c in m.columns if c not in order]]


def map_shape(m: pd.DataFrame) -> dict:
    """Summary of a block x sublayer sparsity map: spread of the block means, mean range inside a
    block, Spearman correlation of depth (the index) with the block mean."""
    from .verdicts import spearman
    means = m.mean(axis=1)
    return {"std of block means": float(means.std()),
            "mean range inside a block": float((m.max(axis=1) - m.min(axis=1)).mean()),
            "Spearman(depth, block mean)": spearman(np.asarray(m.index, dtype=float), means.values)}


def tidy(results, names) -> pd.DataFrame:
    """Long table from {key tuple: lab.run result}: one row per (key, evaluation text).

    Columns: the key fields (`names`), text, ppl (pruned), dense (dense ppl), achieved (overall
    sparsity), lod (mean LOD when measured), alpha (DLP), shared (key whose result was reused).
    """
    rows = []
    for key, r in results.items():
        key = key if isinstance(key, tuple) else (key,)
        for text, ppl in r["perplexity"]["pruned"].items():
            rows.append({**dict(zip(names, key)), "text": text, "ppl": ppl,
                         "dense": r["perplexity"]["dense"][text], "achieved": r["achieved_sparsity"]["overall"],
                         "lod": r.get("lod", {}).get("mean"), "alpha": r["config"].get("alpha"),
                         "shared": r.get("same_plan_as")})
    return pd.DataFrame(rows)


def flatten(nested, depth: int) -> dict:
    """{a: {b: v}} -> {(a, b): v} for `depth` levels of a dlp_studies.paper table."""
    if depth == 1:
        return {(k,): v for k, v in nested.items()}
    return {(k, *rest): v for k, sub in nested.items() for rest, v in flatten(sub, depth - 1).items()}


def paper_vs_ours(ours: dict, paper: dict, names, *, ours_label: str = "ours", paper_label: str = "paper",
                  keep_paper_only: bool = True) -> pd.DataFrame:
    """Two columns (paper, ours) indexed by tuple keys (MultiIndex `names`); missing cells are NaN."""
    ours = {k if isinstance(k, tuple) else (k,): v for k, v in ours.items()}
    paper = {k if isinstance(k, tuple) else (k,): v for k, v in paper.items()}
    keys = list(dict.fromkeys((list(paper) if keep_paper_only else []) + list(ours)))
    index = pd.MultiIndex.from_tuples(keys, names=list(names))
    return pd.DataFrame({paper_label: [paper.get(k) for k in keys], ours_label: [ours.get(k) for k in keys]},
                        index=index)


def fmt_frame(df: pd.DataFrame, digits: int = 2) -> pd.DataFrame:
    """Perplexity-style formatting for display: 3 significant digits above 1e4, '-' for missing."""
    def f(x):
        if x is None or (isinstance(x, float) and x != x):
            return "-"
        if isinstance(x, (int, float)):
            return fmt_ppl(float(x)) if digits == 2 else f"{x:.{digits}f}"
        return x
    return df.map(f)


def smoke_caveat(profile: str) -> str:
    """The sentence every verdict ends with under the smoke profile."""
    return (" (smoke profile: a random tiny model on a few short windows; the numbers only show that the "
            "pipeline runs and say nothing about the claim.)") if profile == "smoke" else ""


def seed_spread(lab, cfg: ExperimentConfig, seeds, text: str | None = None) -> float | None:
    """The measured seed spread of a setting (`verdicts.relative_spread`): `cfg` run over the
    calibration `seeds` (cached runs are reused), perplexity on `text` (default: the first
    evaluation text). None with fewer than two seeds: the spread is then unknown."""
    from .verdicts import relative_spread
    seeds = tuple(int(s) for s in seeds)
    if len(seeds) < 2:
        return None
    runs = run_seeds(lab, {"setting": cfg}, seeds)["setting"]
    return relative_spread(ppl_of(runs, text or cfg.eval[0]))


def where_paper_holds(folder) -> pd.DataFrame:
    """Every claim row (claim, ours, paper, verdict) that the executed notebooks in `folder` printed
    under their headline verdicts, with the notebook's name: the 'where the paper holds here' table."""
    import json
    from .verdicts import ROW_COLUMNS, parse_report
    rows = []
    # hidden files are the batch's partial copies of notebooks still running (00 runs this itself)
    for path in sorted(p for p in Path(folder).glob("*.ipynb") if not p.name.startswith(".")):
        cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        text = "\n".join("".join(o.get("text", "")) for c in cells for o in c.get("outputs", [])
                         if o.get("output_type") == "stream" and o.get("name") == "stdout")
        rows += [{"notebook": path.stem[:3].rstrip("_"), **r} for r in parse_report(text)[1]]
    return pd.DataFrame(rows, columns=["notebook", *ROW_COLUMNS])


def protocol(cfg: ExperimentConfig) -> str:
    """The short protocol line a figure title carries: model, pruning method, calibration, evaluation."""
    return (f"{cfg.model}, {cfg.method}, calibration {cfg.calib} {cfg.nsamples}x{cfg.seqlen}, "
            f"{cfg.eval[0]} perplexity")
