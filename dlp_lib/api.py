"""Public Python API on in-memory Hugging Face models: statistics -> plan -> prune -> perplexity.

The thin in-memory front door: the caller owns the model and every result; `experiment.Lab` is the
cached one (profiles, loading, the disk cache) that the CLI uses. Both check their arguments with
the same functions of `validation`.

Any `AutoModelForCausalLM` whose decoder blocks the library recognises (`models.SUPPORTED_BLOCK_CLASSES`)
works, loaded however the caller likes; nothing here needs a `Lab`, a profile or the disk cache.

    stats = dense_statistics(model, tok, calib="bbc", nsamples=32, seqlen=512)   # pass 1 (one dense pass)
    p = plan(stats, allocation="dlp", sparsity=0.7)                               # pure, instant
    prune(model, p, method="wanda", calib="bbc", tokenizer=tok)                   # pass 2, in place
    perplexity(model, tok, text="brown")

Every argument is checked before any forward pass; a bad value raises ValueError naming it.
"""
from __future__ import annotations

import torch

from .allocation import build_plan
from .block_stats import DenseStatistics, compute_dense_statistics
from .data import TextSource, calibration_windows, evaluation_windows
from .evaluation import achieved_sparsity
from .evaluation import perplexity as _windows_perplexity
from .models import check_decoder_only, decoder_blocks
from .plan import SparsityPlan
from .pruning import default_group, prune_model
from .scores import NMPattern, check_ratio
from .validation import (INT_LIMIT, SEED_LIMIT, check_allocation, check_allocator_options, check_context_length,
                         check_device_available, check_group, check_int, check_method, check_nm_sparsity,
                         check_owl_m, check_statistic, context_limit_of)

DEFAULT_NSAMPLES = 32     # calibration windows when a text source is given
DEFAULT_SEQLEN = 512      # tokens per window when a text source is given
DEFAULT_NEVAL = 32        # evaluation windows (at most)

__all__ = ["dense_statistics", "plan", "prune", "perplexity", "DEFAULT_NSAMPLES", "DEFAULT_SEQLEN",
           "DEFAULT_NEVAL"]


# ---------------------------------------------------------------- argument checks
def _check_model(model, device=None) -> int:
    """The model is a decoder-only module with recognisable decoder blocks and `device` exists
    here (None: the model's); returns the number of blocks."""
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model = {type(model).__name__} is not a torch.nn.Module; pass a Hugging Face "
                         "AutoModelForCausalLM (e.g. from dlp_lib.models.load_model)")
    if getattr(model, "config", None) is not None:
        check_decoder_only(model.config, getattr(model.config, "name_or_path", None) or type(model).__name__)
    if device is not None:
        check_device_available(str(device))
    return len(decoder_blocks(model))   # UnsupportedModelError (a ValueError) names the classes found


def _check_optional_int(name: str, value, low: int, high: int = INT_LIMIT) -> None:
    if value is not None:
        check_int(name, value, low, high)


def _vocab_size(model) -> int | None:
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    return getattr(emb, "num_embeddings", None)


def _check_seqlen(model, seqlen: int) -> None:
    check_context_length("seqlen", seqlen, context_limit_of(getattr(model, "config", None)), "the model")


def _check_ids(model, ids: torch.Tensor, what: str) -> None:
    if ids.dim() != 2 or ids.shape[0] < 1 or ids.shape[1] < 2:
        raise ValueError(f"{what} must be an (N, T) tensor of token ids with N >= 1 and T >= 2, got shape "
                         f"{tuple(ids.shape)}")
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise ValueError(f"{what} must hold integer token ids, got dtype {ids.dtype}")
    vocab = _vocab_size(model)
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or (vocab is not None and hi >= vocab):
        raise ValueError(f"{what} holds token ids in [{lo}, {hi}] but the model's vocabulary is [0, {vocab})")
    _check_seqlen(model, ids.shape[1])


def _source(value, what: str) -> TextSource:
    if not isinstance(value, str):
        raise ValueError(f"{what} = {value!r} is not allowed; give a source name, a .txt path or an (N, T) "
                         "LongTensor of token ids")
    return TextSource(value)        # names the allowed sources when unknown


def _need_tokenizer(tokenizer, what: str, value) -> None:
    if tokenizer is None:
        raise ValueError(f"{what} = {value!r} is text and needs a tokenizer (tokenizer=...)")


