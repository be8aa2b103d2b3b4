"""The rules that turn the notebooks' results into verdicts, one small function per claim.

Every comparison between two allocations (or two statistics, two alphas, ...) goes through
`compare`, so all notebooks use one definition of "within noise":

    gap = mean(a) - mean(b)
    se  = standard error of that difference (unpaired: sqrt(var_a/n_a + var_b/n_b), sample variances)
    spread = the larger of the two samples' ranges (max - min over the seeds)
    within noise  <=>  |gap| <= max(2 se, spread)

With one value per side (one calibration seed) there is no noise estimate: se = spread = 0, any
non-zero gap decides, and the result says `single_seed` so that the verdict text states it.
Every verdict function returns a dict with at least "text" (the sentence the notebook prints) and
"holds" (one of HOLDS, PARTLY, FAILS, NOISE, NOT_TESTED).
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

HOLDS, PARTLY, FAILS, NOISE, NOT_TESTED = "holds", "holds only partly", "does not hold", "within noise", "not tested"
A_BETTER, B_BETTER, WITHIN_NOISE = "a better", "b better", "within noise"
COLLAPSE_FACTOR = 50.0   # pruned perplexity above this many times the dense one: the model has collapsed
SIMILAR_TREND_RHO = 0.5  # Spearman correlation of two per-block profiles above which their trends are "similar"
DEPTH_TREND_RHO = 0.3    # Spearman(depth, ratio) above which sparsity "rises with depth"
FLAT_CV = 0.05           # coefficient of variation of the block statistic below which the RID is "nearly flat"


# ------------------------------------------------------------------------------------ noise

def _as_sample(values, name: str) -> np.ndarray:
    x = np.atleast_1d(np.asarray(values, dtype=float))
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be a non-empty sequence of finite numbers, got {values!r}")
    return x


def _decide(gap: float, noise: float, lower_is_better: bool) -> str:
    if abs(gap) <= noise:
        return WITHIN_NOISE
    return A_BETTER if (gap < 0) == lower_is_better else B_BETTER


def compare(a_values, b_values, *, lower_is_better: bool = True) -> dict:
    """Compare two samples (one value per calibration seed; perplexity: lower is better).

    Returns {"gap": mean(a) - mean(b), "se": standard error of the gap, "spread": larger range of
    the two samples, "noise": max(2 se, spread), "mean_a", "mean_b", "n_a", "n_b",
    "single_seed": True when either side has one value, "verdict": "a better" | "b better" |
    "within noise"}.
    """
    a, b = _as_sample(a_values, "a_values"), _as_sample(b_values, "b_values")
    var_a = a.var(ddof=1) if a.size > 1 else 0.0
    var_b = b.var(ddof=1) if b.size > 1 else 0.0
    gap = float(a.mean() - b.mean())
    se = float(math.sqrt(var_a / a.size + var_b / b.size))
    spread = float(max(np.ptp(a), np.ptp(b)))
    noise = max(2.0 * se, spread)
    return {"gap": gap, "se": se, "spread": spread, "noise": noise, "mean_a": float(a.mean()),
            "mean_b": float(b.mean()), "n_a": int(a.size), "n_b": int(b.size),
            "single_seed": bool(min(a.size, b.size) < 2), "verdict": _decide(gap, noise, lower_is_better)}


def compare_means(mean_a: float, se_a: float, mean_b: float, se_b: float, *, lower_is_better: bool = True) -> dict:
    """`compare` for two estimates that come with their own standard errors (e.g. accuracies over
    n examples): within noise <=> |gap| <= 2 sqrt(se_a^2 + se_b^2). Same keys as `compare`."""
    if se_a < 0 or se_b < 0:
        raise ValueError(f"standard errors must be >= 0, got {se_a}, {se_b}")
    gap, se = float(mean_a - mean_b), float(math.sqrt(se_a ** 2 + se_b ** 2))
    return {"gap": gap, "se": se, "spread": 0.0, "noise": 2 * se, "mean_a": float(mean_a), "mean_b": float(mean_b),
            "n_a": 1, "n_b": 1, "single_seed": False, "basis": "stderr",
            "verdict": _decide(gap, 2 * se, lower_is_better)}


def outcome(c: dict, a: str, b: str, *, digits: int = 4) -> str:
    """One phrase for a `compare` result: 'DLP better than OWL by 12.3 (noise 4.5, 3 seeds)'."""
    n = min(c["n_a"], c["n_b"])
    if c.get("basis") == "stderr":
        noise = f"noise {c['noise']:.{digits}g} = 2 stderr of the difference"
    elif max(c["n_a"], c["n_b"]) < 2:
        noise = "one seed: no noise estimate"
    elif c["single_seed"]:
        noise = f"noise {c['noise']:.{digits}g} from {max(c['n_a'], c['n_b'])} seeds on one side, one seed on the other"
    else:
        noise = f"noise {c['noise']:.{digits}g}, {n} seeds"
    if c["verdict"] == WITHIN_NOISE:
        return f"{a} and {b} within noise (gap {c['gap']:+.{digits}g}; {noise})"
    win, lose = (a, b) if c["verdict"] == A_BETTER else (b, a)
    return f"{win} better than {lose} by {abs(c['gap']):.{digits}g} ({noise})"


def _says(holds: str) -> str:
    """The verb phrase for a verdict: 'holds', 'does not hold', 'is within noise (not established)'."""
    return {NOISE: "is within noise (not established)", NOT_TESTED: "is not tested"}.get(holds, holds)


def _tally(n_yes: int, n: int) -> str:
    return NOT_TESTED if n == 0 else HOLDS if n_yes == n else FAILS if n_yes == 0 else PARTLY


def tally_comparisons(verdicts: Sequence[str]) -> str:
    """A claim "a beats b" over several comparisons: holds when a wins each, within noise when none is
    decided, does not hold when b wins every decided one, partly otherwise."""
    verdicts = list(verdicts)
    wins, losses = verdicts.count(A_BETTER), verdicts.count(B_BETTER)
    if not verdicts:
        return NOT_TESTED
    if wins == len(verdicts):
        return HOLDS
    if wins == 0 and losses == 0:
        return NOISE
    return FAILS if wins == 0 else PARTLY


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); nan when either side is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"spearman needs two sequences of equal length >= 2, got {x.size} and {y.size}")

    def rank(v):
        order = np.argsort(v, kind="mergesort")
        r = np.empty(v.size)
        r[order] = np.arange(v.size, dtype=float)
        for u in np.unique(v):  # ties: average rank
            r[v == u] = r[v == u].mean()
        return r

    rx, ry = rank(x), rank(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])



# ------------------------------------------------------------------------------------ 00 / 04

def ordering_verdict(ppl: Mapping[str, float], *, order=("dlp", "owl", "uniform"), what: str = "") -> dict:
    """Paper Table 3's ordering DLP < OWL < Uniform (perplexity, one run each)."""
    vals = [ppl[a] for a in order]
    holds = all(x < y for x, y in zip(vals, vals[1:]))
    best = min(ppl, key=ppl.get)
    ratio = ppl["uniform"] / ppl["dlp"]
    text = (f"{what}DLP {ppl['dlp']:.4g}, OWL {ppl['owl']:.4g}, Uniform {ppl['uniform']:.4g} perplexity "
            f"(Uniform/DLP {ratio:.2f}x); best: {best.upper()}. The paper's ordering "
            f"{' < '.join(a.upper() for a in order)} {'holds' if holds else 'does not hold'} "
            "(one calibration seed, no noise estimate).")
    return {"holds": HOLDS if holds else FAILS, "best": best, "text": text}


