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
        self._float_masks: dict[torch.Tensor, tuple[torch.Tensor, torch.Tensor]] = {}
        params_in_order = [p for group in self.param_groups for p in group["params"]]
        for p, mask in zip(params_in_order, masks or []):
            if mask.shape != p.shape:
                raise ValueError(f"mask of shape {tuple(mask.shape)} for a parameter of shape {tuple(p.shape)}")
            self._state_of(p)["mask"] = mask.to(device=p.device, dtype=torch.bool)

    def _state_of(self, p: torch.Tensor) -> dict:
        state = self.state[p]
        if "momentum" not in state:
            state["momentum"] = torch.zeros_like(p)
            state["flips"] = torch.zeros_like(p)  # per weight, a float (exact up to 2**24 flips) for foreach adds
        return state

    def _float_mask(self, p: torch.Tensor, state: dict) -> torch.Tensor:
        """The mask as p's dtype, for the foreach multiply; made once (not in the state: not checkpointed)."""
        cached = self._float_masks.get(p)
        if cached is None or cached[0] is not state["mask"]:
            cached = self._float_masks[p] = (state["mask"], state["mask"].to(p.dtype))
        return cached[1]

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        for p, state in self.state.items():  # torch casts all state to the parameter's float dtype
            if "mask" in state:
                state["mask"] = state["mask"].bool()
            if "flips" in state:
                state["flips"] = state["flips"].to(p.dtype)

    @torch.no_grad()
    def step(self, closure=None):
        """One update of every parameter at once with torch's foreach ops (a fixed ~17 kernels, however
        many tensors: the per-tensor loop launched ~20 per tensor). The comparisons are written as exact
        arithmetic, since torch has no foreach comparison: for floats, sign(a - b) is 0 only when a == b,
        so clamp(sign(|m| - t) + 1, max=1) is |m| >= t; sign(m) * sign(w) is 1 only for equal non-zero
        signs (a zero weight, which a flip leaves as it is, is never counted as flipped)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            rate, threshold = group["lr"], group["threshold"]
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = [self._state_of(p) for p in params]
            momenta = [state["momentum"] for state in states]
            torch._foreach_mul_(momenta, 1 - rate)
            torch._foreach_add_(momenta, [p.grad for p in params], alpha=rate)
            above = torch._foreach_sign(torch._foreach_sub(torch._foreach_abs(momenta), threshold))
            torch._foreach_add_(above, 1.0)
            torch._foreach_clamp_max_(above, 1.0)                       # 1 where |m| >= threshold
            agree = torch._foreach_mul(torch._foreach_sign(momenta), torch._foreach_sign(params))
            torch._foreach_clamp_min_(agree, 0.0)                       # 1 where sign(m) == sign(w) != 0
            flip = torch._foreach_mul(above, agree)
            masked = [(i, self._float_mask(p, state)) for i, (p, state) in enumerate(zip(params, states)) if "mask" in state]
            if masked:
                torch._foreach_mul_([flip[i] for i, _ in masked], [mask for _, mask in masked])
            torch._foreach_add_([state["flips"] for state in states], flip)
            factor = torch._foreach_mul(flip, -2.0)
            torch._foreach_add_(factor, 1.0)                            # -1 where flipped, else 1
            torch._foreach_mul_(params, factor)
        return loss

    def total_flips(self) -> int:
        """Sign flips made so far, over every parameter."""
        counts = [state["flips"].sum(dtype=torch.float64) for state in self.state.values() if "flips" in state]
        return int(torch.stack(counts).sum()) if counts else 0  # one host sync
