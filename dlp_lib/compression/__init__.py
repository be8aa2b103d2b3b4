"""Compressors that consume DLP's budgets (paper Appendix E).

- mixed_nm: per-block N:M patterns from a plan, total kept weights of the uniform pattern (Table 15)
- gptq: GPTQ weight quantization of dense / pruned models, SparseGPT's joint mode (Table 17, Figure 6)
- svd, structured: low-rank factorisation (Table 16) and structured pruning (Table 14) of a model following a plan

Their cached results on a Lab are in `dlp_lib.runs` (svd, structured, nm_gptq).
"""
from . import gptq  # noqa: F401
from . import mixed_nm  # noqa: F401
