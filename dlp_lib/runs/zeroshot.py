"""Zero-shot results on a Lab (Table 4): a configuration's pruned model (or the dense one) scored by
`dlp_lib.zeroshot.evaluate_zero_shot`, cached on disk, and the Table 4 grid of them."""
from __future__ import annotations

import contextlib

from ..cache import cached, versioned
from ..zeroshot import check_batch_size, check_limit, check_num_fewshot, evaluate_zero_shot, resolve_tasks
from ..zeroshot_tasks import DEFAULT_EXAMPLES, OFFLINE_TASKS, suite_key


def zero_shot_for(lab, cfg=None, tasks=("offline",), *, limit: int | float | None = None, batch_size: int = 16,
                  use_cache: bool = True, suite_examples: int = DEFAULT_EXAMPLES, suite_seed: int = 0,
                  num_fewshot: int = 0) -> dict:
    """Zero-shot (or few-shot) result of a Lab's model, pruned per `cfg` (dense if None); cached on
    disk (Table 4 sweeps)."""
    import lm_eval

    names = resolve_tasks(tasks)
    check_num_fewshot(num_fewshot)
    check_limit(limit)
    check_batch_size(batch_size)
    if cfg is not None and cfg.model != lab.model_name:
        raise ValueError(f"This Lab holds {lab.model_name!r}, not {cfg.model!r}")
    pruning = None if cfg is None else cfg.key("prune", lab.fingerprint)
    key = versioned(("eval",), model=lab.model_name, fingerprint=lab.fingerprint, dtype=lab.dtype_name, pruning=pruning,
                    tasks=names, limit=limit, lm_eval=lm_eval.__version__,
                    suite=suite_key(suite_examples, suite_seed) if set(names) & set(OFFLINE_TASKS) else None)
    if num_fewshot:
        key["num_fewshot"] = num_fewshot

    def compute():
        lab.ensure(cfg)
        spread = bool(getattr(lab, "eval_devices", None))  # placed over several devices for the forward
        with lab.evaluation_placement() if spread else contextlib.nullcontext():
            return evaluate_zero_shot(lab.model, lab.tokenizer, names, limit=limit, batch_size=batch_size,
                                      device=None if spread else lab.device, suite_examples=suite_examples,
                                      suite_seed=suite_seed, progress=getattr(lab, "progress", False),
                                      num_fewshot=num_fewshot)
    return cached("zeroshot", key, compute, enabled=use_cache and lab.use_cache)


def sweep(lab, base, tasks=("offline",), *, allocations, limit=None, methods=("magnitude", "wanda", "sparsegpt"),
          batch_size: int = 16) -> dict:
    """Table 4 grid: {("dense", "dense"): result, (method, allocation): result} at base.sparsity (cached)."""
    runs = {("dense", "dense"): zero_shot_for(lab, None, tasks, limit=limit, batch_size=batch_size)}
    for m in methods:
        for a in allocations:
            runs[(m, a)] = zero_shot_for(lab, base.replace(method=m, allocation=a), tasks, limit=limit,
                                         batch_size=batch_size)
    lab.ensure(None)
    return runs
