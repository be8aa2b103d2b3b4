"""SVD results on a Lab (Table 16): the ASVD statistics of the Lab's dense model, a compressed copy of
it, and its cached evaluation. The factorisation itself is `dlp_lib.compression.svd`."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..cache import cached
from ..calibration import CalibrationEngine
from ..compression.report import count_parameters
from ..compression.svd import SVDConfig, SVDReport, save_svd, svd_compress
from ..models import decoder_blocks
from ..plan import SparsityPlan
from .auto_allocation import selected
from .lab_copy import dense_copy, evaluate, result_key

_DENSE_ABS_MEAN: dict = {}   # data key -> block -> sublayer -> mean |x_j| of the lab's dense model


def dense_abs_mean(lab, cfg) -> dict[int, dict[str, torch.Tensor]]:
    """ASVD's statistics of the lab's dense model on cfg's calibration windows, computed once per
    process and data key (they do not depend on the plan, so every rate and allocator shares them)."""
    from ..cache import config_key
    key = config_key(cfg.key("data", lab.fingerprint))
    if key not in _DENSE_ABS_MEAN:
        lab.ensure(None)
        out: dict[int, dict[str, torch.Tensor]] = {}
        CalibrationEngine(lab.model, lab.calibration(cfg), device=lab.device, progress=lab.progress).run(
            lambda v: out.update({v.index: {n: t.cpu() for n, t in v.stats["abs_mean"].items()}}),
            statistics=("abs_mean",), sequential=False, desc="ASVD statistics")
        _DENSE_ABS_MEAN[key] = out
    return _DENSE_ABS_MEAN[key]


def svd_model(lab, cfg, reduction: float, svd_cfg: SVDConfig) -> tuple[nn.Module, SparsityPlan, SVDReport, float]:
    """(compressed copy of the lab's dense model, plan, report, seconds spent compressing)."""
    import time
    pcfg = cfg.replace(sparsity=float(reduction))
    model = dense_copy(lab)
    t0 = time.perf_counter()
    if reduction == 0.0:
        plan = SparsityPlan(cfg.allocation, 0.0, [0.0] * len(decoder_blocks(model)))
    else:
        plan = lab.plan(selected(lab, pcfg))
    stats = dense_abs_mean(lab, pcfg) if svd_cfg.variant == "asvd" else None
    calib = lab.calibration(pcfg) if svd_cfg.variant == "svdllm" else None
    report = svd_compress(model, plan, svd_cfg, calib_ids=calib, stats=stats, device=lab.device,
                          progress=lab.progress)
    return model, plan, report, time.perf_counter() - t0


def svd_result(lab, cfg, reduction: float, variant: str = "asvd", *, svd_cfg: SVDConfig | None = None,
               use_cache: bool = True, save=None) -> dict:
    """SVD-compress a copy of the dense model to `reduction` (cfg.allocation's plan), evaluate; cached.

    Returns perplexity per eval text, the dense perplexity, parameter counts (model and blocks'
    linear layers, before/after), achieved reduction, per-block ratios and ranks. `save`: also
    write the compressed model there (`save_svd`; recomputes instead of reading the cache).
    """
    from ..scores import check_ratio
    check_ratio(reduction, "reduction")
    svd_cfg = svd_cfg or SVDConfig(variant=variant)
    if svd_cfg.variant != variant:
        raise ValueError(f"variant {variant!r} differs from svd_cfg.variant {svd_cfg.variant!r}")
    pcfg = cfg.replace(sparsity=float(reduction))
    key = {"technique": "svd", **result_key(lab, pcfg), "svd": dataclasses.asdict(svd_cfg)}

    def compute():
        model, plan, report, seconds = svd_model(lab, cfg, reduction, svd_cfg)
        total_before = sum(p.numel() for p in lab.model.parameters())
        if save is not None:
            save_svd(model, lab.tokenizer, save, report)
        ppl = evaluate(lab, model, pcfg)
        out = {"technique": "svd", "variant": svd_cfg.variant, "allocation": cfg.allocation,
               "reduction": float(reduction), "perplexity": ppl, "dense_perplexity": lab.dense_perplexity(pcfg),
               "params": {"model_before": total_before, "model_after": count_parameters(model),
                          "blocks_before": sum(report.block_params_before),
                          "blocks_after": sum(report.block_params_after)},
               "achieved_reduction": report.achieved_reduction, "ratios": list(plan.ratios),
               "rid": plan.rid, "report": report.to_dict(), "compress_seconds": seconds,
               "svd_config": dataclasses.asdict(svd_cfg)}
        del model
        return out
    return cached("compression_svd", key, compute, enabled=use_cache and save is None)
