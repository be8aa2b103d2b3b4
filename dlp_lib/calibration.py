"""The one calibration engine: capture block-0 inputs, run block by block, hooks collect statistics.

Every method uses it. In *dense* mode (DLP/OWL pass 1) a block's outputs from its single
forward feed the next block. In *sequential* mode (pruning) the visitor may modify the block
after its statistics forward; the block is then run a second time and those outputs (of the
pruned block) feed the next block.

GPU / offload path (issue 5). Weights may stay on the CPU: only the current block lives on
`device` (its parameters are copied from pinned CPU memory on a side stream, and the next block
is prefetched while the current one computes; a block the visitor modified is copied back).
Calibration activations live on `device` in `act_dtype` (fp16/bf16 on a GPU) and are updated in
place, so one copy of them exists; with `stream_activations` they stay in pinned CPU memory and
one batch at a time travels to the GPU (prefetched, the outputs copied back asynchronously).
Statistics (Wanda column norms, SparseGPT Hessians) are always accumulated in fp32. Sublayers
fed the very same input tensor (q/k/v, gate/up) share one accumulator.
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
        x = x.reshape(-1, x.shape[-1])
        # ||x_j||^2 over the tokens, as the reference (torch.norm(...) ** 2), reduced in fp32
        # without an fp32 copy of x.
        self.sq_sum += torch.linalg.vector_norm(x, dim=0, dtype=torch.float32).square_()

    def finish(self, nsequences: int) -> torch.Tensor:
        """sqrt of the mean squared column norm: the ||X_j||_2 of Wanda's score."""
        return (self.sq_sum / nsequences).sqrt()


_MIXED_GRAM: dict = {}  # device -> whether addmm(..., out_dtype=float32) works (checked once)


def _mixed_gram_ok(device: torch.device) -> bool:
    """Does this torch offer fp16/bf16 x fp16/bf16 -> fp32 addmm in place on `device`? (probed once)"""
    key = str(device)
    if key not in _MIXED_GRAM:
        ok = False
        try:
            g = torch.Generator(device=device).manual_seed(0)
            x = torch.randn(64, 48, device=device, generator=g).half()
            H = torch.ones(48, 48, device=device)
            torch.addmm(H, x.t(), x, out_dtype=torch.float32, out=H)
            ref = 1 + x.double().t() @ x.double()
            ok = bool(torch.allclose(H.double(), ref, rtol=1e-5, atol=1e-5))
        except Exception:  # noqa: BLE001 - any failure means: use the fp32 path
            ok = False
        _MIXED_GRAM[key] = ok
    return _MIXED_GRAM[key]


class HessianAccumulator:
    """H = 2/(N*T) X^T X in fp32, SparseGPT's layer Hessian."""

    def __init__(self, layer: nn.Linear):
        self.H = torch.zeros(layer.in_features, layer.in_features, dtype=torch.float32, device=layer.weight.device)
        self.ntokens = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1])
        if x.is_cuda and x.dtype in (torch.float16, torch.bfloat16) and _mixed_gram_ok(x.device):
            # 16-bit products are exact in fp32 and the tensor cores accumulate in fp32: the same
            # X^T X as the fp32 matmul of the upcast activations, up to summation order.
            torch.addmm(self.H, x.t(), x, out_dtype=torch.float32, out=self.H)
        else:
            x = x.float()
            self.H.addmm_(x.t(), x)
        self.ntokens += x.shape[0]

    def finish(self, nsequences: int) -> torch.Tensor:
        return self.H.mul_(2.0 / max(self.ntokens, 1))


STATISTICS = {"wanda": WandaNorms, "hessian": HessianAccumulator}


@dataclass
class BlockVisit:
    """What a visitor sees for one block: its index, module, sublayers and finished statistics.

    Sublayers fed the same input (q/k/v, gate/up) receive the same statistics tensor: read-only.
    """
    index: int
    block: nn.Module
    sublayers: dict[str, nn.Linear]
    stats: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # stat name -> sublayer -> tensor


def _first_tensor(out):
    return out[0] if isinstance(out, (tuple, list)) else out  # transformers 4.x blocks return tuples


