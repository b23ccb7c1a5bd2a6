"""What an algorithm is to the trainer: its layer types, which parameters train, and hooks.

An algorithm module defines its layer mixin, the conv/linear classes built from it, and one
`Algorithm` instance; adding an algorithm is that file plus one line in `algorithms/__init__.py`.
The hooks are no-ops here so simple algorithms only override what they need.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn as nn

from hiddennets.config import OptimizerConfig, ScheduleConfig
from hiddennets.layers import SubnetConv2d, SubnetLinear, subnet_layers
from hiddennets.optim import build_optimizer, schedule_factor

if TYPE_CHECKING:
    from hiddennets.config import RunConfig


OptimizerAndSchedule = tuple[torch.optim.Optimizer, Callable[[int], float]]


@dataclass(frozen=True)
class Phase:
    """A stretch of epochs with its own optimiser and schedule (e.g. Gem-Miner's search, fine-tune)."""
    name: str
    epochs: int
    optimizer: OptimizerConfig
    schedule: ScheduleConfig


@dataclass(frozen=True)
class Algorithm:
    name: str
    conv_type: type[SubnetConv2d]
    linear_type: type[SubnetLinear]
    description: str = ""

    def phases(self, cfg: "RunConfig") -> list[Phase]:
        """The run's phases in order; most algorithms have one."""
        return [Phase("train", cfg.epochs, cfg.optimizer, cfg.schedule)]

    def start_phase(self, model: nn.Module, cfg: "RunConfig", phase: Phase, fresh: bool) -> None:
        """Set what trains in `phase`. `fresh` is True when the phase begins now (not on a resume
        part-way through it): the place for one-off changes such as fixing a mask."""
        self.prepare(model, cfg)

    def optimizers(self, model: nn.Module, cfg: "RunConfig", phase: Phase) -> list[OptimizerAndSchedule]:
        """The phase's optimisers, each with its lr factor per epoch of the phase; all step after every
        backward pass and all are checkpointed. Default: one optimiser for every parameter that trains."""
        params = [p for p in model.parameters() if p.requires_grad]
        return [(build_optimizer(params, phase.optimizer), schedule_factor(phase.schedule, phase.epochs))]

    def epoch_metrics(self, optimizers: list[torch.optim.Optimizer]) -> dict[str, float]:
        """Extra per-epoch metrics read from the optimisers after an epoch's training (e.g. Bop's flips)."""
        return {}

    def evaluation_modes(self, model: nn.Module, cfg: "RunConfig", phase: Phase) -> dict:
        """Extra evaluations each epoch: {suffix: context manager}; metrics come back as val_acc_<suffix>."""
        return {}

    def prepare(self, model: nn.Module, cfg: "RunConfig") -> None:
        """Freeze everything, then let each masked layer and (if learn_bn) BN unfreeze what trains."""
        for p in model.parameters():
            p.requires_grad_(False)
        for layer in subnet_layers(model):
            layer.set_trainable(cfg)
        if cfg.learn_bn:
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
                    m.weight.requires_grad_(True)
                    m.bias.requires_grad_(True)

    def regularizer(self, model: nn.Module, cfg: "RunConfig") -> torch.Tensor | None:
        """An extra loss term added to the task loss (None: nothing)."""
        return None

    def after_step(self, model: nn.Module, cfg: "RunConfig") -> None:
        """Called after every optimiser step (e.g. clamping relaxed scores)."""

    def on_epoch_start(self, model: nn.Module, cfg: "RunConfig", epoch: int) -> None:
        """Called at the start of every epoch (0-based), also the first one after a resume."""

    def refresh(self, model: nn.Module, cfg: "RunConfig", epoch: int) -> None:
        """Recompute state derived from the parameters (e.g. a global threshold) before every
        training step and before evaluation."""
