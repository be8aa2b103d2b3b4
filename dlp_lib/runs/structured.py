"""Structured-pruning results on a Lab (Table 14): a pruned copy of the Lab's dense model, its
measured forward time and its cached evaluation. The pruning itself is `dlp_lib.compression.structured`."""
from __future__ import annotations

import time

from ..cache import cached
from ..compression.report import count_parameters
from ..compression.structured import (StructuredConfig, forward_seconds, layer_shapes, save_structured,
                                      structured_prune)
from ..models import decoder_blocks
from ..plan import SparsityPlan
from .auto_allocation import selected
from .lab_copy import dense_copy, evaluate, result_key


def structured_result(lab, cfg, ratio: float, *, structured_cfg: StructuredConfig | None = None,
                      timing_repeats: int = 5, timing_seqlen: int | None = None, use_cache: bool = True,
                      save=None) -> dict:
    """Structurally prune a copy of the dense model at `ratio` (cfg.allocation's plan), evaluate; cached.

    Returns perplexity per eval text, parameter counts, achieved reduction, the removed groups
    and the measured forward time of one (1, timing_seqlen or cfg.seqlen) window, dense and pruned
    (same run, median of timing_repeats).
    `save`: also write the pruned model there (`save_structured`; recomputes instead of reading
    the cache).
    """
    import dataclasses as dc

    from ..scores import check_ratio
    check_ratio(ratio, "ratio")
    scfg = structured_cfg or StructuredConfig()
    pcfg = cfg.replace(sparsity=float(ratio))
    key = {"technique": "structured", **result_key(lab, pcfg), "structured": dc.asdict(scfg),
           "timing": [timing_repeats, timing_seqlen or pcfg.seqlen]}
    tlen = timing_seqlen or pcfg.seqlen

    def compute():
        model = dense_copy(lab).to(lab.device)
        total_before = count_parameters(model)
        plan = lab.plan(selected(lab, pcfg)) if ratio > 0 else SparsityPlan(cfg.allocation, 0.0, [0.0] * len(decoder_blocks(model)))
        calib = lab.windows("taylor", cfg.calib, scfg.nsamples, scfg.seqlen, cfg.seed)
        dense_seconds = forward_seconds(model, tlen, repeats=timing_repeats)
        t0 = time.perf_counter()
        report = structured_prune(model, plan, calib, scfg, progress=lab.progress)
        prune_seconds = time.perf_counter() - t0
        pruned_seconds = forward_seconds(model, tlen, repeats=timing_repeats)
        if save is not None:
            save_structured(model, lab.tokenizer, save)
        ppl = evaluate(lab, model, pcfg)
        out = {"technique": "structured", "allocation": cfg.allocation, "ratio": float(ratio), "perplexity": ppl,
               "dense_perplexity": lab.dense_perplexity(pcfg),
               "params": {"model_before": total_before, "model_after": count_parameters(model),
                          "blocks_before": sum(report.block_params_before),
                          "blocks_after": sum(report.block_params_after)},
               "achieved_reduction": report.achieved_reduction,
               "model_reduction": 1 - count_parameters(model) / total_before,
               "forward_seconds": {"dense": dense_seconds, "pruned": pruned_seconds, "seqlen": tlen},
               "plan_ratios": list(plan.ratios), "rid": plan.rid, "report": report.to_dict(),
               "layer_shapes": layer_shapes(model), "prune_seconds": prune_seconds,
               "structured_config": dc.asdict(scfg)}
        del model
        return out
    return cached("compression_structured", key, compute, enabled=use_cache and save is None)
