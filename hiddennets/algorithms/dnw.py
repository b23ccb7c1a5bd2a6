"""Discovering Neural Wirings (Wortsman et al. 2019): train all weights, use only the strongest.

Forward W = w * m with m = 1 for the k = ceil(density * n) largest |w| of the layer. Backward is the
identity: the dense gradient reaches every weight, pruned ones included, so an edge that is out
can grow back in when its weight becomes large enough.
"""
from __future__ import annotations

from hiddennets.algorithms.base import Algorithm
from hiddennets.layers import SubnetConv2d, SubnetLinear, SubnetMixin
from hiddennets.masks import kept_count, topk_mask


class Dnw(SubnetMixin):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.k = kept_count(self.density, self.weight.numel())

    def mask(self):
        return topk_mask(self.weight.detach().abs(), self.k)

    def effective_weight(self):
        # w * m in the forward pass; d(W)/d(w) = identity in the backward pass
        return self.weight + (self.weight * self.mask() - self.weight).detach()


class DnwConv2d(Dnw, SubnetConv2d):
    pass


class DnwLinear(Dnw, SubnetLinear):
    pass


ALGORITHM = Algorithm("dnw", DnwConv2d, DnwLinear,
                      "Discovering Neural Wirings: top-k of |w| with the dense (identity) gradient")
