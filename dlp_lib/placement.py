"""Evaluating a model spread over several devices (a model larger than one GPU).

Pruning never needs the whole model on a device (the engine streams one block at a time); the
evaluation's forward does. `block_device_map` splits the decoder blocks into contiguous runs,
one per device, with the embeddings on the first device and everything after the blocks (final
norm, output layer) on the last; `dispatched` places the model with accelerate's
`dispatch_model` (hooks move each block's inputs to its device) and, on exit, removes the hooks
and brings the weights back to the CPU, so the Lab's model is what it was before. A device may
be "disk" (accelerate offloads those weights to memory-mapped files and loads them per forward),
which is how this is tested on a machine without GPUs.

The placement changes where arithmetic happens, not what is computed, so it is not part of any
cache key (like the evaluation batch size).
"""
from __future__ import annotations

import contextlib
import tempfile

import torch
from torch import nn

from .architectures.discovery import decoder_blocks


def _blocks_path(model: nn.Module) -> str:
    blocks = decoder_blocks(model)
    for name, module in model.named_modules():
        if module is blocks:
            return name
    raise ValueError("the decoder blocks are not a submodule of the model")


def parse_devices(spec: str) -> list[str]:
    """'cuda:0,cuda:1' -> ['cuda:0', 'cuda:1']; 'auto' -> every visible GPU (at least two)."""
    if spec == "auto":
        n = torch.cuda.device_count()
        if n < 2:
            raise ValueError(f"eval devices 'auto' spreads the evaluation over the visible GPUs, but {n} is/are "
                             "visible; give devices explicitly (e.g. cuda:0,cuda:1) or leave the option out")
        return [f"cuda:{i}" for i in range(n)]
    devices = [d.strip() for d in spec.split(",") if d.strip()]
    if len(devices) < 2:
        raise ValueError(f"eval devices = {spec!r}: name at least two devices, comma-separated "
                         "(e.g. cuda:0,cuda:1), or 'auto'")
    for d in devices:
        if d == "disk":
            continue
        dev = torch.device(d)  # raises on a malformed name
        if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
            raise ValueError(f"eval devices = {spec!r}: {d} does not exist here "
                             f"({torch.cuda.device_count()} CUDA device(s))")
    return devices


def block_device_map(model: nn.Module, devices: list[str]) -> dict[str, str]:
    """{module name: device}: blocks in contiguous, nearly equal runs over `devices`; the modules
    registered before the blocks (embeddings) on the first device, those after (final norm,
    output layer) on the last."""
    if not devices:
        raise ValueError("no devices to place the model on")
    if devices[0] == "disk":
        raise ValueError("the first device holds the embeddings and receives the inputs; it cannot be 'disk'")
    path = _blocks_path(model)
    n = len(decoder_blocks(model))
    per = [n // len(devices) + (i < n % len(devices)) for i in range(len(devices))]
    out, b = {}, 0
    for device, count in zip(devices, per):
        for _ in range(count):
            out[f"{path}.{b}"] = device
            b += 1
    module, prefix = model, ""
    for part in path.split("."):
        names = [name for name, _ in module.named_children()]
        at = names.index(part)
        for j, name in enumerate(names):
            if j != at:
                out[prefix + name] = devices[0] if j < at else devices[-1]
        module, prefix = getattr(module, part), prefix + part + "."
    return out


def _has_tied_parameters(model: nn.Module) -> bool:
    """Whether two parameter names share one tensor (tied embeddings): restoring the weights by
    assignment unties them, so they are tied again afterwards."""
    return len(list(model.named_parameters(remove_duplicate=False))) > len(list(model.parameters()))


@contextlib.contextmanager
def dispatched(model: nn.Module, device_map: dict[str, str]):
    """The model placed per `device_map` for the duration (accelerate hooks); afterwards on the CPU, hook-free."""
    from accelerate import dispatch_model
    from accelerate.hooks import remove_hook_from_module

    main = next(d for d in device_map.values() if d != "disk")
    tied = _has_tied_parameters(model)
    with tempfile.TemporaryDirectory(prefix="dlp_offload_") as offload_dir:
        if "disk" in device_map.values():
            # accelerate's disk offload moves the weights to the meta device and reloads them per
            # forward from memory-mapped files: keep the real tensors to put back afterwards
            saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            saved = None
        dispatch_model(model, device_map=device_map, main_device=main, offload_dir=offload_dir,
                       force_hooks=True)
        try:
            yield model
        finally:
            remove_hook_from_module(model, recurse=True)
            if saved is not None:
                model.load_state_dict(saved, assign=True)
                if tied:
                    model.tie_weights()
            model.to("cpu")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
