"""The Bop optimiser for sign flips (Helwegen et al. 2019; Peek-a-Boo stage 2, docs/ALGORITHMS.md).

    m <- (1 - adaptivity) * m + adaptivity * grad          (m starts at 0, as in the paper)
    w <- -w where |m| >= threshold and sign(m) == sign(w)

Magnitudes never change; entries outside `masks` (pruned) never flip. The moving average and a
per-weight flip count live in the optimiser state, so `state_dict()` carries them through a
checkpoint and a resumed run flips exactly as an uninterrupted one. The adaptivity is kept as the
group's `lr`, so torch's own lr schedulers decay it (e.g. x0.15 every 45 epochs on CIFAR).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch


class Bop(torch.optim.Optimizer):
    def __init__(self, params: Iterable[torch.Tensor], adaptivity: float = 1e-3, threshold: float = 1e-6,
                 masks: Sequence[torch.Tensor] | None = None):
        if adaptivity <= 0 or adaptivity > 1:
            raise ValueError(f"adaptivity: must be in (0, 1], got {adaptivity}")
        if threshold < 0:
            raise ValueError(f"threshold: must be >= 0, got {threshold}")
        super().__init__(params, {"lr": adaptivity, "threshold": threshold})
        params_in_order = [p for group in self.param_groups for p in group["params"]]
        for p, mask in zip(params_in_order, masks or []):
            if mask.shape != p.shape:
                raise ValueError(f"mask of shape {tuple(mask.shape)} for a parameter of shape {tuple(p.shape)}")
            self._state_of(p)["mask"] = mask.to(device=p.device, dtype=torch.bool)

    def _state_of(self, p: torch.Tensor) -> dict:
        state = self.state[p]
        if "momentum" not in state:
            state["momentum"] = torch.zeros_like(p)
            state["flips"] = torch.zeros(p.shape, dtype=torch.int32, device=p.device)
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        for state in self.state.values():  # torch casts all state to the parameter's float dtype
            if "mask" in state:
                state["mask"] = state["mask"].bool()
            if "flips" in state:
                state["flips"] = state["flips"].to(torch.int32)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            rate, threshold = group["lr"], group["threshold"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self._state_of(p)
                momentum = state["momentum"]
                momentum.mul_(1 - rate).add_(p.grad, alpha=rate)
                flip = (momentum.abs() >= threshold) & (torch.sign(momentum) == torch.sign(p))
                if "mask" in state:
                    flip &= state["mask"]
                p.copy_(torch.where(flip, -p, p))
                state["flips"] += flip
        return loss

    def total_flips(self) -> int:
        """Sign flips made so far, over every parameter."""
        return int(sum(int(state["flips"].sum()) for state in self.state.values() if "flips" in state))
