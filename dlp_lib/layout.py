"""Where each module of the package sits: the one declaration that the cache's code versions and the
house test's import layering are both read from.

Every module (a top-level module, or a package with all its modules) has a floor and the code stages
it computes. Imports point down the floors only (`tests/test_house.py`). A stage's code version hashes
the modules that compute it (`cache.code_version`), and a cached value's key carries the versions of the
stages that produced it, so editing a module invalidates exactly the results it computes. A module that
computes no cached value (front doors, argument handling, the cache itself) has no stage. A new module
is one line here.
"""
from __future__ import annotations

# The code stages, in pipeline order. A configuration's fields have roles data | plan | prune | eval
# (experiment.ExperimentConfig); ROLE_STAGES says which code stages each role's results come from.
STAGES = ("data", "statistics", "plan", "prune", "eval", "compress", "finetune", "inference")
ROLE_STAGES = {"data": ("data",), "plan": ("statistics", "plan"), "prune": ("prune",), "eval": ("eval",)}

# name -> (floor, code stages). A dotted name ("runs.svd") places one module of a package apart from
# the package's own entry; the longest matching name wins.
MODULES: dict[str, tuple[int, tuple[str, ...]]] = {
    # floor 0: the cache and the identity of weights
    "layout": (0, ()),
    "cache": (0, ()),
    "fingerprint": (0, ("data",)),
    # floor 1: text, models, architectures, scores, the budget type
    "data": (1, ("data",)),
    "models": (1, ("data",)),
    "gguf_loading": (1, ("data",)),
    "architectures": (1, ("data", "statistics", "prune")),
    "scores": (1, ("statistics", "prune")),
    "plan": (1, ("plan",)),
    # floor 2: the calibration engine (pass 1 and the sequential pass share it)
    "calibration": (2, ("statistics", "prune")),
    "engine": (2, ("statistics", "prune")),
    "zeroshot_tasks": (2, ("eval",)),
    # floor 3: what the engine feeds
    "block_stats": (3, ("statistics",)),
    "sparsegpt": (3, ("prune",)),
    # floor 4: the allocator registry
    "allocation": (4, ("plan",)),
    # floor 5: compressors and measurements
    "pruning": (5, ("prune",)),
    "pruned_weights": (5, ("prune",)),
    "compression": (5, ("compress",)),
    "evaluation": (5, ("eval",)),
    "placement": (5, ("eval",)),
    # floor 6: measurements built on them
    "zeroshot": (6, ("eval",)),
    # floor 7: the configuration and the Lab (Lab.run assembles every result: its code is "eval")
    "validation": (7, ()),
    "dense_weights": (7, ()),
    "experiment": (7, ("eval",)),
    # floor 8: results computed on a Lab (they take it; the maths below takes models and tensors)
    "runs": (8, ("eval",)),
    "runs.lab_copy": (8, ("compress",)),
    "runs.svd": (8, ("compress",)),
    "runs.structured": (8, ("compress",)),
    "runs.nm_gptq": (8, ("compress",)),
    "runs.compress_command": (8, ()),   # the compress subcommand's glue: computes nothing itself
    "runs.quantize_command": (8, ()),   # prune's options for compression after pruning, and their glue
    # floor 9: front doors, and the subcommands with a module of their own
    "arguments": (9, ()),
    "api": (9, ()),
    "explorer": (9, ()),
    "export": (9, ()),
    "sweep": (9, ()),
    "finetune": (9, ("finetune",)),
    "finetune.command": (9, ()),    # the subcommand's options and glue: editing them keeps fine-tuning results
    "inference": (9, ("inference",)),
    "inference.cli": (9, ()),       # decode-bench's options and glue
    # floor 10: the command line
    "cli": (10, ()),
    "__main__": (10, ()),
    "__init__": (10, ()),
}


def entry_of(module: str) -> str | None:
    """The MODULES name that places a dotted module name ("compression.svd"; a package's own file is
    "compression.__init__"), or None when none does."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in MODULES:
            return name
    return None


def floor_of(module: str) -> int | None:
    entry = entry_of(module)
    return None if entry is None else MODULES[entry][0]


def stages_of(module: str) -> tuple[str, ...] | None:
    entry = entry_of(module)
    return None if entry is None else MODULES[entry][1]
