"""Masked layers and the layer factory that plugs an algorithm's layers into any architecture.

Each algorithm defines a small mixin whose constructor takes its own keyword arguments and which
provides `mask()`, `effective_weight()` and `set_trainable()`; `SubnetConv2d` / `SubnetLinear` run
the ordinary conv / linear with the effective weight. A layer works on its own:

    EdgePopupLinear(3, 2, density=0.5)          # no config needed; bias off, as in the seeds

The model builders only ever call `factory.conv(...)`, `factory.linear(...)`, `factory.bn(...)` and
`factory.act()`, so a new algorithm needs no change to any architecture. `LayerFactory.for_run` is
the one place where a RunConfig becomes layer arguments.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from hiddennets.init import WeightInit, init_weight

if TYPE_CHECKING:
    from hiddennets.algorithms.base import Algorithm
    from hiddennets.config import RunConfig


class SubnetMixin:
    """What every algorithm's layer provides. `weight` is the random (or trained) dense weight.

    The constructor builds the ordinary conv / linear, then draws the weight with `weight_init` (if
    given; else torch's default stays), and only then do subclasses draw their own state (scores,
    masks): seeded runs depend on that order.
    """

    weight: torch.Tensor

    def __init__(self, *args: Any, density: float = 1.0, weight_init: WeightInit | None = None,
                 is_output: bool = False, kept_dense: bool = False, bias: bool = False, **kwargs: Any):
        super().__init__(*args, bias=bias, **kwargs)  # type: ignore[call-arg]
        self.density = density
        self.is_output = is_output    # the classifier (built with last=True)
        self.kept_dense = kept_dense  # density 1 by the config or the architecture, whatever the run's density
        if weight_init is not None:
            init_weight(self.weight, weight_init.name, weight_init.scaled, density,
                        scale_fan_by=weight_init.scale_fan_by)

    def mask(self) -> torch.Tensor:
        """The current 0/1 mask (same shape as weight)."""
        return torch.ones_like(self.weight)

    def effective_weight(self) -> torch.Tensor:
        return self.weight

    def set_trainable(self) -> None:
        """Decide which of this layer's parameters the optimiser updates."""
        self.weight.requires_grad_(True)

    @torch.no_grad()
    def kept(self) -> tuple[torch.Tensor, int]:
        """(number of weights kept as a tensor, total) for measuring density."""
        return (self.mask() != 0).sum(), self.weight.numel()


class FixedMask(SubnetMixin):
    """A 0/1 mask held as a buffer (so it is checkpointed with the weights) and set outside the
    forward pass: by a pruner at init, a random draw, or IMP's levels. W = w * mask."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.register_buffer("fixed_mask", torch.ones_like(self.weight))  # type: ignore[attr-defined]

    def mask(self) -> torch.Tensor:
        return self.fixed_mask

    def effective_weight(self) -> torch.Tensor:
        return self.weight * self.fixed_mask


class SubnetConv2d(SubnetMixin, nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.effective_weight(), self.bias)


class SubnetLinear(SubnetMixin, nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)


class BinaryActivationSTE(torch.autograd.Function):
    """Forward sign(x) (0 maps to +1, so outputs are exactly +-1); backward the Bi-Real surrogate
    2(1 - |x|) * g inside |x| < 1, zero outside."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * (2.0 * (1.0 - x.abs())).clamp_min(0.0)


