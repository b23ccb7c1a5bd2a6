"""biprop / multi-prize tickets (Diffenderfer & Kailkhura 2021), MPT-1/32 (binary weights) and, with a
`_binact` architecture, MPT-1/1 (binary activations too).

W = sign(w) * alpha * m, with m the top-k of |s| and alpha = mean |w| over the kept entries of the layer
(their true mean). The seed's code divides the kept |w| by int(density*n) instead of the kept count
(chrundle/biprop utils/conv_type.py:75), a slightly larger alpha where density*n is not whole:
`biprop.alpha_divisor: int_kn` does the same, for a spec that reproduces its published numbers. Backward to the
scores is magnitude-aware: dL/d|s| = g * w (alpha does not appear), then the sign of s through abs.

Global variant (`biprop.global_threshold`): one |s| threshold across every masked layer, recomputed
before every training step; when the target density is <= 0.5 the kept fraction ramps from 0.5 to
the target over the first `ramp_epochs`: sparsity(e) = s_f + (0.5 - s_f) * (1 - e/E)^3.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from hiddennets.algorithms.base import Algorithm
from hiddennets.errors import ConfigError
from hiddennets.init import init_scores
from hiddennets.layers import SubnetConv2d, SubnetLinear, SubnetMixin, subnet_layers
from hiddennets.masks import MASK_METHODS, kept_count


@dataclass
class BipropOptions:
    global_threshold: bool = False  # one |score| threshold across all layers instead of per layer
    ramp_epochs: int = 10           # global variant, density <= 0.5: kept fraction ramps 0.5 -> density
    bn_only: bool = False           # train only the affine BN parameters (needs learn_bn: true)
    alpha_divisor: str = "kept"     # kept: alpha is the kept |w|'s mean; int_kn: divided by int(density*n), as the seed

    def check(self) -> None:
        if self.ramp_epochs < 0:
            raise ConfigError(f"biprop.ramp_epochs: must be >= 0, got {self.ramp_epochs}")
        if self.alpha_divisor not in ALPHA_DIVISORS:
            raise ConfigError(f"biprop.alpha_divisor: unknown alpha_divisor '{str(self.alpha_divisor)[:40]}'; valid: "
                              + ", ".join(ALPHA_DIVISORS))


ALPHA_DIVISORS = ("kept", "int_kn")


class BinarySubnetWeight(torch.autograd.Function):
    """Forward sign(w) * alpha * m for a given 0/1 mask; backward g * w to the mask's scores.
    `divisor` None: alpha divides by the kept count; else by that number (the seed's int(k*n))."""

    @staticmethod
    def forward(ctx, scores_abs: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor,  # type: ignore[override]
                divisor: int | None = None) -> torch.Tensor:
        kept = mask.sum().clamp_min(1.0) if divisor is None else divisor  # a tensor: no host sync
        alpha = (weight.abs() * mask).sum() / kept
        ctx.save_for_backward(weight)
        return weight.sign() * alpha * mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (weight,) = ctx.saved_tensors
        return grad * weight, None, None, None


class Biprop(SubnetMixin):
    def __init__(self, *args, score_init: str = "kaiming_uniform", train_scores: bool = True,
                 alpha_divisor: str = "kept", **kwargs):
        super().__init__(*args, **kwargs)  # the weight is drawn first, then the scores
        self.k = kept_count(self.density, self.weight.numel())
        # the seed's int(k*n) (never 0), for the per-layer mask only: its global variant divides by the kept count
        self.alpha_divisor = max(1, int(self.density * self.weight.numel())) if alpha_divisor == "int_kn" else None
        self.scores = nn.Parameter(init_scores(torch.empty_like(self.weight), score_init))
        self.train_scores = train_scores  # False: BN only (biprop.bn_only)
        # set by the global variant before each step: the |s| threshold shared by every layer
        self.global_threshold: torch.Tensor | None = None

    @torch.no_grad()
    def _mask_of(self, scores_abs: torch.Tensor) -> torch.Tensor:
        if self.global_threshold is not None:
            return (scores_abs >= self.global_threshold).to(self.weight.dtype)
        if self.k >= self.weight.numel():
            return torch.ones_like(self.weight)
        return MASK_METHODS["topk"](scores_abs, self.k)

    def mask(self):
        return self._mask_of(self.scores.detach().abs())

    def effective_weight(self):
        scores_abs = self.scores.abs()  # once per step: the mask reads it, the gradient flows through it
        return BinarySubnetWeight.apply(scores_abs, self.weight, self._mask_of(scores_abs.detach()),
                                        self.alpha_divisor if self.global_threshold is None else None)

    def set_trainable(self):
        self.weight.requires_grad_(False)
        self.scores.requires_grad_(self.train_scores)


class BipropConv2d(Biprop, SubnetConv2d):
    pass


class BipropLinear(Biprop, SubnetLinear):
    pass


def ramp_density(target: float, epoch: int, ramp_epochs: int) -> float:
    """Kept fraction at `epoch` (0-based) for the global variant: 0.5 -> target, cubic, if target <= 0.5."""
    if target > 0.5 or ramp_epochs <= 0 or epoch >= ramp_epochs:
        return target
    final_sparsity = 1.0 - target
    sparsity = final_sparsity + (0.5 - final_sparsity) * (1.0 - epoch / ramp_epochs) ** 3
    return 1.0 - sparsity


@torch.no_grad()
def set_global_threshold(model: nn.Module, density: float) -> None:
    """One threshold on |s| over every masked layer (layers kept dense stay dense), as a tensor."""
    layers = [layer for layer in subnet_layers(model) if isinstance(layer, Biprop) and layer.density < 1.0]
    if not layers:
        return
    scores = torch.cat([layer.scores.detach().abs().reshape(-1) for layer in layers])
    k = kept_count(density, scores.numel())
    threshold = scores.topk(k, sorted=False).values.min()
    for layer in layers:
        layer.global_threshold = threshold


class BipropAlgorithm(Algorithm):
    def check(self, cfg):
        if cfg.biprop.bn_only and not cfg.learn_bn:
            raise ConfigError("biprop.bn_only: trains the affine BN parameters, so it needs learn_bn: true")

    def layer_options(self, options):
        return {"train_scores": not options.bn_only, "alpha_divisor": options.alpha_divisor}

    def refresh(self, model, cfg, epoch):
        if cfg.biprop.global_threshold:
            set_global_threshold(model, ramp_density(cfg.density, epoch, cfg.biprop.ramp_epochs))


ALGORITHM = BipropAlgorithm(
    "biprop", BipropConv2d, BipropLinear,
    "biprop: top-k of |scores|, weights binarised to +-alpha (MPT-1/32; MPT-1/1 with _binact archs)",
    options=BipropOptions, score_init="kaiming_uniform")
