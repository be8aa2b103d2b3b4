"""Helpers that keep the notebooks thin: profile set-up, figure saving, paper-vs-ours tables."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .experiment import PROFILES, ExperimentConfig, get_lab


def figures_dir() -> Path:
    """figures/ of the repository, or $DLP_FIGURES_DIR (tests write elsewhere)."""
    d = Path(os.environ.get("DLP_FIGURES_DIR", Path(__file__).resolve().parent.parent / "figures"))
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
    lab = get_lab(base.model, base.device, base.dtype)
    return base, lab, PROFILES[profile]


def describe(cfg: ExperimentConfig) -> str:
    return (f"model `{cfg.model}`, calibration `{cfg.calib}` {cfg.nsamples} x {cfg.seqlen} tokens (seed {cfg.seed}), "
            f"evaluation {', '.join(cfg.eval)} in non-overlapping {cfg.seqlen}-token windows"
            + (f" (first {cfg.neval})" if cfg.neval else "") + f", {cfg.dtype} on {cfg.device}")


def side_by_side(ours: dict, paper: dict, *, ours_label: str = "ours", paper_label: str = "paper") -> pd.DataFrame:
    """Table with one row per key and the paper's number beside ours (missing -> NaN)."""
    keys = list(dict.fromkeys(list(paper) + list(ours)))
    return pd.DataFrame({paper_label: [paper.get(k) for k in keys], ours_label: [ours.get(k) for k in keys]},
                        index=keys)


def fmt_ppl(x: float) -> str:
    return f"{x:.3g}" if x >= 1e4 else f"{x:.2f}"