class BinaryActivation(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return BinaryActivationSTE.apply(x)


class LayerFactory:
    """Builds layers for one run: the algorithm's masked conv/linear, BN and activations.

    `first=True` / `last=True` mark the input and output layers, which stay dense (density 1) when
    the config says `first_layer_dense` / `last_layer_dense`; `dense=True` keeps a layer dense always.
    `options` are the algorithm's own layer arguments (e.g. `score_init`, `train_weights`).
    """

    def __init__(self, conv_type: type[SubnetConv2d], linear_type: type[SubnetLinear], cfg: "RunConfig",
                 options: Mapping[str, Any] | None = None, binary_activations: bool = False):
        self.conv_type, self.linear_type, self.cfg = conv_type, linear_type, cfg
        self.options = dict(options or {})
        self.binary_activations = binary_activations

    @classmethod
    def for_run(cls, algorithm: "Algorithm", cfg: "RunConfig") -> "LayerFactory":
        """The factory of a run: the algorithm's layer types and its layer arguments from the config."""
        options = algorithm.layer_options(cfg.sections.get(algorithm.section))
        if algorithm.score_init is not None:
            options = {"score_init": cfg.score_init, **options}
        return cls(algorithm.conv_type, algorithm.linear_type, cfg, options)

    def with_binary_activations(self) -> "LayerFactory":
        """The same factory whose act() binarises (MPT-1/1): every activation sits after a BN and
        before the next conv or linear, so the image input and the logits stay real."""
        return LayerFactory(self.conv_type, self.linear_type, self.cfg, self.options, binary_activations=True)

    def _layer_args(self, first: bool, last: bool, dense: bool, density: float | None = None) -> dict[str, Any]:
        kept_dense = dense or (first and self.cfg.first_layer_dense) or (last and self.cfg.last_layer_dense)
        # `density`: an architecture that sets a layer's own budget (DNW's graphs), whatever the run's
        layer_density = 1.0 if kept_dense else (self.cfg.density if density is None else density)
        return {"density": layer_density, "kept_dense": kept_dense, "is_output": last,
                "weight_init": WeightInit(self.cfg.init, self.cfg.scaled, self.cfg.scale_fan_by), **self.options}

    def conv(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0,
             groups: int = 1, *, first: bool = False, last: bool = False, dense: bool = False,
             density: float | None = None, forward: type | None = None) -> nn.Module:
        """`dense=True`: a layer the architecture never sparsifies (e.g. a graph node's own operation).
        `forward`: a mixin whose forward replaces the conv's (the layer stays the algorithm's type)."""
        layer_type = self.conv_type if forward is None else _with_forward(forward, self.conv_type)
        return layer_type(in_ch, out_ch, kernel_size, stride=stride, padding=padding, groups=groups,
                          **self._layer_args(first, last, dense, density))

    def linear(self, in_features: int, out_features: int, *, first: bool = False, last: bool = False,
               dense: bool = False, density: float | None = None, bias: bool = False) -> nn.Module:
        return self.linear_type(in_features, out_features, bias=bias, **self._layer_args(first, last, dense, density))

    def bn(self, channels: int) -> nn.Module:
        # Non-affine BN (running statistics, no gamma/beta) unless learn_bn: the seeds' default.
        return nn.BatchNorm2d(channels, affine=self.cfg.learn_bn)

    def bn1d(self, features: int) -> nn.Module:
        return nn.BatchNorm1d(features, affine=self.cfg.learn_bn)

    def act(self) -> nn.Module:
        return BinaryActivation() if self.binary_activations else nn.ReLU(inplace=True)


_WITH_FORWARD: dict[tuple[type, type], type] = {}


def _with_forward(mixin: type, conv_type: type) -> type:
    """The algorithm's conv type with `mixin`'s forward, one class per pair (pickled by name never:
    models are saved as state dicts)."""
    key = (mixin, conv_type)
    if key not in _WITH_FORWARD:
        _WITH_FORWARD[key] = type(f"{mixin.__name__}{conv_type.__name__}", (mixin, conv_type), {})
    return _WITH_FORWARD[key]


def subnet_layers(model: nn.Module) -> list[SubnetMixin]:
    return [m for m in model.modules() if isinstance(m, SubnetMixin)]


@torch.no_grad()
def measured_density(model: nn.Module) -> float:
    """Fraction of all masked-layer weights that the current masks keep (one host sync)."""
    layers = subnet_layers(model)
    if not layers:
        return 1.0
    kept = [layer.kept() for layer in layers]
    total = sum(n for _, n in kept)
    return float(torch.stack([k for k, _ in kept]).sum().item()) / total
