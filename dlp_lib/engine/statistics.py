"""Statistics collected by hooks during a block's forward: Wanda column norms, SparseGPT Hessians,
ASVD's mean absolute activations.

Inputs are read where each prunable weight receives them: the first positional input of a
Linear / Conv1D layer (both compute from x of shape (..., C_in)), or, for mixture-of-experts
weights, the tokens routed to the expert (`_expert_inputs`). Sublayers fed the very same input
tensor (q/k/v, gate/up) share one accumulator. All statistics are accumulated in fp32.
"""
from __future__ import annotations

import torch
from torch import nn

from ..architectures.discovery import PrunableWeight, UnsupportedModelError


class WandaNorms:
    """Per input column: mean over sequences of the per-sequence sum over tokens of x_j^2 (fp32).

    For an expert the sum runs over the tokens routed to it (the others give it no input), still
    divided by the number of sequences, so its norms are on the scale of a dense layer's.
    """

    def __init__(self, layer):
        self.sq_sum = torch.zeros(layer.in_features, dtype=torch.float32, device=layer.weight.device)
        self.nsequences = 0
        self.ntokens = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1])
        # ||x_j||^2 over the tokens, as the reference (torch.norm(...) ** 2), reduced in fp32
        # without an fp32 copy of x.
        self.sq_sum += torch.linalg.vector_norm(x, dim=0, dtype=torch.float32).square_()
        self.ntokens += x.shape[0]

    def finish(self, nsequences: int) -> torch.Tensor:
        """sqrt of the mean squared column norm: the ||X_j||_2 of Wanda's score."""
        return (self.sq_sum / nsequences).sqrt()


_MIXED_GRAM: dict = {}  # device -> whether addmm(..., out_dtype=float32) works (checked once)


def mixed_gram_ok(device: torch.device) -> bool:
    """Does this torch offer fp16/bf16 x fp16/bf16 -> fp32 addmm in place on `device`? (probed once)"""
    key = str(device)
    if key not in _MIXED_GRAM:
        ok = False
        try:
            g = torch.Generator(device=device).manual_seed(0)
            x = torch.randn(64, 48, device=device, generator=g).half()
            H = torch.ones(48, 48, device=device)
            torch.addmm(H, x.t(), x, out_dtype=torch.float32, out=H)
            ref = 1 + x.double().t() @ x.double()
            ok = bool(torch.allclose(H.double(), ref, rtol=1e-5, atol=1e-5))
        except Exception:  # noqa: BLE001 - any failure means: use the fp32 path
            ok = False
        _MIXED_GRAM[key] = ok
    return _MIXED_GRAM[key]


class HessianAccumulator:
    """H = 2/(N*T) X^T X in fp32, SparseGPT's layer Hessian (for an expert: over its routed tokens)."""

    def __init__(self, layer):
        self.H = torch.zeros(layer.in_features, layer.in_features, dtype=torch.float32, device=layer.weight.device)
        self.ntokens = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1])
        if x.is_cuda and x.dtype in (torch.float16, torch.bfloat16) and mixed_gram_ok(x.device):
            # 16-bit products are exact in fp32 and the tensor cores accumulate in fp32: the same
            # X^T X as the fp32 matmul of the upcast activations, up to summation order.
            torch.addmm(self.H, x.t(), x, out_dtype=torch.float32, out=self.H)
        else:
            x = x.float()
            self.H.addmm_(x.t(), x)
        self.ntokens += x.shape[0]

    def finish(self, nsequences: int) -> torch.Tensor:
        return self.H.mul_(2.0 / max(self.ntokens, 1))


class AbsMeanAccumulator:
    """Per input column: mean over all tokens of |x_j| (fp32); ASVD's activation scale."""

    def __init__(self, layer):
        self.abs_sum = torch.zeros(layer.in_features, dtype=torch.float32, device=layer.weight.device)
        self.ntokens = 0

    def add(self, x: torch.Tensor) -> None:
        x = x.reshape(-1, x.shape[-1])
        self.abs_sum += x.abs().sum(dim=0, dtype=torch.float32)
        self.ntokens += x.shape[0]

    def finish(self, nsequences: int) -> torch.Tensor:
        return self.abs_sum / max(self.ntokens, 1)


