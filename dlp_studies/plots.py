"""Figures of the notebooks (matplotlib/seaborn), each returning the Figure.

One palette (`PALETTE`, keyed by allocator name) and one marker per allocator are used by every
figure. Every figure's title starts with the paper item it reproduces ("Table 9: ..."). Rules:
no bars on a log scale (dots instead), error bars (range over the calibration seeds) wherever
several seeds were run, and series that coincide are drawn once with a joint label, with
different markers and a small horizontal offset elsewhere, so no series hides under another.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib

if not matplotlib.get_backend().lower().startswith(("module://", "nbagg", "widget")):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

PALETTE = {"uniform": "#7f7f7f", "owl": "#ff7f0e", "dlp": "#d62728", "dlp_mean": "#9467bd", "global": "#1f77b4",
           "er": "#2ca02c", "er_plus": "#17becf", "lamp": "#8c564b", "alphapruning": "#e377c2", "dense": "#000000",
           "dlp_mirror": "#ff9896", "depth_ramp": "#bcbd22", "block_influence": "#aec7e8", "auto": "#393b79"}
MARKERS = {"uniform": "s", "owl": "^", "dlp": "o", "dlp_mean": "D", "global": "v", "er": "<", "er_plus": ">",
           "lamp": "P", "alphapruning": "X", "dense": "*", "dlp_mirror": "d", "depth_ramp": "1",
           "block_influence": "h", "auto": "p"}
NAMES = {"uniform": "Uniform", "owl": "OWL", "dlp": "DLP", "dlp_mean": "DLP (mean, released code)",
         "global": "Global", "er": "ER", "er_plus": "ER-Plus", "lamp": "LAMP", "alphapruning": "AlphaPruning",
         "dense": "dense", "dlp_mirror": "DLP mirrored", "depth_ramp": "depth ramp",
         "block_influence": "block influence", "auto": "auto (held-out choice)"}
# non-allocator series (statistics F, comparison groups) get colours from one qualitative map
_OTHER = sns.color_palette("tab10", 10)


def color(key: str, i: int = 0):
    return PALETTE.get(key, _OTHER[i % len(_OTHER)])


def marker(key: str, i: int = 0) -> str:
    return MARKERS.get(key, "oDs^v<>PX*"[i % 10])


_STYLES = ("-", "--", "-.", ":")


def _line_style(i: int, n: int) -> dict:
    """Series i of n: its own dash pattern, earlier series drawn wider, so a later series lying on
    an earlier one still shows the earlier one around it."""
    return {"ls": _STYLES[i % len(_STYLES)], "lw": 2.6 - 1.4 * i / max(n - 1, 1)}


def name(key: str) -> str:
    return NAMES.get(key, str(key))


def _titled(fig, item: str, title: str):
    # above the axes (figures are saved with bbox_inches="tight", so nothing is cut off)
    if fig.get_constrained_layout():  # the layout engine makes room for the title itself
        fig.suptitle(f"{item}: {title}", fontsize=10)
    else:
        fig.suptitle(f"{item}: {title}", fontsize=10, y=1.03)
    return fig


def _stats(values) -> tuple[float, float, float]:
    """(mean, mean - min, max - mean) of one point's values over seeds (a scalar: no error bar)."""
    v = np.atleast_1d(np.asarray(values, dtype=float))
    m = float(v.mean())
    return m, m - float(v.min()), float(v.max()) - m


def merge_identical(series: Mapping[str, Sequence[float]], atol: float = 1e-9) -> dict[str, list[float]]:
    """Series equal to an earlier one (to atol) are drawn once, labelled 'a = b'."""
    out: dict[str, list[float]] = {}
    for label, vals in series.items():
        vals = [float(v) for v in vals]
        for key in list(out):
            if len(out[key]) == len(vals) and np.allclose(out[key], vals, rtol=0, atol=atol):
                out[f"{key} = {label}"] = out.pop(key)
                break
        else:
            out[label] = vals
    return out


def _dot_series(ax, x: Sequence[float], ys: Sequence, *, key: str, i: int, n: int, width: float, label: str,
                line: bool = True):
    """Dots (mean over seeds) with range error bars, offset by series so none hides another."""
    x = np.asarray(x, dtype=float) + (i - (n - 1) / 2) * width
    st = [_stats(y) for y in ys]
    m = [s[0] for s in st]
    err = np.array([[s[1] for s in st], [s[2] for s in st]])
    ax.errorbar(x, m, yerr=err if err.any() else None, color=color(key, i), marker=marker(key, i), ms=5,
                lw=1.4 if line else 0, elinewidth=2, capsize=5, label=label, alpha=0.9)
    # every seed as its own small dot beside the mean: a range far smaller than the marker still shows
    seeds = [(xi + width / 2, v) for xi, y in zip(x, ys) for v in np.atleast_1d(y) if np.size(y) > 1]
    if seeds:
        ax.scatter(*zip(*seeds), s=9, color=color(key, i), marker="_", alpha=0.8, zorder=3)


