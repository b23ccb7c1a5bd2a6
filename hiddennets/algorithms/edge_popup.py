"""edge-popup (Ramanujan et al. 2020): learn a score per frozen random weight, keep the top-k.

Forward W = w * m with m = 1 for the k = ceil(density * n) largest |s| of the layer. The mask's
backward is the straight-through estimator, so dL/ds = sign(s) * w * g (g = dL/dW).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from hiddennets.algorithms.base import Algorithm
from hiddennets.init import init_scores
from hiddennets.layers import SubnetConv2d, SubnetLinear, SubnetMixin
from hiddennets.masks import kept_count, topk_mask


class EdgePopup(SubnetMixin):
    def __init__(self, *args, score_init: str = "kaiming_uniform", **kwargs):
        super().__init__(*args, **kwargs)  # the weight is drawn first, then the scores
        self.k = kept_count(self.density, self.weight.numel())
        self.scores = nn.Parameter(init_scores(torch.empty_like(self.weight), score_init))

    def mask(self):
        return topk_mask(self.scores.abs(), self.k)

    def effective_weight(self):
        return self.weight * self.mask()

    def set_trainable(self):
        self.weight.requires_grad_(False)
        self.scores.requires_grad_(True)


class EdgePopupConv2d(EdgePopup, SubnetConv2d):
    pass


class EdgePopupLinear(EdgePopup, SubnetLinear):
    pass


ALGORITHM = Algorithm("ep", EdgePopupConv2d, EdgePopupLinear,
                      "edge-popup: top-k of |scores| over frozen random weights", score_init="kaiming_uniform")
