"""Compressors that consume DLP's budgets (paper Appendix E).

- mixed_nm: per-block N:M patterns from a plan, total kept weights of the uniform pattern (Table 15)
- gptq: GPTQ weight quantization of dense / pruned models, SparseGPT's joint mode (Table 17, Figure 6)
- nm_gptq_results: cached Table 15 / Table 17 results on a Lab, and their command-line options
"""
from . import gptq  # noqa: F401
from . import mixed_nm  # noqa: F401
