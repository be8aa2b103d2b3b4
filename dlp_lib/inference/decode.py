"""Greedy batch-1 decoding with the KV cache, timed per token (the Table 5 latency)."""
from __future__ import annotations

import time

import torch
from torch import nn


@torch.no_grad()
def greedy_decode(model: nn.Module, prompt_ids: torch.Tensor, new_tokens: int, *,
                  cpu_times: list | None = None) -> tuple[torch.Tensor, list[float]]:
    """Feed the prompt (1, T) once, then `new_tokens` greedy steps of one token each through
    `past_key_values` (no early stop at EOS: every run decodes the same number of tokens).
    Returns the new tokens (new_tokens,) and the seconds of each decode step (the prompt's
    forward excluded; the first step is the one that turns the prompt's logits into a token and
    feeds it). `cpu_times`, if given, receives each step's process CPU seconds (all threads): on
    a shared machine it excludes the time the process waited for a core."""
    from transformers import DynamicCache

    if prompt_ids.dim() != 2 or prompt_ids.shape[0] != 1:
        raise ValueError(f"prompt_ids must have shape (1, T), got {tuple(prompt_ids.shape)}")
    if new_tokens < 1:
        raise ValueError(f"new_tokens must be >= 1, got {new_tokens}")
    device = next(model.parameters()).device
    cache = DynamicCache()
    out = model(input_ids=prompt_ids.to(device), past_key_values=cache, use_cache=True)
    logits = out.logits[:, -1]                                     # (1, vocab)
    tokens, times = [], []
    for _ in range(new_tokens):
        t0, c0 = time.perf_counter(), time.process_time()
        nxt = logits.argmax(-1, keepdim=True)                      # (1, 1)
        out = model(input_ids=nxt, past_key_values=out.past_key_values, use_cache=True)
        logits = out.logits[:, -1]
        times.append(time.perf_counter() - t0)
        if cpu_times is not None:
            cpu_times.append(time.process_time() - c0)
        tokens.append(int(nxt))
    return torch.tensor(tokens), times
