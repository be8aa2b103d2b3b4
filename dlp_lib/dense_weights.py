"""The dense weights a Lab restores before each pruning, kept in memory or read back from disk.

Pruning changes only the decoder blocks, so only their tensors are kept. "memory" holds one
copy in RAM (fast; the right choice for small models). "disk" writes them once into the cache
as a safetensors file named by the model's fingerprint and restores tensor by tensor, reading each
one's bytes straight into the model's own tensor, so no second copy of the model is ever resident
(a 70B bf16 model would need another 140 GB otherwise); the extra peak is at most one tensor.
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
        _read_safetensors_into(self._path, tensors)


_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
                       torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
                       torch.uint8: "U8", torch.bool: "BOOL"}


def _read_safetensors_into(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Read each tensor's bytes from a safetensors file straight into the tensor's own storage.

    Plain reads rather than a memory map: pages of a mapped file count in the process's resident
    set for as long as the file stays mapped, so restoring through safe_open held a whole second
    copy of the blocks resident at its peak (measured: benchmarks/restore_memory.py). CPU tensors
    are filled in place; others go through one temporary CPU tensor at a time."""
    import json
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(header_len))
        data_start = 8 + header_len
        for name, t in tensors.items():
            meta = header.get(name)
            if meta is None:
                raise KeyError(f"{path} has no tensor {name!r}: it was written for another model")
            if meta["dtype"] != _SAFETENSORS_DTYPES.get(t.dtype) or list(meta["shape"]) != list(t.shape):
                raise ValueError(f"{path}: {name} is {meta['dtype']} {meta['shape']}, the model's is "
                                 f"{t.dtype} {list(t.shape)}")
            begin, end = meta["data_offsets"]
            in_place = t.device.type == "cpu" and t.is_contiguous()
            target = t.data if in_place else torch.empty(t.shape, dtype=t.dtype)
            view = memoryview(target.reshape(-1).view(torch.uint8).numpy())
            if view.nbytes != end - begin:
                raise ValueError(f"{path}: {name} holds {end - begin} bytes, the model's tensor {view.nbytes}")
            f.seek(data_start + begin)
            if f.readinto(view) != view.nbytes:
                raise ValueError(f"{path} is truncated in {name}")
            if not in_place:
                t.data.copy_(target)