def _token_windows(model, tokenizer, source, n: int | None, seqlen: int | None, seed: int, *,
                   what: str, n_name: str, default_n: int) -> tuple[torch.Tensor, dict]:
    """(N, T) calibration windows and the identity of where they came from.

    A tensor is used as given: `n`/`seqlen` left as None take its shape, an explicit value that
    disagrees with it is an error (never silently cut or padded). A text source draws `n`
    (default `default_n`) seeded windows of `seqlen` (default DEFAULT_SEQLEN) tokens."""
    _check_optional_int(n_name, n, 1)
    _check_optional_int("seqlen", seqlen, 2)
    _check_optional_int("seed", seed, 0, SEED_LIMIT)
    if isinstance(source, torch.Tensor):
        if n is not None and source.dim() == 2 and n != source.shape[0]:
            raise ValueError(f"{n_name} = {n} but {what} has {source.shape[0]} rows; omit {n_name} or pass "
                             "that many windows")
        if seqlen is not None and source.dim() == 2 and seqlen != source.shape[1]:
            raise ValueError(f"seqlen = {seqlen} but {what} has {source.shape[1]} columns; omit seqlen or pass "
                             "windows of that length")
        _check_ids(model, source, what)
        ids = source.long()
        return ids, {"calib": f"tensor:{tuple(ids.shape)}", "nsamples": ids.shape[0], "seqlen": ids.shape[1]}
    src = _source(source, what)
    _need_tokenizer(tokenizer, what, source)
    n = default_n if n is None else n
    seqlen = DEFAULT_SEQLEN if seqlen is None else seqlen
    _check_seqlen(model, seqlen)
    ids = calibration_windows(src, tokenizer, n, seqlen, seed)
    _check_ids(model, ids, what)
    return ids, {"calib": src.identity(), "nsamples": n, "seqlen": seqlen, "seed": seed}


# ---------------------------------------------------------------- pass 1
def dense_statistics(model, tokenizer=None, calib="bbc", nsamples: int | None = None, seqlen: int | None = None,
                     seed: int = 0, device=None, *, progress: bool = True) -> DenseStatistics:
    """Pass 1 of DLP/OWL on the dense `model`: per-block statistics of its Wanda scores.

    calib: an offline source ("bbc", "brown", "sotu", "mobydick"), a hub source ("c4", ...), the
    path of a .txt file, or an (N, T) LongTensor of token ids. For text, `nsamples` (default 32)
    windows of `seqlen` (default 512) tokens are drawn with `seed`; for a tensor they default to
    its shape. `device`: where blocks compute (default: the model's). Not cached: the caller owns
    the model, and the statistics are returned to be kept (plans are pure functions of them).
    """
    _check_model(model, device)
    ids, identity = _token_windows(model, tokenizer, calib, nsamples, seqlen, seed, what="calib",
                                   n_name="nsamples", default_n=DEFAULT_NSAMPLES)
    stats = compute_dense_statistics(model, ids, device=device, progress=progress)
    stats.config = {"model": str(getattr(getattr(model, "config", None), "name_or_path", None) or
                                 type(model).__name__), **identity}
    return stats


# ---------------------------------------------------------------- budgets
def plan(stats: DenseStatistics | None, allocation: str = "dlp", sparsity: float = 0.7, alpha: float | None = None,
         model=None, *, method: str = "wanda", granularity: str = "block", strict: bool = False,
         cache_config: dict | None = None, **allocator_params) -> SparsityPlan:
    """Per-block sparsity budgets from the named allocator (a pure function of its inputs).

    allocation: a name of `dlp_lib.allocation.allocator_names()`. `alpha` is DLP's (None: paper
    Table 19 for the sparsity); other allocator parameters go by keyword (DLP: statistic; OWL:
    lamda, owl_m; AlphaPruning: epsilon, scale). Allocators that read the weights (global, er,
    er_plus, lamp, alphapruning) need `model=` (dense); those that read pass 1 need `stats`.
    `method` is the pruning method the budget is for (Global scores by it). `cache_config`: identity
    of the dense weights (e.g. {"fingerprint": models.model_fingerprint(model)}) for allocators that
    cache what they read off the weights (AlphaPruning's spectra); None computes it every time.
    """
    check_allocation(allocation)
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)):
        raise ValueError(f"sparsity = {sparsity!r} is not allowed; expected a number in [0, 1)")
    check_ratio(sparsity)
    check_method(method)
    if "statistic" in allocator_params:
        check_statistic(allocator_params["statistic"])
    if "owl_m" in allocator_params:
        check_owl_m(allocator_params["owl_m"])
    if stats is not None and not isinstance(stats, DenseStatistics):
        raise ValueError(f"stats = {type(stats).__name__} is not allowed; pass the DenseStatistics returned by "
                         "dense_statistics(...) (or None for allocators that do not read pass 1)")
    if alpha is not None:
        check_allocator_options(allocation, alpha=alpha)
        allocator_params["alpha"] = alpha
    if model is not None:
        n_blocks = _check_model(model)
        if stats is not None and len(stats.blocks) != n_blocks:
            raise ValueError(f"stats has {len(stats.blocks)} blocks but the model has {n_blocks}; compute the "
                             "statistics on this model")
    p = build_plan(allocation, float(sparsity), stats=stats, model=model, strict=strict, granularity=granularity,
                   method=method, cache_config=cache_config, **allocator_params)
    p.config.setdefault("method", method)
    return p


