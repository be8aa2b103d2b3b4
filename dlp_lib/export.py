"""Interop: a model card for a saved pruned checkpoint, the plan by module name, an llm-compressor recipe.

`plan_with_module_names` maps every pruned linear's full module name (as `model.named_modules()`
spells it, e.g. `model.layers.3.self_attn.q_proj`) to the fraction of its weights the plan removes.

`llm_compressor_recipe` writes the plan as an llm-compressor (vllm-project/llm-compressor, 0.13)
one-shot recipe. What it relies on, read from that library's `SparsityModifierBase`: `sparsity`
is a float or a list of floats; `targets` are matched against module names (`re:` prefix = regex,
otherwise the exact name) and a list sparsity is indexed by the position of each matched target
in model order, its length equal to the number of targets; every Linear inside a target gets the
target's sparsity. `mask_structure: "N:M"` there prunes N of every M (its topk of the N lowest),
whereas this library's N:M keeps N, so 2:4 is 2:4 but 1:4 kept becomes "3:4". A dict of module
name -> sparsity is not accepted by that version's pydantic field, so it is not used.
"""
from __future__ import annotations

import json
from pathlib import Path

from .models import decoder_blocks, linear_sublayers
from .plan import SparsityPlan
from .scores import NMPattern

RECIPE_MODIFIERS = {"wanda": "WandaPruningModifier", "sparsegpt": "SparseGPTModifier"}


def _library_version() -> str:
    # the installed distribution's version (the package's __init__ sits above this module)
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("dlp_lib")
    except PackageNotFoundError:
        return "unknown"


def blocks_prefix(model) -> str:
    """Module name of the model's list of decoder blocks (e.g. 'model.layers')."""
    blocks = decoder_blocks(model)
    for name, module in model.named_modules():
        if module is blocks:
            return name
    raise ValueError("the decoder blocks are not a named submodule of the model")  # pragma: no cover


def allocator_parameters(plan: SparsityPlan) -> dict:
    """The plan's allocator parameters (those its allocator declares; plan.config also holds pass-1 keys)."""
    from .allocation import allocator_names, get_allocator
    names = get_allocator(plan.allocation).params if plan.allocation in allocator_names() else ()
    out = {k: plan.config[k] for k in names if k in plan.config}
    if "granularity" in plan.config:
        out["granularity"] = plan.config["granularity"]
    return out


def _check_plan(model, plan: SparsityPlan) -> None:
    if not isinstance(plan, SparsityPlan):
        raise ValueError(f"plan = {type(plan).__name__} is not allowed; pass a SparsityPlan")
    n = len(decoder_blocks(model))
    if plan.n_blocks != n:
        raise ValueError(f"plan has {plan.n_blocks} block ratios but the model has {n} blocks")


def plan_with_module_names(model, plan: SparsityPlan) -> dict[str, float]:
    """Full module name of every pruned linear sublayer -> fraction of its weights removed (model order)."""
    _check_plan(model, plan)
    prefix = blocks_prefix(model)
    out = {}
    for b, block in enumerate(decoder_blocks(model)):
        for sub in linear_sublayers(block):
            if plan.sublayer_ratios is not None and sub not in plan.sublayer_ratios[b]:
                raise ValueError(f"plan has no ratio for sublayer {sub!r} of block {b}; it was made for another model")
            out[f"{prefix}.{b}.{sub}" if prefix else f"{b}.{sub}"] = float(plan.ratio(b, sub))
    return out


def _yaml_float(x: float) -> str:
    """A float PyYAML (YAML 1.1) reads as a float: fixed notation with a dot, no exponent."""
    s = format(float(x), ".12f").rstrip("0")
    return s + "0" if s.endswith(".") else s


