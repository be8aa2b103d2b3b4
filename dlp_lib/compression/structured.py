"""Structured pruning (LLM-Pruner's Taylor groups) following a SparsityPlan: paper Appendix E.1, Table 14.

Groups of coupled structures, as LLM-Pruner (Ma et al., 2023) forms them for LLaMA:
- attention: one KV head g with its n_rep = H / H_kv query heads (grouped-query attention; for
  H = H_kv a single head): q_proj rows and o_proj columns of those query heads, k_proj and v_proj
  rows of KV head g (and their bias entries);
- MLP: one intermediate channel c: gate_proj and up_proj row c, down_proj column c.
Importance of a group: LLM-Pruner's first-order Taylor "param_first", sum over the group's
weights of |w * dL/dw|, the gradient of the mean next-token loss over a few calibration windows
(reference: 10 x 64 tokens) from one backward pass of the dense model (one shot, no iteration).

Budgets. LLM-Pruner's block-wise rule removes the same fraction r of heads and of channels in
every pruned block. Here r is the block's ratio (fraction of the block's linear parameters
removed): round(r * H_kv) KV groups are removed (at least one is kept), and the MLP removes as
many channels as bring the block's removed parameters nearest to r * P_block (at least one is
kept), so the whole-group rounding of the attention is absorbed by the MLP and the block hits
its budget within one channel. Only blocks in `block_range` are pruned (LLM-Pruner: 4..29 of 32);
the default skips the same proportion of blocks at both ends (first round(L/8), last
round(L/16)). The ratios of the pruned blocks are the plan's shifted by one constant so that
their mean is the plan's target (clamped and re-balanced into [0, 0.99]): Uniform and DLP then
remove the same number of parameters and DLP's ratios keep the shape of its min-max rule.

The pruned model is genuinely smaller (new nn.Linear modules of the kept rows/columns). The
per-layer head counts and intermediate sizes cannot be written in LlamaConfig (one value for all
layers), so `save_structured` keeps the uniform fields and stores the per-layer shapes in
`config.dlp_structured_layers`; `load_structured` rebuilds the modules with those shapes. Plain
`AutoModelForCausalLM.from_pretrained` refuses such a checkpoint (size mismatch).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..allocation import MAX_RATIO, rebalance
from ..models import decoder_blocks
from ..plan import SparsityPlan
from .checkpoint import load_state_checked
from .report import BlockParameterReport

CONFIG_FIELD = "dlp_structured_layers"


@dataclass(frozen=True)
class StructuredConfig:
    """Technique parameters of structured pruning (all of them enter the cache key)."""
    nsamples: int = 10                           # calibration windows for the Taylor backward pass
    seqlen: int = 64                             # their length in tokens (LLM-Pruner: 10 x 64)
    block_range: tuple[int, int] | None = None   # [start, end) pruned blocks; None: default_block_range
    batch_size: int = 10                         # windows per backward (gradients are accumulated)

    def __post_init__(self):
        if self.nsamples < 1 or self.seqlen < 2:
            raise ValueError(f"need nsamples >= 1 and seqlen >= 2, got {self.nsamples} x {self.seqlen}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.block_range is not None:
            a, b = self.block_range
            if not 0 <= a < b:
                raise ValueError(f"block_range must be [start, end) with 0 <= start < end, got {self.block_range}")


def default_block_range(n_blocks: int) -> tuple[int, int]:
    """LLM-Pruner's 4..29 of 32 in proportion: skip round(L/8) blocks at the start, round(L/16) at the end."""
    start, end = round(n_blocks * 4 / 32), n_blocks - round(n_blocks * 2 / 32)
    if start >= end:
        return 0, n_blocks
    return start, end


def range_ratios(plan: SparsityPlan, block_range: tuple[int, int]) -> list[float]:
    """Per-block ratios: 0 outside [start, end); inside, the plan's shifted to mean plan.target."""
    n = len(plan.ratios)
    start, end = block_range
    if not 0 <= start < end <= n:
        raise ValueError(f"block_range {block_range} outside the model's {n} blocks")
    inside = np.asarray(plan.ratios[start:end], dtype=np.float64)
    inside = inside - inside.mean() + plan.target
    inside = rebalance(inside, plan.target, lo=0.0, hi=MAX_RATIO, what="structured ratio")
    out = [0.0] * n
    out[start:end] = [float(r) for r in inside]
    return out


