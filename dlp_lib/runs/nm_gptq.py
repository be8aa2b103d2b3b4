"""Cached results of mixed N:M (Table 15) and GPTQ after pruning (Table 17, Figure 6) on a Lab.

Each result is keyed by the pruning configuration's key (model fingerprint, calibration,
method, allocation, sparsity, alpha, ...) plus the compressor's own parameters, and records
the budgets the compressed model actually meets, counted on its weights.
"""
from __future__ import annotations

import time

from ..cache import cached
from ..compression.gptq import check_quantization, quantize_model
from ..compression.mixed_nm import applied_plan, mixed_patterns, nm_compliance, prune_mixed_nm
from ..evaluation import achieved_sparsity
from ..scores import NMPattern

UNQUANTIZED = 16  # the tables' "16 bits": the model as pruned, not quantized


def quantization_key(lab, cfg, dense: bool, **extra) -> dict:
    """What a quantized model's perplexities depend on: the pruning of cfg (for the dense model only its
    data, with the code of the OBS loop GPTQ shares with SparseGPT, stage prune), the evaluation, and the
    compressors' code."""
    if dense:
        return cfg.key(("data", "eval"), lab.fingerprint, code=("prune", "compress"), dense=True, **extra)
    return cfg.key("eval", lab.fingerprint, code=("compress",), dense=False, **extra)


# ---------------------------------------------------------------- Table 17 / Figure 6
def _restore_or_prune(lab, cfg, key: dict) -> None:
    """The Lab's model pruned per cfg (dense for None), about to be changed here. Several bit widths of
    one pruning prune once: the Lab restores its dense weights and applies the pruning it stored
    under the pruning key (`pruned_weights`), bit for bit the model pruned the first time."""
    lab.ensure(cfg)
    lab.mark_modified(("pruned-for-quantization", repr(sorted(key.items()))))


def quantized_result(lab, cfg, bits: int, group_size: int | None = None, mode: str = "gptq", *,
                     dense: bool = False, use_cache: bool = True) -> dict:
    """Perplexity on every eval text of cfg after quantizing the model pruned per cfg (or the dense
    model with dense=True; cfg then only gives the calibration and evaluation data) to `bits`.

    mode "gptq": prune, then GPTQ the pruned model (its zeros kept); "joint": SparseGPT's
    prune-and-quantize in one loop (cfg.method must be sparsegpt); "rtn": round-to-nearest.
    bits 16: no quantization. Returns perplexities, and the budgets verified on the weights
    (bits, zeros preserved, kept weights rounded to zero, achieved sparsity).
    """
    if bits != UNQUANTIZED:
        check_quantization(bits, group_size, mode)
    if mode == "joint" and (dense or cfg.method != "sparsegpt" or cfg.nm is not None):
        raise ValueError("mode 'joint' is SparseGPT's prune-and-quantize loop: it needs a pruned (not dense) "
                         f"sparsegpt config without N:M, got dense={dense}, method={cfg.method!r}, nm={cfg.nm!r}")
    key = quantization_key(lab, cfg, dense, bits=bits, group_size=None if bits == UNQUANTIZED else group_size,
                           mode=None if bits == UNQUANTIZED else mode)

    def compute():
        t0 = time.perf_counter()
        budgets: dict = {"bits": bits}
        if mode == "joint" and bits != UNQUANTIZED:
            lab.ensure(None)
            plan = lab.plan(cfg)
            lab.ensure(None)
            lab.mark_modified(("joint", repr(sorted(key.items()))))
            budgets.update(quantize_model(lab.model, lab.calibration(cfg), bits, group_size=group_size, mode="joint",
                                          plan=plan, device=lab.device, progress=lab.progress))
        else:
            _restore_or_prune(lab, None if dense else cfg, key)
            if bits != UNQUANTIZED:
                calib = None if mode == "rtn" else lab.calibration(cfg)
                budgets.update(quantize_model(lab.model, calib, bits, group_size=group_size, mode=mode,
                                              device=lab.device, progress=lab.progress))
        ppl = lab.perplexities(cfg.eval, cfg.seqlen, cfg.neval, cfg.eval_dtype)
        return {"perplexity": ppl, "budgets": budgets, "achieved_sparsity": achieved_sparsity(lab.model),
                "dense": dense, "allocation": None if dense else cfg.allocation,
                "sparsity": 0.0 if dense else cfg.sparsity, "group_size": group_size, "mode": mode,
                "seconds": time.perf_counter() - t0}

    return cached("quantized", key, compute, enabled=use_cache)


