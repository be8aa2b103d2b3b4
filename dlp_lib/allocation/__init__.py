"""Layerwise allocators: small pure functions from per-block statistics (or weights) to budgets.

Each allocator lives in its own module and declares itself in the one registry
(`registry.register`): what it reads (pass-1 statistics, weights, nothing), its parameters and
its paper source. Adding an allocator is one new module imported below (or one decorated
function anywhere, before it is used).
"""
from .rebalance import MAX_RATIO, RatioRangeWarning, rebalance
from .registry import AllocationInputs, Allocator, allocator_names, auto_candidates, build_plan, get_allocator, register
from .depth_order import AgainstDepthWarning
from . import uniform, dlp, owl, global_threshold, er, lamp, alphapruning, dlp_mirror, depth_ramp, block_influence, auto  # noqa: E402,F401,E501  (registration)
from .dlp import PAPER_ALPHA, allocate_dlp, paper_alpha, relative_importance
from .owl import allocate_owl
from .uniform import allocate_uniform

__all__ = ["MAX_RATIO", "RatioRangeWarning", "AgainstDepthWarning", "auto_candidates", "rebalance", "AllocationInputs", "Allocator", "allocator_names",
           "build_plan", "get_allocator", "register", "PAPER_ALPHA", "allocate_dlp", "paper_alpha",
           "relative_importance", "allocate_owl", "allocate_uniform"]
