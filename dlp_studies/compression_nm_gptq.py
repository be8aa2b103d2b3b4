"""Appendix E.2 and E.4: mixed N:M (Table 15) and GPTQ after pruning (Table 17, Figure 6).

The paper's numbers, the per-profile grids, the runs (through `dlp_lib.compression`) and one
tested verdict per claim.
"""
from __future__ import annotations

import pandas as pd

from dlp_lib.compression.mixed_nm import grid_has_room
from dlp_lib.compression.nm_gptq_results import UNQUANTIZED, mixed_nm_result, quantized_result
from dlp_lib.scores import NMPattern

# ---------------------------------------------------------------- the paper's numbers (LLaMA1-7B)
# Table 15: WikiText perplexity, mixed N:M (N kept of M), Wanda (the paper's default method)
TABLE15 = {
    "uniform": {"1:4": 7225.68, "2:4": 11.55, "3:4": 6.19, "1:8": 29790.41, "2:8": 3485.97, "3:8": 42.86,
                "4:8": 8.56, "5:8": 6.61, "6:8": 6.02, "7:8": 5.74},
    "dlp": {"1:4": 30.44, "2:4": 7.32, "3:4": 5.91, "1:8": 4990.69, "2:8": 83.50, "3:8": 10.42,
            "4:8": 7.19, "5:8": 6.27, "6:8": 5.87, "7:8": 5.71},
}

# Table 17: bits -> row -> (WikiText, PTB, C4); SparseGPT at 70% for Uniform / DLP ("ours")
TABLE17 = {
    16: {"dense": (5.68, 31.50, 7.08), "uniform": (26.49, 298.15, 24.57), "dlp": (18.38, 182.69, 17.72)},
    8: {"dense": (5.68, 31.46, 7.08), "uniform": (26.50, 298.70, 24.51), "dlp": (18.38, 183.25, 17.71)},
    4: {"dense": (5.79, 32.16, 7.23), "uniform": (27.08, 315.35, 24.93), "dlp": (18.92, 178.28, 18.13)},
    3: {"dense": (6.23, 36.38, 8.02), "uniform": (30.73, 428.32, 29.92), "dlp": (21.56, 243.98, 20.59)},
}
TABLE17_DATASETS = ("wikitext2", "ptb", "c4")
# Table 3 (SparseGPT, 70%, WikiText) disagrees with Table 17's 16-bit rows
TABLE3_SPARSEGPT_70 = {"uniform": 25.38, "dlp": 17.76}

# ---------------------------------------------------------------- grids
GRIDS = {
    # seconds on the tiny random model
    "smoke": dict(nm=dict(patterns=("2:4", "3:4", "7:8"), allocations=("uniform", "dlp"), method="wanda",
                          alphas=(None, 0.2)),
                  gptq=dict(bits=(16, 8, 4, 3), rows=("dense", "uniform", "dlp"), sparsity=0.7, method="sparsegpt",
                            group_size=None, mode="gptq", joint_bits=(4,)),
                  overrides=dict()),
    # smollm2-135m on 2 CPU cores: five patterns with Wanda (1:4, where the grid has no room; 2:4
    # and 4:8 at the same density; 3:4 and 7:8, where DLP's room comes from dense blocks, N_l = M),
    # Table 17 at 16/4/3 bits x 3 rows (8 bits is nearly lossless), per-row grids,
    # with a smaller calibration (8 x 512) and evaluation (8 x 512 tokens of one text) than the
    # other notebooks: every GPTQ pass is a full sequential calibration pass, like SparseGPT's
    "default": dict(nm=dict(patterns=("1:4", "2:4", "3:4", "4:8", "7:8"), allocations=("uniform", "dlp"), method="wanda",
                            alphas=(None, 0.2)),
                    gptq=dict(bits=(16, 4, 3), rows=("dense", "uniform", "dlp"), sparsity=0.7,
                              method="sparsegpt", group_size=None, mode="gptq", joint_bits=()),
                    overrides=dict(nsamples=8, neval=8)),
    # the paper: every pattern of Table 15, every bit width of Table 17
    "paper": dict(nm=dict(patterns=("1:4", "2:4", "3:4", "1:8", "2:8", "3:8", "4:8", "5:8", "6:8", "7:8"),
                          allocations=("uniform", "dlp"), method="wanda", alphas=(None, 0.2)),
                  gptq=dict(bits=(16, 8, 4, 3), rows=("dense", "uniform", "dlp"), sparsity=0.7, method="sparsegpt",
                            group_size=None, mode="gptq", joint_bits=()),
                  overrides=dict()),
}


