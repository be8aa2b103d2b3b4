"""THE training loop of the project: LoRA after pruning (Table 7) and layer sampling (Table 18) both use it.

AdamW over a fixed parameter list (parameters whose `requires_grad` is off in a step get no
gradient, and torch's AdamW skips them, so LISA-style freezing needs no new optimiser), a
linear warm-up then linear decay schedule, gradient accumulation, gradient clipping, a loss
curve, checkpoints of the trainable state (parameters that can change + optimiser + scheduler
+ RNG + step) and resume. Which examples a step sees is a pure function of (seed, step), so a
resumed run sees exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import torch
from torch import nn

from ..data import TextSource, token_stream


@dataclass(frozen=True)
class TrainConfig:
    """Everything of the optimisation that affects the result (it is part of every cache key)."""
    steps: int = 100                  # optimiser steps
    batch_size: int = 4               # examples per micro-batch
    grad_accum: int = 1               # micro-batches per optimiser step
    seqlen: int = 256                 # tokens per training window (LM windows) or max tokens per example (tasks)
    lr: float = 1e-4                  # peak learning rate (Wanda's lora_ft: 1e-4)
    warmup_steps: int = 10            # linear warm-up from 0 to lr, then linear decay to 0 at `steps`
    weight_decay: float = 0.0         # decoupled (AdamW); 0 as in Wanda's lora_ft
    max_grad_norm: float | None = 1.0  # clip the global gradient norm (HF Trainer's default); None: no clipping
    seed: int = 0                     # data order, adapter initialisation, dropout

    def __post_init__(self):
        for name in ("steps", "batch_size", "grad_accum", "seqlen"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.seqlen < 2:
            raise ValueError(f"seqlen must be >= 2 (next-token loss), got {self.seqlen}")
        if not (math.isfinite(self.lr) and self.lr > 0):   # inf/nan would end in a FloatingPointError mid-run
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        if not 0 <= self.warmup_steps < self.steps:
            raise ValueError(f"warmup_steps must be in [0, steps={self.steps}), got {self.warmup_steps}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0 or None, got {self.max_grad_norm}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Multiplier of the peak lr at optimiser step `step` (0-based): linear warm-up, then linear decay to 0."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


# ------------------------------------------------------------------------------------ data
class Examples:
    """A fixed set of training examples: (N, T) input ids, attention mask and labels (-100 = no loss).

    `batch(seed, step, micro, batch_size)` is stateless: example k of the run (k counts over all
    micro-batches) is position k mod N of the permutation of epoch k // N, seeded by (seed, epoch).
    """

    def __init__(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, *, source: dict | None = None):
        if input_ids.ndim != 2 or input_ids.shape[0] < 1 or input_ids.shape[1] < 2:
            raise ValueError(f"input_ids must be (N >= 1, T >= 2), got {tuple(input_ids.shape)}")
        self.input_ids = input_ids.long()                                        # (N, T)
        self.labels = (self.input_ids.clone() if labels is None else labels.long())  # (N, T)
        self.attention_mask = (torch.ones_like(self.input_ids) if attention_mask is None
                               else attention_mask.long())                        # (N, T)
        self.source = source or {}
        self._perms: dict[tuple[int, int], torch.Tensor] = {}

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def _perm(self, seed: int, epoch: int) -> torch.Tensor:
        if (seed, epoch) not in self._perms:
            gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            self._perms[(seed, epoch)] = torch.randperm(len(self), generator=gen)
        return self._perms[(seed, epoch)]

    def indices(self, seed: int, step: int, micro: int, grad_accum: int, batch_size: int) -> list[int]:
        first = (step * grad_accum + micro) * batch_size
        return [int(self._perm(seed, k // len(self))[k % len(self)]) for k in range(first, first + batch_size)]

    def batch(self, idx: Sequence[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(list(idx))
        return {"input_ids": self.input_ids[idx], "attention_mask": self.attention_mask[idx],
                "labels": self.labels[idx]}


def check_disjoint(train: dict, evaluation: Sequence[dict]) -> None:
    """Refuse to train on evaluation text: every evaluated (source, split) must differ from the trained one.

    A local .txt file is the same document for every split, so it may not be both trained on and evaluated.
    """
    for ev in evaluation:
        if ev["split"] == "train":
            raise ValueError(f"evaluation text {ev['source']!r} uses the train split, which is what fine-tuning "
                             "reads; evaluate on 'test' or 'validation'")
        if ev["source"] == train["source"] and (ev["split"] == train["split"] or train["source"].startswith("file:")):
            raise ValueError(f"evaluation text {ev['source']!r} ({ev['split']}) is the training text "
                             f"({train['split']}); fine-tuning may not see evaluation text")


def lm_windows(source: str, tokenizer, seqlen: int, max_windows: int | None = None) -> Examples:
    """Non-overlapping (n, seqlen) windows of the TRAIN split of `source` (the calibration corpus), causal-LM labels."""
    src = TextSource(source)
    stream = token_stream(src, tokenizer, "train")
    n = len(stream) // seqlen
    if max_windows is not None:
        n = min(n, max_windows)
    if n < 1:
        raise ValueError(f"train split of {src.label!r} has {len(stream)} tokens, fewer than seqlen={seqlen}")
    ids = stream[: n * seqlen].view(n, seqlen).long()
    return Examples(ids, source={"source": src.identity(), "split": "train", "kind": "lm_windows",
                                 "seqlen": seqlen, "windows": n})


# ------------------------------------------------------------------------------------ hooks
class StepHook(Protocol):
    """Called around each optimiser step (layer sampling switches blocks; masks are re-applied)."""

    def before_step(self, step: int) -> None: ...

    def after_step(self, step: int) -> None: ...


class KeepZeros:
    """Pruned weights stay exactly zero when they are trained directly (layer sampling on a pruned model).

    A pruned entry's gradient is not zero (dL/dW_ij = sum_t dy_i x_j does not depend on W_ij), so
    the optimiser moves it like any other entry; the mask taken at construction is re-applied
    after every step, which puts every pruned entry back to exactly zero before the next forward.
    (The optimiser's moments for those entries keep accumulating; they only ever produce updates
    that this hook discards.)
    """

    def __init__(self, weights: Sequence[torch.Tensor]):
        self.weights = [w for w in weights if bool((w == 0).any())]
        self.masks = [w != 0 for w in self.weights]

    def before_step(self, step: int) -> None:
        pass

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        for w, m in zip(self.weights, self.masks):
            w.mul_(m)


# ------------------------------------------------------------------------------------ memory
class PeakMemory:
    """Peak memory of the training run: CUDA max allocated, or the process's RSS high-water mark on CPU.

    On Linux the high-water mark (VmHWM) is reset by writing 5 to /proc/self/clear_refs, so the
    delta is this run's peak above the RSS at its start; elsewhere (or if the reset is refused)
    the RSS is sampled after every micro-batch and the sampled maximum is reported.
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.samples: list[int] = []

    @staticmethod
    def _status(field: str) -> int | None:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def __enter__(self):
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
            return self
        self.hwm_reset = False
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.hwm_reset = True
        except OSError:
            pass
        self.start = self._rss()
        return self

    def _rss(self) -> int:
        rss = self._status("VmRSS")
        if rss is None:
            import psutil
            rss = psutil.Process(os.getpid()).memory_info().rss
        return rss

    def sample(self) -> None:
        if not self.cuda:
            self.samples.append(self._rss())

    def __exit__(self, *exc):
        if self.cuda:
            self.peak = torch.cuda.max_memory_allocated()
            self.how = "torch.cuda.max_memory_allocated"
        else:
            hwm = self._status("VmHWM") if self.hwm_reset else None
            self.peak = max([hwm or 0, *self.samples, self._rss()])
            self.how = "VmHWM after clear_refs" if hwm else "max sampled RSS"
        return False

    def to_dict(self) -> dict:
        return {"peak_bytes": int(self.peak), "start_bytes": int(self.start),
                "peak_delta_bytes": int(self.peak - self.start), "how": self.how}


