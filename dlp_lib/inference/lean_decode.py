"""Batch-1 decoding of a Llama-style model without Hugging Face's per-token forward: the loop an
inference engine runs, for timing what the weights cost.

Why: HF's forward spends ~6.5 ms per token of SmolLM2-135M (30 layers) on work that is neither
dense nor sparse arithmetic (cache objects, masks, rotary tables recomputed, ~25 small tensor ops
of attention per layer), and even a plain Python loop over the modules pays ~9 us of module and
wrapper dispatch per projection and ~11 us per `F.rms_norm`. Both arms of a speed comparison pay
it, so it pulls every measured speedup toward 1 and away from the weight-read bound; DeepSparse,
the paper's engine, pays none of it. This decoder binds each projection of the model, in whatever
format it was swapped to, to preallocated input and output vectors once (`bind_matvec`: a
`torch.mv(..., out=)` or one C++ call with its arguments converted up front), and does each
layer's RMSNorm, rotary embedding, cache write, attention and gated activation in C++
(lean_kernels.cpp). The prompt goes through HF's forward once; its keys and values seed a
preallocated cache of `context` slots.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from . import native
from .bound_matvec import torch_matvec

LLAMA_STYLE_TYPES = ("llama", "mistral", "qwen2")   # RMSNorm, rotate-half rotary, SiLU-gated MLP, no logit scaling


def attention_geometry(config) -> tuple[int, int, int]:
    """(query heads, key/value heads, head dim) of a Llama-style config."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return heads, kv_heads, head_dim


def check_lean_model(model: nn.Module) -> None:
    """Raise ValueError naming what this decoder cannot run (before any work)."""
    cfg = model.config
    kind = getattr(cfg, "model_type", None)
    if kind not in LLAMA_STYLE_TYPES:
        raise ValueError(f"the lean decoder runs Llama-style models ({', '.join(LLAMA_STYLE_TYPES)}); got model_type "
                         f"{kind!r}: use runtime 'hf'")
    if getattr(cfg, "hidden_act", "silu") != "silu":
        raise ValueError(f"the lean decoder's MLP is SiLU-gated; this model's hidden_act is {cfg.hidden_act!r}: "
                         "use runtime 'hf'")
    dtype = next(model.parameters()).dtype
    if dtype != torch.float32 or next(model.parameters()).device.type != "cpu":
        raise ValueError(f"the lean decoder computes in fp32 on the CPU; the model is {dtype} on "
                         f"{next(model.parameters()).device}: use runtime 'hf'")


