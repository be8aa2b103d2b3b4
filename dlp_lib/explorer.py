"""Interactive exploration of the Relative Importance Distribution (paper Section 3.4, Figure 3).

Two pure functions and a thin widget layer:

- `explorer_state(stats, sparsity, alpha, allocations, ...)`: the RID of the chosen layer
  statistic and every chosen allocator's per-block ratios, from the cached pass-1 statistics (and
  the dense weights for allocators that read them). Nothing is recomputed on the model, so a
  slider move re-plans instantly after one dense pass.
- `explorer_figure(state)`: the Figure 3 view (RID bars, per-block sparsity lines).
- `comparison_state(stats_by_model, ...)` and `comparison_figure(state)`: several models side by
  side against relative depth (normalised block statistic, DLP and OWL ratios) with
  Spearman(depth, S) per model, which says which way DLP tilts each model's budget.
- `RIDExplorer`: ipywidgets controls (model, calibration, statistic, sparsity/alpha/OWL sliders,
  allocators, method, models to compare) around a `Lab`, which computes pass 1 once per (model,
  calibration, nsamples, seqlen, seed) and caches it on disk; a button prunes with the chosen plan
  and evaluates perplexity (the Lab's cached `run`).
- `explorer_notebook(folder, profile)`: the working copy of notebook 14 that `scripts/explore.sh`
  opens (interactive use then writes nothing tracked).
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .allocation import RatioRangeWarning, allocator_names, get_allocator, paper_alpha, relative_importance
from .api import plan as make_plan
from .block_stats import LAYER_STATISTICS, OWL_M_GRID, DenseStatistics
from .pruning import METHODS
from .runs.auto_allocation import run_auto
from .validation import check_allocation, check_method, check_owl_m, check_statistic


def instant_allocations() -> tuple[str, ...]:
    """The registry's allocators that read no weights: re-planned from pass 1 alone, instantly
    (the explorer's default selection; uniform, OWL and DLP with the built-in registry)."""
    return tuple(n for n in allocator_names() if not get_allocator(n).needs_weights)


COLORS = {"uniform": "#7f7f7f", "owl": "#ff7f0e", "dlp": "#d62728", "global": "#2ca02c", "er": "#8c564b",
          "er_plus": "#e377c2", "lamp": "#17becf", "alphapruning": "#1f77b4"}


def _check_allocations(allocations) -> tuple[str, ...]:
    """A non-empty list of distinct registry names; a bad name gets validation's sentence, as in the
    CLI and api.py."""
    if isinstance(allocations, str) or not isinstance(allocations, Sequence) or not allocations:
        raise ValueError(f"allocations = {allocations!r} is not allowed; give a non-empty list of names from "
                         f"{', '.join(allocator_names())}")
    names = tuple(allocations)
    for name in names:
        check_allocation(name)
    if len(set(names)) != len(names):
        raise ValueError(f"allocations = {list(names)} lists an allocator twice")
    return names


def explorer_state(stats: DenseStatistics, sparsity: float, alpha: float | None = None,
                   allocations: Sequence[str] | None = None, *, statistic: str = "median",
                   lamda: float = 0.08, owl_m: float = 5.0, method: str = "wanda", model=None,
                   cache_config: dict | None = None, memo: dict | None = None) -> dict:
    """RID and per-block ratios of each allocation for one setting of the sliders.

    stats: pass-1 DenseStatistics; alpha: DLP's (None: paper Table 19); statistic: DLP's layer
    statistic F (also the one the RID is drawn for); lamda, owl_m: OWL's. Allocators that read the
    weights need the dense `model`. `memo` (a dict the caller keeps) stores plans of allocators
    that do not read alpha/statistic/lamda/owl_m, keyed by what they depend on, so moving the DLP or
    OWL sliders never recomputes them.

    Returns {"sparsity", "alpha" (resolved), "statistic", "lamda", "owl_m", "method", "allocations",
    "block_statistic" (S_l), "rid" (I_l), "ratios" (DataFrame: block x allocation), "plans",
    "warnings" (allocation -> clamp messages)}. allocations=None: `instant_allocations()`.
    """
    if not isinstance(stats, DenseStatistics):
        raise ValueError(f"stats = {type(stats).__name__} is not allowed; pass pass-1 DenseStatistics")
    names = _check_allocations(instant_allocations() if allocations is None else allocations)
    check_statistic(statistic)      # always: the RID is drawn for it
    if "owl" in names:
        check_owl_m(owl_m)
    check_method(method)
    s = stats.layer_statistic(statistic)
    rid = relative_importance(s)
    knobs = {"statistic": statistic, "lamda": float(lamda), "owl_m": float(owl_m)}
    ratios, plans, caught = {}, {}, {}
    for name in names:
        allocator = get_allocator(name)
        params = {k: v for k, v in knobs.items() if k in allocator.params}
        a = alpha if "alpha" in allocator.params else None
        key = (name, float(sparsity), method, tuple(sorted(params.items())), a)
        if memo is not None and key in memo:
            plans[name], caught[name] = memo[key]
        else:
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always", RatioRangeWarning)
                plans[name] = make_plan(stats, name, sparsity, alpha=a, model=model if allocator.needs_weights else None,
                                        method=method, cache_config=cache_config, **params)
            caught[name] = [str(x.message) for x in w if issubclass(x.category, RatioRangeWarning)]
            for x in w:
                if not issubclass(x.category, RatioRangeWarning):
                    warnings.warn_explicit(x.message, x.category, x.filename, x.lineno)
            if memo is not None:
                memo[key] = (plans[name], caught[name])
        ratios[name] = plans[name].ratios
    table = pd.DataFrame(ratios)
    table.index.name = "block"
    return {"sparsity": float(sparsity), "alpha": paper_alpha(sparsity) if alpha is None else float(alpha),
            "alpha_from_paper": alpha is None, "statistic": statistic, "lamda": float(lamda), "owl_m": float(owl_m),
            "method": method, "allocations": names, "block_statistic": [float(v) for v in s],
            "rid": rid.tolist(), "ratios": table, "plans": plans, "warnings": caught}


def explorer_table(state: dict) -> pd.DataFrame:
    """Per-block numbers of a state: S_l, RID I_l and every allocation's ratio."""
    t = pd.DataFrame({f"S ({state['statistic']})": state["block_statistic"], "RID": state["rid"]})
    t = pd.concat([t, state["ratios"].add_suffix(" ratio")], axis=1)
    t.index.name = "block"
    return t


def state_title(state: dict) -> str:
    alpha = f"alpha={state['alpha']:g}" + (" (Table 19)" if state.get("alpha_from_paper") else "")
    return (f"RID ({state['statistic']}) and per-block sparsity, target {state['sparsity']:.0%}: DLP {alpha}, "
            f"OWL lambda={state['lamda']:g} M={state['owl_m']:g}")


def explorer_figure(state: dict, *, ax=None, title: str | None = None):
    """Figure 3 view of a state: RID bars (left axis) and each allocation's per-block sparsity (right)."""
    import matplotlib.pyplot as plt

    rid = np.asarray(state["rid"])
    if ax is None:
        fig, ax = plt.subplots(figsize=(9, 3.8))
    else:
        fig = ax.figure
    x = np.arange(len(rid))
    ax.bar(x, rid, color="#9ecae1", label=f"RID I_l ({state['statistic']})")
    lo, hi = float(rid.min()), float(rid.max())
    pad = (hi - lo) * 0.5 or 1e-4
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel("block (layer) index")
    ax.set_ylabel("relative importance I_l")
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2 = ax.twinx()
    for name in state["ratios"].columns:
        ax2.plot(x, state["ratios"][name].to_numpy(), marker="o", ms=3, lw=1.8, label=name,
                 color=COLORS.get(name))
    ax2.axhline(state["sparsity"], color="black", lw=0.8, ls=":", label=f"target {state['sparsity']:.2f}")
    ax2.set_ylabel("layerwise sparsity (fraction removed)")
    ax2.grid(False)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax2.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=8, frameon=True)
    ax.set_title(title if title is not None else state_title(state), fontsize=9)
    fig.tight_layout()
    return fig