STATISTICS = {"wanda": WandaNorms, "hessian": HessianAccumulator, "abs_mean": AbsMeanAccumulator}


# ---------------------------------------------------------------- mixture-of-experts inputs
def _expert_matrix(experts: nn.Module, name: str, e: int) -> torch.Tensor:
    """Expert e's matrix of parameter `name` as (C_out, C_in)."""
    w = experts.get_parameter(name)[e]
    return w.t() if getattr(experts, "is_transposed", False) else w


def _gated(experts: nn.Module, gate_up: torch.Tensor) -> torch.Tensor:
    """The gated intermediate of a concatenated gate/up projection. transformers gives its experts
    modules the gate as a private method (`_apply_gate`, 5.x); without it (other versions), the gate
    its default applies: act(gate) * up. A module gating otherwise is refused by the first batch's
    check of the recomputed output against the module's own."""
    apply_gate = getattr(experts, "_apply_gate", None)
    if apply_gate is not None:
        return apply_gate(gate_up)
    gate, up = gate_up.chunk(2, dim=-1)
    return experts.act_fn(gate) * up


def _expert_inputs(experts: nn.Module, hidden: torch.Tensor, top_k_index: torch.Tensor,
                   top_k_weights: torch.Tensor) -> tuple[dict[int, dict[str, torch.Tensor]], torch.Tensor]:
    """Per expert e routed at least one token: {param name: the input of its matrix e}, and the
    experts module's output recomputed from them (checked against the real output).

    hidden: (S, H) tokens; top_k_index / top_k_weights: (S, k). The input of `gate_up_proj[e]`
    (or `up_proj[e]`) is hidden[tokens routed to e]; the input of `down_proj[e]` is the gated
    intermediate, computed with the module's own gate (`_gated`; `act_fn` without a gate).
    """
    if getattr(experts, "has_post_expert_norm", False):
        raise UnsupportedModelError(f"{type(experts).__name__} normalises after each expert; per-expert "
                                    "statistics are not implemented for it")
    own = dict(experts.named_parameters(recurse=False))
    first = "gate_up_proj" if "gate_up_proj" in own else "up_proj"
    has_bias = getattr(experts, "has_bias", False)
    out = torch.zeros_like(hidden, dtype=torch.float32)
    inputs: dict[int, dict[str, torch.Tensor]] = {}
    n_experts = own[first].shape[0]
    for e in range(n_experts):
        token_idx, pos = torch.where(top_k_index == e)
        if token_idx.numel() == 0:
            continue
        x = hidden[token_idx]                                              # (S_e, H)
        h = nn.functional.linear(x, _expert_matrix(experts, first, e),
                                 own[first + "_bias"][e] if has_bias else None)
        if first == "gate_up_proj":
            h = _gated(experts, h)
        else:
            h = experts.act_fn(h)
        y = nn.functional.linear(h, _expert_matrix(experts, "down_proj", e),
                                 own["down_proj_bias"][e] if has_bias else None)
        out.index_add_(0, token_idx, (y * top_k_weights[token_idx, pos, None]).float())
        inputs[e] = {first: x, "down_proj": h}
    return inputs, out


