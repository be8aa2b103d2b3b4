"""Sparse inference for pruned models: compressed linear layers (torch's formats and the
bitmask-bf16 format with its own kernel) where they beat dense ones on this machine, the
break-even density that decides it, the bytes each format reads, and timed greedy decoding (through
Hugging Face's forward or the lean decoder)."""
from .bitmask import BitmaskLinear, BitmaskMatrix
from .break_even import BreakEven, break_even_density, measure_break_even
from .decode import RUNTIMES, greedy_decode
from .lean_decode import LeanDecoder
from .sparse_linear import (SPARSE_FORMATS, DenseLinear, SparseLinear, compressed_linear, semi_structured_linear,
                            to_compressed)
from .sparsify import LayerFormat, SparsifyReport, sparsify_model

__all__ = ["BitmaskLinear", "BitmaskMatrix", "compressed_linear", "BreakEven", "break_even_density",
           "measure_break_even", "RUNTIMES", "greedy_decode", "LeanDecoder", "SPARSE_FORMATS", "DenseLinear", "SparseLinear", "semi_structured_linear", "to_compressed", "LayerFormat",
           "SparsifyReport", "sparsify_model"]