# ---------------------------------------------------------------- Table 15
def _mixed_allocation(lab, cfg, pattern: str, allocation: str, method: str | None, alpha: float | None):
    """(pattern, the plan's config, the plan at 1 - N/M, its per-block N), from the dense model."""
    p = NMPattern.parse(pattern)
    plan_cfg = cfg.replace(allocation=allocation, sparsity=p.sparsity, nm=None, method=method or cfg.method,
                           alpha=alpha, granularity="block")
    lab.ensure(None)
    plan = lab.plan(plan_cfg)
    return p, plan_cfg, plan, mixed_patterns(lab.model, plan, p)


def _prune_mixed(lab, p: NMPattern, plan_cfg, plan, tag) -> None:
    lab.ensure(None)
    lab.mark_modified(tag)
    prune_mixed_nm(lab.model, plan, p, plan_cfg.method, lab.calibration(plan_cfg), group=plan_cfg.resolved_group(),
                   device=lab.device, progress=lab.progress)


def mixed_nm_result(lab, cfg, pattern: str, allocation: str, method: str | None = None, *,
                    alpha: float | None = None, use_cache: bool = True) -> dict:
    """Perplexity of the model pruned with per-block N:M patterns from `allocation`'s plan whose
    target is the uniform pattern's sparsity 1 - N/M; the per-block N and achieved density.

    The cache key is the per-block N (with the data and method), so an allocation that rounds to
    the uniform pattern shares the uniform result (the pruned model is the same).
    """
    p, plan_cfg, plan, mixed = _mixed_allocation(lab, cfg, pattern, allocation, method, alpha)
    # the uniform pruning's fields (allocation, alpha) stand for the plan: the per-block N is the budget
    key = plan_cfg.replace(allocation="uniform", alpha=None).key("eval", lab.fingerprint, code=("compress",),
                                                                 mixed_nm=mixed.n_kept, m=p.m)

    def compute():
        t0 = time.perf_counter()
        _prune_mixed(lab, p, plan_cfg, plan, ("mixed_nm", repr(sorted(key.items()))))
        check = nm_compliance(lab.model, mixed)
        ppl = lab.perplexities(cfg.eval, cfg.seqlen, cfg.neval, cfg.eval_dtype)
        return {"perplexity": ppl, "compliance": check, "seconds": time.perf_counter() - t0}

    out = dict(cached("mixed_nm", key, compute, enabled=use_cache))
    out.update(pattern=str(p), allocation=allocation, method=plan_cfg.method, alpha=plan_cfg.resolved_alpha(),
               n_kept=mixed.n_kept, achieved_density=mixed.achieved_density, exact=mixed.exact, room=mixed.room,
               ratios=plan.ratios, same_as_uniform=mixed.n_kept == [p.n_kept] * len(mixed.n_kept))
    return out


def prune_mixed_nm_for_saving(args, cfg, lab, result: dict) -> tuple:
    """`--save` with mixed N:M: prune the Lab's model with the per-block patterns (the cached result
    need not have left it pruned); returns what the checkpoint records: the plan the model meets
    (N per block in config["mixed_nm"]), the model card's result and configuration."""
    p, plan_cfg, plan, mixed = _mixed_allocation(lab, cfg, args.nm, cfg.allocation, cfg.method, cfg.alpha)
    _prune_mixed(lab, p, plan_cfg, plan, ("mixed_nm saved", str(args.save)))
    card = {"achieved_sparsity": achieved_sparsity(lab.model), "perplexity": {"pruned": result["perplexity"]}}
    return applied_plan(plan, mixed), card, {**plan_cfg.to_dict(), "nm": f"mixed, total of {p}"}