class _Hooks:
    """Forward hooks that feed one block's accumulators during its statistics forward.

    Which sublayers receive the very same input tensor (q/k/v, gate/up) is read off the first
    batch; those share one accumulator, so each distinct input is reduced once per batch.
    """

    def __init__(self, sublayers: dict[str, nn.Linear], statistics: tuple[str, ...]):
        self.sublayers, self.statistics = sublayers, statistics
        self.accs: dict[str, dict[str, object]] = {s: {} for s in statistics}  # leaders only
        self.alias: dict[str, str] = {}
        self.seen: dict[str, torch.Tensor] = {}
        self.batch = 0
        self.handles = [layer.register_forward_hook(self._hook(name)) for name, layer in sublayers.items()]

    def _hook(self, name: str):
        def hook(_module, args, _out):
            x = args[0]  # the very object, compared by identity (detach() would make a new one)
            if name in self.alias:
                leader = self.alias[name]
                if self.seen.get(leader) is not x:
                    raise RuntimeError(f"{name} and {leader} shared their input in the first batch but not in "
                                       f"batch {self.batch}; this block class cannot be calibrated with shared "
                                       "accumulators")
                return
            if name not in self.accs[self.statistics[0]]:
                if self.batch == 0:
                    leader = next((other for other, t in self.seen.items() if t is x), None)
                    if leader is not None:
                        self.alias[name] = leader
                        return
                for s in self.statistics:
                    self.accs[s][name] = STATISTICS[s](self.sublayers[name])
            self.seen[name] = x
            for s in self.statistics:
                self.accs[s][name].add(x.detach())
        return hook

    def next_batch(self) -> None:
        self.seen.clear()
        self.batch += 1

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []
        self.seen.clear()

    def finish(self, nsequences: int) -> dict[str, dict[str, torch.Tensor]]:
        out: dict[str, dict[str, torch.Tensor]] = {s: {} for s in self.statistics}
        done: dict[str, dict[str, torch.Tensor]] = {s: {} for s in self.statistics}
        for name in self.sublayers:
            src = self.alias.get(name, name)
            for s in self.statistics:
                if src not in done[s]:
                    acc = self.accs[s].get(src) or STATISTICS[s](self.sublayers[src])  # never called: zeros
                    done[s][src] = acc.finish(nsequences)
                out[s][name] = done[s][src]
        self.accs = {s: {} for s in self.statistics}
        return out


# ---------------------------------------------------------------- moving blocks (CPU offload)
@dataclass
class _Staged:
    slots: list            # (module, name, is_param)
    homes: list            # the tensors at home (CPU), restored after the block
    devs: list             # their copies on the compute device
    event: object = None   # CUDA event: copies done


