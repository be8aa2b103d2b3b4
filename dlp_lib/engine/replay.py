"""The one calibration engine: record what the model passes to every block, replay block by block.

Capture (once per calibration set): one model forward per batch in which every decoder block is
temporarily replaced by a recorder. The recorder stores the block's own positional and keyword
arguments (attention mask of its layer type, position embeddings of its layer type, cache
position, ...) and returns its input unchanged, so the forward is nearly free; only block 0's
hidden input is real (it is the calibration activation), and the last recorder stops the
forward. Identical tensors are stored once (the same object is passed to many blocks; equal
values across batches are shared too). Block 0 is run for real on the first batch to learn the
structure of a block's output (a tensor, or a tuple led by the hidden state).

Replay: in *dense* mode (DLP/OWL pass 1) a block's outputs from its single forward feed the next
block. In *sequential* mode (pruning) the visitor may modify the block after its statistics
forward; the block is then run a second time and those outputs (of the pruned block) feed the
next block. `check_replay` is the guard: block-by-block replay must equal the model's forward,
otherwise the model is refused, naming its class.

GPU / offload path: see `dlp_lib.engine.offload`. Calibration activations live on `device` in
`act_dtype` (fp16/bf16 on a GPU) and are updated in place, so one copy of them exists; with
`stream_activations` they stay in pinned CPU memory and one batch at a time travels to the GPU
(prefetched, the outputs copied back asynchronously). Statistics: `dlp_lib.engine.statistics`.
"""
from __future__ import annotations

import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from ..architectures.discovery import PrunableWeight, UnsupportedModelError, decoder_blocks, prunable_weights
from .offload import BlockMover, normalize_device, Staged
from .statistics import STATISTICS, SublayerHooks

# The model objects whose replay was checked in this process (weakly held: a freed model drops out).
REPLAY_CHECKED: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()


class _StopForward(Exception):
    pass


@dataclass
class BlockVisit:
    """What a visitor sees for one block: its index, module, prunable weights and finished statistics.

    Sublayers fed the same input (q/k/v, gate/up) receive the same statistics tensor: read-only.
    """
    index: int
    block: nn.Module
    sublayers: dict[str, PrunableWeight]
    stats: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # stat name -> sublayer -> tensor


def first_tensor(out):
    return out[0] if isinstance(out, (tuple, list)) else out  # some blocks return (hidden, ...) tuples


# keyword arguments that carry a KV cache: never replayed (use_cache=False, each block runs once)
_CACHE_KWARGS = ("past_key_values", "past_key_value", "layer_past")


@dataclass
class BlockCalls:
    """Everything the model passes to its blocks, per batch.

    inputs[b]: block 0's hidden input of batch b (stored activations, act_dtype);
    calls[i][b]: (positional arguments after the hidden state, keyword arguments) of block i in
    batch b; hidden_as_kwarg: the model passes the hidden state as `hidden_states=`;
    output_extras: what follows the hidden state in a block's output tuple (None: a tensor).
    """
    inputs: list[torch.Tensor]
    calls: list[list[tuple[tuple, dict]]]
    hidden_as_kwarg: bool = False
    output_extras: tuple | None = None

    def output_like(self, hidden: torch.Tensor):
        return hidden if self.output_extras is None else (hidden, *self.output_extras)


class _Dedup:
    """Stores each distinct tensor once: the same object (by identity, within a batch) or equal
    values (across batches: an attention mask or rotary table is the same for every batch), on
    the compute device."""

    def __init__(self, device: torch.device):
        self.device = device
        self.uniques: list[torch.Tensor] = []
        self.by_id: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def new_batch(self) -> None:
        self.by_id.clear()

    def __call__(self, value):
        if isinstance(value, torch.Tensor):
            hit = self.by_id.get(id(value))
            if hit is not None and hit[0] is value:
                return hit[1]
            moved = value.detach().to(self.device)
            stored = next((u for u in self.uniques if u.shape == moved.shape and u.dtype == moved.dtype
                           and torch.equal(u, moved)), None)
            if stored is None:
                stored = moved
                self.uniques.append(stored)
            self.by_id[id(value)] = (value, stored)  # keeps `value` alive: its id is not reused
            return stored
        if isinstance(value, tuple) and not hasattr(value, "_fields"):
            return tuple(self(v) for v in value)
        if isinstance(value, list):
            return [self(v) for v in value]
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        return value


