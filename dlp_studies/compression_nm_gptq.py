"""Appendix E.2 and E.4: mixed N:M (Table 15) and GPTQ after pruning (Table 17, Figure 6).

The paper's numbers, the per-profile grids, the runs (through `dlp_lib.compression`) and one
tested verdict per claim.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from dlp_lib.compression.mixed_nm import grid_has_room
from dlp_lib.runs.nm_gptq import UNQUANTIZED, mixed_nm_result, quantized_result
from dlp_lib.scores import NMPattern

from .verdicts import (A_BETTER, B_BETTER, FAILS, HOLDS, NOISE, NOT_TESTED, WITHIN_NOISE, compare, finish,
                       fmt_value, one_seed_why, row, tally_comparisons)

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
                  seeds=(0, 1), overrides=dict()),
    # smollm2-135m on 2 CPU cores: five patterns with Wanda (1:4, where the grid has no room; 2:4
    # and 4:8 at the same density; 3:4 and 7:8, where DLP's room comes from dense blocks, N_l = M),
    # Table 17 at 16/4/3 bits x 3 rows (8 bits is nearly lossless), per-row grids,
    # with a smaller calibration (8 x 512) and evaluation (8 x 512 tokens of one text) than the
    # other notebooks: every GPTQ pass is a full sequential calibration pass, like SparseGPT's
    "default": dict(nm=dict(patterns=("1:4", "2:4", "3:4", "4:8", "7:8"), allocations=("uniform", "dlp"), method="wanda",
                            alphas=(None, 0.2)),
                    gptq=dict(bits=(16, 4, 3), rows=("dense", "uniform", "dlp"), sparsity=0.7,
                              method="sparsegpt", group_size=None, mode="gptq", joint_bits=()),
                    seeds=(0, 1, 2), overrides=dict(nsamples=8, neval=8)),
    # seeds: the calibration seeds of the two settings whose measured seed spread judges every one-seed gap
    # (uniform 2:4 with Wanda for Table 15, SparseGPT + DLP at 70% for Table 17)
    # the paper: every pattern of Table 15, every bit width of Table 17
    "paper": dict(nm=dict(patterns=("1:4", "2:4", "3:4", "1:8", "2:8", "3:8", "4:8", "5:8", "6:8", "7:8"),
                          allocations=("uniform", "dlp"), method="wanda", alphas=(None, 0.2)),
                  gptq=dict(bits=(16, 8, 4, 3), rows=("dense", "uniform", "dlp"), sparsity=0.7, method="sparsegpt",
                            group_size=None, mode="gptq", joint_bits=()),
                  seeds=(0, 1, 2), overrides=dict()),
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
    for kind in rows:  # row-major: each pruned model is made once for all bit widths
        cfg = base.replace(method=method, allocation="uniform" if kind == "dense" else kind, sparsity=sparsity, nm=None)
        for b in bits:
            out[(b, kind)] = quantized_result(lab, cfg, b, group_size, mode, dense=kind == "dense")
    return out


def table17_frame(results: dict, labels) -> pd.DataFrame:
    recs = []
    for (b, kind), r in results.items():
        rec = {"bits": b, "row": kind}
        paper_row = TABLE17.get(b, {}).get(kind)
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


def figure6(results: dict, label: str, *, protocol: str, paper_dataset: str = "wikitext2"):
    """Figure 6 analogue: perplexity vs bits for dense / Uniform / DLP, the paper's panel beside ours;
    protocol: the run's model, method, calibration and evaluation (`report.protocol`)."""
    import matplotlib.pyplot as plt

    from dlp_studies.plots import PALETTE
    colors = {"dense": "#1f77b4", **PALETTE}
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    d = TABLE17_DATASETS.index(paper_dataset)
    for kind in ("dense", "uniform", "dlp"):
        pts = sorted((b, v[kind][d]) for b, v in TABLE17.items())
        axes[0].plot([b for b, _ in pts], [v for _, v in pts], marker="o", label=kind, color=colors.get(kind))
        ours = sorted((b, r["perplexity"][label]) for (b, rr), r in results.items() if rr == kind)
        if ours:
            axes[1].plot([b for b, _ in ours], [v for _, v in ours], marker="o", label=kind, color=colors.get(kind))
    axes[0].set_title(f"paper: LLaMA1-7B, {paper_dataset} (Table 17)")
    axes[1].set_title(f"ours: {protocol}", fontsize=9)
    fig.suptitle("Table 17 / Figure 6: GPTQ after 70% SparseGPT pruning, dense / Uniform / DLP")
    for ax in axes:
        ax.set_xlabel("weight bits (16 = not quantized)")
        ax.set_ylabel("perplexity")
        ax.set_yscale("log")
        ax.set_xticks([3, 4, 8, 16])
        ax.legend()
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- verdicts
def spread_settings(base) -> dict:
    """The two settings whose seed spread (`report.seed_spread` over the grid's seeds) judges every
    one-seed gap of the notebook: uniform 2:4 with Wanda (Table 15) and SparseGPT + DLP at 70% (Table 17)."""
    return {"Table 15": base.replace(method="wanda", allocation="uniform", sparsity=0.5, nm="2:4"),
            "Table 17": base.replace(method="sparsegpt", allocation="dlp", sparsity=0.7, nm=None)}


