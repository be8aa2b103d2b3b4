"""The Lab glue of the compressors that rebuild a copy of the dense model (SVD, structured):
the copy, the result's cache key and its perplexities."""
from __future__ import annotations

import torch
from torch import nn


def dense_copy(lab) -> nn.Module:
    """A deep copy of the lab's dense model (the lab's own model is made dense and left so)."""
    import copy
    lab.ensure(None)
    return copy.deepcopy(lab.model)


def result_key(lab, cfg) -> dict:
    """Everything that determines a compression result of cfg: data, plan, evaluation, and the
    code versions of every stage, the compressors' own ("compress") included."""
    return cfg.key("eval", lab.fingerprint, code=("compress",))


def evaluate(lab, model: nn.Module, cfg) -> dict[str, float]:
    """Perplexity of `model` on every eval text of cfg, keyed by the source label."""
    from ..data import TextSource
    from ..evaluation import perplexity
    model.to(lab.device)
    return {TextSource(s).label: perplexity(model, lab.eval_windows(s, cfg.seqlen, cfg.neval), device=lab.device,
                                            progress=lab.progress, desc=f"perplexity {TextSource(s).label}",
                                            compute_dtype=getattr(torch, cfg.eval_dtype))
            for s in cfg.eval}
