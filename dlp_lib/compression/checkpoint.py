"""Loading a compressed checkpoint's weights into a model rebuilt with its shapes (shared by
`structured.load_structured` and `svd.load_svd`, which rebuild the modules differently)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn


def _state_dict_from(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    index = directory / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    state = {}
    for f in files:
        state.update(load_file(str(directory / f)))
    return state


def load_state_checked(model: nn.Module, directory: Path) -> None:
    """Load the checkpoint's weights into a model already built with the right shapes: every weight
    must be there (the output layer may be tied to the embeddings) and nothing else."""
    state = _state_dict_from(Path(directory))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set()
    if getattr(model.config, "tie_word_embeddings", False) and model.get_output_embeddings() is not None:
        tied = {"lm_head.weight"}
    if unexpected or set(missing) - tied:
        raise ValueError(f"checkpoint {directory} does not match its shapes: missing "
                         f"{sorted(set(missing) - tied)}, unexpected {sorted(unexpected)}")
    model.tie_weights()
    model.config.use_cache = False