# ------------------------------------------------------------------------------- per-block profiles

def rid_with_ratios(rid: Sequence[float], ratios: Mapping[str, Sequence[float]], *, item: str = "Figure 3",
                    title: str = ""):
    """RID (dots, left axis) with per-block sparsity of allocators (right axis); keys of `ratios`
    are allocator names (the palette's keys)."""
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(9, 3.8))
    x = np.arange(len(rid))
    ax.plot(x, rid, color="#6baed6", marker=".", ls=":", lw=1, label="RID (importance I_l)")
    ax.set_xlabel("block (layer) index")
    ax.set_ylabel("relative importance I_l (axis from 0)")
    ax.set_ylim(0, 1.05 * float(np.max(rid)))   # from 0: a zoomed axis would inflate a few-percent spread
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax2 = ax.twinx()
    merged = merge_identical({k: v for k, v in ratios.items()})
    for i, (key, r) in enumerate(merged.items()):
        first = key.split(" = ")[0]
        ax2.plot(x, r, marker=marker(first, i), ms=4, color=color(first, i), mfc="none",
                 label=" = ".join(name(k) for k in key.split(" = ")), **_line_style(i, len(merged)))
    ax2.set_ylabel("layerwise sparsity")
    ax2.grid(False)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax2.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=8, frameon=True)
    fig.tight_layout()
    return _titled(fig, item, title)


def ratio_lines(series: Mapping[str, Sequence[float]], *, item: str, title: str = "", ylabel: str = "sparsity"):
    """Per-block values of several series on one axis (allocator keys get the palette); series
    that coincide are merged into one line labelled 'a = b'."""
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(9, 3.8))
    merged = merge_identical(series)
    for i, (key, r) in enumerate(merged.items()):
        first = key.split(" = ")[0]
        ax.plot(np.arange(len(r)), r, marker=marker(first, i), ms=4, mfc="none", color=color(first, i),
                label=" = ".join(name(k) for k in key.split(" = ")), **_line_style(i, len(merged)))
    ax.set_xlabel("block index")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.legend(fontsize=8, ncol=4)
    fig.tight_layout()
    return _titled(fig, item, title)


# ------------------------------------------------------------------------------- 01

