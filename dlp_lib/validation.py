"""Validation at the boundary: every value a user gives is checked once, before any expensive work,
with a message that names the bad value and what is allowed.

`validate_config` runs when an ExperimentConfig is made (cheap checks: names, ranges, sizes, the
consistency of N:M and sparsity). Before a model loads, every subcommand checks the device, its
context limit (read off the configuration, not the weights) and its output paths: writable, of the
right kind, never an input nor holding one, and `--save` folders empty, new or the project's own
(OUTPUT_MARKER).
"""
from __future__ import annotations

import numbers
import os
from pathlib import Path

DTYPE_NAMES = ("float32", "float16", "bfloat16")
# "auto": the fastest dtype here: bf16 on a CPU with native bf16 matmuls (1.8x faster than fp32 on
# the default protocol, but 70% masks change: benchmarks/cpu_dtype.py), fp32 on other CPUs, fp16 on
# a CUDA GPU. An opt-in; no profile uses it.
DTYPE_CHOICES = DTYPE_NAMES + ("auto",)
# The evaluation's compute dtype (perplexity): "same" as the weights, or bf16/fp16 autocast over
# fp32 weights, so calibration, scores and masks stay fp32. "auto": bf16 on a CPU with native bf16
# matmuls when the weights are fp32 (half the evaluation time; pruned perplexities within 0.7% of
# fp32 on the default protocol: benchmarks/cpu_dtype.py), else the weights' dtype.
EVAL_DTYPE_CHOICES = ("same", "auto", "float32", "bfloat16", "float16")
GRANULARITIES = ("block", "sublayer")


def _fail(field: str, value, allowed: str) -> None:
    raise ValueError(f"{field} = {value!r} is not allowed; {allowed}")


# Counts above this overflow the int32/int64 index arithmetic of numpy and torch (a traceback after
# loading), and would run for years anyway.
INT_LIMIT = 2**31 - 1
SEED_LIMIT = 2**32 - 1    # numpy's seeds


