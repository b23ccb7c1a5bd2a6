"""Baselines every comparison needs: ordinary dense training and a fixed random mask."""
from __future__ import annotations

import torch

from hiddennets.algorithms.base import Algorithm
from hiddennets.config import kept_count
from hiddennets.layers import FixedMask, SubnetConv2d, SubnetLinear, SubnetMixin


class Dense(SubnetMixin):
    """Every weight kept and trained (density is ignored; measured density is 1)."""


class DenseConv2d(Dense, SubnetConv2d):
    pass


class DenseLinear(Dense, SubnetLinear):
    pass


class RandomMask(FixedMask):
    """A fixed random mask with exactly ceil(density * n) ones, drawn once at construction."""

    def setup(self, density, cfg):
        super().setup(density, cfg)
        n = self.weight.numel()
        keep = torch.randperm(n)[: kept_count(density, n)]
        self.fixed_mask.copy_(torch.zeros(n).index_fill_(0, keep, 1.0).view_as(self.weight))

    def set_trainable(self, cfg):
        self.weight.requires_grad_(cfg.random_mask.train_weights)


class RandomMaskConv2d(RandomMask, SubnetConv2d):
    pass


class RandomMaskLinear(RandomMask, SubnetLinear):
    pass


DENSE = Algorithm("dense", DenseConv2d, DenseLinear, "ordinary training of every weight")
RANDOM_MASK = Algorithm("random_mask", RandomMaskConv2d, RandomMaskLinear,
                        "a fixed random mask of the same density; weights frozen unless random_mask.train_weights")
