"""dlp_lib: Dynamic Layerwise Pruning (Chen et al., 2025) and its baselines.

Pipeline: data -> models -> calibration -> statistics (pass 1) -> allocation (budgets) ->
compression (masks, N:M, ...) -> evaluation. See ARCHITECTURE.md.
"""
from .allocation import (allocate_dlp, allocate_owl, allocate_uniform, allocator_names, build_plan, get_allocator,
                         paper_alpha, register, relative_importance)
from .experiment import PROFILES, ExperimentConfig, Lab, get_lab
from .plan import SparsityPlan
from .runs.experiment import run_experiment
from .api import dense_statistics, perplexity, plan, prune  # noqa: E402  (after .plan: the name `plan` is the function)

__version__ = "0.2.0"

__all__ = ["allocate_dlp", "allocate_owl", "allocate_uniform", "allocator_names", "build_plan", "get_allocator",
           "paper_alpha", "register", "relative_importance", "PROFILES", "ExperimentConfig", "Lab", "get_lab",
           "run_experiment", "SparsityPlan", "dense_statistics", "perplexity", "plan", "prune"]
