"""Find a decoder model's repeated blocks and the prunable weights inside each block.

No allow-list of model classes: the blocks are the largest `nn.ModuleList` whose elements all
have one class (cross-checked with the model's `_no_split_modules` when it declares them).
Whether block-by-block replay reproduces the model is checked separately
(`dlp_lib.engine.replay.check_replay`, run by the engine before its first pass).

Prunable weights of a block, each seen as a (C_out, C_in) matrix `W` whose input is `x`
(y = x W^T), the orientation every score, mask, Wanda norm and SparseGPT update assumes:
- `nn.Linear`: its weight as it is;
- GPT-2 style `transformers.pytorch_utils.Conv1D` (y = x @ weight, weight (C_in, C_out)): the
  transposed view of its weight;
- mixture-of-experts weights stored as 3-D parameters (transformers 5 "experts" modules, e.g.
  Mixtral's `experts.gate_up_proj` (E, 2I, H) and `experts.down_proj` (E, H, I)): one matrix per
  expert, `param[e]` (transposed when the module says `is_transposed`). Their statistics come
  from the tokens routed to that expert (`dlp_lib.engine.statistics`).
Any other parameter of 3 or more dimensions in a block is refused (never a silent partial prune).
Routers and gates of a mixture-of-experts layer are never pruned, whatever module holds them: the
2-D weights of transformers-5 router modules (Mixtral/Qwen2-MoE/Qwen3-MoE/OLMoE `mlp.gate`) are not
`nn.Linear`, and every `nn.Linear` that sits directly beside the experts (the router `gate` of
older layouts, Qwen2-MoE's `mlp.shared_expert_gate` (1 x hidden)) is a routing layer
(`routing_layers`), excluded too. These, norms and biases are reported by `achieved_sparsity`
through `prunable_share`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class UnsupportedModelError(ValueError):
    pass


def _conv1d_class():
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # transformers not installed: no Conv1D layers can exist
        return None
    return Conv1D


# ---------------------------------------------------------------- decoder blocks
def _homogeneous_lists(model: nn.Module) -> list[tuple[str, nn.ModuleList]]:
    out = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and len({type(m) for m in module}) == 1:
            out.append((name, module))
    return out


def decoder_blocks(model: nn.Module) -> nn.ModuleList:
    """The model's list of repeated decoder blocks.

    Candidates: every `nn.ModuleList` of modules of one class that is not nested inside another
    candidate (an experts list inside a block is not the block list). Among them the classes named
    in `model._no_split_modules` are preferred (transformers declares its blocks there), then the
    longest list, then the one with the most parameters.
    """
    cands = _homogeneous_lists(model)
    outer = [(n, m) for n, m in cands
             if not any(o != n and (o == "" or n.startswith(o + ".")) for o, _ in cands)]
    if not outer:
        found = sorted({type(m).__name__ for m in model.modules() if type(m).__name__.endswith(("Layer", "Block"))})
        raise UnsupportedModelError(
            f"No repeated decoder blocks (an nn.ModuleList of one block class) in {type(model).__name__}; "
            f"found layer-like classes: {found or 'none'}.")
    no_split = set(getattr(model, "_no_split_modules", None) or ())
    declared = [(n, m) for n, m in outer if type(m[0]).__name__ in no_split]
    pool = declared or outer
    return max(pool, key=lambda nm: (len(nm[1]), sum(p.numel() for p in nm[1].parameters())))[1]


# ---------------------------------------------------------------- prunable weights
@dataclass(eq=False)
class PrunableWeight:
    """One prunable matrix of a block seen as (C_out, C_in) (y = x W^T).

    `weight` is a view of the live parameter (computed at every access: the offload engine swaps
    the parameter's storage), so in-place edits of it prune the model. `module` is the module whose
    forward receives the input: the layer itself, or the experts module (`expert` is then the
    expert's index and the input is the tokens routed to it).
    """
    module: nn.Module
    param_name: str
    kind: str                 # "linear" | "conv1d" | "expert"
    expert: int | None = None
    transposed: bool = False  # the stored matrix is (C_in, C_out)

    @property
    def parameter(self) -> nn.Parameter:
        return self.module.get_parameter(self.param_name)

    @property
    def weight(self) -> torch.Tensor:
        w = self.parameter.data
        if self.expert is not None:
            w = w[self.expert]
        return w.t() if self.transposed else w

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def register_forward_hook(self, hook):
        """For Linear/Conv1D weights: a forward hook on the layer (its input is args[0])."""
        if self.kind == "expert":
            raise TypeError("expert weights receive routed inputs; hook the experts module")
        return self.module.register_forward_hook(hook)


EXPERT_WEIGHT_NAMES = ("gate_up_proj", "up_proj", "down_proj")


def is_experts_module(module: nn.Module) -> bool:
    """A transformers-5 experts module (3-D expert weights, routed by (top_k_index, top_k_weights))."""
    return any(p.dim() == 3 for p in module.parameters(recurse=False)) and hasattr(module, "num_experts")


def _holds_experts(module: nn.Module) -> bool:
    """The module holds the experts as a direct child: a transformers-5 experts module, or a list of
    several expert modules of one class (older layouts, e.g. Mixtral's `block_sparse_moe.experts`)."""
    for child in module.children():
        if is_experts_module(child):
            return True
        if isinstance(child, nn.ModuleList) and len(child) > 1 and len({type(m) for m in child}) == 1:
            return True
    return False


def routing_layers(block: nn.Module) -> set[str]:
    """Names of the `nn.Linear` layers of a block that route tokens rather than transform them: the
    Linear children of a module that holds experts (routers, shared-expert gates). Their outputs
    are scores or sigmoid gates, whose zeroed inputs would silently change which experts run."""
    names = set()
    for name, mod in block.named_modules():
        if _holds_experts(mod):
            names.update(f"{name}.{c}" if name else c for c, child in mod.named_children()
                         if isinstance(child, nn.Linear))
    return names


def prunable_weights(block: nn.Module) -> dict[str, PrunableWeight]:
    """Every prunable matrix of one block, by qualified name.

    Linear and Conv1D layers are named by their module path ("self_attn.q_proj", "attn.c_attn");
    expert matrices by parameter path and expert index ("mlp.experts.down_proj.3"). Routing layers
    (`routing_layers`) are left out. A parameter of 3 or more dimensions that is not an expert
    weight raises UnsupportedModelError.
    """
    conv1d = _conv1d_class()
    routers = routing_layers(block)
    out: dict[str, PrunableWeight] = {}
    for name, mod in block.named_modules():
        if name in routers:
            continue
        if isinstance(mod, nn.Linear):
            out[name] = PrunableWeight(mod, "weight", "linear")
        elif conv1d is not None and isinstance(mod, conv1d):
            out[name] = PrunableWeight(mod, "weight", "conv1d", transposed=True)
        elif is_experts_module(mod):
            transposed = bool(getattr(mod, "is_transposed", False))
            for pname, p in mod.named_parameters(recurse=False):
                if p.dim() != 3:
                    continue
                if pname not in EXPERT_WEIGHT_NAMES:
                    raise UnsupportedModelError(
                        f"{type(mod).__name__}.{pname} is a 3-D expert parameter of unknown role; prunable "
                        f"expert weights are {', '.join(EXPERT_WEIGHT_NAMES)}")
                for e in range(p.shape[0]):
                    out[f"{name}.{pname}.{e}"] = PrunableWeight(mod, pname, "expert", expert=e, transposed=transposed)
        else:
            for pname, p in mod.named_parameters(recurse=False):
                if p.dim() >= 3:
                    raise UnsupportedModelError(
                        f"{type(block).__name__} holds a {p.dim()}-D parameter {name + '.' if name else ''}{pname} in "
                        f"{type(mod).__name__}, which is neither a Linear/Conv1D weight nor a known "
                        "expert weight: pruning only the rest would be a silent partial prune")
    return out


# the historical name: every consumer reads `.weight` (C_out, C_in) and `.in_features`
linear_sublayers = prunable_weights


def linear_modules(weights: dict[str, PrunableWeight], what: str) -> dict[str, nn.Linear]:
    """The nn.Linear modules behind a block's prunable weights, for consumers that replace whole
    modules (SVD factors, compressed sparse layers). Conv1D and expert weights are refused by name
    rather than skipped: a partial compression would be silent."""
    other = sorted({f"{n} ({w.kind})" for n, w in weights.items() if w.kind != "linear"})
    if other:
        raise UnsupportedModelError(f"{what} replaces nn.Linear layers; this block also has {', '.join(other)}")
    return {n: w.module for n, w in weights.items()}


def block_parameter_counts(block: nn.Module) -> tuple[int, int]:
    """(all parameters of the block, the parameters covered by its prunable weights)."""
    total = sum(p.numel() for p in block.parameters())
    prunable = sum(w.weight.numel() for w in prunable_weights(block).values())
    return total, prunable


def check_causal_lm(source: str, *, revision=None, trust_remote_code: bool = False, gguf_file: str | None = None):
    """One-line refusal of a config that AutoModelForCausalLM cannot load (e.g. an encoder-decoder);
    returns the config."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    config = AutoConfig.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code, **kwargs)
    remote = bool(getattr(config, "auto_map", None) and "AutoModelForCausalLM" in config.auto_map)
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING and not (remote and trust_remote_code):
        raise UnsupportedModelError(f"{type(config).__name__} is not a decoder-only causal LM "
                                    "(AutoModelForCausalLM cannot load it)")
    return config
