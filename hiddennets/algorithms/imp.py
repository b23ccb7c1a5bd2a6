"""Iterative magnitude pruning with rewinding (Frankle & Carbin 2019; Frankle et al. 2020).

Level 0 trains the dense network for `epochs`. Each further level (phase `level<j>`, `imp.levels` of
them) first prunes the globally smallest `imp.rate` of the remaining |w| (pruned weights stay
pruned: `hiddennets.pruners.imp_step`), then rewinds every parameter to its value after
`imp.rewind_iter` steps of level 0 (0: the initialisation) and trains again for `epochs` with a fresh
optimiser and schedule. Level j keeps ceil((1 - rate) * kept) of level j-1's weights, about
(1 - rate)^j; `density` is not used. Each level is its own phase, so the epoch rows carry `phase` and
the measured density, and the trials table has each earlier level's last accuracies and density.

The rewind point is a buffer copy of every parameter and the step count is a buffer too, so both
are in the checkpoint and a resume mid-level rewinds exactly as an uninterrupted run.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from hiddennets.algorithms.base import Algorithm, Phase
from hiddennets.errors import ConfigError
from hiddennets.layers import FixedMask, SubnetConv2d, SubnetLinear
from hiddennets.pruners import imp_step

REWIND_PREFIX = "rewind_"


@dataclass
class ImpOptions:
    levels: int = 5                  # pruning levels after the dense level 0
    rate: float = 0.2                # fraction of the remaining weights pruned per level (global |w|)
    rewind_iter: int = 0             # rewind to the weights after this many steps of level 0 (0: init)

    def check(self) -> None:
        if self.levels < 0 or not 0 < self.rate < 1 or self.rewind_iter < 0:
            raise ConfigError(f"imp: levels >= 0, rate in (0, 1) and rewind_iter >= 0; got levels={self.levels}, "
                              f"rate={self.rate}, rewind_iter={self.rewind_iter}")


class Imp(FixedMask):
    """All ones at level 0; each level's pruning sets it. Every weight trains."""


class ImpConv2d(Imp, SubnetConv2d):
    pass


class ImpLinear(Imp, SubnetLinear):
    pass


def _own_parameters(model: nn.Module):
    """(module, parameter name, parameter) for every parameter, each once."""
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            yield module, name, p


class IterativeMagnitudePruning(Algorithm):
    def phases(self, cfg):
        return [Phase(f"level{j}", cfg.epochs, cfg.optimizer, cfg.schedule) for j in range(cfg.imp.levels + 1)]

    def prepare(self, model, cfg):
        # Called when the model is built, before a checkpoint is loaded: the rewind buffers must exist
        # then so they load with the weights. Later calls keep the stored values.
        if not hasattr(model, "imp_steps"):
            model.register_buffer("imp_steps", torch.zeros((), dtype=torch.long))
            for module, name, p in _own_parameters(model):
                module.register_buffer(REWIND_PREFIX + name, p.detach().clone())
        super().prepare(model, cfg)

    def start_phase(self, model, cfg, phase, fresh):
        if fresh and phase.name != "level0":
            self.prune_and_rewind(model, cfg)
        model.imp_level = int(phase.name.removeprefix("level"))
        self.prepare(model, cfg)
        model.imp_steps_seen = int(model.imp_steps)  # the host's copy of the step count: one sync per phase

    @torch.no_grad()
    def prune_and_rewind(self, model, cfg) -> None:
        pruned = [m for m in model.modules() if isinstance(m, Imp) and not m.kept_dense]
        layers = {str(i): layer for i, layer in enumerate(pruned)}
        masks = imp_step({k: m.weight for k, m in layers.items()}, {k: m.fixed_mask for k, m in layers.items()},
                         cfg.imp.rate)
        for key, layer in layers.items():
            layer.fixed_mask.copy_(masks[key])
        for module, name, p in _own_parameters(model):
            p.copy_(getattr(module, REWIND_PREFIX + name))

    @torch.no_grad()
    def after_step(self, model, cfg):
        if getattr(model, "imp_level", 0) != 0 or cfg.imp.rewind_iter == 0:
            return
        model.imp_steps += 1  # the buffer, for the checkpoint; the test reads the host's copy (no sync per step)
        model.imp_steps_seen = getattr(model, "imp_steps_seen", 0) + 1
        if model.imp_steps_seen == cfg.imp.rewind_iter:
            for module, name, p in _own_parameters(model):
                getattr(module, REWIND_PREFIX + name).copy_(p)


ALGORITHM = IterativeMagnitudePruning("imp", ImpConv2d, ImpLinear,
                                      "iterative magnitude pruning: train, prune 20% of |w| globally, rewind, repeat",
                                      options=ImpOptions, results_per_phase=True)