def bind_projection(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """y <- module(x) for one token as a call with nothing left to decide: the module's own
    `bind_matvec` (DenseLinear, SparseLinear, BitmaskLinear) or, for a plain nn.Linear, `torch.mv`."""
    if hasattr(module, "bind_matvec"):
        return module.bind_matvec(x, y)
    if type(module) is nn.Linear:
        return torch_matvec(module.weight, module.bias, x, y)
    raise ValueError(f"the lean decoder cannot bind a {type(module).__name__} projection (it binds nn.Linear and "
                     "the formats of sparse_linear.py and bitmask.py): use runtime 'hf'")


@dataclass
class LayerCalls:
    """One decoder layer's weight products, each bound to the decoder's buffers, and the addresses its
    C++ calls read (of tensors the model and the decoder keep alive)."""
    input_norm: int                    # address of the input RMSNorm weight (hidden,)
    q: Callable[[], None]              # x -> q
    k: Callable[[], None]              # x -> k
    v: Callable[[], None]              # x -> v
    keys: int                          # address of this layer's key cache (kv_heads, context, D)
    values: int                        # address of this layer's value cache (kv_heads, context, D)
    o: Callable[[], None]              # attention output -> residual update
    post_norm: int                     # address of the post-attention RMSNorm weight (hidden,)
    gate: Callable[[], None]           # x -> gate
    up: Callable[[], None]             # x -> up
    inter: int                         # this layer's MLP width (structured pruning may narrow it)
    down: Callable[[], None]           # activation -> residual update


class LeanDecoder:
    """Greedy-decoding state of one sequence: `prefill(prompt_ids)` then `step(token)` per token,
    each returning the next-token logits (vocab,). The projections are bound at construction, with
    torch's thread count then: a module swapped or re-threaded afterwards needs a new decoder."""

    def __init__(self, model: nn.Module, context: int):
        check_lean_model(model)
        cfg = model.config
        if context < 1:
            raise ValueError(f"context must be >= 1 cache slots, got {context}")
        window = getattr(cfg, "sliding_window", None)
        if window and context > window and (cfg.model_type == "mistral" or getattr(cfg, "use_sliding_window", False)):
            raise ValueError(f"context {context} exceeds the model's sliding window {window}; the lean decoder "
                             "attends over every slot: use runtime 'hf'")
        self.model, self.context = model, int(context)
        self.inner = model.model
        self.heads, self.kv_heads, self.head_dim = attention_geometry(cfg)
        self.hidden, self.eps = cfg.hidden_size, cfg.rms_norm_eps
        self.scale = 1.0 / math.sqrt(self.head_dim)
        layers = len(self.inner.layers)
        self.K = torch.zeros(layers, self.kv_heads, self.context, self.head_dim)   # (L, kv_heads, context, D)
        self.V = torch.zeros_like(self.K)
        cos, sin = self.inner.rotary_emb(torch.zeros(1), torch.arange(self.context).unsqueeze(0))
        self.cos, self.sin = cos[0].contiguous(), sin[0].contiguous()           # (context, D)
        self.position = 0
        lib = native.load()
        self._attend, self._rms_norm, self._silu_mul = lib.dlp_rope_attend, lib.dlp_rms_norm, lib.dlp_silu_mul
        # the buffers every bound call reads and writes, reused by every layer and token
        q_dim, kv_dim = self.heads * self.head_dim, self.kv_heads * self.head_dim
        inter = max(layer.mlp.gate_proj.out_features for layer in self.inner.layers)
        self.h = torch.empty(self.hidden)        # the residual stream
        self.x = torch.empty(self.hidden)        # normed input of a projection group
        self.q, self.k, self.v = torch.empty(q_dim), torch.empty(kv_dim), torch.empty(kv_dim)
        self.attn_out = torch.empty(q_dim)
        self.update = torch.empty(self.hidden)   # o_proj / down_proj output, added to h
        self.gate, self.up, self.act = torch.empty(inter), torch.empty(inter), torch.empty(inter)  # a layer uses a prefix
        self.layers = [self._bind(i, layer) for i, layer in enumerate(self.inner.layers)]

    def _bind(self, i: int, layer: nn.Module) -> LayerCalls:
        attn, mlp = layer.self_attn, layer.mlp
        n = mlp.gate_proj.out_features
        gate, up, act = self.gate[:n], self.up[:n], self.act[:n]
        return LayerCalls(
            layer.input_layernorm.weight.data_ptr(),
            bind_projection(attn.q_proj, self.x, self.q), bind_projection(attn.k_proj, self.x, self.k),
            bind_projection(attn.v_proj, self.x, self.v), self.K[i].data_ptr(), self.V[i].data_ptr(),
            bind_projection(attn.o_proj, self.attn_out, self.update), layer.post_attention_layernorm.weight.data_ptr(),
            bind_projection(mlp.gate_proj, self.x, gate), bind_projection(mlp.up_proj, self.x, up), n,
            bind_projection(mlp.down_proj, act, self.update))

    @torch.no_grad()
    def prefill(self, prompt_ids: torch.Tensor) -> torch.Tensor:
        """Run the prompt (1, T) through HF's forward and keep its keys/values; logits of its last token."""
        from transformers import DynamicCache
        T = int(prompt_ids.shape[1])
        if prompt_ids.dim() != 2 or prompt_ids.shape[0] != 1 or T > self.context:
            raise ValueError(f"prompt_ids must have shape (1, T) with T <= context {self.context}, got "
                             f"{tuple(prompt_ids.shape)}")
        cache = DynamicCache()
        logits = self.model(input_ids=prompt_ids, past_key_values=cache, use_cache=True).logits[0, -1]
        for i, layer in enumerate(cache.layers):
            self.K[i, :, :T] = layer.keys[0]
            self.V[i, :, :T] = layer.values[0]
        self.position = T
        return logits

    @torch.no_grad()
    def step(self, token: int) -> torch.Tensor:
        """Feed one token at the next position; the logits (vocab,) of what follows it."""
        pos = self.position
        if pos >= self.context:
            raise ValueError(f"the cache holds {self.context} tokens; position {pos} is past its end")
        h, x, update = self.h, self.x, self.update
        hp, xp, n, eps = h.data_ptr(), x.data_ptr(), self.hidden, self.eps
        q, k, v, out = self.q.data_ptr(), self.k.data_ptr(), self.v.data_ptr(), self.attn_out.data_ptr()
        gate, up, act = self.gate.data_ptr(), self.up.data_ptr(), self.act.data_ptr()
        cos, sin = self.cos[pos].data_ptr(), self.sin[pos].data_ptr()
        h.copy_(self.inner.embed_tokens.weight[token])
        for layer in self.layers:
            self._rms_norm(hp, layer.input_norm, n, eps, xp)
            layer.q()
            layer.k()
            layer.v()
            self._attend(q, k, v, layer.keys, layer.values, cos, sin, pos, self.context, self.heads, self.kv_heads,
                         self.head_dim, self.scale, out)
            layer.o()
            h.add_(update)
            self._rms_norm(hp, layer.post_norm, n, eps, xp)
            layer.gate()
            layer.up()
            self._silu_mul(gate, up, layer.inter, act)
            layer.down()
            h.add_(update)
        self.position = pos + 1
        self._rms_norm(hp, self.inner.norm.weight.data_ptr(), n, eps, xp)
        return self.model.lm_head(x)