def cells_tally(cells: Sequence[Mapping[str, float]]) -> dict:
    """Over {allocation: ppl} cells: how often DLP is lowest and beats OWL, and the geometric mean
    of DLP/OWL and DLP/Uniform perplexity."""
    if not cells:
        raise ValueError("cells_tally needs at least one cell")
    return {"n": len(cells), "dlp_best": sum(min(c, key=c.get) == "dlp" for c in cells),
            "dlp_beats_owl": sum(c["dlp"] < c["owl"] for c in cells),
            "gm_dlp_owl": float(np.exp(np.mean([np.log(c["dlp"] / c["owl"]) for c in cells]))),
            "gm_dlp_uniform": float(np.exp(np.mean([np.log(c["dlp"] / c["uniform"]) for c in cells])))}


def main_results_verdict(our_cells, paper_cells, *, what: str = "") -> dict:
    """Tables 3/20/21: DLP lowest in every (method, text) cell."""
    o, p = cells_tally(our_cells), cells_tally(paper_cells)
    share = o["dlp_best"] / o["n"]
    holds = HOLDS if share == 1 else FAILS if share == 0 else PARTLY
    text = (f"{what}DLP has the lowest perplexity in {o['dlp_best']} of {o['n']} cells and beats OWL in "
            f"{o['dlp_beats_owl']}; geometric mean DLP/OWL {o['gm_dlp_owl']:.2f}x, DLP/Uniform "
            f"{o['gm_dlp_uniform']:.2f}x. Paper (same methods, Tables 20-21, {p['n']} cells): lowest in "
            f"{p['dlp_best']}, beats OWL in {p['dlp_beats_owl']}, {p['gm_dlp_owl']:.2f}x OWL, "
            f"{p['gm_dlp_uniform']:.2f}x Uniform. The claim {_says(holds)} on this model (one calibration seed, "
            "no noise estimate).")
    return {"holds": holds, "ours": o, "paper": p, "text": text}


