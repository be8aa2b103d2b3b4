"""The one calibration engine: capture block-0 inputs, run block by block, hooks collect statistics.

Every method uses it. In *dense* mode (DLP/OWL pass 1) a block's outputs from its single
forward feed the next block. In *sequential* mode (pruning) a visitor may modify the block
after its statistics forward; the block is then run again so the next block sees the pruned
outputs. Weights may stay on the CPU (offload): only the current block is on `device`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from .models import decoder_blocks, linear_sublayers


class _StopForward(Exception):
    pass


# ---------------------------------------------------------------- statistics collected by hooks
class WandaNorms:
    """Per input column: mean over sequences of the per-sequence sum over tokens of x_j^2 (fp32)."""

    def __init__(self, layer: nn.Linear):
        self.sq_sum = torch.zeros(layer.in_features, dtype=torch.float32, device=layer.weight.device)
        self.nsequences = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]) if x.dim() == 3 else x
        self.sq_sum += x.float().pow(2).sum(dim=0)

    def finish(self, nsequences: int) -> torch.Tensor:
        """sqrt of the mean squared column norm: the ||X_j||_2 of Wanda's score."""
        return (self.sq_sum / nsequences).sqrt()


class HessianAccumulator:
    """H = 2/(N*T) X^T X in fp32, SparseGPT's layer Hessian."""

    def __init__(self, layer: nn.Linear):
        self.H = torch.zeros(layer.in_features, layer.in_features, dtype=torch.float32, device=layer.weight.device)
        self.ntokens = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1]).float()
        self.H.addmm_(x.t(), x)
        self.ntokens += x.shape[0]

    def finish(self, nsequences: int) -> torch.Tensor:
        return self.H.mul_(2.0 / max(self.ntokens, 1))


STATISTICS = {"wanda": WandaNorms, "hessian": HessianAccumulator}


@dataclass
class BlockVisit:
    """What a visitor sees for one block: its index, module, sublayers and finished statistics."""
    index: int
    block: nn.Module
    sublayers: dict[str, nn.Linear]
    stats: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # stat name -> sublayer -> tensor


def _first_tensor(out):
    return out[0] if isinstance(out, (tuple, list)) else out  # transformers 4.x blocks return tuples