class SublayerHooks:
    """Forward hooks that feed one block's accumulators during its statistics forward.

    Which sublayers receive the very same input tensor (q/k/v, gate/up) is read off the first
    batch; those share one accumulator, so each distinct input is reduced once per batch. Expert
    weights are fed by one hook on their experts module, which splits the tokens by routing; on
    the first batch the experts' output recomputed from those inputs must equal the module's
    output (otherwise the module computes something else and the block is refused).
    """

    def __init__(self, sublayers: dict[str, PrunableWeight], statistics: tuple[str, ...]):
        self.sublayers, self.statistics = sublayers, statistics
        self.accs: dict[str, dict[str, object]] = {s: {} for s in statistics}  # leaders only
        self.alias: dict[str, str] = {}
        self.seen: dict[str, torch.Tensor] = {}
        self.batch = 0
        self.handles = []
        experts: dict[int, tuple[nn.Module, dict]] = {}
        for name, w in sublayers.items():
            if getattr(w, "kind", "linear") == "expert":
                experts.setdefault(id(w.module), (w.module, {}))[1][(w.param_name, w.expert)] = name
            else:
                self.handles.append(w.register_forward_hook(self._hook(name)))
        for module, names in experts.values():
            self.handles.append(module.register_forward_hook(self._experts_hook(module, names), with_kwargs=True))

    def _feed(self, name: str, x: torch.Tensor) -> None:
        # x is the very object, compared by identity (detach() would make a new one)
        if name in self.alias:
            leader = self.alias[name]
            if self.seen.get(leader) is not x:
                raise RuntimeError(f"{name} and {leader} shared their input in the first batch but not in "
                                   f"batch {self.batch}; this block class cannot be calibrated with shared "
                                   "accumulators")
            return
        if name not in self.accs[self.statistics[0]]:
            if self.batch == 0:
                leader = next((other for other, t in self.seen.items() if t is x), None)
                if leader is not None:
                    self.alias[name] = leader
                    return
            for s in self.statistics:
                self.accs[s][name] = STATISTICS[s](self.sublayers[name])
        self.seen[name] = x
        for s in self.statistics:
            self.accs[s][name].add(x.detach())

    def _hook(self, name: str):
        def hook(_module, args, _out):
            self._feed(name, args[0])
        return hook

    def _experts_hook(self, module: nn.Module, names: dict[tuple[str, int], str]):
        def hook(_module, args, kwargs, output):
            params = list(args) + [kwargs[k] for k in ("hidden_states", "top_k_index", "top_k_weights") if k in kwargs]
            if len(params) != 3:
                raise UnsupportedModelError(f"{type(module).__name__}.forward was not called as "
                                            "(hidden_states, top_k_index, top_k_weights)")
            hidden, top_k_index, top_k_weights = params
            inputs, recomputed = _expert_inputs(module, hidden, top_k_index, top_k_weights)
            if self.batch == 0:
                real = output[0] if isinstance(output, (tuple, list)) else output
                scale = float(real.abs().max()) + 1e-6
                if not torch.allclose(recomputed, real.float(), rtol=1e-3, atol=1e-3 * scale):
                    raise UnsupportedModelError(
                        f"{type(module).__name__}: the experts' output recomputed from per-expert routed "
                        "inputs differs from the module's output; per-expert statistics would be wrong")
            for (pname, e), name in names.items():
                if e in inputs:
                    self._feed(name, inputs[e][pname])
        return hook

    def next_batch(self) -> None:
        self.seen.clear()
        self.batch += 1

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []
        self.seen.clear()

    def finish(self, nsequences: int) -> dict[str, dict[str, torch.Tensor]]:
        out: dict[str, dict[str, torch.Tensor]] = {s: {} for s in self.statistics}
        done: dict[str, dict[str, torch.Tensor]] = {s: {} for s in self.statistics}
        for name, w in self.sublayers.items():
            src = self.alias.get(name, name)
            for s in self.statistics:
                if src not in done[s]:
                    acc = self.accs[s].get(src)
                    if acc is None:
                        if getattr(w, "kind", "linear") == "expert":
                            raise ValueError(
                                f"expert weight {name} received no calibration token (the router sent none "
                                "to this expert): its statistics are undefined; use more calibration data")
                        acc = STATISTICS[s](self.sublayers[src])  # a layer never called: zeros
                    done[s][src] = acc.finish(nsequences)
                out[s][name] = done[s][src]
        self.accs = {s: {} for s in self.statistics}
        return out
