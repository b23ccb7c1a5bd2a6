"""Baselines every comparison needs: ordinary dense training and a fixed random mask."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from hiddennets.algorithms.base import Algorithm
from hiddennets.layers import FixedMask, SubnetConv2d, SubnetLinear, SubnetMixin
from hiddennets.masks import kept_count


class Dense(SubnetMixin):
    """Every weight kept and trained (density is ignored; measured density is 1)."""


class DenseConv2d(Dense, SubnetConv2d):
    pass


class DenseLinear(Dense, SubnetLinear):
    pass


@dataclass
class RandomMaskOptions:
    train_weights: bool = False  # the random_mask baseline: frozen (default) or trained weights


class RandomMask(FixedMask):
    """A fixed random mask with exactly ceil(density * n) ones, drawn once at construction."""

    def __init__(self, *args, train_weights: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.train_weights = train_weights
        n = self.weight.numel()
        keep = torch.randperm(n)[: kept_count(self.density, n)]
        self.fixed_mask.copy_(torch.zeros(n).index_fill_(0, keep, 1.0).view_as(self.weight))

    @torch.no_grad()
    def restrict_to(self, allowed: torch.Tensor) -> None:
        """Draw the same number of ones again, among the `allowed` entries only (DNW's random graph
        picks its edges among those its forward pass reads)."""
        places = allowed.reshape(-1).nonzero().squeeze(1)
        k = min(int(self.fixed_mask.sum().item()), places.numel())
        keep = places[torch.randperm(places.numel())[:k]]
        self.fixed_mask.copy_(torch.zeros(allowed.numel()).index_fill_(0, keep, 1.0).view_as(self.weight))

    def set_trainable(self):
        self.weight.requires_grad_(self.train_weights)


class RandomMaskConv2d(RandomMask, SubnetConv2d):
    pass


class RandomMaskLinear(RandomMask, SubnetLinear):
    pass


class RandomMaskAlgorithm(Algorithm):
    def layer_options(self, options):
        return {"train_weights": options.train_weights}


DENSE = Algorithm("dense", DenseConv2d, DenseLinear, "ordinary training of every weight")
RANDOM_MASK = RandomMaskAlgorithm(
    "random_mask", RandomMaskConv2d, RandomMaskLinear,
    "a fixed random mask of the same density; weights frozen unless random_mask.train_weights",
    options=RandomMaskOptions)
