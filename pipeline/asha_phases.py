"""Which trials ASHA may compare: it ranks trials by their metric at the same epoch, so that epoch must
be the same phase of the same kind of training in every trial that reaches it.

The rule (docs/SPECS.md): list each trial's phase at every epoch (Gem-Miner: search then finetune;
IMP: level0, level1, ...; most algorithms: train). ASHA runs only if every trial's list is a prefix of
the longest one. So trials may differ in how long they train (a sampled `epochs` axis, more IMP
levels, a longer fine-tune), never in which phase a given epoch is. Otherwise the spec is refused.
"""
from __future__ import annotations

from hiddennets.algorithms import ALGORITHMS
from hiddennets.errors import ConfigError


def phase_at_each_epoch(cfg) -> list[str]:
    return [phase.name for phase in ALGORITHMS[cfg.algo].phases(cfg) for _ in range(phase.epochs)]


def _layout(cfg) -> str:
    parts = [f"{phase.name} {phase.epochs}" for phase in ALGORITHMS[cfg.algo].phases(cfg)]
    return f"{cfg.algo}: " + " + ".join(parts)


def check_asha_comparable(trials) -> None:
    """Refuse an ASHA sweep whose trials are in different phases at the same epoch."""
    if not trials:
        return
    timelines = [(trial, phase_at_each_epoch(trial.config)) for trial in trials]
    longest_trial, longest = max(timelines, key=lambda item: len(item[1]))
    for trial, timeline in timelines:
        if timeline != longest[:len(timeline)]:
            epoch = next(i for i, (a, b) in enumerate(zip(timeline, longest)) if a != b) + 1
            raise ConfigError(
                f"scheduler: asha compares trials at the same epoch, but at epoch {epoch} trial {trial.id} is in "
                f"phase '{timeline[epoch - 1]}' ({_layout(trial.config)}) and trial {longest_trial.id} in "
                f"'{longest[epoch - 1]}' ({_layout(longest_trial.config)}); split the sweep so each has one "
                "phase layout, or use scheduler: {name: fifo}")


def check_metric_measured(metric: str, trials) -> None:
    """Refuse ASHA on a validation metric for trials that hold out no validation split: it would rank
    on values that are never measured."""
    if not metric.startswith("val_"):
        return
    for trial in trials:
        if trial.config.val_fraction == 0:
            raise ConfigError(
                f"scheduler.metric: asha ranks trials on {metric}, but trial {trial.id} has val_fraction 0 (no "
                "validation split, so no val metric); give val_fraction > 0, or use scheduler: {name: fifo}")
