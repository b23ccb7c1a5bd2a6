"""A toy algorithm added the way a contributor would add one: this module plus one `register` call,
nothing else in the project touched. It is edge-popup whose initial scores are multiplied by its one
option, `toy.score_scale`, and it reports one extra metric per epoch, `score_l1` (the mean |score|).
`tests/test_toy_algorithm.py` runs it through pipeline.run, a real Ray sweep and pipeline.report."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from hiddennets.algorithms import Algorithm, register
from hiddennets.algorithms.edge_popup import EdgePopup
from hiddennets.errors import ConfigError
from hiddennets.layers import SubnetConv2d, SubnetLinear


@dataclass
class ToyOptions:
    score_scale: float = 1.0  # initial scores times this

    def check(self) -> None:
        if not self.score_scale > 0:
            raise ConfigError(f"toy.score_scale: must be positive, got {self.score_scale}")


class ScaledScores(EdgePopup):
    def __init__(self, *args, score_scale: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        with torch.no_grad():
            self.scores.mul_(score_scale)


class ToyConv2d(ScaledScores, SubnetConv2d):
    pass


class ToyLinear(ScaledScores, SubnetLinear):
    pass


class Toy(Algorithm):
    def layer_options(self, options):
        return {"score_scale": options.score_scale}

    def epoch_metrics(self, optimizers):
        params = [p for opt in optimizers for group in opt.param_groups for p in group["params"]]
        total = sum(p.numel() for p in params)
        return {"score_l1": float(sum(p.detach().abs().sum() for p in params) / total)}


TOY = register(Toy("toy", ToyConv2d, ToyLinear, "edge-popup with scaled initial scores (a test's toy)",
                   options=ToyOptions, score_init="kaiming_uniform",
                   metrics={"score_l1": "mean |score| over every trained score after the epoch"}))
