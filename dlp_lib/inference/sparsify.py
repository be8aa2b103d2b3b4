"""Swap a pruned model's linear layers for compressed ones where that is faster, and count the
weight bytes a decoded token reads (the memory-traffic bound on the speedup)."""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..models import decoder_blocks, linear_modules, linear_sublayers
from .break_even import break_even_density
from .sparse_linear import SPARSE_FORMATS, DenseLinear, compressed_linear


@dataclass
class LayerFormat:
    """How one linear layer is stored after `sparsify_model`."""
    name: str                    # qualified module name in the model
    shape: tuple[int, int]       # (C_out, C_in)
    density: float               # fraction of non-zero weights
    break_even: float | None     # compressed is used below this density (None: not eligible, e.g. lm_head)
    format: str                  # dense / csr / bsr / coo / bitmask
    dense_bytes: int             # bytes of the dense weight (read per token by the dense model)
    stored_bytes: int            # bytes read per token as stored (values + indices + row pointers if sparse)


@dataclass
class SparsifyReport:
    """Per-layer formats and the weight bytes read per decoded token, dense vs as stored."""
    layers: list[LayerFormat] = field(default_factory=list)   # decoder-block linear sublayers
    lm_head: LayerFormat | None = None                        # the output layer (never pruned), dense
    embedding_row_bytes: int = 0       # one embedding row looked up per token
    other_bytes: int = 0               # the remaining parameters (norms), read per token
    threads: int = 1
    model: nn.Module | None = field(default=None, repr=False)  # the swapped model

    def bytes_per_token(self) -> dict[str, int]:
        """Weight bytes read per decoded token: every block linear, lm_head, an embedding row, norms."""
        fixed = (self.lm_head.dense_bytes if self.lm_head else 0) + self.embedding_row_bytes + self.other_bytes
        return {"dense": sum(l.dense_bytes for l in self.layers) + fixed,
                "stored": sum(l.stored_bytes for l in self.layers) + fixed}

    def memory_bound_speedup(self) -> float:
        """Upper bound on the batch-1 speedup if decoding were purely weight-read bound."""
        b = self.bytes_per_token()
        return b["dense"] / b["stored"]

    def format_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for l in self.layers:
            out[l.format] = out.get(l.format, 0) + 1
        return out

    def to_dict(self) -> dict:
        return {"layers": [asdict(l) for l in self.layers], "lm_head": asdict(self.lm_head) if self.lm_head else None,
                "embedding_row_bytes": self.embedding_row_bytes, "other_bytes": self.other_bytes,
                "threads": self.threads, "bytes_per_token": self.bytes_per_token(),
                "memory_bound_speedup": self.memory_bound_speedup(), "format_counts": self.format_counts()}


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)


def _threshold(break_even, shape, fmt, threads, use_cache) -> float:
    if break_even is None:
        return break_even_density(shape, fmt=fmt, threads=threads, use_cache=use_cache).density
    if isinstance(break_even, dict):
        if tuple(shape) not in break_even:
            raise ValueError(f"break_even has no entry for shape {tuple(shape)}; it has {sorted(break_even)}")
        return float(break_even[tuple(shape)])
    return float(break_even)


@torch.no_grad()
def sparsify_model(model: nn.Module, *, fmt: str = "csr", break_even: float | dict | None = None,
                   threads: int | None = None, inplace: bool = True, lm_head: bool = True,
                   use_cache: bool = True) -> SparsifyReport:
    """Store each decoder-block linear layer compressed (`fmt`) if its density is below the
    break-even density (every layer at a break-even of 1), else as a `DenseLinear` (the same plain
    matmul path). `break_even`: None
    = measured on this machine per (shape, threads) and cached; a number = one threshold for
    every layer (0 keeps all dense: the dense baseline); a dict shape -> threshold. The output
    layer becomes a `DenseLinear` too (with `lm_head`) and is reported separately. With
    `inplace=False` a deep copy is swapped (report.model) and `model` is left untouched."""
    if fmt not in SPARSE_FORMATS:
        raise ValueError(f"Unknown sparse format {fmt!r}; allowed: {', '.join(SPARSE_FORMATS)}")
    if isinstance(break_even, (int, float)) and not (0.0 <= break_even <= 1.0):
        raise ValueError(f"break_even must be a density in [0, 1], got {break_even}")
    dtype = next(model.parameters()).dtype
    if dtype != torch.float32 and next(model.parameters()).device.type == "cpu":
        raise ValueError(f"the model is {str(dtype).replace('torch.', '')}; torch's CPU sparse matmul kernels "
                         "exist for float32 only: load or convert the model to float32 first (dtype='float32')")
    threads = torch.get_num_threads() if threads is None else int(threads)
    target = model if inplace else copy.deepcopy(model)
    report = SparsifyReport(threads=threads, model=target)
    names = {id(m): n for n, m in target.named_modules()}
    counted: set[int] = set()
    for block in decoder_blocks(target):
        for layer in linear_modules(linear_sublayers(block), "the sparse inference path").values():
            name = names[id(layer)]
            W = layer.weight
            shape = tuple(W.shape)
            density = float((W != 0).sum()) / W.numel()
            threshold = _threshold(break_even, shape, fmt, threads, use_cache)
            dense_bytes = W.numel() * W.element_size()
            # a threshold of 1 compresses every layer, unpruned ones included (the bitmask format is
            # measured faster than dense up to density 1: its bf16 values read half the bytes)
            compress = density < threshold or threshold >= 1.0
            new = compressed_linear(layer, fmt) if compress else DenseLinear.from_linear(layer)
            report.layers.append(LayerFormat(name, shape, density, threshold, new.format, dense_bytes,
                                             new.stored_bytes()))
            counted.update(id(p) for p in layer.parameters())
            _set_module(target, name, new)
    head = target.get_output_embeddings() if hasattr(target, "get_output_embeddings") else None
    if head is not None:
        name = names[id(head)]
        W = head.weight
        counted.update(id(p) for p in head.parameters())
        report.lm_head = LayerFormat(name, tuple(W.shape), float((W != 0).sum()) / W.numel(), None, "dense",
                                     W.numel() * W.element_size(), W.numel() * W.element_size())
        if lm_head and isinstance(head, nn.Linear):
            _set_module(target, name, DenseLinear.from_linear(head))
    emb = target.get_input_embeddings() if hasattr(target, "get_input_embeddings") else None
    if emb is not None:
        report.embedding_row_bytes = emb.weight.shape[1] * emb.weight.element_size()
        counted.add(id(emb.weight))
    report.other_bytes = sum(p.numel() * p.element_size() for p in target.parameters() if id(p) not in counted)
    return report