def explorer_grid(stats: DenseStatistics, settings: Sequence[dict], *, ncols: int = 2, model=None,
                  allocations: Sequence[str] | None = None, **common):
    """Static fallback: one `explorer_figure` panel per slider setting (dicts of explorer_state keywords)."""
    import matplotlib.pyplot as plt

    if not settings:
        raise ValueError("settings is empty; give at least one dict of explorer_state arguments")
    nrows = -(-len(settings) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(7.5 * ncols, 3.6 * nrows), squeeze=False)
    states = []
    for ax, setting in zip(axes.flat, settings):
        kw = {"allocations": allocations, "model": model, **common, **setting}
        state = explorer_state(stats, **kw)
        states.append(state)
        explorer_figure(state, ax=ax)
    for ax in list(axes.flat)[len(settings):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig, states


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho (average ranks for ties); nan when either side is constant."""
    rx, ry = pd.Series(list(x), dtype=float).rank(), pd.Series(list(y), dtype=float).rank()
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(rx.corr(ry))


def comparison_state(stats_by_model: Mapping[str, DenseStatistics], sparsity: float, alpha: float | None = None,
                     *, statistic: str = "median", lamda: float = 0.08, owl_m: float = 5.0) -> dict:
    """Several models' block statistics and DLP/OWL ratios against relative depth (0 = first block,
    1 = last), for one setting of the sliders.

    Returns {"sparsity", "alpha" (resolved), "statistic", "lamda", "owl_m", "models" (names in order),
    "curves" (model -> DataFrame with columns depth, S normalised (min-max, as Algorithm 1
    normalises it), dlp, owl; one row per block), "table" (DataFrame, one row per model: blocks,
    Spearman(depth, S), Spearman(depth, DLP), Spearman(depth, OWL))}. A positive Spearman(depth, S)
    means the statistic rises with depth, so DLP prunes deeper blocks harder; a negative one inverts it.
    """
    if not stats_by_model:
        raise ValueError("stats_by_model is empty; add at least one model to compare")
    curves, rows = {}, []
    resolved_alpha = None
    for name, stats in stats_by_model.items():
        state = explorer_state(stats, sparsity, alpha, ["dlp", "owl"], statistic=statistic, lamda=lamda, owl_m=owl_m)
        resolved_alpha = state["alpha"]
        s = np.asarray(state["block_statistic"], dtype=float)
        span = s.max() - s.min()
        depth = np.linspace(0.0, 1.0, len(s)) if len(s) > 1 else np.zeros(1)
        curves[name] = pd.DataFrame({"depth": depth, "S normalised": (s - s.min()) / span if span > 0 else s * 0.0,
                                     "dlp": state["ratios"]["dlp"].to_numpy(), "owl": state["ratios"]["owl"].to_numpy()})
        rows.append({"model": name, "blocks": len(s), "Spearman(depth, S)": rank_correlation(depth, s),
                     "Spearman(depth, DLP)": rank_correlation(depth, curves[name]["dlp"]),
                     "Spearman(depth, OWL)": rank_correlation(depth, curves[name]["owl"])})
    return {"sparsity": float(sparsity), "alpha": resolved_alpha, "alpha_from_paper": alpha is None,
            "statistic": statistic, "lamda": float(lamda), "owl_m": float(owl_m), "models": list(curves),
            "curves": curves, "table": pd.DataFrame(rows).set_index("model")}


def comparison_figure(state: dict):
    """Two panels over relative depth: each model's normalised block statistic (left) and its DLP
    (solid) and OWL (dashed) per-block sparsity (right); one colour per model."""
    import matplotlib.pyplot as plt

    fig, (ax_s, ax_r) = plt.subplots(1, 2, figsize=(11, 3.6), sharex=True)
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, name in enumerate(state["models"]):
        c, color = state["curves"][name], palette[i % len(palette)]
        rho = state["table"].loc[name, "Spearman(depth, S)"]
        ax_s.plot(c["depth"], c["S normalised"], marker="o", ms=3, color=color, label=f"{name} (rho {rho:+.2f})")
        ax_r.plot(c["depth"], c["dlp"], marker="o", ms=3, color=color, label=f"{name} DLP")
        ax_r.plot(c["depth"], c["owl"], ls="--", color=color, label=f"{name} OWL")
    ax_r.axhline(state["sparsity"], color="black", lw=0.8, ls=":", label=f"target {state['sparsity']:.2f}")
    ax_s.set_title(f"block statistic S ({state['statistic']}), min-max normalised", fontsize=9)
    alpha = f"alpha={state['alpha']:g}" + (" (Table 19)" if state["alpha_from_paper"] else "")
    ax_r.set_title(f"per-block sparsity: DLP {alpha} (solid), OWL lambda={state['lamda']:g} M={state['owl_m']:g} "
                   "(dashed)", fontsize=9)
    ax_s.set_ylabel("S normalised")
    ax_r.set_ylabel("layerwise sparsity")
    for ax in (ax_s, ax_r):
        ax.set_xlabel("relative depth (block / (blocks - 1))")
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


class RIDExplorer:
    """ipywidgets front end. `cfg` (an ExperimentConfig) gives the starting values and what the
    widgets do not set (evaluation texts, device, dtype). Display it in JupyterLab (`display(x)` or
    as a cell's last value); `load()`, `refresh()`, `add_model()`, `prune_and_evaluate()` are what
    the controls call.

    Long actions (dense pass, adding a model, prune + evaluate) run through `_job`: the status line
    says "busy", the buttons that start another job are disabled, the engine's own progress bars
    (tqdm, which renders as a widget in a kernel: block i of L and elapsed time) appear in the
    progress area under the status line, and an error ends the job with the message the CLI would
    print, in red in the status line."""

    def __init__(self, cfg, *, allocations: Sequence[str] | None = None, progress: bool = True):
        import ipywidgets as W

        from .data import HUB_SOURCES, OFFLINE_SOURCES

        self.base, self.progress = cfg, progress
        self._memo: dict = {}
        self._syncing = False
        self.stats = None
        self.state = None
        self.comparison = None
        self.compared: dict[str, DenseStatistics] = {}
        self.results: list[dict] = []
        self.last_job_seconds: float | None = None
        sources = list(OFFLINE_SOURCES + HUB_SOURCES)
        calib_is_file = cfg.calib not in sources
        # Controls fill their column (width auto in a stretching column: 100% would add the widgets'
        # 2 px margins and overflow); columns wrap onto new rows (below) instead of being clipped.
        full = W.Layout(width="auto")
        style = {"description_width": "110px"}
        self.model = W.Text(value=cfg.model, description="model", layout=full, style=style,
                            placeholder="smollm2-135m, gemma3-270m, tiny-llama, a checkpoint directory, a .gguf")
        self.calib = W.Dropdown(options=sources + ["file"], value="file" if calib_is_file else cfg.calib,
                                description="calibration", layout=full, style=style)
        self.calib_path = W.Text(value=cfg.calib if calib_is_file else "", description=".txt path",
                                 layout=full, style=style, placeholder="used when calibration = file")
        self.nsamples = W.BoundedIntText(value=cfg.nsamples, min=1, max=4096, description="nsamples", layout=full,
                                         style=style)
        self.seqlen = W.BoundedIntText(value=cfg.seqlen, min=2, max=131072, description="seqlen", layout=full,
                                       style=style)
        self.load_button = W.Button(description="dense pass (statistics)", button_style="info",
                                    layout=W.Layout(width="220px"))
        self.statistic = W.Dropdown(options=list(LAYER_STATISTICS), value=cfg.statistic, description="statistic F",
                                    layout=full, style=style)
        self.sparsity = W.FloatSlider(value=cfg.sparsity, min=0.05, max=0.95, step=0.01, description="sparsity p",
                                      readout_format=".2f", layout=full, style=style)
        self.alpha = W.FloatSlider(value=cfg.alpha if cfg.alpha is not None else paper_alpha(cfg.sparsity), min=0.0,
                                   max=0.45, step=0.005, description="DLP alpha", readout_format=".3f", layout=full,
                                   style=style, disabled=cfg.alpha is None)
        self.alpha_paper = W.Checkbox(value=cfg.alpha is None, description="alpha from paper Table 19")
        self.lamda = W.FloatSlider(value=cfg.lamda, min=0.0, max=0.45, step=0.005, description="OWL lambda",
                                   readout_format=".3f", layout=full, style=style)
        self.owl_m = W.SelectionSlider(options=[int(m) for m in OWL_M_GRID], value=int(cfg.owl_m),
                                       description="OWL M", layout=full, style=style)
        self.allocations = W.SelectMultiple(options=list(allocator_names()), value=_check_allocations(
            instant_allocations() if allocations is None else allocations),
            rows=min(8, len(allocator_names())), description="allocators", layout=full, style=style)
        self.method = W.Dropdown(options=list(METHODS), value=cfg.method, description="method", layout=full,
                                 style=style)
        self.prune_with = W.Dropdown(options=list(allocator_names()), value="dlp", description="prune with",
                                     layout=full, style=style)
        self.prune_button = W.Button(description="prune + evaluate", button_style="warning",
                                     layout=W.Layout(width="220px"))
        self.compare_model = W.Text(value="", description="add model", layout=full, style=style,
                                    placeholder="e.g. gemma3-270m (same calibration as above)")
        self.compare_button = W.Button(description="add to comparison", button_style="info",
                                       layout=W.Layout(width="220px"))
        self.compare_list = W.SelectMultiple(options=[], rows=3, description="compared", layout=full, style=style)
        self.remove_button = W.Button(description="remove selected", layout=W.Layout(width="220px"))
        self.status = W.HTML()
        self.log = W.Output()     # progress bars and messages of the running job
        self.plot = W.Output()
        self.table = W.Output()
        self.compare_plot = W.Output()
        self.compare_table = W.Output()
        self.history = W.Output()
        self.job_buttons = (self.load_button, self.prune_button, self.compare_button, self.remove_button)
        for w in (self.sparsity, self.alpha, self.alpha_paper, self.lamda, self.owl_m, self.allocations,
                  self.statistic, self.method):
            w.observe(self._on_change, names="value")
        self.load_button.on_click(lambda _: self.load())
        self.prune_button.on_click(lambda _: self.prune_and_evaluate())
        self.compare_button.on_click(lambda _: self.add_model())
        self.remove_button.on_click(lambda _: self.remove_models())

        def column(children, title):
            return W.VBox([W.HTML(f"<b>{title}</b>")] + children,
                          layout=W.Layout(flex="1 1 380px", min_width="340px", max_width="560px", margin="0 16px 8px 0",
                                          align_items="stretch"))

        columns = W.Box([
            column([self.model, self.calib, self.calib_path, self.nsamples, self.seqlen, self.load_button],
                   "model and calibration (pass 1)"),
            column([self.statistic, self.sparsity, self.alpha, self.alpha_paper, self.lamda, self.owl_m],
                   "allocation (re-planned instantly)"),
            column([self.allocations, self.method, self.prune_with, self.prune_button], "allocators and pruning"),
            column([self.compare_model, self.compare_button, self.compare_list, self.remove_button],
                   "models side by side"),
        ], layout=W.Layout(display="flex", flex_flow="row wrap", align_items="flex-start"))
        self.tabs = W.Tab(children=[W.VBox([self.plot, self.table]), W.VBox([self.compare_plot, self.compare_table]),
                                    self.history])
        for i, title in enumerate(("RID of this model", "models side by side", "prune + evaluate results")):
            self.tabs.set_title(i, title)
        self.widget = W.VBox([columns, self.status, self.log, self.tabs], layout=W.Layout(align_items="stretch"))
        self.widget.add_class("dlp-rid-explorer")
        self.load()

    # -- what the controls mean --------------------------------------------------------------
    def config(self, allocation: str | None = None, model: str | None = None):
        """The ExperimentConfig the widgets describe (validated); `model` replaces the model field's."""
        calib = self.calib_path.value.strip() if self.calib.value == "file" else self.calib.value
        if not calib:
            raise ValueError("calibration = file needs a .txt path")
        name = (self.model.value if model is None else model).strip()
        if not name:
            raise ValueError("model is empty; give smollm2-135m, gemma3-270m, tiny-llama, a checkpoint directory, "
                             "a .gguf file or a hub id")
        return self.base.replace(model=name, calib=calib, nsamples=int(self.nsamples.value),
                                 seqlen=int(self.seqlen.value), statistic=self.statistic.value,
                                 sparsity=round(float(self.sparsity.value), 6),
                                 alpha=None if self.alpha_paper.value else round(float(self.alpha.value), 6),
                                 lamda=round(float(self.lamda.value), 6), owl_m=float(self.owl_m.value),
                                 method=self.method.value, allocation=allocation or self.prune_with.value)

    def _lab(self, cfg):
        from .experiment import get_lab
        return get_lab(cfg.model, cfg.device, cfg.dtype, progress=self.progress)

    def _say(self, text: str, error: bool = False) -> None:
        import html
        color = "#b00020" if error else "#333"
        self.status.value = f'<span class="dlp-status{" dlp-error" if error else ""}" style="color:{color}">' \
                            f'{html.escape(text)}</span>'

    def _job(self, what: str, work):
        """Run `work()` as one job (see the class docstring); returns its value, None after an error."""
        import time

        from IPython.display import clear_output
        self._say(f"busy: {what} ...")
        for b in self.job_buttons:
            b.disabled = True
        t0 = time.perf_counter()
        error = None
        try:
            # The Output context shows the engine's tqdm bars here; an exception must not reach its
            # __exit__, which in a kernel prints the traceback into the area and swallows it.
            with self.log:
                clear_output(wait=True)
                try:
                    value = work()
                except Exception as exc:  # noqa: BLE001 - shown in the status line, the session goes on
                    error = exc
        finally:
            for b in self.job_buttons:
                b.disabled = False
        if error is not None:
            self._say(f"error: {error}", error=True)
            return None
        self.last_job_seconds = time.perf_counter() - t0
        return value

    # -- actions ---------------------------------------------------------------------------------
    def load(self) -> None:
        """Load the model (once per name) and its pass-1 statistics (once per data key), then re-plan."""
        try:
            cfg = self.config()
        except ValueError as exc:
            self._say(f"error: {exc}", error=True)
            return

        def work():
            lab = self._lab(cfg)
            return lab, lab.dense_statistics(cfg)

        done = self._job(f"dense pass on {cfg.model} ({cfg.calib} {cfg.nsamples} x {cfg.seqlen})", work)
        if done is None:
            return
        self._lab_now, self.stats = done
        self._loaded, self._memo = cfg, {}
        self.compared[cfg.model] = self.stats
        self._sync_compare_list()
        self.refresh()

    def add_model(self) -> None:
        """Add the 'add model' field's model to the side-by-side view: its pass 1 at the current
        calibration (cached on disk like every pass 1; a model already in memory costs nothing)."""
        try:
            cfg = self.config(model=self.compare_model.value)
        except ValueError as exc:
            self._say(f"error: {exc}", error=True)
            return
        stats = self._job(f"dense pass on {cfg.model} ({cfg.calib} {cfg.nsamples} x {cfg.seqlen}) for the comparison",
                          lambda: self._lab(cfg).dense_statistics(cfg))
        if stats is None:
            return
        self.compared[cfg.model] = stats
        self._sync_compare_list()
        self.refresh()

    def remove_models(self) -> None:
        for name in self.compare_list.value:
            self.compared.pop(name, None)
        self._sync_compare_list()
        self.refresh()

    def _sync_compare_list(self) -> None:
        self.compare_list.options = list(self.compared)

    def _on_change(self, change) -> None:
        if self._syncing:
            return
        if change["owner"] is self.alpha_paper:
            self.alpha.disabled = bool(self.alpha_paper.value)
        if self.alpha_paper.value:      # show Table 19's alpha on the (disabled) slider, one redraw only
            self._syncing = True
            try:
                self.alpha.value = paper_alpha(float(self.sparsity.value))
            finally:
                self._syncing = False
        self.refresh()

    def refresh(self) -> None:
        """Re-plan from the cached statistics and redraw both views (no forward pass)."""
        if self.stats is None:
            return
        try:
            cfg = self.config()
            lab = self._lab_now
            if not self.allocations.value:
                self._say("select at least one allocator")
                return
            weights = any(get_allocator(a).needs_weights for a in self.allocations.value)
            if weights:
                lab.ensure(None)        # allocators that read weights read the dense ones
            self.state = explorer_state(self.stats, cfg.sparsity, cfg.alpha, list(self.allocations.value),
                                        statistic=cfg.statistic, lamda=cfg.lamda, owl_m=cfg.owl_m, method=cfg.method,
                                        model=lab.model if weights else None,
                                        cache_config={"fingerprint": lab.fingerprint}, memo=self._memo)
            self.comparison = comparison_state(self.compared, cfg.sparsity, cfg.alpha, statistic=cfg.statistic,
                                               lamda=cfg.lamda, owl_m=cfg.owl_m) if self.compared else None
        except Exception as exc:  # noqa: BLE001
            self._say(f"error: {exc}", error=True)
            return
        clamped = {a: m for a, m in self.state["warnings"].items() if m}
        loaded = self._loaded
        self._say(f"{loaded.model}, statistics from {loaded.calib} {loaded.nsamples} x {loaded.seqlen}: "
                  f"{len(self.state['rid'])} blocks; " + (
            "clamped and re-balanced: " + ", ".join(clamped) if clamped else "all ratios within [0, 0.99]")
                  + f"; {len(self.compared)} model(s) side by side")
        self._show(self.plot, self.table, explorer_figure(self.state), explorer_table(self.state).round(4))
        if self.comparison is None:
            self._show(self.compare_plot, self.compare_table, None, None)
        else:
            self._show(self.compare_plot, self.compare_table, comparison_figure(self.comparison),
                       self.comparison["table"].round(3))

    @staticmethod
    def _show(plot_area, table_area, fig, table) -> None:
        from IPython.display import clear_output, display
        import matplotlib.pyplot as plt
        with plot_area:
            clear_output(wait=True)
            if fig is not None:
                display(fig)
                plt.close(fig)
        with table_area:
            clear_output(wait=True)
            if table is not None:
                display(table)

    def prune_and_evaluate(self) -> dict | None:
        """Prune with the 'prune with' allocator at the current settings and evaluate (Lab.run, cached)."""
        from IPython.display import clear_output, display
        try:
            cfg = self.config()
        except ValueError as exc:
            self._say(f"error: {exc}", error=True)
            return None
        result = self._job(f"pruning {cfg.model} with {cfg.method} + {cfg.allocation} at {cfg.sparsity:.2f} and "
                           "evaluating", lambda: run_auto(self._lab(cfg), cfg))
        if result is None:
            return None
        ppl = result["perplexity"]
        pick = result.get("allocation_selection", {}).get("pick")   # what allocation "auto" chose
        allocation = cfg.allocation if pick is None else f"auto: {pick['allocation']}"
        alpha = cfg.resolved_alpha() if pick is None else pick["alpha"]
        row = {"model": cfg.model, "method": cfg.method, "allocation": allocation, "sparsity": cfg.sparsity,
               "alpha": alpha, "achieved": result["achieved_sparsity"]["overall"]}
        for src, v in ppl["pruned"].items():
            row[f"{src} dense"], row[f"{src} pruned"] = ppl["dense"][src], v
        self.results.append(row)
        # DLP's against-depth warning (and any other the run recorded) is shown where the person looks
        cautions = "".join(f"; warning: {w}" for w in result.get("warnings", []))
        self._say(f"{cfg.method} + {allocation}: achieved {row['achieved']:.4f}; perplexity "
                  + ", ".join(f"{s}: {ppl['dense'][s]:.2f} -> {v:.2f}" for s, v in ppl["pruned"].items())
                  + f" ({self.last_job_seconds:.1f} s){cautions}")
        with self.history:
            clear_output(wait=True)
            display(pd.DataFrame(self.results).round(4))
        self.tabs.selected_index = 2
        return result

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)


NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "14_rid_explorer.ipynb"


def explorer_notebook(folder: str | Path, profile: str = "default") -> Path:
    """A working copy of notebook 14 in `folder` with its parameters cell set to `profile` and no
    outputs; an existing copy is kept as it is (the person's edits). Its autosaves land in `folder`,
    never in the tracked notebook. Returns the copy's path."""
    from .experiment import PROFILES
    if profile not in PROFILES:
        raise ValueError(f"profile = {profile!r} is not allowed; allowed: {', '.join(PROFILES)}")
    folder = Path(folder)
    dest = folder / (NOTEBOOK.name if profile == "default" else f"{NOTEBOOK.stem}_{profile}.ipynb")
    if dest.exists():
        return dest
    nb = json.loads(NOTEBOOK.read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{NOTEBOOK} has {len(cells)} cells tagged 'parameters'; expected one")
    source = "".join(cells[0]["source"])
    new, n = re.subn(r"^profile\s*=.*$", f"profile = {profile!r}", source, count=1, flags=re.M)
    if n != 1:
        raise ValueError(f"{NOTEBOOK}'s parameters cell sets no `profile = ...`")
    cells[0]["source"] = new.splitlines(keepends=True)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    folder.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(nb, indent=1) + "\n")
    return dest