# ------------------------------------------------------------------------------------ loop
def _named(model: nn.Module, params: Sequence[nn.Parameter]) -> dict[str, nn.Parameter]:
    ids = {id(p) for p in params}
    named = {n: p for n, p in model.named_parameters(remove_duplicate=True) if id(p) in ids}
    if len(named) != len(ids):
        raise ValueError("every trainable parameter must belong to the model")
    return named


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, *, step: int, model: nn.Module, params: dict[str, nn.Parameter],
                    optimizer, scheduler, history: dict, extra: dict) -> None:
    """Trainable state only: the parameters that can change (never the frozen base), optimiser, RNG, step."""
    from ..cache import atomic_torch_save
    trained = {n: p.detach().cpu().clone() for n, p in params.items()}
    atomic_torch_save(Path(path), {"step": step, "params": trained, "optimizer": optimizer.state_dict(),
                                   "scheduler": scheduler.state_dict(), "rng": _rng_state(),
                                   "history": history, "extra": extra})


def load_checkpoint(path: Path, *, params: dict[str, nn.Parameter], optimizer, scheduler, extra: dict) -> tuple[int, dict]:
    state = torch.load(Path(path), weights_only=False)
    if state["extra"] != extra:
        raise ValueError(f"checkpoint {path} belongs to another run ({state['extra']} != {extra})")
    missing = set(params) ^ set(state["params"])
    if missing:
        raise ValueError(f"checkpoint {path} does not hold the same trainable parameters (differ: {sorted(missing)[:5]})")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(state["params"][n].to(p.device))
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"])
    return state["step"], state["history"]