# ---------------------------------------------------------------- anatomy of a LLaMA-style block
@dataclass(frozen=True)
class BlockShape:
    hidden: int
    head_dim: int
    num_heads: int       # query heads
    num_kv_heads: int
    intermediate: int
    attention_bias: bool
    mlp_bias: bool

    @property
    def n_rep(self) -> int:
        return self.num_heads // self.num_kv_heads

    @property
    def params_per_kv_group(self) -> int:
        """q rows + o columns of n_rep query heads, k and v rows of one KV head (+ bias entries)."""
        d, hd, r = self.hidden, self.head_dim, self.n_rep
        return hd * d * (2 * r + 2) + (hd * (r + 2) if self.attention_bias else 0)

    @property
    def params_per_channel(self) -> int:
        return 3 * self.hidden + (2 if self.mlp_bias else 0)

    @property
    def prunable_params(self) -> int:
        return self.num_kv_heads * self.params_per_kv_group + self.intermediate * self.params_per_channel


def block_shape(block: nn.Module) -> BlockShape:
    attn, mlp = _attention(block), _mlp(block)
    hd = attn.head_dim
    heads, kv = attn.q_proj.out_features // hd, attn.k_proj.out_features // hd
    if heads % kv:
        raise ValueError(f"{heads} query heads are not a multiple of {kv} KV heads")
    return BlockShape(hidden=attn.q_proj.in_features, head_dim=hd, num_heads=heads, num_kv_heads=kv,
                      intermediate=mlp.gate_proj.out_features, attention_bias=attn.q_proj.bias is not None,
                      mlp_bias=mlp.gate_proj.bias is not None)


