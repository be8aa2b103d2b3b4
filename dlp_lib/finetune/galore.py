"""GaLore: AdamW with gradients projected onto a low-rank subspace (Zhao et al. 2024), as OwLore uses
it for the sampled blocks ("Outlier-weighted Layerwise sampled Low-Rank projection", Li et al. 2024b).

For a 2-D weight W (m x n) with gradient G, every `update_gap` of its own steps the projector is
refreshed from the SVD of the current gradient, G = U S V^T: P = U[:, :r] when m < n (the
gradient is projected from the left, R = P^T G, r x n), otherwise Q = V[:, :r] (from the right,
R = G Q, m x r). Adam's moments live in R's shape (the memory saving); the step is Adam's
normalised R mapped back, N = scale * P N_R (or N_R Q^T), and W <- W - lr * N - lr * wd * W.
Other parameters (1-D norms, embeddings if given in a plain group) take AdamW's step unchanged.
Moments are kept when the projector is refreshed, as in GaLore's reference implementation.
"""
from __future__ import annotations

import torch


class GaLoreAdamW(torch.optim.Optimizer):
    """AdamW; parameter groups with `rank` > 0 project their 2-D gradients (see module docstring)."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 rank: int = 0, update_gap: int = 200, scale: float = 0.25):
        if rank < 0 or update_gap < 1 or scale <= 0:
            raise ValueError(f"GaLore needs rank >= 0, update_gap >= 1 and scale > 0; got rank={rank}, "
                             f"update_gap={update_gap}, scale={scale}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, rank=rank,
                                      update_gap=update_gap, scale=scale))

    @staticmethod
    def _projector(G: torch.Tensor, rank: int) -> tuple[str, torch.Tensor]:
        U, _, Vh = torch.linalg.svd(G.float(), full_matrices=False)
        if G.shape[0] < G.shape[1]:
            return "left", U[:, :rank].contiguous()           # P: (m, r)
        return "right", Vh[:rank].t().contiguous()            # Q: (n, r)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                G = p.grad.float()
                state = self.state[p]
                low_rank = group["rank"] > 0 and p.ndim == 2 and group["rank"] < min(p.shape)
                if low_rank:
                    if state.get("step", 0) % group["update_gap"] == 0:
                        state["side"], state["projector"] = self._projector(G, group["rank"])
                    side, proj = state["side"], state["projector"]
                    G = proj.t() @ G if side == "left" else G @ proj            # R: (r, n) or (m, r)
                if "exp_avg" not in state:
                    state["exp_avg"] = torch.zeros_like(G)
                    state["exp_avg_sq"] = torch.zeros_like(G)
                state["step"] = state.get("step", 0) + 1
                m, v, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
                m.mul_(beta1).add_(G, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(G, G, value=1 - beta2)
                N = (m / (1 - beta1 ** t)) / ((v / (1 - beta2 ** t)).sqrt_().add_(group["eps"]))
                if low_rank:
                    N = group["scale"] * (proj @ N if side == "left" else N @ proj.t())
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(N.to(p.dtype), alpha=-group["lr"])
        return loss

