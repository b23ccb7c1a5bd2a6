"""What an algorithm is to the rest of the system: a declaration plus hooks.

An algorithm module defines its layer mixin, the conv/linear classes built from it, its options
dataclass (its config section) and one `Algorithm` instance, registered with one line in
`algorithms/__init__.py` (or one `register(...)` call from any module). Nothing outside the module
names the algorithm: config validation, the tables' metric columns and the report are derived from
the declaration. The hooks are no-ops here, so simple algorithms only override what they need;
docs/ARCHITECTURE.md says when the engine calls each one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

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
class TwoPhaseReport:
    """Tells the report that trials search in phase `first`, then train on in phase `second`: it
    tabulates test accuracy where `first` ended beside the final one, and plots both phases (and
    `first` evaluated with `relaxed_suffix`, i.e. the metric `val_acc_<suffix>`, when given)."""
    first: str                 # phase names, e.g. "search", "finetune"
    second: str
    first_end: str             # table titles: "end of search", "after fine-tune"
    second_end: str
    title: str                 # the plot's subject: "search (before/after rounding) and fine-tune"
    first_series: str          # plot series: "search, after rounding"
    second_series: str         # "fine-tune"
    relaxed_suffix: str | None = None
    relaxed_series: str = ""   # "search, before rounding"


@dataclass(frozen=True)
class Algorithm:
    name: str
    conv_type: type[SubnetConv2d]
    linear_type: type[SubnetLinear]
    description: str = ""
    options: type | None = None            # its config section's dataclass (None: no options)
    section_name: str | None = None        # the section's key in a config (default: the name)
    score_init: str | None = None          # the layers' score init that `score_init: auto` means; None: no scores
    metrics: Mapping[str, str] = field(default_factory=dict)  # extra epoch columns: name -> meaning
    two_phase: TwoPhaseReport | None = None
    # Each phase is a result of its own, at the density it reached (IMP's levels): the report and the
    # published comparison show one point per phase, never the config's `density`.
    results_per_phase: bool = False

    @property
    def section(self) -> str:
        return self.section_name or self.name

    # --- configuration -------------------------------------------------------------------------

    def check(self, cfg: "RunConfig") -> None:
        """Checks that need the whole config, run only when this is the run's algorithm (the options'
        own `check()` runs for every section). Raise ConfigError with a one-line message."""

    def layer_options(self, options: Any) -> dict[str, Any]:
        """Keyword arguments for this algorithm's layers, from its options (e.g. train_weights)."""
        return {}

    # --- the run's shape ----------------------------------------------------------------------

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

    def logged_lr(self, optimizers: list[torch.optim.Optimizer]) -> float | None:
        """The `lr` of an epoch's row, read from the optimiser that runs the phase's optimizer config."""
        return optimizers[0].param_groups[0]["lr"] if optimizers else None

    # --- per epoch and per step ---------------------------------------------------------------

    def epoch_metrics(self, optimizers: list[torch.optim.Optimizer]) -> dict[str, float]:
        """Extra per-epoch metrics read from the optimisers after an epoch's training (e.g. Bop's
        flips). Every key must be declared in `metrics`."""
        return {}

    def evaluation_modes(self, model: nn.Module, cfg: "RunConfig", phase: Phase) -> dict:
        """Extra evaluations each epoch: {suffix: context manager}; metrics come back as val_acc_<suffix>
        (declare them in `metrics`)."""
        return {}

    def prepare(self, model: nn.Module, cfg: "RunConfig") -> None:
        """Freeze everything, then let each masked layer and (if learn_bn) BN unfreeze what trains."""
        for p in model.parameters():
            p.requires_grad_(False)
        for layer in subnet_layers(model):
            layer.set_trainable()
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


def eval_metric_names(suffix: str) -> list[str]:
    """The columns an evaluation mode with `suffix` adds (declare them in Algorithm.metrics)."""
    return [f"{split}_{m}_{suffix}" for split in ("val", "test") for m in ("loss", "acc", "top5")]