# ---------------------------------------------------------------- pass 2
def _resolve_nm(nm) -> NMPattern | None:
    if nm is None or isinstance(nm, NMPattern):
        return nm
    if isinstance(nm, str):
        return NMPattern.parse(nm)
    raise ValueError(f"nm = {nm!r} is not allowed; give 'N:M' (N weights kept of every M) or None")


def prune(model, plan: SparsityPlan, method: str = "wanda", calib=None, tokenizer=None, nsamples: int | None = None,
          seqlen: int | None = None, seed: int = 0, group: str | None = None, nm=None, device=None, *,
          progress: bool = True) -> dict:
    """Prune `model` in place following `plan`; returns `achieved_sparsity(model)`.

    method: magnitude (reads no data), wanda or sparsegpt (need `calib`: a source name, a .txt
    path with `tokenizer`, or an (N, T) LongTensor; same defaults as `dense_statistics`; block l is
    calibrated on the outputs of the already pruned blocks < l). group: None -> per_layer for
    magnitude, per_output otherwise. nm: "N:M" (N kept of every M), only with a uniform plan.
    """
    n_blocks = _check_model(model, device)
    check_method(method)
    if not isinstance(plan, SparsityPlan):
        raise ValueError(f"plan = {type(plan).__name__} is not allowed; pass the SparsityPlan returned by plan(...)")
    if len(plan.ratios) != n_blocks:
        raise ValueError(f"plan has {len(plan.ratios)} block ratios but the model has {n_blocks} blocks")
    check_group(group)
    if group is None:
        group = default_group(method)
    pattern = _resolve_nm(nm)
    if pattern is not None and len(set(plan.ratios)) > 1:
        raise ValueError(f"nm = {pattern} applies one pattern to every block, but plan {plan.allocation!r} is not "
                         "uniform; use plan(..., allocation='uniform', sparsity=1 - N/M)")
    if pattern is not None:
        check_nm_sparsity(plan.target, pattern)   # the CLI's rule: the pattern decides the sparsity
    ids = None
    if method != "magnitude":
        if calib is None:
            raise ValueError(f"method = {method!r} needs calibration data (calib=...: a source name, a .txt path "
                             "or an (N, T) LongTensor)")
        ids, _ = _token_windows(model, tokenizer, calib, nsamples, seqlen, seed, what="calib",
                                n_name="nsamples", default_n=DEFAULT_NSAMPLES)
    prune_model(model, plan, method, ids, group=group, nm=pattern, device=device, progress=progress)
    return achieved_sparsity(model)


# ---------------------------------------------------------------- evaluation
def perplexity(model, tokenizer=None, text="brown", seqlen: int | None = None, neval: int | None = DEFAULT_NEVAL,
               device=None, *, progress: bool = True) -> float:
    """exp(mean next-token NLL) over non-overlapping windows of `text`.

    text: a source name (its test split), a .txt path (the whole file), or an (n, T) LongTensor
    of windows. Text is cut into windows of `seqlen` (default 512) tokens; a tensor's own width
    is used (an explicit `seqlen` must match it). At most `neval` windows (the first ones; None:
    all) are evaluated.
    """
    _check_model(model, device)
    _check_optional_int("neval", neval, 1)
    _check_optional_int("seqlen", seqlen, 2)
    if isinstance(text, torch.Tensor):
        if seqlen is not None and text.dim() == 2 and seqlen != text.shape[1]:
            raise ValueError(f"seqlen = {seqlen} but text has {text.shape[1]} columns; omit seqlen or pass windows "
                             "of that length")
        _check_ids(model, text, "text")
        windows = text.long()[:neval] if neval is not None else text.long()
    else:
        src = _source(text, "text")
        _need_tokenizer(tokenizer, "text", text)
        seqlen = DEFAULT_SEQLEN if seqlen is None else seqlen
        _check_seqlen(model, seqlen)
        windows = evaluation_windows(src, tokenizer, seqlen, neval)
        _check_ids(model, windows, "text")
    return _windows_perplexity(model, windows, device=device, progress=progress,
                               desc=f"perplexity {text if isinstance(text, str) else 'windows'}")

