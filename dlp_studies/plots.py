"""Figures shared by the notebooks (matplotlib/seaborn), each returning the Figure."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg") if not matplotlib.get_backend().lower().startswith(("module://", "nbagg", "widget")) else None
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

PALETTE = {"uniform": "#7f7f7f", "owl": "#ff7f0e", "dlp": "#d62728", "dlp_mean": "#9467bd"}


def rid_with_ratios(rid: Sequence[float], ratios: Mapping[str, Sequence[float]], *, title: str = "",
                    ax=None):
    """Paper Figure 3: RID bars (left axis) with per-block sparsity lines (right axis)."""
    sns.set_theme(style="whitegrid")
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(9, 3.8))
    x = np.arange(len(rid))
    ax.bar(x, rid, color="#9ecae1", label="RID (importance)")
    lo, hi = min(rid), max(rid)
    pad = (hi - lo) * 0.5 or 1e-4
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel("block (layer) index")
    ax.set_ylabel("relative importance I_l")
    ax2 = ax.twinx()
    for label, r in ratios.items():
        ax2.plot(x, r, marker="o", ms=3, lw=1.8, label=label, color=PALETTE.get(label.split(" ")[0].lower()))
    ax2.set_ylabel("layerwise sparsity")
    ax2.grid(False)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax2.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=8, frameon=True)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def ratio_lines(ratios: Mapping[str, Sequence[float]], *, title: str = "", ylabel: str = "sparsity", ax=None):
    """Per-block ratios of several allocations on one axis."""
    sns.set_theme(style="whitegrid")
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(8, 3.5))
    for label, r in ratios.items():
        ax.plot(np.arange(len(r)), r, marker="o", ms=3, label=label, color=PALETTE.get(label.split(" ")[0].lower()))
    ax.set_xlabel("block index")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def grouped_bars(table, *, title: str = "", ylabel: str = "perplexity", log: bool = True, ax=None):
    """Bars of a DataFrame: index = groups on the x axis, columns = bars within a group."""
    sns.set_theme(style="whitegrid")
    long = table.reset_index(names="group").melt(id_vars="group", var_name="series", value_name="value")
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(8, 3.8))
    sns.barplot(long, x="group", y="value", hue="series", ax=ax)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_xlabel("")
    ax.set_title(title)
    fig.tight_layout()
    return fig