class CalibrationEngine:
    """Runs calibration sequences through a decoder model block by block.

    calib_ids: (N, T) token ids. `device` is where blocks compute; weights of other blocks stay
    where they are (pass a model on the CPU to offload). `act_dtype` is the dtype of stored
    activations (e.g. torch.float16 on GPU); statistics are always fp32. `stream_activations`
    keeps the activations in CPU memory and moves one batch at a time to `device`.
    """

    def __init__(self, model: nn.Module, calib_ids: torch.Tensor, *, device: str | torch.device | None = None,
                 batch_size: int = 1, act_dtype: torch.dtype | None = None, stream_activations: bool = False,
                 progress: bool = True):
        self.model = model
        self.blocks = decoder_blocks(model)
        self.calib_ids = calib_ids
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.batch_size = batch_size
        self.act_dtype = act_dtype or next(model.parameters()).dtype
        self.stream = stream_activations
        self.progress = progress

    # -- block-0 capture ---------------------------------------------------------------
    def _embedding_modules(self) -> list[nn.Module]:
        """Modules that run before block 0 (embeddings, rotary) and must sit on `device`."""
        first = self.blocks[0]
        before = []
        for module in self.model.modules():
            if module is self.blocks:
                break
            if module is not self.model and not any(True for _ in module.children()):
                before.append(module)
        return [m for m in before if m is not first]

    @torch.no_grad()
    def capture_inputs(self) -> tuple[list[torch.Tensor], dict]:
        """Hidden states entering block 0 for every batch, and the keyword arguments it receives."""
        store_device = torch.device("cpu") if self.stream else self.device
        moved = []
        for m in self._embedding_modules():
            tensors = list(m.parameters(recurse=False)) + list(m.buffers(recurse=False))
            p = tensors[0] if tensors else None
            if p is not None and p.device != self.device:
                moved.append((m, p.device))
                m.to(self.device)
        captured: dict = {}

        def grab(_module, args, kwargs):
            captured["hidden"] = args[0] if args else kwargs.pop("hidden_states")
            captured["kwargs"] = {k: v for k, v in kwargs.items() if k != "hidden_states"}
            raise _StopForward

        handle = self.blocks[0].register_forward_pre_hook(grab, with_kwargs=True)
        inputs, kwargs = [], {}
        try:
            for batch in self.calib_ids.split(self.batch_size):
                try:
                    self.model(batch.to(self.device), use_cache=False)
                except _StopForward:
                    pass
                inputs.append(captured["hidden"].to(store_device, self.act_dtype))
                kwargs = captured["kwargs"]
        finally:
            handle.remove()
            for m, dev in moved:
                m.to(dev)
        kwargs["use_cache"] = False
        kwargs.pop("past_key_values", None)
        kwargs.pop("past_key_value", None)
        return inputs, kwargs

    # -- block loop ----------------------------------------------------------------------
    def _forward_block(self, block, inputs, kwargs, hooks: dict[str, list] | None = None) -> list[torch.Tensor]:
        handles = []
        if hooks:
            subs = linear_sublayers(block)
            for name, accs in hooks.items():
                def hook(_m, args, _out, accs=accs):
                    for acc in accs:
                        acc.add(args[0].detach())
                handles.append(subs[name].register_forward_hook(hook))
        outs = []
        try:
            for x in inputs:
                x_dev = x.to(self.device, non_blocking=True)
                w_dtype = next(block.parameters()).dtype
                y = _first_tensor(block(x_dev.to(w_dtype), **kwargs))
                outs.append(y.to(x.device, self.act_dtype))
        finally:
            for h in handles:
                h.remove()
        return outs

    @torch.no_grad()
    def run(self, visitor: Callable[[BlockVisit], bool | None], *, statistics: Iterable[str] = ("wanda",),
            sequential: bool = False, desc: str = "blocks") -> None:
        """Visit every block in order.

        The visitor receives the block's finished statistics (collected on its current inputs).
        In sequential mode a visitor that returns True (it modified the block) makes the engine
        recompute the block's outputs, which then feed the next block.
        """
        statistics = tuple(statistics)
        unknown = set(statistics) - set(STATISTICS)
        if unknown:
            raise ValueError(f"Unknown statistics {sorted(unknown)}; allowed: {sorted(STATISTICS)}")
        inputs, kwargs = self.capture_inputs()
        kwargs = {k: _to(v, self.device) for k, v in kwargs.items()}
        nseq = self.calib_ids.shape[0]
        for index, block in enumerate(tqdm(self.blocks, desc=desc, disable=not self.progress, leave=False)):
            home = next(block.parameters()).device
            block.to(self.device)
            subs = linear_sublayers(block)
            accs = {s: {n: STATISTICS[s](layer) for n, layer in subs.items()} for s in statistics}
            hooks = {n: [accs[s][n] for s in statistics] for n in subs} if statistics else None
            outs = self._forward_block(block, inputs, kwargs, hooks)
            visit = BlockVisit(index, block, subs, {s: {n: a.finish(nseq) for n, a in accs[s].items()}
                                                    for s in statistics})
            modified = visitor(visit)
            del visit, accs
            if sequential and modified:
                outs = self._forward_block(block, inputs, kwargs)
            inputs = outs
            block.to(home)
        return None


def _to(value, device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(_to(v, device) for v in value)
    return value


@torch.no_grad()
def replay_logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Logits computed by the engine's block replay (used to test the engine against model(ids))."""
    engine = CalibrationEngine(model, ids, batch_size=ids.shape[0], progress=False)
    inputs, kwargs = engine.capture_inputs()
    h = inputs[0]
    for block in engine.blocks:
        h = _first_tensor(block(h, **kwargs))
    norm = getattr(model.get_decoder(), "norm", None)
    if norm is not None:
        h = norm(h)
    return model.get_output_embeddings()(h)
