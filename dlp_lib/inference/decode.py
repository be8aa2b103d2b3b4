"""Greedy batch-1 decoding with the KV cache, timed per token (the Table 5 latency)."""
from __future__ import annotations

import time

import torch
from torch import nn

# hf: Hugging Face's forward with its DynamicCache (any model); lean: lean_decode.LeanDecoder (Llama-style
# models, fp32, CPU), the same modules without HF's per-token bookkeeping
RUNTIMES = ("hf", "lean")


def check_runtime(runtime: str) -> None:
    if runtime not in RUNTIMES:
        raise ValueError(f"Unknown decoding runtime {runtime!r}; allowed: {', '.join(RUNTIMES)}")


@torch.no_grad()
def greedy_decode(model: nn.Module, prompt_ids: torch.Tensor, new_tokens: int, *, runtime: str = "hf",
                  cpu_times: list | None = None) -> tuple[torch.Tensor, list[float]]:
    """Feed the prompt (1, T) once, then `new_tokens` greedy steps of one token each through the KV
    cache (no early stop at EOS: every run decodes the same number of tokens), with `runtime`'s loop.
    Returns the new tokens (new_tokens,) and the seconds of each decode step (the prompt's
    forward excluded; the first step is the one that turns the prompt's logits into a token and
    feeds it). `cpu_times`, if given, receives each step's process CPU seconds (all threads): on
    a shared machine it excludes the time the process waited for a core."""
    check_runtime(runtime)
    if prompt_ids.dim() != 2 or prompt_ids.shape[0] != 1:
        raise ValueError(f"prompt_ids must have shape (1, T), got {tuple(prompt_ids.shape)}")
    if new_tokens < 1:
        raise ValueError(f"new_tokens must be >= 1, got {new_tokens}")
    device = next(model.parameters()).device
    if runtime == "lean":
        from .lean_decode import LeanDecoder
        decoder = LeanDecoder(model, context=int(prompt_ids.shape[1]) + new_tokens)
        logits = decoder.prefill(prompt_ids.to(device))                 # (vocab,)
        forward = decoder.step
    else:
        from transformers import DynamicCache
        cache = DynamicCache()
        logits = model(input_ids=prompt_ids.to(device), past_key_values=cache, use_cache=True).logits[0, -1]

        def forward(token: int) -> torch.Tensor:
            ids = torch.tensor([[token]], device=device)
            return model(input_ids=ids, past_key_values=cache, use_cache=True).logits[0, -1]
    tokens, times = [], []
    for _ in range(new_tokens):
        t0, c0 = time.perf_counter(), time.process_time()
        nxt = int(logits.argmax())
        logits = forward(nxt)
        times.append(time.perf_counter() - t0)
        if cpu_times is not None:
            cpu_times.append(time.process_time() - c0)
        tokens.append(nxt)
    return torch.tensor(tokens), times
