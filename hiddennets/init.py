"""Weight and score initialisations (docs/ALGORITHMS.md, "Conventions").

Scaled variants divide the fan by the layer's density: std = gain / sqrt(fan * density), so the
kept subnetwork has the variance a dense layer of that fan would have.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from hiddennets.errors import ConfigError

WEIGHT_INITS = ("kaiming_normal", "kaiming_uniform", "signed_constant", "unsigned_constant", "xavier_normal",
                "torch_default")
# The seeds' short codes; a leading "u" means unscaled.
INIT_ALIASES = {
    "kn": ("kaiming_normal", True), "ukn": ("kaiming_normal", False),
    "sc": ("signed_constant", True), "usc": ("signed_constant", False),
    "uc": ("unsigned_constant", True), "uuc": ("unsigned_constant", False),
}
SCORE_INITS = ("kaiming_uniform", "kaiming_normal", "uniform", "half", "bernoulli", "beta")


@dataclass(frozen=True)
class WeightInit:
    """How a layer draws its weight: an init name from WEIGHT_INITS, scaled by the density or not."""
    name: str = "kaiming_normal"
    scaled: bool = False
    scale_fan_by: str = "density"  # or "sparsity": the seeds' code (see fan_scale)


def resolve_init(name: str, scaled: bool) -> tuple[str, bool]:
    """Map a seed alias ('usc') to (init name, scaled); pass full names through."""
    if name in INIT_ALIASES:
        return INIT_ALIASES[name]
    if name in WEIGHT_INITS:
        return name, scaled
    valid = ", ".join(list(WEIGHT_INITS) + sorted(INIT_ALIASES))
    raise ConfigError(f"init: unknown init '{name}'; valid: {valid}")


def fans(weight: torch.Tensor) -> tuple[int, int]:
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(weight)
    return fan_in, fan_out


SCALE_FAN_BY = ("density", "sparsity")


def fan_scale(scaled: bool, density: float, scale_fan_by: str = "density") -> float:
    """The factor on the fan of a scaled init. The papers scale by the density (std = gain /
    sqrt(fan * density)); the seeds' code (hidden-networks and biprop utils/builder.py:
    `fan * (1 - args.prune_rate)`, with --prune-rate the fraction KEPT since their commit 74c0203)
    scales by the sparsity. A layer kept dense (density 1) is never scaled: there is nothing pruned
    to make up for, and the seeds' factor would be 0."""
    if not scaled or density >= 1.0:
        return 1.0
    return density if scale_fan_by == "density" else 1.0 - density


@torch.no_grad()
def init_weight(weight: torch.Tensor, name: str, scaled: bool, density: float,
                generator: torch.Generator | None = None, scale_fan_by: str = "density") -> torch.Tensor:
    """Initialise `weight` in place. Fan mode fan_in, ReLU gain sqrt(2), as in the seeds."""
    fan_in, fan_out = fans(weight)
    scale = fan_scale(scaled, density, scale_fan_by)
    gain = math.sqrt(2.0)
    if name == "kaiming_normal":
        weight.normal_(0.0, gain / math.sqrt(fan_in * scale), generator=generator)
    elif name == "kaiming_uniform":
        bound = gain * math.sqrt(3.0 / (fan_in * scale))
        weight.uniform_(-bound, bound, generator=generator)
    elif name in ("signed_constant", "unsigned_constant"):
        std = gain / math.sqrt(fan_in * scale)
        if name == "signed_constant":
            signs = torch.randn(weight.shape, generator=generator, dtype=weight.dtype).sign()
            weight.copy_(signs * std)
        else:
            weight.fill_(std)
    elif name == "torch_default":
        # torch's own Conv2d / Linear init, kaiming_uniform_(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        # The seeds that never re-initialise (allenai/dnw) train from it.
        bound = 1.0 / math.sqrt(fan_in * scale)
        weight.uniform_(-bound, bound, generator=generator)
    elif name == "xavier_normal":
        weight.normal_(0.0, math.sqrt(2.0 / ((fan_in + fan_out) * scale)), generator=generator)
    else:
        raise ConfigError(f"init: unknown init '{name}'; valid: {', '.join(WEIGHT_INITS)}")
    return weight


@torch.no_grad()
def init_scores(scores: torch.Tensor, name: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Score initialisations: edge-popup's kaiming_uniform(a=sqrt 5) and Gem-Miner's [0,1] ones."""
    if name == "kaiming_uniform":
        # nn.Conv2d's default: kaiming_uniform with a=sqrt(5) -> bound = 1/sqrt(fan_in)
        fan_in, _ = fans(scores)
        bound = 1.0 / math.sqrt(fan_in)
        scores.uniform_(-bound, bound, generator=generator)
    elif name == "kaiming_normal":
        fan_in, _ = fans(scores)
        scores.normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)
    elif name == "uniform":
        scores.uniform_(0.0, 1.0, generator=generator)
    elif name == "half":
        scores.fill_(0.5)
    elif name == "bernoulli":
        scores.bernoulli_(0.5, generator=generator)
    elif name == "beta":
        scores.copy_(torch.distributions.Beta(2.0, 2.0).sample(scores.shape))
    else:
        raise ConfigError(f"score_init: unknown '{name}'; valid: {', '.join(SCORE_INITS)}")
    return scores
