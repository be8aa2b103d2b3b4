"""Moving decoder blocks between their home (CPU) and the compute device (the offload path).

Weights may stay on the CPU: only the current block lives on the compute device (its parameters
are copied from pinned CPU memory on a side stream, and the next block is prefetched while the
current one computes; a block the visitor modified is copied back).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..architectures.discovery import decoder_blocks


@dataclass
class Staged:
    slots: list            # (module, name, is_param)
    homes: list            # the tensors at home (CPU), restored after the block
    devs: list             # their copies on the compute device
    event: object = None   # CUDA event: copies done


class BlockMover:
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
            for name, p in module.named_parameters(recurse=False, remove_duplicate=False):
                if id(p) not in ids:
                    ids.add(id(p))
                    slots.append((module, name, True))
            for name, _ in module.named_buffers(recurse=False, remove_duplicate=False):
                slots.append((module, name, False))
        return slots

    @staticmethod
    def _get(slot) -> torch.Tensor:
        module, name, is_param = slot
        return module.get_parameter(name).data if is_param else module.get_buffer(name)

    @staticmethod
    def _set(slot, tensor: torch.Tensor) -> None:
        module, name, is_param = slot
        if is_param:
            module.get_parameter(name).data = tensor
        else:
            setattr(module, name, tensor)  # a registered buffer's name: nn.Module replaces the buffer

    def fetch(self, block: nn.Module) -> Staged | None:
        slots = self._slots(block)
        homes = [self._get(s) for s in slots]
        if not self.force and all(t.device == self.device for t in homes):
            return None  # the block lives on the compute device: nothing to move
        if not self.cuda:
            return Staged(slots, homes, [t.to(self.device, copy=True) for t in homes])
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
        return Staged(slots, homes, devs, event)

    def activate(self, staged: Staged | None) -> None:
        if staged is None:
            return
        if self.cuda:
            torch.cuda.current_stream(self.device).wait_event(staged.event)
        for slot, t in zip(staged.slots, staged.devs):
            self._set(slot, t)

    def release(self, staged: Staged | None, modified: bool) -> None:
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
        for slot in BlockMover._slots(block):
            t = BlockMover._get(slot)
            if t.device.type == "cpu" and not t.is_pinned():
                BlockMover._set(slot, t.pin_memory())
                pinned += t.numel() * t.element_size()
    return pinned


def normalize_device(device) -> torch.device:
    """The device with its index ("cuda" is the current GPU), so devices compare equal by value."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device
