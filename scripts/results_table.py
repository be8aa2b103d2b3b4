"""Regenerate the README results table: Wanda at 50/60/70% with Uniform, OWL, DLP(median), DLP(mean).

Usage: python scripts/results_table.py [--profile default] [--out results/readme_table.md]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from dlp_lib.experiment import PROFILES, ExperimentConfig, get_lab
from dlp_studies.report import fmt_ppl

ROWS = [("Uniform", dict(allocation="uniform")), ("OWL", dict(allocation="owl")),
        ("DLP (median, paper)", dict(allocation="dlp", statistic="median")),
        ("DLP (mean, released code)", dict(allocation="dlp", statistic="mean"))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", default="default", choices=sorted(PROFILES))
    ap.add_argument("--method", default="wanda")
    ap.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.6, 0.7])
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    base = ExperimentConfig.from_profile(a.profile, method=a.method)
    lab = get_lab(base.model, base.device, base.dtype)
    label = base.eval[0]
    t0 = time.perf_counter()
    cells: dict[str, list[str]] = {}
    dense = None
    for s in a.sparsities:
        for name, over in ROWS:
            r = lab.run(base.replace(sparsity=s, **over))
            dense = r["perplexity"]["dense"][label]
            alpha = r["config"]["alpha"]
            cells.setdefault(name, []).append(fmt_ppl(r["perplexity"]["pruned"][label])
                                              + (f" (a={alpha})" if alpha is not None else ""))
    head = f"| {label} perplexity, {base.method} | " + " | ".join(f"{s:.0%}" for s in a.sparsities) + " |"
    lines = [head, "|---" * (len(a.sparsities) + 1) + "|",
             f"| Dense | " + " | ".join(fmt_ppl(dense) for _ in a.sparsities) + " |"]
    lines += [f"| {name} | " + " | ".join(v) + " |" for name, v in cells.items()]
    text = "\n".join(lines) + (f"\n\n{base.model}, calibration {base.calib} {base.nsamples}x{base.seqlen}, "
                               f"{base.neval} eval windows of {base.seqlen}; {time.perf_counter() - t0:.0f} s "
                               "(cached results are reused).\n")
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)


if __name__ == "__main__":
    main()