def check_int(field: str, value, low: int, high: int = INT_LIMIT) -> None:
    """`value` is an integer in [low, high] (None is the caller's business)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        _fail(field, value, f"expected an integer >= {low} and <= {high}")


def check_allocator_options(allocation: str, **given) -> None:
    """Options given (not None) that `allocation` does not read are an error, never silently ignored."""
    from .allocation import get_allocator
    takes = get_allocator(allocation).params
    for name, value in given.items():
        if value is not None and name not in takes:
            _fail(name, value, f"it does not apply to allocation {allocation!r}, which takes "
                  f"{', '.join(takes) or 'no parameters'}")


def check_choice(field: str, value, allowed, note: str = "") -> None:
    """`value` is one of `allowed` (a name from a registry or a fixed list); `note` follows the list."""
    if not isinstance(value, str) or value not in allowed:
        _fail(field, value, f"allowed: {', '.join(allowed)}{note}")


def check_method(method) -> None:
    """A pruning method of `pruning.METHODS` (CLI, configurations and api.py alike)."""
    from .pruning import METHODS
    check_choice("method", method, METHODS)


def check_allocation(allocation) -> None:
    """A layerwise allocator of the registry (`allocation.allocator_names()`)."""
    from .allocation import allocator_names
    check_choice("allocation", allocation, allocator_names())


def check_group(group) -> None:
    """A mask comparison group of `scores.GROUPS`, or None (the method's default, `pruning.default_group`)."""
    from .scores import GROUPS
    if group is not None:
        check_choice("group", group, GROUPS, " (or None: the method's default)")


def check_statistic(statistic) -> None:
    """A layer statistic of `block_stats.LAYER_STATISTICS` (DLP's F, and the one the explorer's RID shows)."""
    from .block_stats import LAYER_STATISTICS
    check_choice("statistic", statistic, LAYER_STATISTICS)


def check_owl_m(owl_m) -> None:
    """OWL's outlier threshold M: one of the grid pass 1 computes outlier ratios for (`block_stats.OWL_M_GRID`)."""
    from .block_stats import OWL_M_GRID
    number = not isinstance(owl_m, bool) and isinstance(owl_m, numbers.Real)
    if not number or float(owl_m) not in OWL_M_GRID:
        _fail("owl_m", owl_m, f"OWL's M must be one of the pass-1 grid {[int(m) for m in OWL_M_GRID]}")


def check_nm_sparsity(sparsity: float, nm) -> None:
    """An N:M pattern removes exactly 1 - N/M of every group; a different target sparsity contradicts it."""
    if abs(sparsity - nm.sparsity) > 1e-9:
        _fail("sparsity", sparsity, f"N:M {nm} keeps {nm.n_kept} of {nm.m} weights, i.e. sparsity "
              f"{nm.sparsity:g}; give that sparsity (or omit it on the command line)")


def validate_config(cfg) -> None:
    from .allocation import get_allocator
    from .data import TextSource
    from .scores import NMPattern, check_ratio

    check_method(cfg.method)
    check_allocation(cfg.allocation)
    check_ratio(cfg.sparsity)
    allocator = get_allocator(cfg.allocation)
    if cfg.granularity not in GRANULARITIES:
        _fail("granularity", cfg.granularity, f"allowed: {', '.join(GRANULARITIES)}")
    if cfg.granularity not in allocator.granularities:
        _fail("granularity", cfg.granularity, f"{cfg.allocation!r} allows {', '.join(allocator.granularities)}")
    check_statistic(cfg.statistic)
    check_group(cfg.group)
    if cfg.dtype not in DTYPE_NAMES:
        _fail("dtype", cfg.dtype, f"allowed: {', '.join(DTYPE_NAMES)}")
    if cfg.eval_dtype != cfg.dtype and not (cfg.dtype == "float32" and cfg.eval_dtype in ("bfloat16", "float16")):
        _fail("eval_dtype", cfg.eval_dtype, f"with dtype {cfg.dtype!r} allowed: {cfg.dtype!r} (or 'same'); "
              "bfloat16/float16 autocast needs float32 weights")
    if cfg.alpha is not None and not (0.0 <= float(cfg.alpha) < 0.5):
        _fail("alpha", cfg.alpha, "DLP's alpha must be in [0, 0.5) (ratios span 2 * alpha)")
    if not (0.0 <= float(cfg.lamda) < 0.5):
        _fail("lamda", cfg.lamda, "OWL's lambda must be in [0, 0.5)")
    check_owl_m(cfg.owl_m)
    if cfg.lod_m is not None and float(cfg.lod_m) <= 0:
        _fail("lod_m", cfg.lod_m, "expected a positive threshold multiplier")
    check_int("nsamples", cfg.nsamples, 1)
    check_int("seqlen", cfg.seqlen, 2)
    check_int("seed", cfg.seed, 0, SEED_LIMIT)
    if cfg.neval is not None:
        check_int("neval", cfg.neval, 1)
    if not cfg.eval:
        _fail("eval", cfg.eval, "give at least one evaluation source")
    validate_device_name(cfg.device)
    check_revision(cfg.model, cfg.revision)
    if cfg.nm is not None:
        check_nm_sparsity(cfg.sparsity, NMPattern.parse(cfg.nm))
        if cfg.allocation != "uniform":
            _fail("allocation", cfg.allocation, "a config's nm is one pattern for every block; use 'uniform' with "
                  "nm, or mixed N:M (per-block N, Table 15): dlp_lib.runs.nm_gptq.mixed_nm_result, "
                  "or `prune --nm N:M --allocation dlp`")
    for s in (cfg.calib, *cfg.eval):
        source = TextSource(s)
        if source.is_path:
            _check_text_file(source)


_CHECKED_FILES: dict = {}


def _check_text_file(source) -> None:
    """A local text source exists, is a file and is UTF-8 text (checked once per file version)."""
    p = Path(source.name)
    try:
        st = p.stat()
        version = (str(p.resolve()), st.st_mtime_ns, st.st_size)
    except OSError:
        version = None
    if version is not None and version in _CHECKED_FILES:
        return
    from .models import check_not_special_file
    check_not_special_file(p, "text file")   # /dev/null or a FIFO: named as such, not "does not exist"
    source.file_text()
    if version is not None:
        _CHECKED_FILES[version] = True


def validate_device_name(device: str) -> None:
    import torch
    try:
        torch.device(device)
    except (RuntimeError, TypeError):
        _fail("device", device, "expected cpu, cuda, cuda:N or mps")


def check_device_available(device: str) -> None:
    """The device exists on this machine (checked before the model loads)."""
    import torch
    d = torch.device(device)
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device = {device!r} but this machine has no CUDA GPU (torch {torch.__version__}, "
                             "cuda available: False); use --device cpu")
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise ValueError(f"device = {device!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
    elif d.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device = {device!r} but MPS is not available here; use --device cpu")
    elif d.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device = {device!r} is not supported; allowed: cpu, cuda, cuda:N, mps")


def cpu_supports_bf16(cpuinfo: str | None = None) -> bool:
    """Does this CPU multiply bf16 natively (AVX512-BF16 or AMX-BF16)? Without it, bf16 matmuls are
    emulated and slower than fp32, so bf16 is never chosen automatically there."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_dtype(dtype: str, device: str) -> str:
    """The concrete dtype name for `dtype` on `device` ("auto" resolved; others checked and kept)."""
    if dtype not in DTYPE_CHOICES:
        _fail("dtype", dtype, f"allowed: {', '.join(DTYPE_CHOICES)}")
    if dtype != "auto":
        return dtype
    kind = str(device).split(":")[0]
    if kind == "cuda":
        return "float16"
    if kind == "cpu" and cpu_supports_bf16():
        return "bfloat16"
    return "float32"


def resolve_eval_dtype(eval_dtype: str, dtype: str, device: str) -> str:
    """The concrete compute dtype of the evaluation for weights of `dtype` on `device`."""
    if eval_dtype not in EVAL_DTYPE_CHOICES:
        _fail("eval_dtype", eval_dtype, f"allowed: {', '.join(EVAL_DTYPE_CHOICES)}")
    if eval_dtype == "same":
        return dtype
    if eval_dtype == "auto":
        native = str(device).split(":")[0] == "cpu" and cpu_supports_bf16()
        return "bfloat16" if dtype == "float32" and native else dtype
    return eval_dtype


# ---------------------------------------------------------------- output paths
# Written into every folder the project saves a model to: a later --save may replace what is in a
# folder carrying it (the project's own earlier output), never a folder of the user's own files.
OUTPUT_MARKER = ".dlp_lib_output"


def input_paths(model: str | None = None, texts=(), files=()) -> list[Path]:
    """The local files and folders a run reads: the model (a checkpoint folder or .gguf file), the
    text files among the calibration/evaluation sources, and any other input files."""
    from .data import TextSource
    found = []
    if model and os.path.exists(os.path.expanduser(model)):
        found.append(Path(model).expanduser())
    found += [Path(t) for t in texts if t and TextSource(t).is_path]
    found += [Path(f) for f in files if f]
    return found


def _check_not_an_input(path: Path, what: str, inputs) -> None:
    """An output must not be an input, a folder holding one, or an existing file inside an input
    folder (a model checkpoint's config.json): writing it would destroy the input."""
    out = path.expanduser().resolve()
    for given in inputs:
        src = Path(given).expanduser().resolve()
        same = out == src or (out.exists() and src.exists() and os.path.samefile(out, src))
        if same or out in src.parents:
            kind = "is" if same else "contains"
        elif src in out.parents and out.is_file():   # a folder inside is for check_save_dir's rules
            kind = "is inside"
        else:
            continue
        raise ValueError(f"{what} {str(path)!r} {kind} the input {str(given)!r}; writing there would destroy it; "
                         "choose another output path")


def check_output_file(path: Path | None, what: str, inputs=()) -> None:
    """The file can be written (its folder exists or can be made, and is writable) and is no input."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a directory; give a file path")
    from .models import check_not_special_file
    check_not_special_file(path, what)
    _check_not_an_input(path, what, inputs)
    _check_dir_writable(path.parent, what, path)


def check_output_dir(path: Path | None, what: str, inputs=()) -> None:
    """The folder exists or can be made, is writable and is no input nor holds one."""
    if path is None:
        return
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {str(path)!r} exists and is not a directory")
    _check_not_an_input(path, what, inputs)
    _check_dir_writable(path, what, path)


def check_save_dir(path: Path | None, what: str, inputs=(), force: bool = False) -> None:
    """A folder to save a model into: as check_output_dir, and empty, new, or the project's own
    earlier output (it carries OUTPUT_MARKER); --force allows a folder of other files."""
    check_output_dir(path, what, inputs)
    if path is None or force or not Path(path).is_dir() or (Path(path) / OUTPUT_MARKER).exists():
        return
    foreign = sorted(p.name for p in Path(path).iterdir())
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise ValueError(f"{what} {str(path)!r} holds files this project did not write ({shown}); saving there "
                         "could overwrite them; choose a new or empty folder, or add --force")


def mark_output_dir(path: Path) -> None:
    """Create the save folder and mark it as the project's output (see OUTPUT_MARKER)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / OUTPUT_MARKER).write_text("written by dlp_lib; a later --save may replace this folder's files\n")


def _check_dir_writable(folder: Path, what: str, shown: Path) -> None:
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {str(shown)!r} cannot be written: {str(probe)!r} is not a writable directory")


# ---------------------------------------------------------------- the model, before it loads
def model_is_hub_id(name: str) -> bool:
    """A name transformers resolves on the Hugging Face hub (not a built-in model nor a local path)."""
    from .architectures.tiny import FAMILIES
    from .models import EMBEDDED_MODEL, REGISTRY, TINY_MODEL
    builtin = name in (EMBEDDED_MODEL, TINY_MODEL) or name in REGISTRY or (
        name.startswith("tiny-") and name[5:].replace("-", "_") in FAMILIES)
    local = name.startswith(("/", ".", "~")) or name.lower().endswith(".gguf") or os.path.exists(name)
    return not (builtin or local)


def check_revision(model: str, revision: str | None) -> None:
    """A revision picks a version of a hub model; built-in models and local paths have none."""
    if revision is not None and not model_is_hub_id(model):
        _fail("revision", revision, f"--revision applies to hub ids only; {model!r} is a built-in model or a "
              "local path")


def model_context_limit(model: str, revision: str | None = None, trust_remote_code: bool = False) -> int | None:
    """The model's maximum positions read from its configuration, without loading its weights
    (None when the configuration cannot be read here: the load reports that)."""
    from .models import load_model, resolve_source
    if model.startswith("tiny-"):
        config = load_model(model)[0].config     # a few random MB: built, not loaded
    else:
        from transformers import AutoConfig
        try:
            config = AutoConfig.from_pretrained(resolve_source(model), revision=revision,
                                                trust_remote_code=trust_remote_code)
        except (OSError, ValueError):
            return None
    return context_limit_of(config)


def context_limit_of(config) -> int | None:
    """The maximum positions a model configuration declares (None: it declares none)."""
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_context_length(field: str, seqlen: int, limit: int | None, model_name: str) -> None:
    """seqlen must fit the model's positions (a longer window silently extrapolates or fails later)."""
    if limit is not None and seqlen > limit:
        raise ValueError(f"{field} = {seqlen} exceeds {model_name}'s maximum of {limit} positions; "
                         f"use {field} <= {limit}")


def cost_notice(cfg, profile_cfg, factor: float = 10.0) -> str | None:
    """A line saying a run calibrates on far more tokens than its profile (its cost grows with them)."""
    tokens, base = cfg.nsamples * cfg.seqlen, profile_cfg.nsamples * profile_cfg.seqlen
    if tokens <= factor * base:
        return None
    return (f"note: calibration on {cfg.nsamples} x {cfg.seqlen} = {tokens:,} tokens, {tokens / base:,.0f}x the "
            f"profile's {base:,}: pruning (passes 1 and 2) takes about {tokens / base:,.0f}x as long")