def _attention(block):
    attn = getattr(block, "self_attn", None)
    if attn is None or not all(hasattr(attn, p) for p in ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim")):
        raise ValueError(f"{type(block).__name__} has no LLaMA-style self_attn (q/k/v/o_proj); structured "
                         "pruning supports LLaMA-family blocks")
    return attn


def _mlp(block):
    mlp = getattr(block, "mlp", None)
    if mlp is None or not all(hasattr(mlp, p) for p in ("gate_proj", "up_proj", "down_proj")):
        raise ValueError(f"{type(block).__name__} has no gated MLP (gate/up/down_proj); structured pruning "
                         "supports LLaMA-family blocks")
    return mlp


def group_counts(shape: BlockShape, ratio: float) -> tuple[int, int]:
    """(KV groups removed, MLP channels removed) for a block ratio (see the module docstring)."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    heads = min(shape.num_kv_heads - 1, round(ratio * shape.num_kv_heads))
    target = ratio * shape.prunable_params - heads * shape.params_per_kv_group
    channels = min(shape.intermediate - 1, max(0, round(target / shape.params_per_channel)))
    return heads, channels


# ---------------------------------------------------------------- Taylor importance
def taylor_gradients(model: nn.Module, calib_ids: torch.Tensor, *, batch_size: int = 10,
                     progress: bool = True) -> dict[str, torch.Tensor]:
    """dL/dw of the mean next-token loss over all windows (N, T), for every parameter (fp32)."""
    params = dict(model.named_parameters())
    flags = {n: p.requires_grad for n, p in params.items()}
    device = next(model.parameters()).device
    grads = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    n_total = calib_ids.shape[0]
    try:
        for p in params.values():
            p.requires_grad_(True)
            p.grad = None
        with torch.enable_grad():
            for batch in tqdm(calib_ids.split(batch_size), desc="Taylor backward", disable=not progress,
                              leave=False):
                batch = batch.to(device)
                loss = model(batch, labels=batch, use_cache=False).loss * (batch.shape[0] / n_total)
                loss.backward()
                for n, p in params.items():
                    if p.grad is not None:
                        grads[n] += p.grad.float()
                        p.grad = None
    finally:
        for n, p in params.items():
            p.requires_grad_(flags[n])
            p.grad = None
    return grads


def group_importance(block: nn.Module, grads: dict[str, torch.Tensor], prefix: str
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(per KV group (H_kv,), per MLP channel (I,)) sums of |w * g| over each group's weights."""
    shape, attn, mlp = block_shape(block), _attention(block), _mlp(block)
    hd, r = shape.head_dim, shape.n_rep

    def salience(module_name: str, module: nn.Linear, what: str) -> torch.Tensor:
        w = getattr(module, what)
        return (w.detach().float() * grads[f"{prefix}{module_name}.{what}"].to(w.device)).abs()

    def rows(module_name, module, per):          # sum over input columns (+ bias), grouped by `per` rows
        s = salience(module_name, module, "weight").sum(dim=1)
        if module.bias is not None:
            s = s + salience(module_name, module, "bias")
        return s.reshape(-1, per).sum(dim=1)

    heads = (rows("self_attn.q_proj", attn.q_proj, r * hd) + rows("self_attn.k_proj", attn.k_proj, hd)
             + rows("self_attn.v_proj", attn.v_proj, hd)
             + salience("self_attn.o_proj", attn.o_proj, "weight").sum(dim=0).reshape(-1, r * hd).sum(dim=1))
    channels = (rows("mlp.gate_proj", mlp.gate_proj, 1) + rows("mlp.up_proj", mlp.up_proj, 1)
                + salience("mlp.down_proj", mlp.down_proj, "weight").sum(dim=0))
    return heads, channels


# ---------------------------------------------------------------- slicing
def _sliced(layer: nn.Linear, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> nn.Linear:
    W = layer.weight.detach()
    if rows is not None:
        W = W[rows]
    if cols is not None:
        W = W[:, cols]
    new = nn.Linear(W.shape[1], W.shape[0], bias=layer.bias is not None, dtype=W.dtype, device=W.device)
    with torch.no_grad():
        new.weight.copy_(W)
        if layer.bias is not None:
            new.bias.copy_(layer.bias.detach() if rows is None else layer.bias.detach()[rows])
    return new


def slice_block(block: nn.Module, keep_kv: torch.Tensor, keep_channels: torch.Tensor) -> None:
    """Keep the given KV groups (with their query heads) and MLP channels, in place (sorted indices)."""
    attn, mlp, shape = _attention(block), _mlp(block), block_shape(block)
    hd, r = shape.head_dim, shape.n_rep
    keep_kv = keep_kv.sort().values.to(attn.q_proj.weight.device)
    kv_rows = (keep_kv[:, None] * hd + torch.arange(hd, device=keep_kv.device)).flatten()
    q_rows = (keep_kv[:, None] * (r * hd) + torch.arange(r * hd, device=keep_kv.device)).flatten()
    attn.q_proj = _sliced(attn.q_proj, rows=q_rows)
    attn.k_proj = _sliced(attn.k_proj, rows=kv_rows)
    attn.v_proj = _sliced(attn.v_proj, rows=kv_rows)
    attn.o_proj = _sliced(attn.o_proj, cols=q_rows)
    keep_channels = keep_channels.sort().values.to(mlp.gate_proj.weight.device)
    mlp.gate_proj = _sliced(mlp.gate_proj, rows=keep_channels)
    mlp.up_proj = _sliced(mlp.up_proj, rows=keep_channels)
    mlp.down_proj = _sliced(mlp.down_proj, cols=keep_channels)
    if hasattr(mlp, "intermediate_size"):
        mlp.intermediate_size = int(keep_channels.numel())
    # attention's num_key_value_groups (= n_rep) is unchanged: whole GQA groups are removed


@dataclass
class StructuredReport(BlockParameterReport):
    block_range: tuple[int, int]
    target_ratios: list[float]
    removed_kv_groups: list[list[int]] = field(default_factory=list)
    removed_channels: list[int] = field(default_factory=list)
    block_params_before: list[int] = field(default_factory=list)
    block_params_after: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"block_range": list(self.block_range), "target_ratios": self.target_ratios,
                "removed_kv_groups": self.removed_kv_groups, "removed_channels": self.removed_channels,
                "block_params_before": self.block_params_before, "block_params_after": self.block_params_after,
                "achieved_ratios": self.achieved_ratios, "achieved_reduction": self.achieved_reduction}


def layer_shapes(model: nn.Module) -> list[dict[str, int]]:
    return [{"num_attention_heads": s.num_heads, "num_key_value_heads": s.num_kv_heads,
             "intermediate_size": s.intermediate}
            for s in (block_shape(b) for b in decoder_blocks(model))]


def structured_prune(model: nn.Module, plan: SparsityPlan, calib_ids: torch.Tensor,
                     cfg: StructuredConfig = StructuredConfig(), *, progress: bool = True) -> StructuredReport:
    """Prune whole KV groups and MLP channels per block, in place; records the shapes in the config.

    calib_ids: (N, T) windows for the Taylor backward pass (on the model's device).
    """
    blocks = decoder_blocks(model)
    n = len(blocks)
    if len(plan.ratios) != n:
        raise ValueError(f"plan has {len(plan.ratios)} ratios for a model with {n} blocks")
    block_range = tuple(cfg.block_range) if cfg.block_range is not None else default_block_range(n)
    ratios = range_ratios(plan, block_range)
    shapes = [block_shape(b) for b in blocks]                 # fails early on a non-LLaMA block
    report = StructuredReport(block_range=block_range, target_ratios=ratios)
    counts = [group_counts(s, r) for s, r in zip(shapes, ratios)]
    grads = taylor_gradients(model, calib_ids, batch_size=cfg.batch_size, progress=progress) \
        if any(h or c for h, c in counts) else None
    prefix_of = {id(b): name + "." for name, b in model.named_modules() if any(b is x for x in blocks)}
    for index, block in enumerate(blocks):
        shape, (n_heads, n_channels) = shapes[index], counts[index]
        report.block_params_before.append(shape.prunable_params)
        removed_heads: list[int] = []
        if n_heads or n_channels:
            head_imp, chan_imp = group_importance(block, grads, prefix_of[id(block)])
            order_h = torch.argsort(head_imp, stable=True)       # least important first
            order_c = torch.argsort(chan_imp, stable=True)
            removed_heads = sorted(order_h[:n_heads].tolist())
            slice_block(block, order_h[n_heads:], order_c[n_channels:])
        report.removed_kv_groups.append(removed_heads)
        report.removed_channels.append(n_channels)
        report.block_params_after.append(block_shape(block).prunable_params)
    setattr(model.config, CONFIG_FIELD, layer_shapes(model))
    return report


# ---------------------------------------------------------------- saving and loading
# The checkpoint's own modelling code (transformers' remote-code mechanism, so that plain
# `AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)` loads it without dlp_lib):
# the base architecture, then each block's projections rebuilt with that block's shapes before the
# weights are read. {base_config} / {base_model} name the original transformers classes.
REMOTE_CODE_FILE = "modeling_dlp_structured.py"
_REMOTE_CODE = '''"""A structurally pruned {base_model} (written by dlp_lib; needs only transformers).

Each decoder block keeps its own number of attention heads (whole grouped-query groups) and MLP
channels, listed in config.{field}; every other part is {base_model}'s. Load with
AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True).
"""
from torch import nn
from transformers import {base_config} as _BaseConfig
from transformers import {base_model} as _BaseModel


class DLPStructuredConfig(_BaseConfig):
    pass


class DLPStructuredForCausalLM(_BaseModel):
    config_class = DLPStructuredConfig

    def __init__(self, config):
        super().__init__(config)
        layers = getattr(config, "{field}")
        if len(layers) != len(self.model.layers):
            raise ValueError(f"{field} lists {{len(layers)}} layers, the model has {{len(self.model.layers)}}")
        for block, spec in zip(self.model.layers, layers):
            attn, mlp = block.self_attn, block.mlp
            hidden, hd = attn.q_proj.in_features, attn.head_dim
            q, kv, channels = spec["num_attention_heads"] * hd, spec["num_key_value_heads"] * hd, spec["intermediate_size"]

            def linear(old, n_in, n_out):
                return nn.Linear(n_in, n_out, bias=old.bias is not None, dtype=old.weight.dtype,
                                 device=old.weight.device)
            attn.q_proj = linear(attn.q_proj, hidden, q)
            attn.k_proj = linear(attn.k_proj, hidden, kv)
            attn.v_proj = linear(attn.v_proj, hidden, kv)
            attn.o_proj = linear(attn.o_proj, q, hidden)
            mlp.gate_proj = linear(mlp.gate_proj, hidden, channels)
            mlp.up_proj = linear(mlp.up_proj, hidden, channels)
            mlp.down_proj = linear(mlp.down_proj, channels, hidden)
            if hasattr(mlp, "intermediate_size"):
                mlp.intermediate_size = channels
'''


def save_structured(model: nn.Module, tokenizer, directory: str | Path) -> Path:
    """save_pretrained with the per-layer shapes in config.dlp_structured_layers, and the modelling
    code that rebuilds them (REMOTE_CODE_FILE), so that plain transformers loads the checkpoint with
    trust_remote_code=True."""
    import transformers
    directory = Path(directory)
    base_model = type(model).__name__
    base_config = type(model.config).__name__
    if base_model == "DLPStructuredForCausalLM":   # re-saving a loaded structured checkpoint
        base_model, base_config = model.config.dlp_structured_base
    if not (hasattr(transformers, base_model) and hasattr(transformers, base_config)):
        raise ValueError(f"{base_model} / {base_config} are not transformers classes; the structured checkpoint's "
                         "modelling code subclasses them")
    setattr(model.config, CONFIG_FIELD, layer_shapes(model))
    model.config.dlp_structured_base = [base_model, base_config]
    model.config.auto_map = {"AutoConfig": f"{REMOTE_CODE_FILE[:-3]}.DLPStructuredConfig",
                             "AutoModelForCausalLM": f"{REMOTE_CODE_FILE[:-3]}.DLPStructuredForCausalLM"}
    model.save_pretrained(directory)
    (directory / REMOTE_CODE_FILE).write_text(_REMOTE_CODE.format(base_model=base_model, base_config=base_config,
                                                                  field=CONFIG_FIELD))
    config = json.loads((directory / "config.json").read_text())
    config["architectures"] = ["DLPStructuredForCausalLM"]
    (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    return directory


def load_structured(directory: str | Path, *, dtype: torch.dtype | None = None, device="cpu") -> nn.Module:
    """Load a checkpoint written by save_structured (or a plain one) with its per-layer shapes."""
    from transformers import AutoConfig, AutoModelForCausalLM
    directory = Path(directory)
    config = AutoConfig.from_pretrained(directory)
    layers = getattr(config, CONFIG_FIELD, None)
    if layers is None:
        return AutoModelForCausalLM.from_pretrained(directory, dtype=dtype).to(device).eval()
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    blocks = decoder_blocks(model)
    if len(layers) != len(blocks):
        raise ValueError(f"{CONFIG_FIELD} lists {len(layers)} layers, the config builds {len(blocks)}")
    for block, spec in zip(blocks, layers):
        shape = block_shape(block)
        if spec["num_attention_heads"] * shape.num_kv_heads != spec["num_key_value_heads"] * shape.num_heads:
            raise ValueError(f"layer shape {spec} changes the query heads per KV head ({shape.n_rep})")
        slice_block(block, torch.arange(spec["num_key_value_heads"]), torch.arange(spec["intermediate_size"]))
    load_state_checked(model, directory)
    return model.to(device).eval()


# ---------------------------------------------------------------- measuring
@torch.no_grad()
def forward_seconds(model: nn.Module, seqlen: int, *, repeats: int = 5, vocab: int | None = None,
                    device=None, seed: int = 0) -> float:
    """Median wall time of one forward of a (1, seqlen) window (after one warm-up)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    vocab = vocab or model.config.vocab_size
    ids = torch.randint(0, vocab, (1, seqlen), generator=torch.Generator().manual_seed(seed)).to(device)
    model(ids, use_cache=False)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        model(ids, use_cache=False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


