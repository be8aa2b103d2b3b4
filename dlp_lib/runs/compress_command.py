"""`python -m dlp_lib compress`: SVD or structured compression following an allocator's budgets
(paper Appendix E: Table 16 SVD, Table 14 structured pruning).

The CLI (layer above) owns the shared options (profile, model, allocation, alpha, calibration,
evaluation, device, ...), builds the ExperimentConfig and the Lab, and calls `run(args, cfg, lab)`;
this module adds only the technique's own options and checks them before the model loads.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..compression.structured import StructuredConfig
from ..compression.svd import VARIANTS, SVDConfig
from .structured import structured_result
from .svd import svd_result

HELP = "compress a model with SVD (Table 16) or structured pruning (Table 14) following an allocator's budgets"


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The technique's options (the shared ones come from the CLI)."""
    p.add_argument("--technique", choices=("svd", "structured"), required=True,
                   help="svd: every linear sublayer becomes a rank-k pair of nn.Linear (Table 16); structured: "
                        "LLM-Pruner's Taylor removal of whole KV-head groups and MLP channels (Table 14)")
    p.add_argument("--reduction", type=float, required=True,
                   help="target fraction of the blocks' parameters removed, in [0, 1) (structured: of the "
                        "pruned blocks' parameters); the allocator's plan at this target is the budget")
    p.add_argument("--variant", choices=VARIANTS,
                   help="svd only: plain truncated SVD, asvd (input scaling by (mean |x_j|)^0.5), svdllm "
                        f"(whitening by the Cholesky factor of X^T X); default {SVDConfig.variant}")
    p.add_argument("--taylor-nsamples", type=int, help="structured only: calibration windows for the Taylor "
                   f"backward pass (default {StructuredConfig.nsamples}, as LLM-Pruner)")
    p.add_argument("--taylor-seqlen", type=int, help="structured only: their length in tokens (default "
                   f"{StructuredConfig.seqlen}, as LLM-Pruner)")
    p.add_argument("--block-range", type=int, nargs=2, metavar=("START", "END"),
                   help="structured only: prune blocks START..END-1 (default: LLM-Pruner's 4..29 of 32 in "
                        "proportion, first round(L/8) and last round(L/16) blocks kept)")
    p.add_argument("--save", type=Path, help="write the compressed model there (load it with "
                   "dlp_lib.compression.svd.load_svd / dlp_lib.compression.structured.load_structured)")
    p.add_argument("--json", type=Path, help="write the result dict there")
    p.add_argument("--no-cache", action="store_true", help="recompute instead of reading the results cache")
    return p


def technique_config(a: argparse.Namespace) -> SVDConfig | StructuredConfig:
    """The technique's configuration from the arguments; raises ValueError before anything loads."""
    from ..scores import check_ratio
    check_ratio(a.reduction, "--reduction")
    # an option of the other technique is an error, never silently ignored
    svd_only = {"--variant": a.variant}
    structured_only = {"--taylor-nsamples": a.taylor_nsamples, "--taylor-seqlen": a.taylor_seqlen,
                       "--block-range": a.block_range}
    foreign = structured_only if a.technique == "svd" else svd_only
    for option, value in foreign.items():
        if value is not None:
            raise ValueError(f"{option} does not apply to --technique {a.technique} "
                             f"({'no variants' if option == '--variant' else 'structured pruning only'})")
    if a.technique == "svd":
        return SVDConfig() if a.variant is None else SVDConfig(variant=a.variant)
    given = {"nsamples": a.taylor_nsamples, "seqlen": a.taylor_seqlen,
             "block_range": tuple(a.block_range) if a.block_range else None}
    return StructuredConfig(**{k: v for k, v in given.items() if v is not None})


def run(a: argparse.Namespace, cfg, lab) -> int:
    """Compress a copy of lab's dense model following cfg's allocator at a.reduction; print, save, write json."""
    tcfg = technique_config(a)
    if a.technique == "svd":
        res = svd_result(lab, cfg, a.reduction, tcfg.variant, svd_cfg=tcfg, use_cache=not a.no_cache, save=a.save)
    else:
        res = structured_result(lab, cfg, a.reduction, structured_cfg=tcfg, use_cache=not a.no_cache, save=a.save)
    p = res["params"]
    print(f"{a.technique} ({cfg.allocation}{', ' + tcfg.variant if a.technique == 'svd' else ''}) at {a.reduction:.0%}: "
          f"blocks' parameters removed {res['achieved_reduction']:.4f}; model {p['model_before']:,} -> "
          f"{p['model_after']:,} parameters")
    for text, ppl in res["perplexity"].items():
        print(f"  perplexity {text}: dense {res['dense_perplexity'][text]:.3f} -> {ppl:.3f}")
    if "forward_seconds" in res:
        f = res["forward_seconds"]
        print(f"  one forward of {f['seqlen']} tokens: dense {1e3 * f['dense']:.1f} ms, pruned {1e3 * f['pruned']:.1f} ms")
    if a.save:
        print(f"  saved to {a.save}")
    if a.json:
        from ..cache import atomic_write_json
        atomic_write_json(a.json, res)
    return 0
