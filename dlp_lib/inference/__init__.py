"""Sparse inference for pruned models: compressed linear layers where they beat dense ones on
this machine, the break-even density that decides it, and timed greedy decoding."""
from .break_even import BreakEven, break_even_density, measure_break_even
from .decode import greedy_decode
from .sparse_linear import SPARSE_FORMATS, DenseLinear, SparseLinear, semi_structured_linear, to_compressed
from .sparsify import LayerFormat, SparsifyReport, sparsify_model

__all__ = ["BreakEven", "break_even_density", "measure_break_even", "greedy_decode", "SPARSE_FORMATS",
           "DenseLinear", "SparseLinear", "semi_structured_linear", "to_compressed", "LayerFormat",
           "SparsifyReport", "sparsify_model"]