def grid(profile: str) -> dict:
    if profile not in GRIDS:
        raise ValueError(f"Unknown profile {profile!r}; allowed: {', '.join(GRIDS)}")
    return GRIDS[profile]


# ---------------------------------------------------------------- runs
def allocation_label(allocation: str, alpha: float | None) -> str:
    return allocation if alpha is None or allocation != "dlp" else f"dlp alpha={alpha:g}"


def table15(lab, base, patterns, allocations=("uniform", "dlp"), method="wanda", alphas=(None,)) -> dict:
    """{(pattern, allocation label): mixed_nm_result}. alphas: DLP's alpha (None: Table 19's for the
    pattern's sparsity; the paper does not say which alpha Table 15 used)."""
    out = {}
    for p in patterns:
        for a in allocations:
            for alpha in (alphas if a == "dlp" else (None,)):
                out[(p, allocation_label(a, alpha))] = mixed_nm_result(lab, base, p, a, method, alpha=alpha)
    return out


def table15_frame(results: dict, label: str) -> pd.DataFrame:
    rows = []
    for (p, a), r in results.items():
        rows.append({"pattern": p, "allocation": a, "alpha": r["alpha"],
                     "paper": TABLE15.get(r["allocation"], {}).get(p),
                     "ours": r["perplexity"][label], "achieved density": r["achieved_density"],
                     "counted density": r["compliance"]["density"],
                     "every group <= N_l": r["compliance"]["blocks_at_most_n"],
                     "target density": NMPattern.parse(p).n_kept / NMPattern.parse(p).m,
                     "per-block N": " ".join(map(str, r["n_kept"])), "same as uniform": r["same_as_uniform"],
                     "grid has room": r["room"]})
    return pd.DataFrame(rows).set_index(["pattern", "allocation"])


def table17(lab, base, bits, rows=("dense", "uniform", "dlp"), sparsity=0.7, method="sparsegpt",
            group_size=None, mode="gptq") -> dict:
    """{(bits, row): quantized_result}; row dense = the unpruned model."""
    out = {}
    for row in rows:  # row-major: each pruned model is made once for all bit widths
        cfg = base.replace(method=method, allocation="uniform" if row == "dense" else row, sparsity=sparsity, nm=None)
        for b in bits:
            out[(b, row)] = quantized_result(lab, cfg, b, group_size, mode, dense=row == "dense")
    return out


def table17_frame(results: dict, labels) -> pd.DataFrame:
    recs = []
    for (b, row), r in results.items():
        rec = {"bits": b, "row": row}
        paper_row = TABLE17.get(b, {}).get(row)
        for i, lab in enumerate(labels):
            rec[f"ours {lab}"] = r["perplexity"][lab]
        if paper_row:
            rec.update({f"paper {d}": v for d, v in zip(TABLE17_DATASETS, paper_row)})
        bud = r["budgets"]
        rec["zeros kept"] = f"{bud['pruned_still_zero']}/{bud['pruned']}" if "pruned" in bud else "-"
        rec["kept rounded to 0"] = bud.get("kept_rounded_to_zero", 0)
        rec["achieved sparsity"] = r["achieved_sparsity"]["overall"]
        recs.append(rec)
    return pd.DataFrame(recs).set_index(["bits", "row"]).sort_index(level=0, ascending=False, sort_remaining=False)


def figure6(results: dict, label: str, *, paper_dataset: str = "wikitext2"):
    """Figure 6 analogue: perplexity vs bits for dense / Uniform / DLP, the paper's panel beside ours."""
    import matplotlib.pyplot as plt

    from dlp_studies.plots import PALETTE
    colors = {"dense": "#1f77b4", **PALETTE}
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    d = TABLE17_DATASETS.index(paper_dataset)
    for row in ("dense", "uniform", "dlp"):
        pts = sorted((b, v[row][d]) for b, v in TABLE17.items())
        axes[0].plot([b for b, _ in pts], [v for _, v in pts], marker="o", label=row, color=colors.get(row))
        ours = sorted((b, r["perplexity"][label]) for (b, rr), r in results.items() if rr == row)
        if ours:
            axes[1].plot([b for b, _ in ours], [v for _, v in ours], marker="o", label=row, color=colors.get(row))
    axes[0].set_title(f"paper: LLaMA1-7B, {paper_dataset} (Table 17)")
    axes[1].set_title(f"ours: {label}")
    for ax in axes:
        ax.set_xlabel("weight bits (16 = not quantized)")
        ax.set_ylabel("perplexity")
        ax.set_yscale("log")
        ax.set_xticks([3, 4, 8, 16])
        ax.legend()
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- verdicts
TOLERANCE = 0.02  # relative perplexity gap treated as noise (one seed; no spread measured)