def llm_compressor_recipe(model, plan: SparsityPlan, method: str, *, nm: str | NMPattern | None = None,
                          stage: str = "sparsity_stage") -> str:
    """YAML recipe for llm-compressor's one-shot WandaPruningModifier / SparseGPTModifier with the plan's
    per-layer sparsities: one target per decoder block (a per-block plan) or per linear sublayer (a
    per-sublayer plan), `sparsity` the list of their ratios in the same order."""
    if method not in RECIPE_MODIFIERS:
        raise ValueError(f"method = {method!r} has no llm-compressor one-shot modifier with per-layer sparsity; "
                         f"allowed: {', '.join(RECIPE_MODIFIERS)} (its MagnitudePruningModifier is a training-"
                         "time schedule with one sparsity)")
    _check_plan(model, plan)
    pattern = NMPattern.parse(nm) if isinstance(nm, str) else nm
    if pattern is not None and len(set(plan.ratios)) > 1:
        raise ValueError(f"nm = {pattern} applies one pattern everywhere, but plan {plan.allocation!r} is not uniform")
    prefix = blocks_prefix(model)
    if plan.sublayer_ratios is None:
        targets = [f"{prefix}.{b}" if prefix else str(b) for b in range(plan.n_blocks)]
        ratios = list(plan.ratios)
        unit = "decoder block"
    else:
        modules = plan_with_module_names(model, plan)
        targets, ratios = list(modules), list(modules.values())
        unit = "linear sublayer"
    mask = "0:0" if pattern is None else f"{pattern.m - pattern.n_kept}:{pattern.m}"
    params = allocator_parameters(plan)
    lines = [
        f"# llm-compressor recipe written by dlp_lib {_library_version()}: {plan.allocation} allocation, target "
        f"sparsity {plan.target:g}",
        f"# ({', '.join(f'{k}={v}' for k, v in params.items()) or 'no allocator parameters'}).",
        f"# One target per {unit} (exact module names, model order); sparsity[i] is the fraction of the weights",
        "# of every Linear inside targets[i] to remove. mask_structure N:M prunes N of every M (llm-compressor's",
        "# convention); 0:0 is unstructured.",
        f"{stage}:",
        "  sparsity_modifiers:",
        f"    {RECIPE_MODIFIERS[method]}:",
        "      sparsity: [" + ", ".join(_yaml_float(r) for r in ratios) + "]",
        f"      mask_structure: {json.dumps(mask)}",
        "      targets: [" + ", ".join(json.dumps(t) for t in targets) + "]",
        '      ignore: ["re:.*lm_head"]',
    ]
    if method == "sparsegpt":  # this library's SparseGPT: blocks of 128 columns, damping 1% of mean diag(H)
        lines += ["      block_size: 128", "      dampening_frac: 0.01"]
    return "\n".join(lines) + "\n"


def _fmt(x, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}" if abs(x) < 1e4 else f"{x:.4g}"
    return str(x)


