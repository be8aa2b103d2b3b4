"""A configuration's result on the process-wide Lab (the sweep's jobs and the package's front door)."""
from __future__ import annotations

from ..experiment import ExperimentConfig, lab_for
from .auto_allocation import run_auto


def run_experiment(cfg: ExperimentConfig, *, use_cache: bool = True, progress: bool = True) -> dict:
    """`Lab.run` of cfg (allocation "auto": of the chosen candidate, `run_auto`)."""
    return run_auto(lab_for(cfg, progress=progress), cfg, use_cache=use_cache)