def statistic_dots(ppl: Mapping[str, Mapping[str, Sequence[float]]], *, item: str = "Table 1", title: str = "",
                   paper: Mapping[str, Mapping[str, float]] | None = None):
    """One panel per method: perplexity by statistic F (dots, log axis; error bars: range over
    seeds), the paper's value as a hollow black marker."""
    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(1, len(ppl), figsize=(4.2 * len(ppl), 3.6), squeeze=False)
    for ax, (m, by) in zip(axes[0], ppl.items()):
        stats = list(by)
        x = np.arange(len(stats))
        _dot_series(ax, x, [by[s] for s in stats], key="dlp", i=0, n=2 if paper else 1, width=0.15,
                    label="ours", line=False)
        if paper and m in paper:
            ax.plot(x + 0.075, [paper[m].get(s, np.nan) for s in stats], ls="", marker="o", mfc="none", color="k",
                    label="paper LLaMA1-7B")
        ax.set_xticks(x, stats)
        ax.set_yscale("log")
        ax.set_title(m, fontsize=9)
        ax.set_ylabel("perplexity (log axis)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _titled(fig, item, title)


# ------------------------------------------------------------------------------- 03

def figure2_owl_m(owl_ppl: Mapping[float, float], owl_lod: Mapping[float, float], ref_ppl: Mapping[str, float],
                  ref_lod: Mapping[str, float], *, item: str = "Figure 2", title: str = "", ylabel: str = "perplexity"):
    """OWL's perplexity and LOD against its threshold M; DLP and Uniform (no M) as horizontal lines."""
    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    ms = sorted(owl_ppl)
    for ax, ys, ref, lab in ((axes[0], owl_ppl, ref_ppl, ylabel), (axes[1], owl_lod, ref_lod, "LOD % after pruning")):
        ax.plot(ms, [ys[m] for m in ms], marker=marker("owl"), color=color("owl"), label="OWL")
        for i, (a, v) in enumerate(ref.items()):
            ax.axhline(v, color=color(a), ls=("--", "-.", ":")[i % 3], label=f"{name(a)} (no M)")
        ax.set(xlabel="OWL outlier threshold M", ylabel=lab)
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return _titled(fig, item, title)


# ------------------------------------------------------------------------------- 04

def allocation_dots(ppl: Mapping[str, Mapping[str, Mapping[str, float]]], *, item: str = "Tables 3, 20-21",
                    title: str = ""):
    """One panel per evaluation text: perplexity of each (method, allocation) as dots on a log axis."""
    sns.set_theme(style="whitegrid")
    n_methods = max(len(by_m) for by_m in ppl.values())
    fig, axes = plt.subplots(1, len(ppl), figsize=(max(3.8, 1.6 * n_methods) * len(ppl), 3.6), squeeze=False)
    for ax, (text, by_m) in zip(axes[0], ppl.items()):
        methods = list(by_m)
        allocs = list(dict.fromkeys(a for m in methods for a in by_m[m]))
        for i, a in enumerate(allocs):
            _dot_series(ax, np.arange(len(methods)), [by_m[m].get(a, np.nan) for m in methods], key=a, i=i,
                        n=len(allocs), width=0.18, label=name(a), line=False)
        ax.set_xticks(np.arange(len(methods)), methods)
        ax.set_xlim(-0.6, len(methods) - 0.4)
        ax.set_yscale("log")
        ax.set_title(text, fontsize=9)
        ax.set_ylabel("perplexity (log axis)")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return _titled(fig, item, title)


# ------------------------------------------------------------------------------- 05 / 06 / 07

def sparsity_lines(panels: Mapping[str, Mapping[str, Mapping[float, object]]], *, item: str, title: str = "",
                   ylabel: str = "perplexity (log axis)", log: bool = True, share_x: bool = False):
    """One panel per entry of `panels` ({panel title: {series key: {sparsity: value or [values per
    seed]}}}): lines against sparsity, error bars (range over seeds) where several seeds exist,
    series slightly offset so none hides another."""
    sns.set_theme(style="whitegrid")
    ncols = min(len(panels), 2)
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.6 * ncols, 3.9 * nrows), squeeze=False, sharex=share_x)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (ptitle, series) in zip(axes.flat, panels.items()):
        ticks = sorted({s for by_s in series.values() for s in by_s})
        for i, (key, by_s) in enumerate(series.items()):
            sp = sorted(by_s)
            _dot_series(ax, sp, [by_s[s] for s in sp], key=key, i=i, n=len(series), width=0.003, label=name(key))
        ax.set_xticks(ticks)   # ticks at the sparsities run, not at the series' small offsets
        if len(ticks) == 1:
            ax.set_xlim(ticks[0] - 0.05, ticks[0] + 0.05)
        if log:
            ax.set_yscale("log")
        ax.set(xlabel="target sparsity", ylabel=ylabel)
        ax.set_title(ptitle, fontsize=9)
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda x, _: f"{x:.0%}"))
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return _titled(fig, item, title)


def sparsity_maps(paper_maps: Mapping[str, object], maps: Mapping[str, object], *, titles: Mapping[str, str],
                  item: str = "Tables 11-12", title: str = "", ours_notes: Mapping[str, str] | None = None):
    """Heatmaps of block x sublayer sparsity: the paper's printed rows above, ours below, one
    column per granularity (same colour scale everywhere)."""
    sns.set_theme(style="white")
    allm = [*paper_maps.values(), *maps.values()]
    vmin, vmax = min(float(m.values.min()) for m in allm), max(float(m.values.max()) for m in allm)
    L = max(len(m) for m in maps.values())
    fig, axes = plt.subplots(2, len(maps), figsize=(6 * len(maps), 4.5 + 0.3 * max(L, 5)), layout="constrained",
                             gridspec_kw={"height_ratios": [5, max(L, 5)]}, squeeze=False)
    for j, g in enumerate(maps):
        sns.heatmap(paper_maps[g], ax=axes[0, j], vmin=vmin, vmax=vmax, cmap="viridis", annot=True, fmt=".2f",
                    annot_kws={"size": 7}, cbar=False)
        axes[0, j].set(title=f"paper: {titles[g]} (LLaMA1-7B)", ylabel="layer")
        sns.heatmap(maps[g], ax=axes[1, j], vmin=vmin, vmax=vmax, cmap="viridis", annot=L <= 32, fmt=".2f",
                    annot_kws={"size": 6}, cbar=False)
        axes[1, j].set(title=f"ours: {titles[g]}" + (f" ({ours_notes[g]})" if ours_notes else ""), ylabel="block")
    for ax in axes.flat:
        ax.tick_params(axis="y", rotation=0, labelsize=8)
        ax.tick_params(axis="x", rotation=30, labelsize=8)
    fig.colorbar(axes[1, -1].collections[0], ax=axes, shrink=0.6, label="sparsity")
    return _titled(fig, item, title)