STAND_IN = "stands_in_for_block"  # marks a forward that replaces a block's own (capture, replay check)


def runs_own_forward(block: nn.Module) -> bool:
    """False while the engine has replaced the block's forward by a stand-in (a pass-through or a
    recorder). A forward that other code put on the instance (accelerate's dispatch hooks) is the
    block's own computation and counts."""
    return not getattr(block.__dict__.get("forward"), STAND_IN, False)


@contextmanager
def _blocks_replaced(blocks: nn.ModuleList, make_forward: Callable[[int, Callable], Callable]):
    """Temporarily replace every block's forward by make_forward(index, original_forward)."""
    originals = []
    try:
        for i, block in enumerate(blocks):
            originals.append((block, block.__dict__.get("forward")))
            stand_in = make_forward(i, block.forward)
            setattr(stand_in, STAND_IN, True)
            block.forward = stand_in
        yield
    finally:
        for block, previous in originals:
            if previous is None:
                block.__dict__.pop("forward", None)
            else:
                block.forward = previous


def _split_hidden(args: tuple, kwargs: dict) -> tuple[torch.Tensor, tuple, dict, bool]:
    if args:
        return args[0], tuple(args[1:]), dict(kwargs), False
    if "hidden_states" not in kwargs:
        raise UnsupportedModelError("a decoder block was called without a hidden state (neither positional "
                                    "nor hidden_states=)")
    kwargs = dict(kwargs)
    return kwargs.pop("hidden_states"), (), kwargs, True


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
        self.device = normalize_device(device if device is not None else next(model.parameters()).device)
        self.batch_size = batch_size
        self.act_dtype = act_dtype or next(model.parameters()).dtype
        self.stream = stream_activations
        self.progress = progress
        self.offload = offload
        self.prefetch = prefetch
        self.pin_memory = pin_memory
        self._cuda = self.device.type == "cuda"

    # -- capture ---------------------------------------------------------------------------
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

    def _store_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        if not self.stream:
            return hidden.to(self.device, self.act_dtype)
        if self._cuda and self.pin_memory:
            buf = torch.empty(hidden.shape, dtype=self.act_dtype, pin_memory=True)
            return buf.copy_(hidden)
        return hidden.to("cpu", self.act_dtype)

    @torch.no_grad()
    def capture(self) -> BlockCalls:
        """Block 0's hidden input and every block's own arguments, for every batch."""
        moved = []
        for m in self._embedding_modules():
            tensors = list(m.parameters(recurse=False)) + list(m.buffers(recurse=False))
            p = tensors[0] if tensors else None
            if p is not None and p.device != self.device:
                moved.append((m, p.device))
                m.to(self.device)
        n = len(self.blocks)
        rec = BlockCalls(inputs=[], calls=[[] for _ in range(n)])
        dedup = _Dedup(self.device)
        learned = {}

        def make_forward(i, original):
            def recorder(*args, **kwargs):
                hidden, rest, kw, as_kwarg = _split_hidden(args, kwargs)
                for key in _CACHE_KWARGS:
                    if key in kw:
                        kw[key] = None
                if "use_cache" in kw:
                    kw["use_cache"] = False
                if i == 0:
                    rec.hidden_as_kwarg = as_kwarg
                    rec.inputs.append(self._store_hidden(hidden))
                    if "structure" not in learned:  # one real forward of block 0 on batch 0
                        out = original(*args, **kwargs)
                        learned["structure"] = None if isinstance(out, torch.Tensor) else tuple(out[1:])
                        rec.output_extras = learned["structure"]
                rec.calls[i].append((dedup(rest), dedup(kw)))
                if i == n - 1:
                    raise _StopForward
                return rec.output_like(hidden)
            return recorder

        try:
            with _blocks_replaced(self.blocks, make_forward):
                for batch in self.calib_ids.split(self.batch_size):
                    dedup.new_batch()
                    try:
                        self.model(batch.to(self.device), use_cache=False)
                    except _StopForward:
                        pass
                    if len(rec.calls[-1]) != len(rec.inputs):
                        raise UnsupportedModelError(
                            f"{type(self.model).__name__}: not every decoder block was called in the forward; "
                            "block-by-block replay is not possible")
        finally:
            for m, dev in moved:
                m.to(dev)
        return rec

    def capture_inputs(self) -> tuple[list[torch.Tensor], dict]:
        """Hidden states entering block 0 for every batch, and block 0's keyword arguments in the
        first batch (kept for callers that replay a uniform-attention model themselves)."""
        rec = self.capture()
        return rec.inputs, rec.calls[0][0][1]

    def _call(self, block: nn.Module, x: torch.Tensor, call: tuple[tuple, dict], rec: BlockCalls):
        rest, kwargs = call
        if rec.hidden_as_kwarg:
            return block(*rest, hidden_states=x, **kwargs)
        return block(x, *rest, **kwargs)

    def _guard(self) -> None:
        """Refuse a model whose block-by-block replay differs from its forward (checked once per
        model object, on the first two calibration windows cut to `replay_check_length`). A model split across devices (the offload
        layout: blocks on the CPU, the rest on the GPU) cannot run its own forward: whoever split it
        checks before splitting (`check_replay`)."""
        if self.model in REPLAY_CHECKED:
            return
        if len({p.device for p in self.model.parameters()}) > 1:
            return
        # the replay must hold on sequences as long as the calibration windows: a window longer
        # than them never masks anything there
        length = replay_check_length(self.model, longest=self.calib_ids.shape[1])
        ids = self.calib_ids[:REPLAY_CHECK_SEQUENCES, :length]
        fits = ids.shape[0] == REPLAY_CHECK_SEQUENCES and ids.shape[1] == length
        check_replay(self.model, ids if fits else replay_check_ids(self.model, length))
        REPLAY_CHECKED.add(self.model)

    # -- block loop ----------------------------------------------------------------------
    def _forward_block(self, block, acts: list[torch.Tensor], calls: list[tuple[tuple, dict]], rec: BlockCalls,
                       hooks: SublayerHooks | None = None, *, write: bool = True) -> None:
        """Run every batch through `block` with its own arguments; with `write`, its outputs
        replace `acts` in place."""
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
            y = first_tensor(self._call(block, x.to(w_dtype), calls[i], rec))
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
        self._guard()
        rec = self.capture()
        acts = rec.inputs
        nseq = self.calib_ids.shape[0]
        mover = BlockMover(self.device, force=bool(self.offload), pin=self.pin_memory)
        blocks = list(self.blocks)
        staged: dict[int, Staged | None] = {}
        try:
            staged[0] = mover.fetch(blocks[0])
            for index, block in enumerate(tqdm(blocks, desc=desc, disable=not self.progress, leave=False)):
                mover.activate(staged[index])
                if self.prefetch and index + 1 < len(blocks):
                    staged[index + 1] = mover.fetch(blocks[index + 1])
                subs = prunable_weights(block)
                hooks = SublayerHooks(subs, statistics) if statistics else None
                try:
                    self._forward_block(block, acts, rec.calls[index], rec, hooks, write=not sequential)
                finally:
                    if hooks is not None:
                        hooks.remove()
                visit = BlockVisit(index, block, subs, hooks.finish(nseq) if hooks is not None else {})
                del hooks
                modified = visitor(visit)
                del visit
                if sequential:
                    self._forward_block(block, acts, rec.calls[index], rec, write=True)
                rec.calls[index] = []  # this block's arguments are not needed again
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