class _BlockMover:
    """Moves one block's parameters and buffers between home (CPU) and the compute device.

    On CUDA the home tensors are pinned (once, in place) so that copies run asynchronously on a
    side stream: `fetch` of the next block overlaps the current block's compute. `release` puts
    the home tensors back and, if the block was modified, copies the new values home first.
    With `force` a block already on the device is staged through a copy too (tests the path on CPU).
    """

    def __init__(self, device: torch.device, *, force: bool = False, pin: bool = True):
        self.device, self.force, self.pin = device, force, pin
        self.cuda = device.type == "cuda"
        self.copy_stream = torch.cuda.Stream(device) if self.cuda else None

    @staticmethod
    def _slots(block: nn.Module) -> list:
        slots, ids = [], set()
        for module in block.modules():
            for name, p in module._parameters.items():
                if p is not None and id(p) not in ids:
                    ids.add(id(p))
                    slots.append((module, name, True))
            for name, b in module._buffers.items():
                if b is not None:
                    slots.append((module, name, False))
        return slots

    @staticmethod
    def _get(slot) -> torch.Tensor:
        module, name, is_param = slot
        return module._parameters[name].data if is_param else module._buffers[name]

    @staticmethod
    def _set(slot, tensor: torch.Tensor) -> None:
        module, name, is_param = slot
        if is_param:
            module._parameters[name].data = tensor
        else:
            module._buffers[name] = tensor

    def fetch(self, block: nn.Module) -> _Staged | None:
        slots = self._slots(block)
        homes = [self._get(s) for s in slots]
        if not self.force and all(t.device == self.device for t in homes):
            return None  # the block lives on the compute device: nothing to move
        if not self.cuda:
            return _Staged(slots, homes, [t.to(self.device, copy=True) for t in homes])
        if self.pin:
            for i, (slot, t) in enumerate(zip(slots, homes)):
                if t.device.type == "cpu" and not t.is_pinned():
                    homes[i] = t.pin_memory()
                    self._set(slot, homes[i])
        # Allocated on the compute stream (a freed block's memory is reused without waiting on the
        # side stream), written by the side stream once the work already queued on the compute
        # stream (the previous block, whose memory may be reused here) is done; the current
        # block's forwards are queued after this point and overlap the copy.
        current = torch.cuda.current_stream(self.device)
        queued = torch.cuda.Event()
        queued.record(current)
        devs = [torch.empty_like(t, device=self.device) for t in homes]
        with torch.cuda.stream(self.copy_stream):
            self.copy_stream.wait_event(queued)
            for dev, t in zip(devs, homes):
                dev.copy_(t, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self.copy_stream)
        return _Staged(slots, homes, devs, event)

    def activate(self, staged: _Staged | None) -> None:
        if staged is None:
            return
        if self.cuda:
            torch.cuda.current_stream(self.device).wait_event(staged.event)
        for slot, t in zip(staged.slots, staged.devs):
            self._set(slot, t)

    def release(self, staged: _Staged | None, modified: bool) -> None:
        if staged is None:
            return
        if modified:
            if self.cuda:
                done = torch.cuda.Event()
                done.record(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(self.copy_stream):
                    self.copy_stream.wait_event(done)
                    for home, dev in zip(staged.homes, staged.devs):
                        home.copy_(dev, non_blocking=True)
                        dev.record_stream(self.copy_stream)  # not reused before this copy is done
            else:
                for home, dev in zip(staged.homes, staged.devs):
                    home.copy_(dev)
        for slot, t in zip(staged.slots, staged.homes):
            self._set(slot, t)

    def synchronize(self) -> None:
        if self.cuda:
            self.copy_stream.synchronize()


def pin_block_weights(model: nn.Module) -> int:
    """Pin the CPU weights of every decoder block in place (what the engine does lazily on its
    first CUDA offload run); returns the bytes pinned. Call it at load time to keep that one-time
    cost out of the first pass."""
    pinned = 0
    for block in decoder_blocks(model):
        for slot in _BlockMover._slots(block):
            t = _BlockMover._get(slot)
            if t.device.type == "cpu" and not t.is_pinned():
                _BlockMover._set(slot, t.pin_memory())
                pinned += t.numel() * t.element_size()
    return pinned


def _normalize_device(device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


class CalibrationEngine:
    """Runs calibration sequences through a decoder model block by block.

    calib_ids: (N, T) token ids. `device` is where blocks compute; a block whose weights live
    elsewhere (pass a model on the CPU to offload) is moved there for its turn only. `act_dtype`
    is the dtype of stored activations (e.g. torch.float16 on GPU); statistics are always fp32.
    `stream_activations` keeps the activations in (pinned) CPU memory and moves one batch at a
    time to `device`. `offload`: None moves the blocks that are not on `device`; True stages every
    block through a copy (the offload path, also on CPU); False never moves a block.
    `prefetch` copies the next block while the current one computes (CUDA).
    """

    def __init__(self, model: nn.Module, calib_ids: torch.Tensor, *, device: str | torch.device | None = None,
                 batch_size: int = 1, act_dtype: torch.dtype | None = None, stream_activations: bool = False,
                 progress: bool = True, offload: bool | None = None, prefetch: bool = True,
                 pin_memory: bool = True):
        self.model = model
        self.blocks = decoder_blocks(model)
        self.calib_ids = calib_ids
        self.device = _normalize_device(device if device is not None else next(model.parameters()).device)
        self.batch_size = batch_size
        self.act_dtype = act_dtype or next(model.parameters()).dtype
        self.stream = stream_activations
        self.progress = progress
        self.offload = offload
        self.prefetch = prefetch
        self.pin_memory = pin_memory
        self._cuda = self.device.type == "cuda"

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
                hidden = captured.pop("hidden")
                if not self.stream:
                    inputs.append(hidden.to(self.device, self.act_dtype))
                elif self._cuda and self.pin_memory:
                    buf = torch.empty(hidden.shape, dtype=self.act_dtype, pin_memory=True)
                    inputs.append(buf.copy_(hidden))
                else:
                    inputs.append(hidden.to("cpu", self.act_dtype))
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
    def _forward_block(self, block, acts: list[torch.Tensor], kwargs, hooks: _Hooks | None = None, *,
                       write: bool = True) -> None:
        """Run every batch through `block`; with `write`, its outputs replace `acts` in place."""
        w_dtype = next(block.parameters()).dtype
        streamed = self.stream and self._cuda
        if streamed:
            current = torch.cuda.current_stream(self.device)
            self._h2d.wait_stream(self._d2h)  # outputs of the previous pass are home

        def load(i):
            if not streamed:
                return acts[i].to(self.device), None
            with torch.cuda.stream(self._h2d):
                x = acts[i].to(self.device, non_blocking=True)
                ready = torch.cuda.Event()
                ready.record(self._h2d)
            return x, ready

        nxt = load(0) if acts else None
        for i in range(len(acts)):
            x, ready = nxt
            if i + 1 < len(acts):
                nxt = load(i + 1)  # prefetch the next batch (streamed) while this one computes
            if ready is not None:
                current.wait_event(ready)
                x.record_stream(current)
            y = _first_tensor(block(x.to(w_dtype), **kwargs))
            del x
            if hooks is not None:
                hooks.next_batch()
            if not write:
                continue
            y = y.to(self.act_dtype)
            if streamed:
                done = torch.cuda.Event()
                done.record(current)
                with torch.cuda.stream(self._d2h):
                    self._d2h.wait_event(done)
                    acts[i].copy_(y, non_blocking=True)
                y.record_stream(self._d2h)
            elif self.stream:
                acts[i].copy_(y)
            else:
                acts[i] = y  # in place: one copy of the activations exists

    @torch.no_grad()
    def run(self, visitor: Callable[[BlockVisit], bool | None], *, statistics: Iterable[str] = ("wanda",),
            sequential: bool = False, desc: str = "blocks") -> None:
        """Visit every block in order.

        The visitor receives the block's finished statistics (collected on its current inputs).
        Dense mode: one forward per block (statistics and outputs together). Sequential mode:
        the statistics forward, the visitor (which may modify the block; return True if it did,
        so that an offloaded block is copied home), then the forward whose outputs feed the
        next block.
        """
        statistics = tuple(statistics)
        unknown = set(statistics) - set(STATISTICS)
        if unknown:
            raise ValueError(f"Unknown statistics {sorted(unknown)}; allowed: {sorted(STATISTICS)}")
        if self.offload is False and any(p.device != self.device for p in self.blocks.parameters()):
            raise ValueError(f"offload=False but some block weights are not on {self.device}")
        if self.stream and self._cuda:
            self._h2d, self._d2h = torch.cuda.Stream(self.device), torch.cuda.Stream(self.device)
        acts, kwargs = self.capture_inputs()
        kwargs = {k: _to(v, self.device) for k, v in kwargs.items()}
        nseq = self.calib_ids.shape[0]
        mover = _BlockMover(self.device, force=bool(self.offload), pin=self.pin_memory)
        blocks = list(self.blocks)
        staged: dict[int, _Staged | None] = {}
        try:
            staged[0] = mover.fetch(blocks[0])
            for index, block in enumerate(tqdm(blocks, desc=desc, disable=not self.progress, leave=False)):
                mover.activate(staged[index])
                if self.prefetch and index + 1 < len(blocks):
                    staged[index + 1] = mover.fetch(blocks[index + 1])
                subs = linear_sublayers(block)
                hooks = _Hooks(subs, statistics) if statistics else None
                try:
                    self._forward_block(block, acts, kwargs, hooks, write=not sequential)
                finally:
                    if hooks is not None:
                        hooks.remove()
                visit = BlockVisit(index, block, subs, hooks.finish(nseq) if hooks is not None else {})
                del hooks
                modified = visitor(visit)
                del visit
                if sequential:
                    self._forward_block(block, acts, kwargs, write=True)
                mover.release(staged.pop(index), modified=bool(modified))
                if index + 1 < len(blocks) and index + 1 not in staged:
                    staged[index + 1] = mover.fetch(blocks[index + 1])
        finally:
            for s in staged.values():  # only after an error: keep whatever state the weights are in
                mover.release(s, modified=True)
            mover.synchronize()
            if self._cuda:
                torch.cuda.synchronize(self.device)
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