def nm_row(pattern: str, label: str, uniform: float, dlp: float, *, same_as_uniform: bool, achieved_density: float,
           rel_spread: float | None = None) -> tuple[dict, dict | None]:
    """One DLP row of Table 15 against uniform N:M at the same kept count: (detail row, the `compare`
    result, or None where nothing was tested). No room (N = 1: every block needs N_l >= 1, and N_l = 0, a
    block pruned away, is not allowed) and plans that round back to uniform are not tested."""
    p = NMPattern.parse(pattern)
    paper = TABLE15["uniform"].get(pattern), TABLE15["dlp"].get(pattern)
    paper_cell = f"{paper[0]:g} -> {paper[1]:g}" if paper[0] is not None else ""
    claim = f"{pattern} [{label}]: DLP's mixed N:M beats uniform (Table 15)"
    if not grid_has_room(p):
        return row(claim, f"no room: N_l = 0 not allowed, so DLP = uniform by construction (density "
                   f"{achieved_density:.4f}, ppl {fmt_value(uniform)})", paper_cell, NOT_TESTED), None
    if same_as_uniform:
        return row(claim, f"DLP's ratios round to the uniform pattern (spread under one N step): same model, "
                   f"ppl {fmt_value(uniform)}", paper_cell, NOT_TESTED), None
    c = compare([dlp], [uniform], rel_spread=rel_spread)
    return row(claim, f"DLP {fmt_value(dlp)} vs uniform {fmt_value(uniform)} ({dlp / uniform - 1:+.1%})", paper_cell,
               tally_comparisons([c["verdict"]])), c


