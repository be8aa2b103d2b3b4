"""The compression `python -m dlp_lib prune` runs after pruning (paper Appendix E.2/E.4): its options,
their preflight and the run, over the cached results of `runs/nm_gptq.py`. Kept apart from them so
that editing the command line leaves those results valid."""
from __future__ import annotations

from ..compression.gptq import check_quantization
from ..scores import NMPattern
from .nm_gptq import UNQUANTIZED, mixed_nm_result, quantized_result


def add_arguments(parser) -> None:
    """Options of `python -m dlp_lib prune` for Appendix E.2/E.4. Mixed N:M needs no option of its
    own: it is `--nm N:M` with a non-uniform `--allocation` (see `wants`)."""
    from ..compression.gptq import BITS, MODES

    g = parser.add_argument_group("quantization after pruning (paper Appendix E.4, GPTQ)")
    g.add_argument("--quantize-bits", type=int, choices=BITS,
                   help="also quantize the pruned model's block weights to this many bits (GPTQ; 16 = none)")
    g.add_argument("--group-size", type=int,
                   help="quantization grid per group of this many input columns (32, 64 or 128); default: per row")
    g.add_argument("--quantize-mode", choices=MODES, default="gptq",
                   help="gptq: prune, then GPTQ keeping the zeros (default); joint: SparseGPT's prune-and-quantize "
                        "in one loop (--method sparsegpt); rtn: round-to-nearest")
    g.add_argument("--quantize-dense", action="store_true",
                   help="quantize the dense model instead (the pruning options only choose the data)")


def mixed_nm_requested(args) -> bool:
    """`--nm` with a non-uniform `--allocation`: per-block patterns (the config is then built with
    nm=None and the pattern's sparsity, and `run` prunes through `mixed_nm_result`)."""
    return getattr(args, "nm", None) is not None and getattr(args, "allocation", "uniform") != "uniform"


def wants(args) -> bool:
    """Does this `prune` invocation go through the compression path?"""
    return getattr(args, "quantize_bits", None) is not None or mixed_nm_requested(args)


def check_args(args, cfg) -> None:
    """The preflight: every bad combination fails here, before the model loads."""
    bits = getattr(args, "quantize_bits", None)
    if mixed_nm_requested(args):
        NMPattern.parse(args.nm)
        if bits is not None:
            raise ValueError("--quantize-bits with a mixed N:M model (--nm with a non-uniform allocation) is not "
                             "supported; use --allocation uniform with --nm, or no --nm")
        if cfg.granularity != "block":
            raise ValueError(f"mixed N:M gives one pattern per block; --granularity {cfg.granularity!r} is not allowed")
        return
    if bits is None:
        if getattr(args, "group_size", None) is not None or getattr(args, "quantize_dense", False):
            raise ValueError("--group-size and --quantize-dense need --quantize-bits")
        return
    if bits != UNQUANTIZED:
        check_quantization(bits, args.group_size, args.quantize_mode)
    if args.quantize_mode == "joint" and (args.quantize_dense or cfg.method != "sparsegpt" or cfg.nm is not None):
        raise ValueError("--quantize-mode joint is SparseGPT's prune-and-quantize loop: it needs --method sparsegpt, "
                         f"no --nm and no --quantize-dense (got method {cfg.method!r})")


def run(args, cfg, lab) -> dict:
    """Run the compression a `prune` invocation asks for; prints one line, returns the result.

    cfg: the pruning config of the invocation, with nm=None when `mixed_nm_requested(args)`."""
    check_args(args, cfg)
    use_cache = not getattr(args, "no_cache", False)
    mixed = mixed_nm_requested(args)
    if mixed:
        pattern = NMPattern.parse(args.nm)
        r = mixed_nm_result(lab, cfg, str(pattern), cfg.allocation, cfg.method, alpha=cfg.alpha, use_cache=use_cache)
        print(f"mixed N:M {r['pattern']} ({cfg.method}, {cfg.allocation}) on {cfg.model}: per-block N "
              f"{' '.join(map(str, r['n_kept']))}; density {r['achieved_density']:.4f} (target "
              f"{pattern.n_kept / pattern.m:.4f}); perplexity "
              + ", ".join(f"{k}: {v:.3f}" for k, v in r["perplexity"].items())
              + ("" if r["room"] else " [the grid leaves no room at this pattern: DLP = uniform]"))
        return r
    r = quantized_result(lab, cfg, args.quantize_bits, args.group_size, args.quantize_mode,
                         dense=args.quantize_dense, use_cache=use_cache)
    what = "dense model" if args.quantize_dense else f"{cfg.method} + {cfg.allocation} at {cfg.sparsity:.0%}"
    b = r["budgets"]
    print(f"{what} on {cfg.model}, {args.quantize_bits}-bit {args.quantize_mode}"
          f"{'' if args.group_size is None else f' (groups of {args.group_size})'}: perplexity "
          + ", ".join(f"{k}: {v:.3f}" for k, v in r["perplexity"].items())
          + (f"; zeros kept {b['pruned_still_zero']}/{b['pruned']}, kept weights rounded to 0: "
             f"{b['kept_rounded_to_zero']}" if "pruned" in b else "")
          + f"; achieved sparsity {r['achieved_sparsity']['overall']:.4f}")
    return r