# ------------------------------------------------------------------------------- 08

def alpha_grid(ppl: Mapping[float, Mapping[float, object]], score: Mapping[float, Mapping[float, float]],
               uniform: Mapping[float, object], marks: Mapping[float, Mapping[str, float]], *,
               item: str = "Table 19 (Appendix G)", title: str = "", ylabel: str = "perplexity",
               score_label: str = "held-out calibration NLL"):
    """Per sparsity (columns): evaluation perplexity (top, error bars over seeds) and the
    calibration-only score (bottom) against alpha; vertical marks for Table 19's, the best and
    the automatic alpha; Uniform as a horizontal line."""
    sns.set_theme(style="whitegrid")
    sp = sorted(ppl)
    fig, axes = plt.subplots(2, len(sp), figsize=(4.4 * len(sp), 6), squeeze=False)
    styles = {"Table 19": dict(color="k", ls=":"), "best on eval text": dict(color="#2ca02c", ls="--"),
              "auto (calibration)": dict(color="#1f77b4", ls="-.")}
    for j, s in enumerate(sp):
        al = sorted(ppl[s])
        _dot_series(axes[0, j], al, [ppl[s][a] for a in al], key="dlp", i=0, n=1, width=0, label="DLP")
        axes[1, j].plot(al, [score[s][a] for a in al], marker=marker("dlp"), color=color("dlp"), label="DLP")
        m, lo, hi = _stats(uniform[s])
        axes[0, j].axhline(m, color=color("uniform"), lw=1.2, label="Uniform")
        if lo or hi:
            axes[0, j].axhspan(m - lo, m + hi, color=color("uniform"), alpha=0.15)
        for k, (lab, a) in enumerate(marks.get(s, {}).items()):
            if a is None:
                continue
            for i in (0, 1):  # offset the marks a little: equal alphas stay visible
                axes[i, j].axvline(a + (k - 1) * 0.0015, lw=1.2, label=lab, **styles.get(lab, {}))
        axes[0, j].set_title(f"{s:.0%} sparsity", fontsize=9)
        axes[0, j].set_ylabel(ylabel if j == 0 else "")
        axes[1, j].set_ylabel(score_label if j == 0 else "")
        axes[1, j].set_xlabel("alpha")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return _titled(fig, item, title)


# ------------------------------------------------------------------------------- 09

def zeroshot_bars(panels: Mapping[str, Mapping[str, Mapping[str, object]]], *, dense: Mapping[str, float],
                  chance: float | None = None, item: str = "Table 4", title: str = "",
                  ylabel: str = "mean 0-shot accuracy (%)"):
    """One panel per source ({panel: {method: {allocation: acc or (acc, stderr)}}}): bars on a
    linear axis with standard-error bars, dense (and chance) as horizontal lines."""
    sns.set_theme(style="whitegrid")
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.8), squeeze=False)
    for ax, (ptitle, by_m) in zip(axes[0], panels.items()):
        methods = list(by_m)
        allocs = list(dict.fromkeys(a for m in methods for a in by_m[m]))
        w = 0.8 / len(allocs)
        for i, a in enumerate(allocs):
            vals = [by_m[m].get(a, np.nan) for m in methods]
            acc = [v[0] if isinstance(v, tuple) else v for v in vals]
            se = [v[1] if isinstance(v, tuple) else 0.0 for v in vals]
            ax.bar(np.arange(len(methods)) + (i - (len(allocs) - 1) / 2) * w, acc, width=w, color=color(a),
                   yerr=se if any(se) else None, capsize=3, label=name(a))
        ax.axhline(dense[ptitle], color=color("dense"), ls="--", lw=1, label="dense")
        if chance is not None and not ptitle.startswith("paper"):
            ax.axhline(chance, color="grey", ls=":", lw=1, label="chance")
        ax.set_xticks(np.arange(len(methods)), methods)
        ax.set_title(ptitle, fontsize=9)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _titled(fig, item, title)
