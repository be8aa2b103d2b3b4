"""`python -m dlp_lib compress`: SVD or structured compression with Uniform/DLP budgets (paper Appendix E).

Wiring (in dlp_lib/cli.py): `add_arguments(sub.add_parser("compress", help=HELP))` and dispatch
`command == "compress"` to `run(args)`.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "compress a model with SVD (Table 16) or structured pruning (Table 14), Uniform or DLP budgets"


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    from ..experiment import PROFILES
    from .svd import VARIANTS
    p.add_argument("--technique", choices=("svd", "structured"), required=True,
                   help="svd: every linear sublayer becomes a rank-k pair of nn.Linear (Table 16); structured: "
                        "LLM-Pruner's Taylor removal of whole KV-head groups and MLP channels (Table 14)")
    p.add_argument("--reduction", type=float, required=True,
                   help="target fraction of the blocks' parameters removed, in [0, 1) (structured: of the "
                        "pruned blocks' parameters)")
    p.add_argument("--allocation", choices=("uniform", "dlp"), default="dlp",
                   help="per-block budgets: DLP's plan at the target (default) or Uniform")
    p.add_argument("--variant", choices=VARIANTS, default="asvd",
                   help="svd only: plain truncated SVD, asvd (input scaling by (mean |x_j|)^0.5, default), "
                        "svdllm (whitening by the Cholesky factor of X^T X)")
    p.add_argument("--taylor-nsamples", type=int, default=10,
                   help="structured only: calibration windows for the Taylor backward pass (LLM-Pruner: 10)")
    p.add_argument("--taylor-seqlen", type=int, default=64,
                   help="structured only: their length in tokens (LLM-Pruner: 64)")
    p.add_argument("--block-range", type=int, nargs=2, metavar=("START", "END"),
                   help="structured only: prune blocks START..END-1 (default: LLM-Pruner's 4..29 of 32 in "
                        "proportion, first round(L/8) and last round(L/16) blocks kept)")
    p.add_argument("--profile", choices=sorted(PROFILES), default="default")
    p.add_argument("--model", help="smollm2-135m, tiny-llama, a local checkpoint directory or a hub id")
    p.add_argument("--alpha", type=float, help="DLP alpha (default: paper Table 19 for the reduction)")
    p.add_argument("--statistic", help="DLP layer statistic (default median)")
    p.add_argument("--calib", help="calibration source (bbc, brown, sotu, mobydick, c4, wikitext2, ptb, .txt)")
    p.add_argument("--eval", nargs="+", help="evaluation sources")
    p.add_argument("--nsamples", type=int, help="calibration windows for DLP's plan and the SVD statistics")
    p.add_argument("--seqlen", type=int, help="tokens per calibration and evaluation window")
    p.add_argument("--neval", type=int, help="evaluation windows per text")
    p.add_argument("--seed", type=int)
    p.add_argument("--device")
    p.add_argument("--dtype", choices=("float32", "float16", "bfloat16"))
    p.add_argument("--save", type=Path, help="write the compressed model there (load it with "
                   "dlp_lib.compression.svd.load_svd / structured.load_structured)")
    p.add_argument("--json", type=Path, help="write the result dict there")
    p.add_argument("--no-cache", action="store_true", help="recompute instead of reading the results cache")
    return p


def run(a: argparse.Namespace) -> int:
    from ..experiment import ExperimentConfig, get_lab
    from ..scores import check_ratio
    from .structured import StructuredConfig, structured_result
    from .svd import SVDConfig, svd_result

    check_ratio(a.reduction, "--reduction")
    # technique parameters are checked before the model loads
    scfg = StructuredConfig(nsamples=a.taylor_nsamples, seqlen=a.taylor_seqlen,
                            block_range=tuple(a.block_range) if a.block_range else None)
    vcfg = SVDConfig(variant=a.variant)
    cfg = ExperimentConfig.from_profile(a.profile, model=a.model, allocation=a.allocation, alpha=a.alpha,
                                        statistic=a.statistic, calib=a.calib,
                                        eval=tuple(a.eval) if a.eval else None, nsamples=a.nsamples,
                                        seqlen=a.seqlen, seed=a.seed, device=a.device, dtype=a.dtype,
                                        **({"neval": a.neval} if a.neval is not None else {}))
    lab = get_lab(cfg.model, cfg.device, cfg.dtype)
    if a.technique == "svd":
        res = svd_result(lab, cfg, a.reduction, a.variant, svd_cfg=vcfg, use_cache=not a.no_cache, save=a.save)
    else:
        res = structured_result(lab, cfg, a.reduction, structured_cfg=scfg, use_cache=not a.no_cache, save=a.save)
    p = res["params"]
    print(f"{a.technique} ({a.allocation}{', ' + a.variant if a.technique == 'svd' else ''}) at {a.reduction:.0%}: "
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
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=2, default=str))
    return 0


def main(argv=None) -> int:
    """Stand-alone entry point until the lead wires `compress` into python -m dlp_lib."""
    p = argparse.ArgumentParser(prog="python -m dlp_lib.compression.command", description=HELP)
    return run(add_arguments(p).parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