def write_model_card(directory: str | Path, result: dict, plan: SparsityPlan, cfg_dict: dict) -> Path:
    """Write `directory`/README.md describing a pruned checkpoint saved there; returns its path.

    result: a result dict as `Lab.run` returns (`achieved_sparsity` with `overall` and `per_block`;
    optionally `perplexity` with `dense` and `pruned` per source); plan: the SparsityPlan used;
    cfg_dict: the configuration (`ExperimentConfig.to_dict()` or any dict with model, method, ...).
    """
    if not isinstance(plan, SparsityPlan):
        raise ValueError(f"plan = {type(plan).__name__} is not allowed; pass the SparsityPlan used")
    achieved = (result or {}).get("achieved_sparsity")
    if not isinstance(achieved, dict) or "overall" not in achieved or "per_block" not in achieved:
        raise ValueError("result has no achieved_sparsity {'overall', 'per_block'}; pass the dict Lab.run returns "
                         "(or {'achieved_sparsity': dlp_lib.evaluation.achieved_sparsity(model)})")
    per_block = list(achieved["per_block"])
    if len(per_block) != plan.n_blocks:
        raise ValueError(f"result has {len(per_block)} per-block sparsities but the plan has {plan.n_blocks} blocks")
    cfg = dict(cfg_dict or {})
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    method = cfg.get("method", plan.config.get("method", "?"))
    model_name = cfg.get("model", plan.config.get("model", "?"))
    params = allocator_parameters(plan)
    out = [
        "---",
        "library_name: transformers",
        "tags: [pruned, sparse, unstructured-sparsity, dlp-lab, " + json.dumps(plan.allocation) + "]",
        "---",
        "",
        f"# {model_name} pruned with {method} + {plan.allocation} at {plan.target:.0%} target sparsity",
        "",
        f"Pruned with `dlp_lib` {_library_version()} (DLP Lab, a reimplementation of Dynamic Layerwise Pruning, "
        "Chen et al., 2025; the authors' code: https://github.com/ironartisan/DLP). Pruned weights are stored as "
        "exact zeros in a dense checkpoint.",
        "",
        "| setting | value |",
        "|---|---|",
        f"| base model | `{model_name}` |",
        f"| pruning method | {method} |",
        f"| layerwise allocation | {plan.allocation} ({', '.join(f'{k}={v}' for k, v in params.items()) or 'no parameters'}) |",
        f"| target sparsity | {plan.target:.4f} |",
        f"| achieved sparsity (pruned linears) | {achieved['overall']:.4f} |",
    ]
    mixed = plan.config.get("mixed_nm")
    if mixed:
        out.append(f"| mixed N:M (N kept of {mixed['m']}, per block; total of uniform {mixed['pattern']}) | "
                   f"{' '.join(map(str, mixed['n_kept']))} |")
    for key, label in (("calib", "calibration"), ("nsamples", "calibration windows"), ("seqlen", "tokens per window"),
                       ("seed", "seed"), ("group", "comparison group"), ("nm", "N:M (N kept of M)"),
                       ("dtype", "dtype")):
        if cfg.get(key) is not None:
            out.append(f"| {label} | {cfg[key]} |")
    ppl = (result or {}).get("perplexity") or {}
    pruned = ppl.get("pruned") or {}
    if pruned:
        dense = ppl.get("dense") or {}
        out += ["", "## Evaluation (perplexity, lower is better)", "",
                f"Non-overlapping windows of {cfg.get('seqlen', '?')} tokens"
                + (f", first {cfg['neval']} per text" if cfg.get("neval") else "") + ".", "",
                "| text | dense | pruned |", "|---|---:|---:|"]
        out += [f"| {src} | {_fmt(dense.get(src), 2)} | {_fmt(v, 2)} |" for src, v in pruned.items()]
    out += ["", "## Per-block sparsity", "", "| block | planned | achieved |", "|---:|---:|---:|"]
    out += [f"| {b} | {plan.ratios[b]:.4f} | {per_block[b]:.4f} |" for b in range(plan.n_blocks)]
    out += ["", "## How to load", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
            f'model = AutoModelForCausalLM.from_pretrained("{directory.name}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{directory.name}")', "```", "",
            "`plan.json` beside this card is the full `SparsityPlan` (`dlp_lib.plan.SparsityPlan.load`); "
            "`plan_modules.json` maps every pruned module's name to its planned sparsity.", "",
            "## Citation", "", "```bibtex", "@misc{chen2025dlp,",
            "  title  = {DLP: Dynamic Layerwise Pruning in Large Language Models},",
            "  author = {Chen, Yuli and Cheng, Bo and Han, Jiale and Zhang, Yingying and Li, Yingting and Zhang, Shuhao},",
            "  year   = {2025},", "  note   = {Code: https://github.com/ironartisan/DLP}", "}", "```", ""]
    path = directory / "README.md"
    path.write_text("\n".join(out), encoding="utf-8")
    return path


def save_plan_modules(directory: str | Path, model, plan: SparsityPlan) -> Path:
    """Write `directory`/plan_modules.json (module name -> planned sparsity); returns its path."""
    path = Path(directory) / "plan_modules.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plan_with_module_names(model, plan), indent=1), encoding="utf-8")
    return path


def save_pruned_checkpoint(directory: str | Path, model, tokenizer, plan: SparsityPlan, result: dict,
                           cfg_dict: dict) -> Path:
    """Save a pruned model as a plain transformers checkpoint (`from_pretrained` loads it; pruned
    weights are exact zeros) with its tokenizer, `plan.json` (the plan it meets; a mixed N:M plan
    records N per block under config["mixed_nm"]), `plan_modules.json` and a model card."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    plan.save(directory / "plan.json")
    save_plan_modules(directory, model, plan)
    write_model_card(directory, result, plan, cfg_dict)
    return directory
