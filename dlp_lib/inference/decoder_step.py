"""A Llama-family model as one fixed-shape decoder step, for engines that compile a static graph
(DeepSparse): the token, its position, an additive attention bias over the cache slots and the
past keys/values go in; the next-token logits and this token's keys/values come out.

The KV cache has a fixed number of slots (`context`); the caller writes each step's new keys and
values into slot `position` and masks the slots not yet written. Every step attends over all
slots (masked ones contribute exactly zero), so the graph never changes shape. The step reuses
the model's own modules (embedding, norms, projections, MLP, rotary tables), so pruning,
compression or any weight edit of the model is what the step computes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .lean_decode import LLAMA_STYLE_TYPES, attention_geometry

MASKED = -1e9  # additive bias of a slot not yet written (exp underflows to exactly 0 in fp32)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class DecoderStep(nn.Module):
    """One token through a Llama-style causal LM with a `context`-slot KV cache.

    forward(input_ids (1, 1) int64, position (1,) int64, attn_bias (1, context + 1) fp32,
            *past (2 x layers tensors, each (1, kv_heads, context, head_dim)))
      -> (logits (1, vocab), *present (2 x layers tensors, each (1, kv_heads, 1, head_dim)))
    past/present alternate keys and values per layer; the last attn_bias entry is the token itself."""

    def __init__(self, model: nn.Module, context: int):
        super().__init__()
        cfg = model.config
        if getattr(cfg, "model_type", None) not in LLAMA_STYLE_TYPES:
            raise ValueError(f"DecoderStep supports Llama-style models ({', '.join(LLAMA_STYLE_TYPES)}); got "
                             f"model_type {getattr(cfg, 'model_type', None)!r}")
        if context < 1:
            raise ValueError(f"context must be >= 1 cache slots, got {context}")
        self.model, self.context = model, int(context)
        self.heads, self.kv_heads, self.head_dim = attention_geometry(cfg)
        positions = torch.arange(self.context + 1).unsqueeze(0)
        probe = torch.zeros(1, dtype=next(model.parameters()).dtype)
        cos, sin = model.model.rotary_emb(probe, positions)            # (1, context + 1, head_dim)
        self.register_buffer("cos", cos[0].clone(), persistent=False)
        self.register_buffer("sin", sin[0].clone(), persistent=False)

    @property
    def layers(self) -> int:
        return len(self.model.model.layers)

    def cache_shape(self) -> tuple[int, int, int, int]:
        return (1, self.kv_heads, self.context, self.head_dim)

    def forward(self, input_ids, position, attn_bias, *past):
        inner = self.model.model
        h = inner.embed_tokens(input_ids)                               # (1, 1, hidden)
        cos = self.cos[position].view(1, 1, 1, self.head_dim)
        sin = self.sin[position].view(1, 1, 1, self.head_dim)
        bias = attn_bias.view(1, 1, 1, self.context + 1)
        group = self.heads // self.kv_heads
        present = []
        for i, layer in enumerate(inner.layers):
            attn = layer.self_attn
            x = layer.input_layernorm(h)
            q = attn.q_proj(x).view(1, 1, self.heads, self.head_dim).transpose(1, 2)
            k = attn.k_proj(x).view(1, 1, self.kv_heads, self.head_dim).transpose(1, 2)
            v = attn.v_proj(x).view(1, 1, self.kv_heads, self.head_dim).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            present += [k, v]
            K = torch.cat([past[2 * i], k], dim=2)                       # (1, kv_heads, context + 1, head_dim)
            V = torch.cat([past[2 * i + 1], v], dim=2)
            K = K.unsqueeze(2).expand(1, self.kv_heads, group, self.context + 1, self.head_dim).reshape(
                1, self.heads, self.context + 1, self.head_dim)
            V = V.unsqueeze(2).expand(1, self.kv_heads, group, self.context + 1, self.head_dim).reshape(
                1, self.heads, self.context + 1, self.head_dim)
            scores = q @ K.transpose(-1, -2) / math.sqrt(self.head_dim) + bias
            o = (scores.softmax(-1) @ V).transpose(1, 2).reshape(1, 1, self.heads * self.head_dim)
            h = h + attn.o_proj(o)
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        logits = self.model.lm_head(inner.norm(h))[:, -1]
        return (logits, *present)


@dataclass
class StepCache:
    """The host side of a `DecoderStep`: cache buffers, the position and the attention bias."""
    past: list
    position: int
    context: int

    @classmethod
    def empty(cls, shape: tuple[int, ...], layers: int, zeros) -> "StepCache":
        """`zeros(shape)` makes one buffer (torch.zeros or numpy.zeros: the host loop is array-agnostic)."""
        return cls([zeros(shape) for _ in range(2 * layers)], 0, shape[2])

    def bias(self, full):
        """Additive bias (1, context + 1): slots written so far and the token itself are 0."""
        b = full((1, self.context + 1), MASKED)
        b[0, :self.position] = 0.0
        b[0, -1] = 0.0
        return b

    def append(self, present) -> None:
        if self.position >= self.context:
            raise ValueError(f"the cache holds {self.context} tokens; position {self.position} is past its end")
        for buf, new in zip(self.past, present):
            buf[:, :, self.position] = new[:, :, 0]
        self.position += 1


@torch.no_grad()
def step_logits(step: DecoderStep, token_ids: list[int]) -> torch.Tensor:
    """Logits (len(token_ids), vocab) of feeding `token_ids` one at a time through `step`."""
    cache = StepCache.empty(step.cache_shape(), step.layers, torch.zeros)
    rows = []
    for tok in token_ids:
        out = step(torch.tensor([[tok]]), torch.tensor([cache.position]),
                   cache.bias(lambda s, v: torch.full(s, v)), *cache.past)
        rows.append(out[0][0])
        cache.append(out[1:])
    return torch.stack(rows)


def export_onnx(step: DecoderStep, path, opset: int = 17) -> None:
    """Write `step` as an ONNX graph with fixed shapes (inputs input_ids, position, attn_bias,
    past_key_<i>/past_value_<i>; outputs logits, present_key_<i>/present_value_<i>). Needs the
    onnx package (benchmarks/deepsparse/setup.sh provides it)."""
    try:
        import onnx  # noqa: F401  (torch's exporter imports it; fail here with the fix)
    except ImportError as exc:
        raise ImportError("exporting ONNX needs the onnx package: run benchmarks/deepsparse/setup.sh and put "
                          "benchmarks/deepsparse/.export-deps on PYTHONPATH") from exc
    names = [f"{kind}_{i}" for i in range(step.layers) for kind in ("key", "value")]
    zeros = [torch.zeros(step.cache_shape()) for _ in names]
    args = (torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, dtype=torch.long),
            torch.zeros(1, step.context + 1), *zeros)
    with torch.no_grad():
        torch.onnx.export(step, args, str(path), dynamo=False, opset_version=opset,
                          input_names=["input_ids", "position", "attn_bias", *[f"past_{n}" for n in names]],
                          output_names=["logits", *[f"present_{n}" for n in names]])