@torch.no_grad()
def replay_logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Logits computed by the engine's block-by-block replay (tests the engine against model(ids)).

    The blocks are replayed with their recorded arguments; what follows the blocks (final norm,
    output projection, logit soft-capping, ...) is the model's own code: its forward runs once
    more with every block replaced by a pass-through and the last one returning the replayed state.
    """
    engine = CalibrationEngine(model, ids, batch_size=ids.shape[0], progress=False)
    rec = engine.capture()
    h = rec.inputs[0]
    for i, block in enumerate(engine.blocks):
        h = first_tensor(engine._call(block, h, rec.calls[i][0], rec))
    last = len(engine.blocks) - 1

    def make_forward(i, _original):
        def passthrough(*args, **kwargs):
            hidden = _split_hidden(args, kwargs)[0]
            return rec.output_like(h.to(hidden.dtype) if i == last else hidden)
        return passthrough

    with _blocks_replaced(engine.blocks, make_forward):
        return model(ids, use_cache=False).logits


# The check's shape: a block given another layer type's mask (sliding vs full attention) differs
# from the model only where a query is further than the window from a key, and per-sequence mix-ups
# (a mask or position broadcast across the batch) only with more than one sequence.
REPLAY_CHECK_SEQUENCES = 2
REPLAY_CHECK_MIN_TOKENS = 16
REPLAY_CHECK_MAX_TOKENS = 2048   # without a calibration length: the paper's calibration windows (cost on a CPU)
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def _text_config(config):
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def largest_sliding_window(config) -> int | None:
    """The longest sliding attention window the model's layers use, or None (every layer full):
    `sliding_window` counts unless `use_sliding_window` is False or `layer_types` lists no
    sliding layer (Qwen2 configs carry a window they do not use)."""
    config = _text_config(config) if config is not None else None
    window = getattr(config, "sliding_window", None)
    if not isinstance(window, int) or window <= 0 or getattr(config, "use_sliding_window", True) is False:
        return None
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None and not any("sliding" in str(t) for t in layer_types):
        return None
    return window


def replay_check_length(model: nn.Module, longest: int | None = None) -> int:
    """Tokens per sequence of the replay check: twice the largest sliding window (half the queries
    then see keys beyond it), at least REPLAY_CHECK_MIN_TOKENS, at most the model's context and the
    longest sequence the replay will run (`longest`, the calibration windows; default
    REPLAY_CHECK_MAX_TOKENS)."""
    config = getattr(model, "config", None)   # a module without a transformers config: no window known
    window = largest_sliding_window(config)
    length = max(REPLAY_CHECK_MIN_TOKENS, 2 * window if window else 0)
    config = _text_config(config) if config is not None else None
    contexts = [v for k in _CONTEXT_KEYS if isinstance(v := getattr(config, k, None), int) and v > 0]
    cap = REPLAY_CHECK_MAX_TOKENS if longest is None else max(longest, REPLAY_CHECK_MIN_TOKENS)
    return min([length, cap] + contexts)


def replay_check_ids(model: nn.Module, length: int | None = None) -> torch.Tensor:
    """The default check input: REPLAY_CHECK_SEQUENCES random sequences of `length` tokens
    (default `replay_check_length(model)`)."""
    vocab = model.get_output_embeddings().weight.shape[0]
    length = replay_check_length(model) if length is None else length
    return torch.randint(0, vocab, (REPLAY_CHECK_SEQUENCES, length), generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def check_replay(model: nn.Module, ids: torch.Tensor | None = None, *, rtol: float | None = None) -> float:
    """Refuse (UnsupportedModelError naming the model class) a model whose block-by-block replay
    differs from its forward; returns the largest difference relative to the logits' scale.

    ids default to `replay_check_ids(model)`: two random sequences, longer than the model's largest
    sliding window (up to its context and REPLAY_CHECK_MAX_TOKENS). rtol defaults to 1e-4 in fp32 (the replay runs the same
    operations), 2e-2 in 16-bit.
    """
    if ids is None:
        ids = replay_check_ids(model)
    ids = ids.to(next(model.parameters()).device)
    dtype = next(model.parameters()).dtype
    if rtol is None:
        rtol = 1e-4 if dtype == torch.float32 else 2e-2
    try:
        got = replay_logits(model, ids).float()
    except UnsupportedModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of the replay means: cannot calibrate this model
        raise UnsupportedModelError(f"{type(model).__name__} cannot be replayed block by block "
                                    f"({type(exc).__name__}: {exc})") from exc
    want = model(ids, use_cache=False).logits.float()
    scale = float(want.abs().max()) + 1e-6
    err = float((got - want).abs().max()) / scale
    if not err <= rtol:
        raise UnsupportedModelError(
            f"{type(model).__name__}: block-by-block replay differs from the model's forward (max relative "
            f"difference {err:.2e} > {rtol:.0e}); the calibration engine cannot prune this model")
    return err
