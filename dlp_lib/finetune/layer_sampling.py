"""Layer-sampled fine-tuning (paper Table 18, Appendix F; the LISA family).

Every K optimiser steps all decoder blocks are frozen and gamma blocks are unfrozen, drawn
without replacement with probabilities from a layer score; the embeddings and the output
layer stay trainable throughout (as in LISA). The score decides the method:

* `lisa`    uniform probabilities (Pan et al. 2024; its script: gamma 2, K 3),
* `owlore`  p_l proportional to block l's OWL outlier ratio D_l (Li et al. 2024b; their code
            normalises the per-block ratios by their sum),
* `dlp`     p_l proportional to block l's importance from DLP. Appendix F: "higher sampling
            probabilities to layers with higher layerwise importance based on RID", so MORE
            important blocks (a LOW median Wanda score, i.e. a HIGH RID I_l = 1 - S_l / sum S)
            are sampled MORE. With `dlp_weights="rid"` (default, the paper's words) p_l is
            proportional to I_l itself. Note: I_l = 1 - S_l / sum_k S_k is close to 1 - 1/L for
            every block, so these probabilities are close to uniform (the spread is reported).
            `dlp_weights="minmax"` is what the code behind Table 18 does (a public fork of OwLore
            with a `dlp` probability mode, compressionOrg/OwLore: finetuner.py reads
            metric_cache/llama2_7b_ratio_dlp.txt, per-layer scores min-max rescaled to [0, 0.2],
            and divides them by their sum): p_l proportional to (I_l - min I) / (max I - min I),
            so the least important block is never drawn; the rescaling's width (0.2, or 0.3 in its
            "alpha 1.5" file) cancels in the normalisation. `dlp_weights="keep"` uses the fraction
            DLP keeps in each block, 1 - R_l (the RID after DLP's min-max scaling to
            [p - alpha, p + alpha]), a sharper distribution than the RID with the same order.

Draw j (steps j*K .. j*K+K-1) is a pure function of (seed, j), so resuming mid-run reproduces it.
Sampling without replacement with unequal probabilities is sequential (draw one block with
probability proportional to its weight among those not drawn yet), as numpy's
`choice(replace=False, p=...)` used by LISA/OwLore does.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..models import decoder_blocks

SAMPLERS = ("lisa", "owlore", "dlp")
DLP_WEIGHTS = ("rid", "minmax", "keep")


def probabilities(scores: Sequence[float]) -> np.ndarray:
    """Normalise non-negative layer scores to sampling probabilities (the OwLore rule: score / sum)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or len(s) == 0:
        raise ValueError(f"layer scores must be a non-empty 1-D sequence, got shape {s.shape}")
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError(f"layer scores must be finite and >= 0, got {s.tolist()}")
    if s.sum() <= 0:
        raise ValueError("layer scores are all zero: no block could be sampled")
    return s / s.sum()


def minmax_scores(scores: Sequence[float]) -> np.ndarray:
    """(s - min s) / (max s - min s): the lowest score 0, the highest 1. A flat profile (max = min) has
    no order to rescale and is refused rather than silently turned uniform."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or len(s) < 2 or not np.all(np.isfinite(s)):
        raise ValueError(f"min-max rescaling needs at least two finite layer scores, got {s.tolist()}")
    span = s.max() - s.min()
    if span <= 0:
        raise ValueError("every layer has the same score: min-max rescaling is undefined")
    return (s - s.min()) / span


def draw_without_replacement(p: np.ndarray, gamma: int, rng: np.random.Generator) -> list[int]:
    """gamma distinct indices: each next one drawn with probability proportional to p among those not drawn."""
    if not 1 <= gamma <= len(p):
        raise ValueError(f"gamma must be in [1, n_blocks={len(p)}], got {gamma}")
    if np.count_nonzero(p) < gamma:
        raise ValueError(f"only {np.count_nonzero(p)} blocks have a non-zero probability, fewer than gamma={gamma}")
    w = np.array(p, dtype=np.float64)
    out = []
    for _ in range(gamma):
        q = w / w.sum()
        i = int(rng.choice(len(q), p=q))
        out.append(i)
        w[i] = 0.0
    return out


class LayerSampler:
    """Switches which decoder blocks train: every K steps, gamma blocks drawn from `probs` (seeded)."""

    def __init__(self, model: nn.Module, probs: Sequence[float], *, gamma: int, interval: int, seed: int = 0):
        self.blocks = decoder_blocks(model)
        n = len(self.blocks)
        if interval < 1:
            raise ValueError(f"the switching interval K must be >= 1 step, got {interval}")
        if not 1 <= gamma <= n:
            raise ValueError(f"gamma (blocks unfrozen at a time) must be in [1, n_blocks={n}], got {gamma}")
        self.p = probabilities(probs)
        if len(self.p) != n:
            raise ValueError(f"{len(self.p)} layer scores for a model with {n} blocks")
        if np.count_nonzero(self.p) < gamma:
            raise ValueError(f"only {np.count_nonzero(self.p)} blocks have a non-zero probability, "
                             f"fewer than gamma={gamma}")
        self.gamma, self.interval, self.seed = gamma, interval, seed
        self.active: list[int] = []
        self.history: list[list[int]] = []

    def draw(self, j: int) -> list[int]:
        """The blocks of switch j (steps j*K .. j*K+K-1)."""
        rng = np.random.default_rng([self.seed, j])
        return sorted(draw_without_replacement(self.p, self.gamma, rng))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for b in self.blocks for p in b.parameters()]

    def before_step(self, step: int) -> None:
        if step % self.interval == 0 or not self.active:
            self.active = self.draw(step // self.interval)
            self.history.append(self.active)
            for i, block in enumerate(self.blocks):
                on = i in self.active
                for p in block.parameters():
                    p.requires_grad_(on)

    def after_step(self, step: int) -> None:
        pass


def always_trainable(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter outside the decoder blocks (embeddings, final norm, output layer): LISA never freezes them."""
    in_blocks = {id(p) for p in decoder_blocks(model).parameters()}
    return [p for p in model.parameters() if id(p) not in in_blocks]


def block_weights(model: nn.Module) -> list[torch.Tensor]:
    return [p for b in decoder_blocks(model) for n, p in b.named_parameters() if p.ndim == 2]
