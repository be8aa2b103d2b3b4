"""dlp_lib: Dynamic Layerwise Pruning (Chen et al., 2025) and its baselines.

Pipeline: data -> models -> calibration -> scores -> allocation (plan) -> pruning -> evaluation.
"""
from .allocation import allocate_dlp, allocate_owl, allocate_uniform, paper_alpha, relative_importance
from .experiment import PROFILES, ExperimentConfig, Lab, get_lab, run_experiment
from .plan import SparsityPlan, build_plan

__all__ = ["allocate_dlp", "allocate_owl", "allocate_uniform", "paper_alpha", "relative_importance",
           "PROFILES", "ExperimentConfig", "Lab", "get_lab", "run_experiment", "SparsityPlan", "build_plan"]
