"""Paper Appendix E.1 (Table 14, structured pruning) and E.3 (Table 16, SVD): numbers and grids.

The library code is `dlp_lib.compression.svd` and `dlp_lib.compression.structured`; this module
holds the per-profile grids and which of our texts stands for which of the paper's; the paper's
Tables 14 and 16 (LLaMA1-7B) are transcribed once, in `dlp_studies.paper`, and re-exported here for
the notebook. The verdict is `dlp_studies.verdicts.compression_verdict`.
"""
from __future__ import annotations

from .paper import TABLE14_STRUCTURED, TABLE16_SVD  # noqa: F401 - the notebook reads them as study.TABLE*

# Our evaluation texts standing in for the paper's (offline profiles have no WikiText/PTB).
PAPER_TEXT_FOR = {"brown": "wikitext", "sotu": "ptb", "wikitext2": "wikitext", "ptb": "ptb"}

# ---------------------------------------------------------------- per-profile grids
GRIDS = {
    "smoke": dict(svd_reductions=(0.1, 0.3), svd_variants=("plain", "asvd"), structured_ratios=(0.2, 0.4),
                  structured_texts=("brown", "sotu"), taylor_nsamples=4, taylor_seqlen=64, neval=None,
                  nsamples=None, timing_seqlen=None, timing_repeats=5,
                  note="smoke: tiny random model; SVD at 10/30% (plain, ASVD), structured at 20/40%."),
    "default": dict(svd_reductions=(0.1, 0.3, 0.5), svd_variants=("plain", "asvd"),
                    structured_ratios=(0.2, 0.4, 0.6), structured_texts=("brown",), taylor_nsamples=10,
                    taylor_seqlen=64, neval=8, nsamples=8, timing_seqlen=128, timing_repeats=3,
                    note="default (reduced for 2 CPU cores): SVD at 10, 30 and 50% (paper: 10..50% in steps of 10), plain SVD and ASVD "
                         "(SVD-LLM is in the library and tested; the paper profile runs it); structured pruning "
                         "at 20/40/60% (paper: 20..80%) on Brown only (paper: WikiText and PTB); perplexity on the "
                         "first 8 Brown test windows of 512 tokens (profile: 16), the same windows for Uniform "
                         "and DLP, so the comparison is paired; DLP's pass 1 and ASVD's statistics from 8 BBC "
                         "windows of 512 tokens (profile: 16); Taylor importance from 10 x 64 BBC windows as "
                         "LLM-Pruner's; forward time: median of 3 forwards of a 128-token window."),
    "paper": dict(svd_reductions=(0.1, 0.2, 0.3, 0.4, 0.5), svd_variants=("plain", "asvd", "svdllm"),
                  structured_ratios=(0.2, 0.4, 0.6, 0.8), structured_texts=("wikitext2", "ptb"),
                  taylor_nsamples=10, taylor_seqlen=64, neval=None, nsamples=None,
                  timing_seqlen=None, timing_repeats=5,
                  note="paper: Table 16 at 10..50% (three SVD variants), Table 14 at 20..80% on WikiText and PTB."),
}


def grid(profile: str, **overrides) -> dict:
    """The profile's grid (unknown profiles get the paper's), parameters given (not None) override it."""
    g = dict(GRIDS.get(profile, GRIDS["paper"]))
    changed = {k: v for k, v in overrides.items() if v is not None}
    for k in changed:
        if k not in g:
            raise ValueError(f"Unknown grid parameter {k!r}; allowed: {', '.join(sorted(g))}")
    g.update(changed)
    if changed:
        g["note"] += " Overridden: " + ", ".join(f"{k}={v}" for k, v in changed.items()) + "."
    return g
