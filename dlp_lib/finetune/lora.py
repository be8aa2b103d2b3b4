"""LoRA after pruning with masks fixed (paper Table 7; Wanda's and OWL's `lora_ft` protocol).

peft LoRA (r=8, alpha=16, dropout 0.05 on q_proj and v_proj) is attached to the pruned model;
only the adapters train, the pruned base weights are frozen, and the adapter stays UNMERGED,
so the base weights' zeros are exactly the pruning mask after training (merging would add the
dense low-rank product B A to W and make the pruned weights dense again; `merge_ablation`
measures that and the effect of re-applying the mask).
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from ..models import decoder_blocks, linear_sublayers


@dataclass(frozen=True)
class LoraSettings:
    """Adapter hyperparameters (defaults: Wanda's lora_ft, also OWL's)."""
    r: int = 8                                    # adapter rank
    alpha: int = 16                               # scaling alpha / r
    dropout: float = 0.05                         # dropout on the adapter's input
    targets: tuple[str, ...] = ("q_proj", "v_proj")  # module names that get an adapter

    def __post_init__(self):
        if self.r < 1:
            raise ValueError(f"LoRA rank r must be >= 1, got {self.r}")
        if self.alpha == 0:   # the adapter's scale alpha / r would be 0: training would change nothing
            raise ValueError(f"LoRA alpha must not be 0 (the adapter scale is alpha / r), got {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout}")
        if not self.targets:
            raise ValueError("LoRA needs at least one target module name (e.g. q_proj, v_proj)")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["targets"] = list(self.targets)
        return d


def check_targets(model: nn.Module, targets) -> None:
    names = {n.rsplit(".", 1)[-1] for b in decoder_blocks(model) for n in linear_sublayers(b)}
    bad = [t for t in targets if t not in names]
    if bad:
        raise ValueError(f"LoRA target(s) {bad} are not linear sublayers of this model; allowed: {sorted(names)}")


@contextlib.contextmanager
def lora_attached(model: nn.Module, settings: LoraSettings, seed: int):
    """Attach fresh adapters (initialised from `seed`) for the duration of the block; the model is restored after.

    Yields the peft model; only adapter parameters require grad. On exit the adapters are
    removed without merging and every parameter's requires_grad flag is put back.
    """
    from peft import LoraConfig, get_peft_model

    check_targets(model, settings.targets)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=list(settings.targets), bias="none", task_type="CAUSAL_LM")
    saved = torch.get_rng_state()
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, config)
    torch.set_rng_state(saved)
    try:
        yield peft_model
    finally:
        peft_model.unload()  # remove the adapters, base weights untouched
        for n, p in model.named_parameters():
            p.requires_grad_(flags.get(n, False))
        model.eval()


def adapter_parameters(peft_model: nn.Module) -> list[nn.Parameter]:
    params = [p for n, p in peft_model.named_parameters() if "lora_" in n]
    if not params or not all(p.requires_grad for p in params):
        raise RuntimeError("peft attached no trainable LoRA parameters")
    frozen_base = [n for n, p in peft_model.named_parameters() if "lora_" not in n and p.requires_grad]
    if frozen_base:
        raise RuntimeError(f"base parameters left trainable under LoRA: {frozen_base[:3]}")
    return params


def target_weights(model: nn.Module, targets) -> dict[str, torch.Tensor]:
    """The base weights of the LoRA target sublayers (block index.sublayer name -> tensor)."""
    out = {}
    for i, block in enumerate(decoder_blocks(model)):
        for name, layer in block.named_modules():   # with adapters: q_proj is a peft layer around base_layer
            if name.rsplit(".", 1)[-1] in targets:
                w = layer.base_layer.weight if hasattr(layer, "base_layer") else layer.weight
                out[f"{i}.{name}"] = w
    return out


@torch.no_grad()
def merge_ablation(peft_model: nn.Module, settings: LoraSettings, measure) -> dict:
    """Merge the adapter into W (dense again), measure, re-apply the pruning mask, measure; then undo.

    `measure()` returns a dict of metrics of the model as it is (e.g. perplexities). Returns
    the zero fraction of the target weights before merging, after merging and after re-masking,
    with the measurements after merging and after re-masking. The adapters and base weights
    are restored exactly at the end.
    """
    base = peft_model.get_base_model()
    weights = target_weights(base, settings.targets)
    saved = {k: w.detach().clone() for k, w in weights.items()}
    masks = {k: w != 0 for k, w in weights.items()}

    def zeros() -> float:
        return float(sum(int((w == 0).sum()) for w in weights.values()) / sum(w.numel() for w in weights.values()))

    out = {"target_zero_fraction_unmerged": zeros()}
    peft_model.merge_adapter()
    try:
        out["target_zero_fraction_merged"] = zeros()
        out["merged"] = measure()
        for k, w in weights.items():
            w.mul_(masks[k])
        out["target_zero_fraction_remasked"] = zeros()
        out["remasked"] = measure()
    finally:
        # unmerge would subtract B A from the re-masked W; restore the exact pruned weights instead
        for layer in (m for m in base.modules() if hasattr(m, "merged_adapters")):
            layer.merged_adapters = []
        for k, w in weights.items():
            w.copy_(saved[k])
    return out