# ------------------------------------------------------------------------------------ 01

def statistic_verdict(ppl: Mapping[str, Mapping[str, Sequence[float]]], *, dense: float,
                      sum_mean_difference: float | None = None,
                      all_statistics: Sequence[str] = ("sum", "mean", "median", "max", "var", "sd")) -> dict:
    """Table 1: the median is the best statistic F, for every method.

    ppl: {method: {statistic: [perplexity per seed]}}. A method with all six statistics is tested
    for "median best" (median against the best other statistic, `compare`); every method with the
    median and the mean gets median (paper) vs mean (released code). A method whose perplexities
    all exceed COLLAPSE_FACTOR x dense has collapsed: its ordering is reported but carries no
    signal about the claim.
    """
    lines, tested, median_ok = [], 0, 0
    per_method = {}
    for m, by_stat in ppl.items():
        means = {s: float(np.mean(v)) for s, v in by_stat.items()}
        collapsed = min(means.values()) > COLLAPSE_FACTOR * dense
        parts = []
        if set(all_statistics) <= set(by_stat):
            others = {s: v for s, v in means.items() if s != "median" and s != "sum"}  # sum == mean's plan
            rival = min(others, key=others.get)
            c = compare(by_stat["median"], by_stat[rival])
            ok = c["verdict"] != B_BETTER
            if not collapsed:
                tested += 1
                median_ok += ok
            parts.append(f"best statistic {min(means, key=means.get)}; median vs best other ({rival}): "
                         + outcome(c, "median", rival))
        mm = compare(by_stat["median"], by_stat["mean"]) if {"median", "mean"} <= set(by_stat) else None
        if mm is not None:
            parts.append("median (paper) vs mean (released code): " + outcome(mm, "median", "mean")
                         + f", mean/median {mm['mean_b'] / mm['mean_a']:.2f}x")
        if collapsed:
            parts.append(f"every statistic leaves perplexity above {COLLAPSE_FACTOR:g}x dense "
                         f"({min(means.values()):.3g} or more): the model has collapsed, so the ordering says "
                         "nothing about which F is better (the paper's Magnitude row, 3.4e3-4.7e5, is collapsed too)")
        per_method[m] = {"collapsed": collapsed, "median_vs_mean": mm}
        lines.append(f"{m}: " + "; ".join(parts) + ".")
    holds = _tally(median_ok, tested)
    head = (f"The claim that the median is the best statistic {_says(holds)}"
            + (f" (median best or within noise of the best for {median_ok} of {tested} non-collapsed method(s) "
               "with all six statistics)" if tested else " (no non-collapsed method ran all six statistics)")
            + ". ")
    if sum_mean_difference is not None:
        lines.append(f"Sum and mean give the same plan (max ratio difference {sum_mean_difference:.1e}), as the "
                     "min-max identity predicts: the paper's equal Sum and Mean columns are one experiment.")
    return {"holds": holds, "per_method": per_method, "text": head + " ".join(lines)}