def gptq_rows(ppl: dict, *, rel_spread: float | None = None) -> tuple[list[dict], list[dict], dict]:
    """Table 17 from {(bits, row): perplexity}: DLP against Uniform at every QUANTIZED bit width (the
    16-bit row is the pruned model before quantization: reported, not counted), and 4-bit DLP against
    unquantized DLP beside GPTQ's own damage on the dense model (dense 16-bit vs dense 4-bit).
    Returns (rows, the quantized widths' `compare` results, {"dlp_4bit_gap", "dense_4bit_gap", "compare",
    "holds"} for the 4-bit claim, empty without 4 and 16 bits)."""
    rows_, cs, info = [], [], {}
    for b in sorted({b for b, _ in ppl}, reverse=True):
        if (b, "uniform") not in ppl or (b, "dlp") not in ppl:
            continue
        d, u = ppl[(b, "dlp")], ppl[(b, "uniform")]
        c = compare([d], [u], rel_spread=rel_spread)
        pp = TABLE17.get(b)
        paper_cell = f"DLP {pp['dlp'][0]:g} vs Uniform {pp['uniform'][0]:g}" if pp else ""
        if b == UNQUANTIZED:
            rows_.append(row("16-bit (before quantization): DLP beats Uniform",
                             f"DLP {fmt_value(d)} vs Uniform {fmt_value(u)}", paper_cell, tally_comparisons([c["verdict"]])))
            continue
        cs.append(c)
        rows_.append(row(f"{b}-bit: DLP beats Uniform after GPTQ (Table 17)",
                         f"DLP {fmt_value(d)} vs Uniform {fmt_value(u)} ({d / u - 1:+.1%})", paper_cell,
                         tally_comparisons([c["verdict"]])))
    if (UNQUANTIZED, "dlp") in ppl and (4, "dlp") in ppl:
        gap = ppl[(4, "dlp")] / ppl[(UNQUANTIZED, "dlp")] - 1
        paper_gap = TABLE17[4]["dlp"][0] / TABLE17[16]["dlp"][0] - 1
        paper_dense = TABLE17[4]["dense"][0] / TABLE17[16]["dense"][0] - 1
        dense = (ppl[(4, "dense")] / ppl[(UNQUANTIZED, "dense")] - 1
                 if (4, "dense") in ppl and (UNQUANTIZED, "dense") in ppl else None)
        c = compare([ppl[(4, "dlp")]], [ppl[(UNQUANTIZED, "dlp")]], rel_spread=rel_spread)
        # "nearly identical": within noise, or no further from 16 bits than 1.5x the paper's own gap
        holds = (NOISE if not c["noise_known"] else
                 HOLDS if c["verdict"] != B_BETTER or gap <= 1.5 * paper_gap else FAILS)
        dense_txt = f"; dense {dense:+.1%} (GPTQ's own damage)" if dense is not None else ""
        rows_.append(row("4-bit DLP nearly identical to 16-bit DLP (Table 17)", f"DLP {gap:+.1%}{dense_txt}",
                         f"DLP {paper_gap:+.1%}; dense {paper_dense:+.1%}", holds))
        info = {"dlp_4bit_gap": gap, "dense_4bit_gap": dense, "compare": c, "holds": holds}
    return rows_, cs, info


def appendix_e_verdict(nm: Sequence[tuple[dict, dict | None]], ppl17: dict, *, what: str = "",
                       rel_spread: float | None = None, notes: Sequence[str] = ()) -> dict:
    """Notebook 11's headline: DLP's budgets help mixed N:M (Table 15) and survive GPTQ (Table 17).
    nm: the `nm_row` results; ppl17: {(bits, row): perplexity}, its one-seed gaps judged with the noise
    rule against rel_spread (Table 17's measured seed spread; None: cannot tell)."""
    g_rows, g_cs, info = gptq_rows(ppl17, rel_spread=rel_spread)
    nm_cs = [c for _, c in nm if c is not None]
    calls = [c["verdict"] for c in nm_cs + g_cs]
    if info:   # the 4-bit claim as a call: holds = DLP's side of the claim wins
        calls.append({HOLDS: A_BETTER, FAILS: B_BETTER}.get(info["holds"], WITHIN_NOISE))
    holds = tally_comparisons(calls)
    no_room = sorted({r["claim"].split(" ")[0] for r, c in nm if c is None and r["ours"].startswith("no room")})
    why = [f"N:M: DLP better at {sum(c['verdict'] == A_BETTER for c in nm_cs)} of {len(nm_cs)} with room"
           + (f" ({', '.join(no_room)} none)" if no_room else ""),
           f"GPTQ: better at {sum(c['verdict'] == A_BETTER for c in g_cs)} of {len(g_cs)} widths"]
    if info:
        why.append(f"4-bit DLP {info['dlp_4bit_gap']:+.0%}" + (
            f", dense {info['dense_4bit_gap']:+.0%} (GPTQ's own)" if info["dense_4bit_gap"] is not None else ""))
    unknown = one_seed_why(*nm_cs, *g_cs, *([info["compare"]] if info else []))
    return finish(holds, f"{what}DLP budgets for N:M and GPTQ (Tables 15, 17)", "; ".join(why + [unknown] * bool(unknown)),
                  [r for r, _ in nm] + g_rows, notes, gptq=info)