def train(model: nn.Module, params: Sequence[nn.Parameter], data: Examples, cfg: TrainConfig, *,
          hooks: Sequence[StepHook] = (), device: str | torch.device | None = None,
          checkpoint_dir: str | Path | None = None, checkpoint_every: int = 0, stop_after: int | None = None,
          run_id: dict | None = None, progress: bool = True, desc: str = "fine-tune",
          low_rank: Sequence[nn.Parameter] = (), galore: dict | None = None) -> dict:
    """Optimise `params` of `model` on `data` for cfg.steps AdamW steps; returns the loss curve and costs.

    `params`: every parameter the run may update (hooks may switch `requires_grad` among them).
    `checkpoint_dir` + `checkpoint_every`: write `last.pt` every that many steps and resume from
    it when present (its `run_id` must match). `stop_after`: stop after that many steps (to test
    resume). `galore` (rank, update_gap, scale) with `low_rank` (a subset of params): those take
    GaLore's projected AdamW step (`galore.GaLoreAdamW`), the rest plain AdamW. The model is left in
    eval mode.
    """
    from tqdm.auto import tqdm

    if checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0, got {checkpoint_every}")
    if not params:
        raise ValueError("nothing to train: the parameter list is empty")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    named = _named(model, params)
    if galore:
        from .galore import GaLoreAdamW
        projected = {id(p) for p in low_rank}
        groups = [{"params": [p for p in named.values() if id(p) not in projected]},
                  {"params": [p for p in named.values() if id(p) in projected], **galore}]
        optimizer = GaLoreAdamW([g for g in groups if g["params"]], lr=cfg.lr, weight_decay=cfg.weight_decay,
                                betas=(0.9, 0.999), eps=1e-8)
    else:
        optimizer = torch.optim.AdamW(list(named.values()), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                      betas=(0.9, 0.999), eps=1e-8, foreach=False)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, cfg.warmup_steps, cfg.steps))
    run_id = {"train": cfg.to_dict(), "data": data.source, **(run_id or {})}
    ckpt = Path(checkpoint_dir) / "last.pt" if checkpoint_dir is not None else None

    caller_rng = _rng_state()           # the run's own RNG stream must not leak into the caller's
    torch.manual_seed(cfg.seed + 7919)  # dropout stream of this run (adapter init is seeded by the caller)
    history = {"loss": [], "lr": [], "tokens": []}
    start = 0
    if ckpt is not None and ckpt.exists():
        start, history = load_checkpoint(ckpt, params=named, optimizer=optimizer, scheduler=scheduler,
                                         extra=run_id)
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    model.train()
    t0 = time.perf_counter()
    bar = tqdm(range(start, end), desc=desc, disable=not progress, initial=start, total=cfg.steps)
    with PeakMemory(device) as mem:
        for step in bar:
            for h in hooks:
                h.before_step(step)
            losses, tokens = [], 0
            for micro in range(cfg.grad_accum):
                batch = data.batch(data.indices(cfg.seed, step, micro, cfg.grad_accum, cfg.batch_size))
                batch = {k: v.to(device) for k, v in batch.items()}
                out = model(**batch)
                if not torch.isfinite(out.loss):
                    raise FloatingPointError(f"non-finite training loss {out.loss.item()} at step {step}")
                (out.loss / cfg.grad_accum).backward()
                losses.append(out.loss.item())
                tokens += int((batch["labels"][:, 1:] != -100).sum())
                mem.sample()
            if cfg.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_([p for p in named.values() if p.grad is not None], cfg.max_grad_norm)
            history["lr"].append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            for h in hooks:
                h.after_step(step)
            history["loss"].append(sum(losses) / len(losses))
            history["tokens"].append(tokens)
            bar.set_postfix(loss=f"{history['loss'][-1]:.3f}")
            if ckpt is not None and checkpoint_every and ((step + 1) % checkpoint_every == 0 or step + 1 == end):
                save_checkpoint(ckpt, step=step + 1, model=model, params=named, optimizer=optimizer,
                                scheduler=scheduler, history=history, extra=run_id)
    model.eval()
    _set_rng_state(caller_rng)
    state_bytes = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
                      if torch.is_tensor(t) and t.ndim > 0)
    return {"loss": history["loss"], "lr": history["lr"], "tokens": history["tokens"],
            "steps_done": len(history["loss"]), "resumed_from": start, "seconds": time.perf_counter() - t0,
            "memory": {**mem.to_dict(), "optimizer_state_bytes": int(state_bytes)}}


def count_parameters(params: Sequence[nn.Parameter]) -> int:
    seen, n = set(), 0
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            n += p.numel()
    return n