# ------------------------------------------------------------------------------------ 02

def minmax_identity_error(S: Sequence[float], ratios: Sequence[float], p: float, alpha: float) -> float:
    """max |R_l - (p + 2a (n_l - mean n))| with n the min-max normalised S (SPEC identity)."""
    S, R = np.asarray(S, dtype=float), np.asarray(ratios, dtype=float)
    n = (S - S.min()) / (S.max() - S.min())
    return float(np.abs(R - (p + 2 * alpha * (n - n.mean()))).max())


def rid_verdict(S: Sequence[float], dlp_ratios: Sequence[float], owl_ratios: Sequence[float]) -> dict:
    """Empirical Study II and Figure 3: the RID is not flat; sparsity rises with depth (earlier
    blocks more important); OWL and DLP follow similar trends (Spearman of their per-block ratios
    above SIMILAR_TREND_RHO)."""
    S, dlp, owl = (np.asarray(x, dtype=float) for x in (S, dlp_ratios, owl_ratios))
    L = S.size
    depth = np.arange(L)
    cv = float(S.std() / S.mean())
    rho_dlp, rho_owl, rho_pair = spearman(depth, dlp), spearman(depth, owl), spearman(owl, dlp)
    third = max(1, L // 3)
    early, late = float(dlp[:third].mean()), float(dlp[-third:].mean())
    trend = HOLDS if rho_dlp > DEPTH_TREND_RHO and late > early else FAILS if rho_dlp < 0 else PARTLY
    similar = HOLDS if rho_pair > SIMILAR_TREND_RHO else FAILS
    text = (f"The RID is {'not flat' if cv > FLAT_CV else 'nearly flat'} (coefficient of variation of the block "
            f"statistic {cv:.3f}; flat below {FLAT_CV}). Spearman(depth, DLP ratio) = {rho_dlp:+.2f}, first third "
            f"{early:.3f} vs last third {late:.3f} mean sparsity: 'earlier layers are more important' {trend}. "
            f"'OWL and DLP follow similar trends' (Figure 3) {similar}: Spearman(OWL ratios, DLP ratios) = "
            f"{rho_pair:+.2f} (similar above {SIMILAR_TREND_RHO}; OWL against depth {rho_owl:+.2f}). "
            "Dense statistics from one calibration seed.")
    return {"holds": trend, "similar_trends": similar, "cv": cv, "spearman_depth_dlp": rho_dlp,
            "spearman_depth_owl": rho_owl, "spearman_owl_dlp": rho_pair, "early": early, "late": late,
            "text": text}


# ------------------------------------------------------------------------------------ 03

def lod_upper_bound(m: float) -> float:
    """Largest possible LOD (%) under Eq. 4: the share of non-negative scores strictly above
    m x their mean is at most 1/m (Markov's inequality), i.e. 100/m percent (capped at 100)."""
    if not (isinstance(m, (int, float)) and math.isfinite(m) and m > 0):
        raise ValueError(f"the outlier threshold M must be a finite number > 0, got {m!r}")
    return min(100.0, 100.0 / float(m))


def lod_consistency(lods: Mapping[str, float], m: float, *, source: str = "paper") -> dict:
    """Which LOD values (%) exceed what Eq. 4 allows (lod_upper_bound(m))."""
    bound = lod_upper_bound(m)
    over = {k: v for k, v in lods.items() if v > bound + 1e-9}
    if over:
        text = (f"{source}: {len(over)} of {len(lods)} LOD values exceed {bound:.1f}% ({min(over.values()):.2f}-"
                f"{max(over.values()):.2f}%), the most Eq. 4 allows for M={m:g} (Markov's inequality: at most 1/M "
                "of non-negative scores exceed M times their mean), so they cannot be per-weight fractions as "
                "defined.")
    else:
        text = f"{source}: every LOD value is at most {bound:.1f}%, as Eq. 4 requires for M={m:g}."
    return {"bound": bound, "over": over, "consistent": not over, "text": text}


def table2_verdict(lod: Mapping[str, Mapping[str, float]], ppl: Mapping[str, Mapping[str, float]], *,
                   m: float, paper_lod: Mapping[str, float]) -> dict:
    """Table 2: per method, DLP has both the highest LOD and the lowest perplexity; plus whether
    the paper's and our LOD values are possible under Eq. 4."""
    parts, ok = [], 0
    for meth in lod:
        top_lod, top_ppl = max(lod[meth], key=lod[meth].get), min(ppl[meth], key=ppl[meth].get)
        ok += top_lod == "dlp" and top_ppl == "dlp"
        parts.append(f"{meth}: LOD uniform/OWL/DLP " + "/".join(f"{lod[meth][a]:.2f}" for a in ("uniform", "owl", "dlp"))
                     + "%, perplexity " + "/".join(f"{ppl[meth][a]:.4g}" for a in ("uniform", "owl", "dlp"))
                     + f" (highest LOD {top_lod.upper()}, lowest perplexity {top_ppl.upper()})")
    holds = _tally(ok, len(lod))
    ours = lod_consistency({f"{k}/{a}": v for k, by in lod.items() for a, v in by.items()}, m, source="ours")
    theirs = lod_consistency(paper_lod, m, source="paper Table 2")
    text = (f"Table 2: DLP has both the highest LOD and the lowest perplexity for {ok} of {len(lod)} methods: the "
            f"claim {_says(holds)} (one calibration seed, no noise estimate). " + "; ".join(parts) + ". "
            + theirs["text"] + " " + ours["text"])
    return {"holds": holds, "paper_lod_possible": theirs["consistent"], "ours_lod_possible": ours["consistent"],
            "text": text}


def figure2_verdict(owl_ppl: Mapping[float, float], owl_lod: Mapping[float, float], *, dlp_ppl: float) -> dict:
    """Figure 2: OWL's perplexity depends on M; DLP (no M) against OWL at every M tried."""
    ms = sorted(owl_ppl)
    best_m = min(owl_ppl, key=owl_ppl.get)
    wins = sum(owl_ppl[k] > dlp_ppl for k in ms)
    rho = spearman([owl_lod[k] for k in ms], [owl_ppl[k] for k in ms]) if len(ms) > 2 else float("nan")
    holds = _tally(wins, len(ms))
    text = (f"Figure 2: OWL's perplexity varies by {max(owl_ppl.values()) / min(owl_ppl.values()):.2f}x over M in "
            f"{[float(k) for k in ms]} (best M {best_m:g}: {owl_ppl[best_m]:.4g}); DLP, with no M, has {dlp_ppl:.4g} "
            f"and beats OWL at {wins} of {len(ms)} M values ({_says(holds)}). Spearman(OWL LOD, OWL perplexity) over M = "
            f"{rho:.2f} (negative: more outliers kept, lower perplexity). One seed, {len(ms)}-point grid of M.")
    return {"holds": holds, "best_m": best_m, "text": text}


# ------------------------------------------------------------------------------------ 05

def sweep_verdict(ppl: Mapping[float, Mapping[str, Sequence[float]]], *, method: str = "",
                  paper: Mapping[float, Mapping[str, float]] | None = None) -> dict:
    """Table 10 / Figure 4: DLP best at high sparsity, its advantage over Uniform growing with
    sparsity. ppl: {sparsity: {allocation: [perplexity per seed]}} (several seeds where run)."""
    sp = sorted(ppl)
    rows, parts = {}, []
    for s in sp:
        by = ppl[s]
        rival = min(("uniform", "owl"), key=lambda a: np.mean(by[a]))
        c = compare(by["dlp"], by[rival])
        ratio = float(np.mean(by["uniform"]) / np.mean(by["dlp"]))
        rows[s] = {"rival": rival, "compare": c, "uniform/dlp": ratio,
                   "owl/dlp": float(np.mean(by["owl"]) / np.mean(by["dlp"]))}
        p = ""
        if paper and s in paper:
            p = f"; paper Uniform/DLP {paper[s]['uniform'] / paper[s]['dlp']:.2f}, OWL/DLP {paper[s]['owl'] / paper[s]['dlp']:.2f}"
        parts.append(f"{s:.0%}: {outcome(c, 'DLP', rival.upper())}; Uniform/DLP {ratio:.2f}, OWL/DLP "
                     f"{rows[s]['owl/dlp']:.2f}{p}")
    top = rows[sp[-1]]["compare"]["verdict"]
    holds = HOLDS if top == A_BETTER else NOISE if top == WITHIN_NOISE else FAILS
    adv = [rows[s]["uniform/dlp"] for s in sp]
    grows = len(adv) > 1 and all(b > a for a, b in zip(adv, adv[1:]))
    one = " (one calibration seed, no noise estimate)" if rows[sp[-1]]["compare"]["single_seed"] else ""
    text = (f"{method}: " + "; ".join(parts) + f". At {sp[-1]:.0%} 'DLP is best' {_says(holds)}{one}; its advantage over Uniform "
            f"{'grows' if grows else 'does not grow'} monotonically with sparsity over the {len(sp)}-point grid.")
    return {"holds": holds, "grows": grows, "rows": rows, "text": text}


# ------------------------------------------------------------------------------------ 06

def standing(ppl: Mapping[str, float], who: str = "dlp") -> dict:
    """`who`'s rank among the allocators (1 = lowest perplexity), the best other one and the ratio."""
    others = {a: v for a, v in ppl.items() if a != who}
    best = min(others, key=others.get)
    return {"rank": 1 + sum(v < ppl[who] for v in others.values()), "best_other": best,
            "ratio": ppl[who] / others[best]}


def baselines_verdict(ppl: Mapping[float, Mapping[str, float]], *, paper: Mapping[float, Mapping[str, float]]) -> dict:
    """Table 9: DLP lowest of all allocators above 40%; DLP beats OWL at >= 70%; Global worst."""
    claimed = [s for s in sorted(ppl) if s > 0.4]
    wins = [s for s in claimed if standing(ppl[s])["rank"] == 1]
    high = [s for s in sorted(ppl) if s >= 0.7]
    beats = [s for s in high if ppl[s]["dlp"] < ppl[s]["owl"]]
    holds = _tally(len(wins), len(claimed))
    detail = "; ".join(f"{s:.0%}: DLP {ppl[s]['dlp']:.4g}, best other {standing(ppl[s])['best_other']} "
                       f"{min(v for a, v in ppl[s].items() if a != 'dlp'):.4g} (DLP/best {standing(ppl[s])['ratio']:.2f}x"
                       + (f"; paper {standing(paper[s])['ratio']:.2f}x vs {standing(paper[s])['best_other']}" if s in paper
                          else "") + ")" for s in claimed)
    worst = {s: max(ppl[s], key=ppl[s].get) for s in sorted(ppl)}
    text = (f"DLP has the lowest perplexity of all {len(next(iter(ppl.values())))} allocators above 40%: {_says(holds)} "
            f"({detail}). DLP beats OWL at {len(beats)} of {len(high)} sparsities >= 70%. Worst: "
            + ", ".join(f"{w} at {s:.0%}" for s, w in worst.items()) + " (paper: Global everywhere). "
            f"One calibration seed, no noise estimate; sparsities run: {', '.join(f'{s:.0%}' for s in sorted(ppl))}.")
    return {"holds": holds, "text": text}


# ------------------------------------------------------------------------------------ 07

def granularity_verdict(ppl_block: float, ppl_sublayer: float, *, paper_block: float, paper_sublayer: float) -> dict:
    """Appendix C: one ratio per block beats one ratio per sublayer (one run each)."""
    gap, paper_gap = ppl_sublayer / ppl_block, paper_sublayer / paper_block
    holds = HOLDS if gap > 1 else FAILS
    text = (f"Appendix C: one ratio per block {ppl_block:.4g} vs one ratio per sublayer {ppl_sublayer:.4g} "
            f"({gap:.2f}x; paper {paper_gap:.0f}x): the claim {_says(holds)}"
            + (", with a far smaller gap than the paper's" if 1 < gap < paper_gap / 10 else "")
            + " (one calibration seed, no noise estimate).")
    return {"holds": holds, "gap": gap, "text": text}


def groups_verdict(ppl: Mapping[float, Mapping[str, Sequence[float]]], *,
                   paper: Mapping[str, Mapping[float, float]] | None = None) -> dict:
    """Appendix D: per-output beats per-layer at every sparsity, the gap growing with sparsity.
    ppl: {sparsity: {"per_output": [...], "per_layer": [...]}} (several seeds where run)."""
    sp = sorted(ppl)
    cs = {s: compare(ppl[s]["per_output"], ppl[s]["per_layer"]) for s in sp}
    wins = sum(c["verdict"] == A_BETTER for c in cs.values())
    ratio = {s: float(np.mean(ppl[s]["per_layer"]) / np.mean(ppl[s]["per_output"])) for s in sp}
    grows = len(sp) > 1 and all(ratio[b] >= ratio[a] for a, b in zip(sp, sp[1:]))
    holds = tally_comparisons([c["verdict"] for c in cs.values()])
    paper_txt = ""
    if paper:
        paper_txt = " (paper: " + ", ".join(f"{s:.0%}: {paper['per_layer'][s] / paper['per_output'][s]:.2f}x"
                                            for s in sp if s in paper["per_output"]) + ")"
    text = (f"Appendix D: per-output beats per-layer beyond noise at {wins} of {len(sp)} sparsities: the claim {_says(holds)}. "
            + "; ".join(f"{s:.0%}: {outcome(cs[s], 'per-output', 'per-layer')}, per-layer/per-output "
                        f"{ratio[s]:.2f}x" for s in sp)
            + f". The gap {'grows' if grows else 'does not grow monotonically'} with sparsity{paper_txt}.")
    return {"holds": holds, "grows": grows, "text": text}


# ------------------------------------------------------------------------------------ 08

def alpha_verdict(ppl: Mapping[float, Mapping[float, Sequence[float]]], *, paper_alpha: Mapping[float, float],
                  auto_alpha: Mapping[float, float] | None = None) -> dict:
    """Appendix G / Table 19: Table 19's alpha is the best of the grid at each sparsity.

    ppl: {sparsity: {alpha: [perplexity per seed]}}. The best alpha is the lowest mean; Table 19's
    alpha "matches" when it is the best or `compare` finds it within noise of the best; the
    automatic (calibration-only) alpha is judged the same way.
    """
    parts, ok, tested = [], 0, 0
    rows = {}
    for s in sorted(ppl):
        grid = ppl[s]
        best = min(grid, key=lambda a: np.mean(grid[a]))
        pa = paper_alpha.get(s)
        n_seeds = min(len(np.atleast_1d(v)) for v in grid.values())
        desc = f"{s:.0%} ({len(grid)}-point grid, " + ("one seed" if n_seeds < 2 else f"{n_seeds} seeds") + ")"
        row = {"best": best}
        if pa is None or pa not in grid:
            parts.append(f"{desc}: best alpha {best:g}; Table 19's alpha {pa} is not in this grid")
        else:
            tested += 1
            c = compare(grid[pa], grid[best])
            match = best == pa or c["verdict"] == WITHIN_NOISE
            ok += match
            row["paper_vs_best"] = c
            parts.append(f"{desc}: best alpha {best:g}, Table 19's {pa:g} "
                         + ("is the best" if best == pa else
                            f"is {100 * c['gap'] / c['mean_b']:+.1f}% from it: " + outcome(c, f"alpha={pa:g}", f"alpha={best:g}")))
        if auto_alpha and s in auto_alpha and auto_alpha[s] in grid:
            ca = compare(grid[auto_alpha[s]], grid[best])
            row["auto_vs_best"] = ca
            parts[-1] += (f"; automatic alpha {auto_alpha[s]:g} " + ("is the best" if auto_alpha[s] == best else
                                                                    outcome(ca, "auto", "best")))
        rows[s] = row
    holds = _tally(ok, tested)
    text = (f"Table 19's alpha is the best of our grid or within noise of it at {ok} of {tested} sparsities: "
            f"{_says(holds)}. " + "; ".join(parts) + ". On coarse grids 'best' only means best of the values tried.")
    return {"holds": holds, "rows": rows, "text": text}


# ------------------------------------------------------------------------------------ 09

def zeroshot_verdict(acc: Mapping[str, Mapping[str, tuple[float, float]]], *, chance: float) -> dict:
    """Table 4: DLP has the best mean zero-shot accuracy for every method.
    acc: {method: {allocation: (accuracy %, standard error)}}; judged with `compare_means`."""
    lines, clear, nominal, decided = [], 0, 0, []
    for m, by in acc.items():
        cs = {a: compare_means(*by["dlp"], *by[a], lower_is_better=False) for a in ("uniform", "owl")}
        decided += [c["verdict"] for c in cs.values()]
        nominal += by["dlp"][0] > max(by["uniform"][0], by["owl"][0])
        clear += all(c["verdict"] == A_BETTER for c in cs.values())
        near = [a for a, (v, se) in by.items() if v - chance < 2 * se]
        lines.append(f"{m}: " + "; ".join(outcome(cs[a], "DLP", a.upper(), digits=3) for a in cs)
                     + (f"; within 2 stderr of chance: {', '.join(near)}" if near else ""))
    n = len(acc)
    holds = tally_comparisons(decided)
    text = (f"DLP is nominally best for {nominal} of {n} method(s) and better than both Uniform and OWL beyond "
            f"2 standard errors for {clear}: the claim {_says(holds)}. " + ". ".join(lines) + ". One calibration seed.")
    return {"holds": holds, "text": text}


# ------------------------------------------------------------------------------------ Table 18 (notebook 13)
def cannot_tell(noise: float, effect: float) -> str | None:
    """The "cannot tell" rule: a run whose noise bound is at least the size of the effect it tests
    (the paper's gap) could not show that effect whichever way it came out, so it gives no verdict.

    Returns the reason (with how many times the evaluated items would bring the noise, which falls
    as 1/sqrt(items) when the item error dominates, below the effect), or None when the run can tell.
    """
    effect = abs(float(effect))
    if not math.isfinite(noise):
        return f"the noise is unknown, so a gap of {effect:.2f} cannot be judged"
    if effect == 0:
        return "the paper reports no gap to test"
    if noise < effect:
        return None
    return (f"the noise bound {noise:.2f} is at least the paper's gap {effect:.2f}; resolving it would need about "
            f"{math.ceil((noise / effect) ** 2)}x the evaluated items")
