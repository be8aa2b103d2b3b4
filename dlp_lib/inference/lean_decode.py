"""Batch-1 decoding of a Llama-style model without Hugging Face's per-token forward: the loop an
inference engine runs, for timing what the weights cost.

Why: HF's forward spends ~6.5 ms per token of SmolLM2-135M (30 layers) on work that is neither
dense nor sparse arithmetic (cache objects, masks, rotary tables recomputed, ~25 small tensor ops
of attention per layer). Both arms of a speed comparison pay it, so it pulls every measured
speedup toward 1 and away from the weight-read bound; DeepSparse, the paper's engine, pays none
of it. This decoder calls the model's own modules as they are (embedding, norm weights, the
projections in whatever format they were swapped to, the head) and does each layer's rotary
embedding, cache write and attention in one C++ call (attention_kernel.cpp). The prompt goes
through HF's forward once; its keys and values seed a preallocated cache of `context` slots.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import native

LEAN_MODEL_TYPES = ("llama", "mistral", "qwen2")   # RMSNorm, rotate-half rotary, SiLU-gated MLP, no logit scaling


def check_lean_model(model: nn.Module) -> None:
    """Raise ValueError naming what this decoder cannot run (before any work)."""
    cfg = model.config
    kind = getattr(cfg, "model_type", None)
    if kind not in LEAN_MODEL_TYPES:
        raise ValueError(f"the lean decoder runs Llama-style models ({', '.join(LEAN_MODEL_TYPES)}); got model_type "
                         f"{kind!r}: use runtime 'hf'")
    if getattr(cfg, "hidden_act", "silu") != "silu":
        raise ValueError(f"the lean decoder's MLP is SiLU-gated; this model's hidden_act is {cfg.hidden_act!r}: "
                         "use runtime 'hf'")
    dtype = next(model.parameters()).dtype
    if dtype != torch.float32 or next(model.parameters()).device.type != "cpu":
        raise ValueError(f"the lean decoder computes in fp32 on the CPU; the model is {dtype} on "
                         f"{next(model.parameters()).device}: use runtime 'hf'")


class LeanDecoder:
    """Greedy-decoding state of one sequence: `prefill(prompt_ids)` then `step(token)` per token,
    each returning the next-token logits (vocab,)."""

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
        self.heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.hidden, self.eps = cfg.hidden_size, cfg.rms_norm_eps
        self.scale = 1.0 / math.sqrt(self.head_dim)
        layers = len(self.inner.layers)
        self.K = torch.zeros(layers, self.kv_heads, self.context, self.head_dim)   # (L, kv_heads, context, D)
        self.V = torch.zeros_like(self.K)
        cos, sin = self.inner.rotary_emb(torch.zeros(1), torch.arange(self.context).unsqueeze(0))
        self.cos, self.sin = cos[0].contiguous(), sin[0].contiguous()           # (context, D)
        self.out = torch.empty(self.heads * self.head_dim)                       # attention output buffer
        self.position = 0
        self._attend = native.load().dlp_rope_attend

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
        cos, sin, out = self.cos[pos], self.sin[pos], self.out
        h = self.inner.embed_tokens.weight[token]                                 # (hidden,)
        for i, layer in enumerate(self.inner.layers):
            attn, mlp = layer.self_attn, layer.mlp
            x = F.rms_norm(h, (self.hidden,), layer.input_layernorm.weight, self.eps)
            q, k, v = attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)
            self._attend(q.data_ptr(), k.data_ptr(), v.data_ptr(), self.K[i].data_ptr(), self.V[i].data_ptr(),
                         cos.data_ptr(), sin.data_ptr(), pos, self.context, self.heads, self.kv_heads,
                         self.head_dim, self.scale, out.data_ptr())
            h = h + attn.o_proj(out)
            x = F.rms_norm(h, (self.hidden,), layer.post_attention_layernorm.weight, self.eps)
            h = h + mlp.down_proj(F.silu(mlp.gate_proj(x)) * mlp.up_proj(x))
        self.position = pos + 1
        return self.model.lm_head(F.rms_norm(h, (self.hidden,), self.inner.norm.weight, self.eps))
