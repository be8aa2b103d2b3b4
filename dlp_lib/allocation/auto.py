"""`auto`: a choice among the allocators declared `auto_candidate`, not a formula.

The choice prunes the model with every candidate and scores each on held-out calibration text,
so it needs a `Lab` (the model, its calibration data, the cache): `dlp_lib.runs.auto_allocation`
makes it (`selected`, `run_auto`) and hands the Lab the chosen candidate before any budget is
built. Registered here so that the CLI, the configuration's validation and the notebooks know the
name."""
from __future__ import annotations

from .registry import register


@register("auto", needs=("stats", "weights"),
          source="this library: the candidate allocators (uniform, dlp, dlp_mirror, depth_ramp, block_influence, "
                 "over an alpha grid) pruned and scored by next-token NLL on held-out calibration windows; ties go "
                 "to uniform (dlp_lib.runs.auto_allocation)")
def plan_auto(inputs, sparsity, *, strict=False):
    raise ValueError("allocation 'auto' chooses among allocators by pruning the model with each one and scoring it "
                     "on held-out calibration text: it is resolved on a Lab (dlp_lib.runs.auto_allocation.run_auto / "
                     "selected, run_experiment, `python -m dlp_lib prune --allocation auto`)")
