"""The dense weights a Lab restores before each pruning, kept in memory or memory-mapped from disk.

Pruning changes only the decoder blocks, so only their tensors are kept. "memory" holds one
copy in RAM (fast; the right choice for small models). "disk" writes them once into the cache
as a safetensors file named by the model's fingerprint and restores tensor by tensor from the
memory-mapped file, so no second copy of the model is ever resident (a 70B bf16 model would
need another 140 GB otherwise); the extra peak is one tensor.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

DENSE_COPY_MODES = ("auto", "memory", "disk")
AUTO_DISK_BYTES = 2 * 2**30  # blocks larger than this are restored from disk under "auto"


def _block_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    from .models import decoder_blocks
    blocks = decoder_blocks(model)
    prefix = next(name for name, module in model.named_modules() if module is blocks)
    return {f"{prefix}.{name}": t for name, t in blocks.state_dict(keep_vars=True).items()}


class DenseWeights:
    def __init__(self, model: nn.Module, fingerprint: str, mode: str = "auto"):
        if mode not in DENSE_COPY_MODES:
            raise ValueError(f"dense_copy = {mode!r} is not allowed; allowed: {', '.join(DENSE_COPY_MODES)}")
        tensors = _block_tensors(model)
        nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
        self.mode = ("disk" if nbytes > AUTO_DISK_BYTES else "memory") if mode == "auto" else mode
        self.nbytes = nbytes
        self._memory: dict[str, torch.Tensor] | None = None
        self._path: Path | None = None
        if self.mode == "memory":
            self._memory = {k: t.detach().clone() for k, t in tensors.items()}
        else:
            self._path = self._write(tensors, fingerprint)

    @staticmethod
    def _write(tensors: dict[str, torch.Tensor], fingerprint: str) -> Path:
        import os
        import tempfile

        from safetensors.torch import save_file

        from .cache import cache_root
        path = cache_root() / "dense_weights" / f"{fingerprint}.safetensors"
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        os.close(fd)
        try:
            save_file({k: t.detach().contiguous().cpu() for k, t in tensors.items()}, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @torch.no_grad()
    def restore(self, model: nn.Module) -> None:
        """Write the dense values back into the model's block tensors, in place."""
        tensors = _block_tensors(model)
        if self._memory is not None:
            for name, t in tensors.items():
                t.data.copy_(self._memory[name])
            return
        from safetensors import safe_open
        with safe_open(str(self._path), framework="pt", device="cpu") as f:
            for name, t in tensors.items():
                t.data.copy_(f.get_tensor(name))
