"""The rules that turn the notebooks' results into verdicts, one small function per claim.

Every comparison between two allocations (or two statistics, two alphas, ...) goes through
`compare`, so all notebooks use one definition of "within noise":

    gap = mean(a) - mean(b)
    se  = standard error of that difference (unpaired: sqrt(var_a/n_a + var_b/n_b), sample variances)
    spread = the larger of the two samples' ranges (max - min over the seeds)
    within noise  <=>  |gap| <= max(2 se, spread)

One noise rule everywhere: a one-seed side has no spread of its own, so the gap is judged against
the project's measured seed spread for that setting (`rel_spread`: the largest relative range,
max - min over mean, of the same setting run over several calibration seeds, see
`relative_spread`), noise = rel_spread x the larger mean. Where that spread is unknown a one-seed
gap decides nothing: the comparison is "within noise" with `noise_known` False, and the verdict
says "cannot tell (one seed, seed spread unknown)".

Every verdict function returns a dict with "headline" (one line of at most HEADLINE_MAX
characters: the claim, then holds / partly / does not reproduce / cannot tell (why)), "rows" (the
details: one row per sub-claim with our number, the paper's and its verdict), "holds" (one of
HOLDS, PARTLY, FAILS, NOISE, NOT_TESTED) and "text" (`verdict_report`: the headline line, then
the rows as a table), which the notebook prints as its last output.
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
FLAT_CV = 0.05           # coefficient of variation of the RID (I_l = 1 - S_l / sum S) below which it is "nearly flat"


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


def relative_spread(*samples) -> float:
    """The seed spread of a setting: max over the samples (each the values of one configuration
    over several calibration seeds) of (max - min) / mean. Samples of one value carry no spread."""
    spreads = [float(np.ptp(x) / abs(x.mean())) for x in (_as_sample(v, "sample") for v in samples)
               if x.size > 1 and x.mean() != 0]
    if not spreads:
        raise ValueError("relative_spread needs at least one sample of two or more seeds")
    return max(spreads)


def compare(a_values, b_values, *, lower_is_better: bool = True, rel_spread: float | None = None) -> dict:
    """Compare two samples (one value per calibration seed; perplexity: lower is better).

    Returns {"gap": mean(a) - mean(b), "se": standard error of the gap, "spread": larger range of
    the two samples, "noise", "mean_a", "mean_b", "n_a", "n_b", "single_seed": True when either
    side has one value, "noise_known", "verdict": "a better" | "b better" | "within noise"}.
    noise = max(2 se, spread) and, where a side has one seed, at least rel_spread x the larger
    mean (the setting's measured seed spread); a one-seed side with rel_spread None has no
    noise estimate: noise_known False and the verdict is "within noise" whatever the gap.
    """
    a, b = _as_sample(a_values, "a_values"), _as_sample(b_values, "b_values")
    if rel_spread is not None and not (math.isfinite(rel_spread) and rel_spread >= 0):
        raise ValueError(f"rel_spread must be a finite number >= 0 or None, got {rel_spread!r}")
    var_a = a.var(ddof=1) if a.size > 1 else 0.0
    var_b = b.var(ddof=1) if b.size > 1 else 0.0
    gap = float(a.mean() - b.mean())
    se = float(math.sqrt(var_a / a.size + var_b / b.size))
    spread = float(max(np.ptp(a), np.ptp(b)))
    noise = max(2.0 * se, spread)
    single = bool(min(a.size, b.size) < 2)
    known = not single or rel_spread is not None
    if single and rel_spread is not None:
        noise = max(noise, rel_spread * max(abs(a.mean()), abs(b.mean())))
    verdict = _decide(gap, noise, lower_is_better) if known else WITHIN_NOISE
    return {"gap": gap, "se": se, "spread": spread, "noise": noise, "mean_a": float(a.mean()),
            "mean_b": float(b.mean()), "n_a": int(a.size), "n_b": int(b.size), "single_seed": single,
            "noise_known": known, "rel_spread": rel_spread, "verdict": verdict}


def compare_means(mean_a: float, se_a: float, mean_b: float, se_b: float, *, lower_is_better: bool = True) -> dict:
    """`compare` for two estimates that come with their own standard errors (e.g. accuracies over
    n examples): within noise <=> |gap| <= 2 sqrt(se_a^2 + se_b^2). Same keys as `compare`."""
    if se_a < 0 or se_b < 0:
        raise ValueError(f"standard errors must be >= 0, got {se_a}, {se_b}")
    gap, se = float(mean_a - mean_b), float(math.sqrt(se_a ** 2 + se_b ** 2))
    return {"gap": gap, "se": se, "spread": 0.0, "noise": 2 * se, "mean_a": float(mean_a), "mean_b": float(mean_b),
            "n_a": 1, "n_b": 1, "single_seed": False, "noise_known": True, "basis": "stderr",
            "verdict": _decide(gap, 2 * se, lower_is_better)}


def outcome(c: dict, a: str, b: str, *, digits: int = 4) -> str:
    """One phrase for a `compare` result: 'DLP better than OWL by 12.3 (noise 4.5, 3 seeds)'."""
    n = min(c["n_a"], c["n_b"])
    if c.get("basis") == "stderr":
        noise = f"noise {c['noise']:.{digits}g} = 2 stderr of the difference"
    elif not c["noise_known"]:
        noise = "one seed, seed spread unknown: cannot tell"
    elif c["single_seed"]:
        noise = (f"noise {c['noise']:.{digits}g} from the measured seed spread "
                 f"{100 * (c['rel_spread'] or 0):.{digits}g}%")
    else:
        noise = f"noise {c['noise']:.{digits}g}, {n} seeds"
    if c["verdict"] == WITHIN_NOISE:
        return f"{a} and {b} within noise (gap {c['gap']:+.{digits}g}; {noise})"
    win, lose = (a, b) if c["verdict"] == A_BETTER else (b, a)
    return f"{win} better than {lose} by {abs(c['gap']):.{digits}g} ({noise})"


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



# ------------------------------------------------------------------------------------ headlines

HEADLINE_MAX = 200   # characters: one line a reader takes in at a glance (the README's verdict table shows only this)
HEADLINE_WORDS = {HOLDS: "holds", PARTLY: "partly", FAILS: "does not reproduce", NOISE: "cannot tell",
                  NOT_TESTED: "cannot tell"}
HEADLINE_PREFIX = "Verdict: "
ROW_COLUMNS = ("claim", "ours", "paper", "verdict")


def headline(claim: str, holds: str, why: str = "") -> str:
    """'<claim>: <holds | partly | does not reproduce | cannot tell> (<why>)', at most HEADLINE_MAX
    characters, one line. A `why` too long to fit keeps its first '; '-separated clauses and says
    that the rest is in the table (every clause is also a row there); a claim too long is an error."""
    if holds not in HEADLINE_WORDS:
        raise ValueError(f"holds must be one of {sorted(HEADLINE_WORDS)}, got {holds!r}")
    if "\n" in claim + why:
        raise ValueError(f"a headline is one line, got {claim!r} / {why!r}")
    head = f"{claim}: {HEADLINE_WORDS[holds]}"
    clauses = why.split("; ") if why else []
    for n in range(len(clauses), -1, -1):
        kept = "; ".join(clauses[:n]) + ("" if n == len(clauses) else ("; " if n else "") + "more in the table")
        text = head + (f" ({kept})" if kept else "")
        if len(text) <= HEADLINE_MAX:
            return text
    raise ValueError(f"a headline's claim must leave room within {HEADLINE_MAX} characters, got {head!r}")


def row(claim: str, ours: str, paper: str, holds: str) -> dict:
    """One detail row: the sub-claim, our number, the paper's ('-' where it has none), the verdict word."""
    cells = {"claim": claim, "ours": ours, "paper": paper or "-", "verdict": HEADLINE_WORDS[holds]}
    for k, val in cells.items():
        if "|" in val or "\n" in val:
            raise ValueError(f"a table cell may hold no '|' or line break, got {k}={val!r}")
    return cells


def verdict_report(head: str, rows: Sequence[Mapping[str, str]], notes: Sequence[str] = ()) -> str:
    """What a notebook prints last: 'Verdict: <headline>', then the rows as a markdown table, then notes."""
    lines = [HEADLINE_PREFIX + head, "", "| " + " | ".join(ROW_COLUMNS) + " |", "|" + "---|" * len(ROW_COLUMNS)]
    lines += ["| " + " | ".join(r[c] for c in ROW_COLUMNS) + " |" for r in rows]
    return "\n".join(lines + ([""] + list(notes) if notes else []))


def parse_report(text: str) -> tuple[list[str], list[dict]]:
    """The headlines and detail rows a `verdict_report` printed (a notebook may print several)."""
    heads, rows = [], []
    for line in text.splitlines():
        if line.startswith(HEADLINE_PREFIX):
            heads.append(line[len(HEADLINE_PREFIX):].strip())
        elif line.startswith("| ") and line.endswith(" |"):
            cells = [c.strip() for c in line[2:-2].split(" | ")]
            if len(cells) == len(ROW_COLUMNS) and cells != list(ROW_COLUMNS):
                rows.append(dict(zip(ROW_COLUMNS, cells)))
    return heads, rows


def finish(holds: str, claim: str, why: str, rows: Sequence[Mapping[str, str]], notes: Sequence[str] = (),
           **extra) -> dict:
    """The dict every verdict function returns (see the module docstring)."""
    head = headline(claim, holds, why)
    return {"holds": holds, "headline": head, "rows": list(rows), "text": verdict_report(head, rows, notes), **extra}


def one_seed_why(*cs: Mapping) -> str:
    """The reason a set of comparisons is 'cannot tell', or '' where every one had a noise estimate."""
    return "one seed, seed spread unknown" if any(not c["noise_known"] for c in cs) else ""


# ------------------------------------------------------------------------------------ 00 / 04

def fmt_value(x: float) -> str:
    """A perplexity as the verdict tables print it: 3 significant digits from 1e4, else 1 or 2 decimals."""
    return f"{x:.3g}" if abs(x) >= 1e4 else f"{x:.1f}" if abs(x) >= 100 else f"{x:.2f}"


def fmt_seeds(n: int) -> str:
    """'1 seed' or 'n seeds', as the verdict rows count calibration seeds."""
    return f"{n} seed" if n == 1 else f"{n} seeds"


def _mean(v) -> float:
    return float(np.mean(np.atleast_1d(v)))


def ordering_verdict(ppl: Mapping[str, Sequence[float]], *, rel_spread: float | None = None,
                     order=("dlp", "owl", "uniform"), what: str = "",
                     paper: Mapping[str, float] | None = None) -> dict:
    """Paper Table 3's ordering DLP < OWL < Uniform: each neighbouring pair compared with the noise
    rule (`compare`; ppl: {allocation: [perplexity per seed]})."""
    pairs = list(zip(order, order[1:]))
    cs = {(a, b): compare(ppl[a], ppl[b], rel_spread=rel_spread) for a, b in pairs}
    holds = tally_comparisons([c["verdict"] for c in cs.values()])
    rows = [row(f"{a.upper()} below {b.upper()}", f"{fmt_value(c['mean_a'])} vs {fmt_value(c['mean_b'])}",
                f"{fmt_value(paper[a])} vs {fmt_value(paper[b])}" if paper else "",
                tally_comparisons([c["verdict"]])) for (a, b), c in cs.items()]
    unsettled = [f"{a.upper()} vs {b.upper()} " + ("under seed noise" if c["verdict"] == WITHIN_NOISE else "reversed")
                 for (a, b), c in cs.items() if c["verdict"] != A_BETTER]
    why = "; ".join(unsettled) or ", ".join(f"{a.upper()} {fmt_value(_mean(ppl[a]))}" for a in order)
    notes = ["Comparisons: " + "; ".join(outcome(c, a.upper(), b.upper()) for (a, b), c in cs.items()) + "."]
    return finish(holds, f"{what}{' < '.join(a.upper() for a in order)} (Table 3)", why, rows, notes,
                  best=min(ppl, key=lambda a: _mean(ppl[a])), comparisons=cs)


def cells_tally(cells: Sequence[Mapping[str, float]]) -> dict:
    """Over {allocation: ppl} cells: how often DLP is lowest and beats OWL, and the geometric mean
    of DLP/OWL and DLP/Uniform perplexity."""
    if not cells:
        raise ValueError("cells_tally needs at least one cell")
    return {"n": len(cells), "dlp_best": sum(min(c, key=c.get) == "dlp" for c in cells),
            "dlp_beats_owl": sum(c["dlp"] < c["owl"] for c in cells),
            "owl_beats_uniform": sum(c["owl"] < c["uniform"] for c in cells),
            "gm_dlp_owl": float(np.exp(np.mean([np.log(c["dlp"] / c["owl"]) for c in cells]))),
            "gm_dlp_uniform": float(np.exp(np.mean([np.log(c["dlp"] / c["uniform"]) for c in cells])))}


def main_results_verdict(our_cells: Mapping[str, Mapping[str, float]], paper_cells, *, what: str = "",
                         rel_spread: float | None = None) -> dict:
    """Tables 3/20/21: DLP lowest in every (method, text) cell, beyond the measured seed noise; and
    OWL below Uniform (the paper's order) cell by cell. our_cells: {cell label: {allocation: ppl}}."""
    o, p = cells_tally(list(our_cells.values())), cells_tally(paper_cells)
    rows, dlp_calls, owl_calls = [], [], []
    for label, c in our_cells.items():
        rival = min(("uniform", "owl"), key=c.get)
        d = compare([c["dlp"]], [c[rival]], rel_spread=rel_spread)
        w = compare([c["owl"]], [c["uniform"]], rel_spread=rel_spread)
        dlp_calls.append(d["verdict"])
        owl_calls.append(w["verdict"])
        rows.append(row(f"{label}: DLP lowest", f"DLP {fmt_value(c['dlp'])} vs {rival.upper()} {fmt_value(c[rival])}",
                        f"lowest in {p['dlp_best']} of {p['n']} cells", tally_comparisons([d["verdict"]])))
        rows.append(row(f"{label}: OWL below Uniform", f"OWL {fmt_value(c['owl'])} vs Uniform {fmt_value(c['uniform'])}",
                        f"in {p['owl_beats_uniform']} of {p['n']} cells", tally_comparisons([w["verdict"]])))
    holds = tally_comparisons(dlp_calls)
    worse = [label for label, call in zip(our_cells, owl_calls) if call == B_BETTER]
    why = (f"DLP lowest beyond noise in {dlp_calls.count(A_BETTER)} of {len(dlp_calls)} cells"
           + (f"; OWL worse than Uniform on {', '.join(worse)}" if worse else "")
           + ("; one seed, seed spread unknown" if rel_spread is None else ""))
    notes = [f"Geometric mean DLP/OWL {o['gm_dlp_owl']:.2f}x, DLP/Uniform {o['gm_dlp_uniform']:.2f}x (paper, same "
             f"methods, Tables 20-21: {p['gm_dlp_owl']:.2f}x, {p['gm_dlp_uniform']:.2f}x)."]
    return finish(holds, f"{what}DLP lowest perplexity in every cell (Tables 3, 20-21)", why, rows, notes,
                  ours=o, paper=p, owl_worse_than_uniform=worse)


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
    lines, tested, median_ok, calls = [], 0, 0, []
    per_method = {}
    for m, by_stat in ppl.items():
        means = {s: float(np.mean(v)) for s, v in by_stat.items()}
        collapsed = min(means.values()) > COLLAPSE_FACTOR * dense
        parts = []
        if set(all_statistics) <= set(by_stat):
            others = {s: v for s, v in means.items() if s != "median" and s != "sum"}  # sum == mean's plan
            rival = min(others, key=others.get)
            c = compare(by_stat["median"], by_stat[rival])
            if not collapsed:
                tested += 1
                median_ok += c["verdict"] == A_BETTER
                calls.append(c["verdict"])
            per_method[m] = {"median_vs_rival": c, "rival": rival}
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
        per_method[m] = {**per_method.get(m, {}), "collapsed": collapsed, "median_vs_mean": mm}
        lines.append(f"{m}: " + "; ".join(parts) + ".")
    holds = tally_comparisons(calls)
    if sum_mean_difference is not None:
        lines.append(f"Sum and mean give the same plan (max ratio difference {sum_mean_difference:.1e}), as the "
                     "min-max identity predicts: the paper's equal Sum and Mean columns are one experiment.")
    rows = [row(f"{m}: median best", "collapsed" if r["collapsed"] else
                (outcome(r["median_vs_rival"], "median", r["rival"]) if r.get("median_vs_rival") else "not all six run"),
                "median best for every method", NOT_TESTED if r["collapsed"] or not r.get("median_vs_rival") else
                tally_comparisons([r["median_vs_rival"]["verdict"]]))
            for m, r in per_method.items()]
    why = (f"median best beyond noise for {median_ok} of {tested} non-collapsed method(s) with all six statistics"
           if tested else "no non-collapsed method ran all six statistics")
    return finish(holds, "The median is the best statistic F (Table 1)", why, rows, lines, per_method=per_method)


# ------------------------------------------------------------------------------------ 02

def minmax_identity_error(S: Sequence[float], ratios: Sequence[float], p: float, alpha: float) -> float:
    """max |R_l - (p + 2a (n_l - mean n))| with n the min-max normalised S (SPEC identity)."""
    S, R = np.asarray(S, dtype=float), np.asarray(ratios, dtype=float)
    n = (S - S.min()) / (S.max() - S.min())
    return float(np.abs(R - (p + 2 * alpha * (n - n.mean()))).max())


def rid_verdict(S: Sequence[float], dlp_ratios: Sequence[float], owl_ratios: Sequence[float]) -> dict:
    """Empirical Study II and Figure 3: the RID is not flat; sparsity rises with depth (earlier
    blocks more important); OWL and DLP follow similar trends (Spearman of their per-block ratios
    above SIMILAR_TREND_RHO). Flatness is judged on the RID itself, I_l = 1 - S_l / sum S (what
    the paper plots), not on S: min-max scaling stretches any non-constant S to the full
    [0, 2 alpha] range, so a large spread of the ratios says nothing about the RID."""
    S, dlp, owl = (np.asarray(x, dtype=float) for x in (S, dlp_ratios, owl_ratios))
    L = S.size
    depth = np.arange(L)
    rid = 1.0 - S / S.sum()
    cv = float(rid.std() / rid.mean())
    rho_dlp, rho_owl, rho_pair = spearman(depth, dlp), spearman(depth, owl), spearman(owl, dlp)
    third = max(1, L // 3)
    early, late = float(dlp[:third].mean()), float(dlp[-third:].mean())
    trend = HOLDS if rho_dlp > DEPTH_TREND_RHO and late > early else FAILS if rho_dlp < 0 else PARTLY
    similar = HOLDS if rho_pair > SIMILAR_TREND_RHO else FAILS
    not_flat = HOLDS if cv > FLAT_CV else FAILS
    rows = [row("the RID is not flat", f"I spans {rid.min():.3f}-{rid.max():.3f}, CV {cv:.3f} (flat below {FLAT_CV})",
                "varies by block (Figure 3)", not_flat),
            row("earlier blocks more important", f"Spearman(depth, DLP ratio) {rho_dlp:+.2f}; first/last third "
                f"{early:.3f}/{late:.3f}", "sparsity rises with depth", trend),
            row("OWL and DLP follow similar trends", f"Spearman(OWL, DLP ratios) {rho_pair:+.2f}; OWL vs depth "
                f"{rho_owl:+.2f}", "similar trends (Figure 3)", similar)]
    holds = _tally(sum(r["verdict"] == "holds" for r in rows), len(rows))
    why = "; ".join(f"{r['claim']}: {r['verdict']}" for r in rows)
    return finish(holds, "RID (Study II, Figure 3)", why, rows,
                  [f"The min-max scaling maps S's coefficient of variation {float(S.std() / S.mean()):.3f} onto the "
                   "full [0, 2 alpha] range whatever the RID's own spread. Dense statistics from one calibration seed."],
                  similar_trends=similar, cv=cv, rid_range=(float(rid.min()), float(rid.max())),
                  spearman_depth_dlp=rho_dlp, spearman_depth_owl=rho_owl, spearman_owl_dlp=rho_pair,
                  early=early, late=late)


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
                   m: float, paper_lod: Mapping[str, float], dense: float) -> dict:
    """Table 2: per method, DLP has both the highest LOD and the lowest perplexity; plus whether
    the paper's and our LOD values are possible under Eq. 4. A method whose every allocation
    leaves perplexity above COLLAPSE_FACTOR x dense has collapsed: it is reported, not counted."""
    rows, ok, tested = [], 0, 0
    for meth in lod:
        top_lod, top_ppl = max(lod[meth], key=lod[meth].get), min(ppl[meth], key=ppl[meth].get)
        collapsed = min(ppl[meth].values()) > COLLAPSE_FACTOR * dense
        both = top_lod == "dlp" and top_ppl == "dlp"
        if not collapsed:
            tested += 1
            ok += both
        rows.append(row(f"{meth}: DLP highest LOD and lowest perplexity",
                        "LOD " + "/".join(f"{lod[meth][a]:.2f}" for a in ("uniform", "owl", "dlp")) + "%, ppl "
                        + "/".join(fmt_value(ppl[meth][a]) for a in ("uniform", "owl", "dlp"))
                        + (" (collapsed)" if collapsed else ""), "holds for every method",
                        NOT_TESTED if collapsed else HOLDS if both else FAILS))
    holds = _tally(ok, tested)
    ours = lod_consistency({f"{k}/{a}": v for k, by in lod.items() for a, v in by.items()}, m, source="ours")
    theirs = lod_consistency(paper_lod, m, source="paper Table 2")
    rows.append(row(f"LOD values possible under Eq. 4 (at most {ours['bound']:.1f}% for M={m:g})",
                    "all possible" if ours["consistent"] else f"{len(ours['over'])} impossible",
                    "all possible" if theirs["consistent"] else f"{len(theirs['over'])} of {len(paper_lod)} impossible",
                    HOLDS if theirs["consistent"] else FAILS))
    return {"holds": holds, "rows": rows, "tested": tested, "ok": ok, "paper_lod_possible": theirs["consistent"],
            "ours_lod_possible": ours["consistent"], "notes": [theirs["text"], ours["text"]]}


def figure2_verdict(owl_ppl: Mapping[float, float], owl_lod: Mapping[float, float], *, dlp_ppl: float,
                    rel_spread: float | None = None) -> dict:
    """Figure 2: OWL's perplexity depends on M; DLP (no M) against OWL at every M tried, with the
    noise rule."""
    ms = sorted(owl_ppl)
    best_m = min(owl_ppl, key=owl_ppl.get)
    calls = [compare([dlp_ppl], [owl_ppl[k]], rel_spread=rel_spread)["verdict"] for k in ms]
    rho = spearman([owl_lod[k] for k in ms], [owl_ppl[k] for k in ms]) if len(ms) > 2 else float("nan")
    holds = tally_comparisons(calls)
    direction = ("more outliers kept, lower perplexity" if rho < 0 else "more outliers kept, no lower perplexity"
                 if rho > 0 else "no trend")
    rows = [row("DLP (no M) beats OWL at every M (Figure 2)",
                f"DLP {fmt_value(dlp_ppl)}; OWL {fmt_value(min(owl_ppl.values()))}-{fmt_value(max(owl_ppl.values()))} over M "
                + ", ".join(f"{k:g}" for k in ms) + f"; beyond noise at {calls.count(A_BETTER)} of {len(ms)}",
                "DLP below OWL at every M", holds),
            row("OWL's LOD tracks its perplexity", f"Spearman(LOD, ppl) {rho:+.2f} over {len(ms)} M values: {direction}",
                "higher LOD, lower perplexity", NOT_TESTED if len(ms) < 4 or rho != rho else HOLDS if rho < 0 else FAILS)]
    return {"holds": holds, "best_m": best_m, "rows": rows, "calls": calls}


def owl_vs_dlp_verdict(t2: dict, f2: dict, *, what: str = "") -> dict:
    """Notebook 03's headline: Table 2 and Figure 2 together."""
    holds = _tally(sum(v["holds"] == HOLDS for v in (t2, f2)), 2) if NOISE not in (t2["holds"], f2["holds"]) \
        else PARTLY if HOLDS in (t2["holds"], f2["holds"]) else NOISE
    why = (f"Table 2 for {t2['ok']} of {t2['tested']} non-collapsed methods; DLP below OWL beyond noise at "
           f"{f2['calls'].count(A_BETTER)} of {len(f2['calls'])} M values")
    return finish(holds, f"{what}DLP keeps more outliers and beats OWL (Table 2, Figure 2)", why,
                  t2["rows"] + f2["rows"], t2["notes"])


# ------------------------------------------------------------------------------------ 05

def sweep_verdict(ppl: Mapping[float, Mapping[str, Sequence[float]]], *, method: str = "",
                  paper: Mapping[float, Mapping[str, float]] | None = None,
                  rel_spread: Mapping[float, float] | None = None) -> dict:
    """Table 10 / Figure 4: DLP best at high sparsity, its advantage over Uniform growing with
    sparsity; and OWL below Uniform (the paper's order) at each sparsity. ppl: {sparsity:
    {allocation: [perplexity per seed]}}; rel_spread: {sparsity: measured seed spread} for the
    one-seed sparsities."""
    sp = sorted(ppl)
    spread = dict(rel_spread or {})
    rows_out, rows, owl_worse = {}, [], []
    for s in sp:
        by = ppl[s]
        rival = min(("uniform", "owl"), key=lambda a: np.mean(by[a]))
        c = compare(by["dlp"], by[rival], rel_spread=spread.get(s))
        w = compare(by["owl"], by["uniform"], rel_spread=spread.get(s))
        ratio = float(np.mean(by["uniform"]) / np.mean(by["dlp"]))
        rows_out[s] = {"rival": rival, "compare": c, "owl_vs_uniform": w, "uniform/dlp": ratio}
        pp = paper.get(s) if paper else None
        rows.append(row(f"{s:.0%}: DLP best", f"DLP {fmt_value(c['mean_a'])} vs {rival.upper()} {fmt_value(c['mean_b'])}",
                        f"Uniform/DLP {pp['uniform'] / pp['dlp']:.2f}" if pp else "",
                        tally_comparisons([c["verdict"]])))
        rows.append(row(f"{s:.0%}: OWL below Uniform", f"OWL {fmt_value(w['mean_a'])} vs Uniform {fmt_value(w['mean_b'])}",
                        f"OWL {fmt_value(pp['owl'])} vs Uniform {fmt_value(pp['uniform'])}" if pp else "",
                        tally_comparisons([w["verdict"]])))
        if w["verdict"] == B_BETTER:
            owl_worse.append(s)
    top = rows_out[sp[-1]]["compare"]
    holds = tally_comparisons([top["verdict"]])
    adv = [rows_out[s]["uniform/dlp"] for s in sp]
    grows = len(adv) > 1 and all(b > a for a, b in zip(adv, adv[1:]))
    why = (f"at {sp[-1]:.0%}: " + (one_seed_why(top) or f"DLP {fmt_value(top['mean_a'])}") + "; Uniform/DLP "
           + ("grows" if grows else "does not grow") + " with sparsity"
           + (f"; OWL worse than Uniform at {', '.join(f'{s:.0%}' for s in owl_worse)}" if owl_worse else ""))
    notes = ["Comparisons: " + "; ".join(f"{s:.0%}: " + outcome(rows_out[s]["compare"], "DLP", rows_out[s]["rival"].upper())
                                         for s in sp) + "."]
    return finish(holds, f"{method}: DLP best at high sparsity (Table 10, Figure 4)", why, rows, notes,
                  grows=grows, rows_by_sparsity=rows_out, owl_worse_than_uniform=owl_worse)


# ------------------------------------------------------------------------------------ 06

def standing(ppl: Mapping[str, float], who: str = "dlp") -> dict:
    """`who`'s rank among the allocators (1 = lowest perplexity), the best other one and the ratio."""
    others = {a: v for a, v in ppl.items() if a != who}
    best = min(others, key=others.get)
    return {"rank": 1 + sum(v < ppl[who] for v in others.values()), "best_other": best,
            "ratio": ppl[who] / others[best]}


def baselines_verdict(ppl: Mapping[float, Mapping[str, float]], *, paper: Mapping[float, Mapping[str, float]],
                      rel_spread: Mapping[float, float] | None = None) -> dict:
    """Table 9: DLP lowest of all allocators at every sparsity above 40% (the paper's; those not
    run here make the claim at most partly tested); each win must clear the noise rule."""
    claimed = sorted(s for s in paper if s > 0.4)
    spread = dict(rel_spread or {})
    rows, calls = [], {}
    for s in sorted(ppl):
        st = standing(ppl[s])
        c = compare([ppl[s]["dlp"]], [ppl[s][st["best_other"]]], rel_spread=spread.get(s))
        calls[s] = c
        pp = standing(paper[s]) if s in paper else None
        rows.append(row(f"{s:.0%}: DLP lowest of {len(ppl[s])}",
                        f"DLP {fmt_value(ppl[s]['dlp'])}, rank {st['rank']}; best other {st['best_other']} "
                        f"{fmt_value(c['mean_b'])} ({st['ratio']:.2f}x)",
                        f"rank {pp['rank']}, {pp['ratio']:.2f}x vs {pp['best_other']}" if pp else "",
                        tally_comparisons([c["verdict"]])))
    run = [s for s in claimed if s in ppl]
    missing = [s for s in claimed if s not in ppl]
    holds = tally_comparisons([calls[s]["verdict"] for s in run])
    if holds == HOLDS and missing:
        holds = PARTLY
    why = (f"DLP lowest beyond noise at {sum(calls[s]['verdict'] == A_BETTER for s in run)} of {len(run)} run"
           + (f"; {', '.join(f'{s:.0%}' for s in missing)} not run" if missing else "")
           + (f"; {one_seed_why(*calls.values())}" if one_seed_why(*calls.values()) else ""))
    worst = {s: max(ppl[s], key=ppl[s].get) for s in sorted(ppl)}
    notes = ["Worst: " + ", ".join(f"{w} at {s:.0%}" for s, w in worst.items()) + " (paper: Global everywhere). "
             "One calibration seed per allocator."]
    return finish(holds, "DLP lowest of the layerwise allocators above 40% (Table 9)", why, rows, notes)


# ------------------------------------------------------------------------------------ 07

def granularity_verdict(ppl_block: float, ppl_sublayer: float, *, paper_block: float, paper_sublayer: float,
                        rel_spread: float | None = None, map_trend: Mapping[str, float] | None = None) -> dict:
    """Appendix C: one ratio per block beats one ratio per sublayer (one run each, noise rule);
    map_trend {"ours": rho, "paper": rho}: Spearman(depth, block mean) of the per-sublayer maps,
    reported as its own row (the paper's map falls with depth)."""
    c = compare([ppl_block], [ppl_sublayer], rel_spread=rel_spread)
    holds = tally_comparisons([c["verdict"]])
    rows = [row("one ratio per block beats one per sublayer (Appendix C)",
                f"{fmt_value(ppl_block)} vs {fmt_value(ppl_sublayer)} ({ppl_sublayer / ppl_block:.2f}x)",
                f"{fmt_value(paper_block)} vs {fmt_value(paper_sublayer)} ({paper_sublayer / paper_block:.0f}x)", holds)]
    if map_trend:
        same = np.sign(map_trend["ours"]) == np.sign(map_trend["paper"])
        word = lambda r: "rises" if r > 0 else "falls"  # noqa: E731
        rows.append(row("per-sublayer map's trend with depth",
                        f"{word(map_trend['ours'])} (Spearman {map_trend['ours']:+.2f})",
                        f"{word(map_trend['paper'])} (Spearman {map_trend['paper']:+.2f})", HOLDS if same else FAILS))
    return {"holds": holds, "gap": ppl_sublayer / ppl_block, "compare": c, "rows": rows}


def groups_verdict(ppl: Mapping[float, Mapping[str, Sequence[float]]], *,
                   paper: Mapping[str, Mapping[float, float]] | None = None,
                   rel_spread: Mapping[float, float] | None = None) -> dict:
    """Appendix D: per-output beats per-layer at every sparsity, the gap growing with sparsity.
    ppl: {sparsity: {"per_output": [...], "per_layer": [...]}} (several seeds where run)."""
    sp = sorted(ppl)
    spread = dict(rel_spread or {})
    cs = {s: compare(ppl[s]["per_output"], ppl[s]["per_layer"], rel_spread=spread.get(s)) for s in sp}
    ratio = {s: float(np.mean(ppl[s]["per_layer"]) / np.mean(ppl[s]["per_output"])) for s in sp}
    grows = len(sp) > 1 and all(ratio[b] >= ratio[a] for a, b in zip(sp, sp[1:]))
    holds = tally_comparisons([c["verdict"] for c in cs.values()])
    rows = [row(f"{s:.0%}: per-output beats per-layer (Appendix D)",
                f"{fmt_value(cs[s]['mean_a'])} vs {fmt_value(cs[s]['mean_b'])} ({ratio[s]:.2f}x, {fmt_seeds(min(cs[s]['n_a'], cs[s]['n_b']))})",
                f"{fmt_value(paper['per_output'][s])} vs {fmt_value(paper['per_layer'][s])}"
                if paper and s in paper["per_output"] else "", tally_comparisons([cs[s]["verdict"]])) for s in sp]
    return {"holds": holds, "grows": grows, "rows": rows, "compares": cs}


def granularity_groups_verdict(vc: dict, vd: dict, *, what: str = "", notes: Sequence[str] = ()) -> dict:
    """Notebook 07's headline: Appendix C and Appendix D together."""
    calls = [vc["compare"]["verdict"]] + [c["verdict"] for c in vd["compares"].values()]
    holds = tally_comparisons(calls)
    n_d = len(vd["compares"])
    why = (f"block beats sublayer {'beyond noise' if vc['holds'] == HOLDS else HEADLINE_WORDS[vc['holds']]}; "
           f"per-output beyond noise at {sum(c['verdict'] == A_BETTER for c in vd['compares'].values())} of {n_d}")
    trend = [r for r in vc["rows"] if r["claim"].startswith("per-sublayer map")]
    if trend and trend[0]["verdict"] != "holds":
        why += "; sublayer map's depth trend opposite the paper's"
    return finish(holds, f"{what}Coarse ratios, fine comparison groups (Appendices C, D)", why,
                  vc["rows"] + vd["rows"], notes)


# ------------------------------------------------------------------------------------ 08

def alpha_verdict(ppl: Mapping[float, Mapping[float, Sequence[float]]], *, paper_alpha: Mapping[float, float],
                  auto_alpha: Mapping[float, float] | None = None,
                  rel_spread: Mapping[float, float] | None = None) -> dict:
    """Appendix G / Table 19: Table 19's alpha is the best of the grid at each sparsity.

    ppl: {sparsity: {alpha: [perplexity per seed]}}. Table 19's alpha "holds" where it beats every
    other alpha of the grid beyond noise, "does not reproduce" where another alpha beats it beyond
    noise, "cannot tell" otherwise (a rival within noise, or one seed with no measured spread).
    The automatic (calibration-only) alpha is reported the same way. Rows are sorted by sparsity.
    """
    spread = dict(rel_spread or {})
    rows, calls, by_sparsity = [], [], {}
    for s in sorted(ppl):
        grid = {a: ppl[s][a] for a in sorted(ppl[s])}
        best = min(grid, key=lambda a: np.mean(grid[a]))
        pa = paper_alpha.get(s)
        n_seeds = min(len(np.atleast_1d(v)) for v in grid.values())
        desc = f"{len(grid)}-point grid, " + ("one seed" if n_seeds < 2 else f"{n_seeds} seeds")
        by_sparsity[s] = {"best": best}
        if pa is None or pa not in grid:
            rows.append(row(f"{s:.0%}: Table 19's alpha best", f"best {best:g} ({desc}); {pa} not in grid",
                            f"alpha {pa}", NOT_TESTED))
            continue
        cs = [compare(grid[pa], grid[a], rel_spread=spread.get(s)) for a in grid if a != pa]
        vs = [c["verdict"] for c in cs]
        call = B_BETTER if B_BETTER in vs else A_BETTER if all(v == A_BETTER for v in vs) else WITHIN_NOISE
        calls.append(call)
        ours = f"best {best:g} ({desc})"
        if auto_alpha and s in auto_alpha:
            ours += f"; automatic {auto_alpha[s]:g}"
        rows.append(row(f"{s:.0%}: Table 19's alpha best", ours, f"alpha {pa:g}", tally_comparisons([call])))
        by_sparsity[s] |= {"call": call, "compares": cs}
    holds = tally_comparisons(calls)
    why = (f"Table 19's alpha best beyond noise at {calls.count(A_BETTER)} of {len(calls)} sparsities; "
           f"beaten at {calls.count(B_BETTER)}")
    return finish(holds, "Table 19's alpha is the best of the grid (Appendix G)", why, rows,
                  ["On coarse grids 'best' only means best of the values tried."], rows_by_sparsity=by_sparsity)


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
    rows = [row(f"{m}: DLP best mean accuracy", "; ".join(f"DLP {by['dlp'][0]:.1f} vs {a.upper()} {by[a][0]:.1f}"
                                                         for a in ("uniform", "owl")),
                "DLP best for every method", tally_comparisons(
                    [compare_means(*by["dlp"], *by[a], lower_is_better=False)["verdict"] for a in ("uniform", "owl")]))
            for m, by in acc.items()]
    why = (f"DLP nominally best for {nominal} of {n}, beyond 2 stderr for {clear}"
           + ("; gaps under 2 stderr" if holds == NOISE else ""))
    return finish(holds, "DLP has the best mean zero-shot accuracy (Table 4)", why, rows,
                  [". ".join(lines) + ". One calibration seed."])


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


# ------------------------------------------------------------------------------------ 10

def table8_verdict(ours: Mapping[str, Mapping[str, Mapping[float, float]]],
                   paper: Mapping[str, Mapping[str, Mapping[float, float]]], *,
                   rel_spread: Mapping[str, float | None] | None = None) -> dict:
    """Table 8: DLP below Uniform on every (model, sparsity) cell. ours / paper: {model: {"uniform":
    {sparsity: ppl}, "dlp": {...}}}; each of our one-seed cells is judged with the noise rule
    against its model's measured seed spread (rel_spread {model: spread}). The paper's cells are
    counted as printed (DLP's number lower), with no tolerance."""
    spread = dict(rel_spread or {})
    rows, calls = [], []
    for m, by in ours.items():
        for s in sorted(set(by["uniform"]) & set(by["dlp"])):
            c = compare([by["dlp"][s]], [by["uniform"][s]], rel_spread=spread.get(m))
            calls.append(c["verdict"])
            rows.append(row(f"{m} {s:.0%}: DLP below Uniform", f"DLP {fmt_value(by['dlp'][s])} vs Uniform {fmt_value(by['uniform'][s])}",
                            "", tally_comparisons([c["verdict"]])))
    paper_cells = [(m, s) for m, by in paper.items() for s in by["uniform"] if s in by["dlp"]]
    paper_wins = sum(paper[m]["dlp"][s] < paper[m]["uniform"][s] for m, s in paper_cells)
    holds = tally_comparisons(calls)
    why = (f"DLP lower beyond noise in {calls.count(A_BETTER)} of {len(calls)} cells, Uniform in {calls.count(B_BETTER)}; "
           f"paper: DLP lower in {paper_wins} of {len(paper_cells)}")
    unknown = [m for m in ours if spread.get(m) is None]
    notes = [f"Seed spread unknown for {', '.join(unknown)}: its cells cannot tell." if unknown else
             "Each cell: one calibration seed, judged against its model's measured seed spread."]
    return finish(holds, "DLP beats Uniform on other architectures (Table 8)", why, rows, notes)


# ------------------------------------------------------------------------------------ 11b

def compression_verdict(svd: Mapping[str, Mapping[str, Mapping[float, float]]],
                        structured: Mapping[str, Mapping[str, Mapping[float, float]]], *, dense: float,
                        speedup: Mapping[float, Mapping[str, float]], what: str = "",
                        rel_spread: float | None = None) -> dict:
    """Appendix E, Tables 14 and 16: DLP's budgets beat Uniform's for SVD (svd: {variant: {"uniform":
    {rate: ppl}, "dlp": {...}}}) and for structured pruning (structured: {text: {...}}), with the
    noise rule; a cell where both allocations leave perplexity above COLLAPSE_FACTOR x dense has
    collapsed and says nothing. speedup: {rate: {"uniform": x, "dlp": x}} forward speed-ups over
    dense of the equal-size structured models: their difference is timing noise, so DLP's model
    is called faster than dense only beyond it."""
    rows, calls, collapsed = [], [], 0
    for kind, table in (("Table 16", svd), ("Table 14", structured)):
        for name, by in table.items():
            for r in sorted(set(by["uniform"]) & set(by["dlp"])):
                u, d = by["uniform"][r], by["dlp"][r]
                dead = min(u, d) > COLLAPSE_FACTOR * dense
                c = compare([d], [u], rel_spread=rel_spread)
                collapsed += dead
                if not dead:
                    calls.append(c["verdict"])
                rows.append(row(f"{kind} {name} {r:.0%}: DLP below Uniform", f"DLP {fmt_value(d)} vs Uniform {fmt_value(u)}"
                                + (" (collapsed)" if dead else ""), "DLP lower", NOT_TESTED if dead else
                                tally_comparisons([c["verdict"]])))
    for r in sorted(speedup):
        sd, su = speedup[r]["dlp"], speedup[r]["uniform"]
        noise = abs(sd - su)   # two models of one size: any difference is timing noise
        rows.append(row(f"structured {r:.0%}: faster than dense", f"DLP {sd:.2f}x, Uniform {su:.2f}x (same size; "
                        f"timing noise {noise:.2f})", "faster", HOLDS if sd - 1 > noise else NOISE if sd >= 1 else FAILS))
    holds = tally_comparisons(calls) if calls else NOISE
    why = (f"DLP lower beyond noise in {calls.count(A_BETTER)} of {len(calls)} non-collapsed cells"
           + (f"; {collapsed} collapsed (above {COLLAPSE_FACTOR:g}x dense)" if collapsed else "")
           + ("; one seed, seed spread unknown" if rel_spread is None else ""))
    return finish(holds, f"{what}DLP budgets for SVD and structured pruning (Tables 14, 16)", why, rows)