def nm_verdict(pattern: str, uniform: float, dlp: float, *, same_as_uniform: bool, achieved_density: float,
               tol: float = TOLERANCE) -> str:
    """One pattern of Table 15: does DLP's mixed N:M beat uniform N:M at the same kept count?"""
    p = NMPattern.parse(pattern)
    paper = TABLE15["uniform"].get(pattern), TABLE15["dlp"].get(pattern)
    ref = f" (paper {paper[0]} -> {paper[1]})" if paper[0] is not None else ""
    if not grid_has_room(p):
        return (f"{pattern}: no room on the grid (N_l >= 1 in every block and the total of {p.n_kept}:{p.m} force "
                f"every block to N = {p.n_kept}): DLP = uniform by construction, density {achieved_density:.4f}; "
                f"the paper's gain{ref} would need blocks with N_l = 0 (a block pruned away entirely), which "
                "mixed N:M does not do")
    if same_as_uniform:
        return (f"{pattern}: DLP's ratios round to the uniform pattern (spread under one N step); same model, "
                f"perplexity {uniform:.2f}{ref}: not tested at this alpha")
    gap = dlp / uniform - 1
    if abs(gap) <= tol:
        return f"{pattern}: DLP {dlp:.2f} vs uniform {uniform:.2f} ({gap:+.1%}): within noise (+-{tol:.0%}){ref}"
    if gap < 0:
        return f"{pattern}: DLP {dlp:.2f} beats uniform {uniform:.2f} ({gap:+.1%}): reproduces{ref}"
    return f"{pattern}: DLP {dlp:.2f} is worse than uniform {uniform:.2f} ({gap:+.1%}): does not reproduce{ref}"


def gptq_verdict(ppl: dict, *, tol: float = TOLERANCE) -> list[str]:
    """Table 17's two claims from {(bits, row): perplexity}: (1) DLP beats Uniform at every bit
    width; (2) 4-bit DLP is nearly identical to unquantized DLP (paper: +2.9%)."""
    out = []
    bits = sorted({b for b, _ in ppl}, reverse=True)
    wins, ties, losses = [], [], []
    for b in bits:
        if (b, "uniform") in ppl and (b, "dlp") in ppl:
            gap = ppl[(b, "dlp")] / ppl[(b, "uniform")] - 1
            (ties if abs(gap) <= tol else wins if gap < 0 else losses).append(f"{b}-bit {gap:+.1%}")
    if wins or ties or losses:
        n = len(wins) + len(ties) + len(losses)
        if not losses and not ties:
            word = "holds"
        elif not losses and wins:
            word = "holds where the gap exceeds noise, within noise elsewhere"
        elif not losses:
            word = "within noise at every bit width (not shown here)"
        elif not wins:
            word = "does not reproduce"
        else:
            word = "partly holds"
        out.append(f"DLP beats Uniform after quantization: {word} ({len(wins)}/{n} better: "
                   f"{', '.join(wins + ties + losses)}; DLP/Uniform - 1)")
    if (UNQUANTIZED, "dlp") in ppl and (4, "dlp") in ppl:
        gap = ppl[(4, "dlp")] / ppl[(UNQUANTIZED, "dlp")] - 1
        paper_gap = TABLE17[4]["dlp"][0] / TABLE17[16]["dlp"][0] - 1
        word = "holds" if gap <= max(2 * tol, 1.5 * paper_gap) else "does not reproduce"
        out.append(f"4-bit DLP is nearly the unquantized DLP: {word} ({gap:+.1%}; paper {paper_gap:+.1%}; "
                   f"threshold {max(2 * tol, 1.5 * paper_gap):.1%})")
    return out
