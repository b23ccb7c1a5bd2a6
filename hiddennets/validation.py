"""Building a valid RunConfig: types (config.py), then names against the registries and ranges.

This module sits above every registry (algorithms, architectures, datasets, inits, optimisers) and
imports them at the top; nothing below it imports it. The algorithms' sections and their checks
come from the algorithms' declarations.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from hiddennets.algorithms import ALGORITHMS, sections
from hiddennets.config import RunConfig, apply_overrides, check_choice, from_dict, read_yaml, run_section
from hiddennets.data import DATASETS
from hiddennets.errors import ConfigError
from hiddennets.init import SCORE_INITS, resolve_init
from hiddennets.models import ARCHITECTURES
from hiddennets.optim import OPTIMIZERS, SCHEDULES

DEVICES = ("auto", "cpu", "cuda")


def validate(cfg: RunConfig) -> RunConfig:
    """Range and name checks that a type check cannot make. Returns a new config with aliases resolved
    (`init: usc`, `score_init: auto`); `cfg` itself is left as it was."""
    if not 0.0 < cfg.density <= 1.0:
        raise ConfigError(f"density: must be in (0, 1] (the fraction of weights kept), got {cfg.density}")
    check_choice("dataset", cfg.dataset, sorted(DATASETS))
    check_choice("arch", cfg.arch, sorted(ARCHITECTURES))
    check_choice("algo", cfg.algo, sorted(ALGORITHMS))
    algorithm = ALGORITHMS[cfg.algo]
    init, scaled = resolve_init(cfg.init, cfg.scaled)
    score_init = cfg.score_init
    if score_init == "auto":
        score_init = algorithm.score_init or "kaiming_uniform"  # algorithms without scores never read it
    check_choice("score_init", score_init, sorted(SCORE_INITS))
    check_choice("optimizer.name", cfg.optimizer.name, sorted(OPTIMIZERS))
    check_choice("schedule.name", cfg.schedule.name, sorted(SCHEDULES))
    check_choice("device", cfg.device, list(DEVICES))
    positive = {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "eval_batch_size": cfg.eval_batch_size,
                "width": cfg.width}
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}: must be positive, got {value}")
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise ConfigError(f"val_fraction: must be in [0, 1), got {cfg.val_fraction}")
    if cfg.optimizer.lr <= 0:
        raise ConfigError(f"optimizer.lr: must be positive, got {cfg.optimizer.lr}")
    if cfg.optimizer.weight_decay < 0:
        raise ConfigError(f"optimizer.weight_decay: must be >= 0, got {cfg.optimizer.weight_decay}")
    if not 0 <= cfg.schedule.warmup_epochs < cfg.epochs:
        raise ConfigError(f"schedule.warmup_epochs: must be in [0, epochs={cfg.epochs}), got {cfg.schedule.warmup_epochs}")
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise ConfigError(f"label_smoothing: must be in [0, 1), got {cfg.label_smoothing}")
    if cfg.num_workers < 0:
        raise ConfigError(f"num_workers: must be >= 0, got {cfg.num_workers}")
    for options in cfg.sections.values():  # every section, also other algorithms' (a grid may switch to them)
        check = getattr(options, "check", None)
        if check is not None:
            check()
    resolved = dataclasses.replace(cfg, init=init, scaled=scaled, score_init=score_init,
                                   sections=dict(cfg.sections))
    algorithm.check(resolved)
    return resolved


def config_from_dict(data: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """A validated RunConfig from plain data (a YAML mapping) and dotted-key overrides."""
    data = apply_overrides(data, overrides or {})
    return validate(from_dict(RunConfig, data, sections=sections()))


def load_config(path: str | Path, overrides: Mapping[str, Any] | None = None, **kw: Any) -> RunConfig:
    """Load a run config (or the `base:` of a sweep spec) from YAML, apply overrides, validate.

    >>> cfg = load_config("sweeps/quickstart.yaml", density=0.3, algo="ep")
    """
    merged = {**(overrides or {}), **kw}
    return config_from_dict(run_section(read_yaml(path)), merged)
