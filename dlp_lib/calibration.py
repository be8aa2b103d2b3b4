"""The one calibration engine (re-exported from `dlp_lib.engine`, where each part has one job):

- `engine.replay`: capture every block's own arguments once, replay block by block
  (CalibrationEngine, BlockVisit, replay_logits, check_replay);
- `engine.statistics`: hooks that collect Wanda column norms and SparseGPT Hessians, per expert
  for mixture-of-experts weights (WandaNorms, HessianAccumulator);
- `engine.offload`: moving blocks between CPU and the compute device (pin_block_weights).
"""
from .engine.offload import pin_block_weights  # noqa: F401
from .engine.replay import BlockCalls, BlockVisit, CalibrationEngine, check_replay, replay_logits  # noqa: F401
from .engine.statistics import STATISTICS, HessianAccumulator, WandaNorms  # noqa: F401
