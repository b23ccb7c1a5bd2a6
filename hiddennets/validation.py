"""Building a valid RunConfig: types (config.py), then names against the registries and ranges.

This module sits above every registry (algorithms, architectures, datasets, inits, optimisers) and
imports them at the top; nothing below it imports it. The algorithms' sections and their checks
come from the algorithms' declarations.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Mapping

from hiddennets.algorithms import ALGORITHMS, sections
from hiddennets.config import RunConfig, apply_overrides, check_choice, check_finite, flatten, from_dict, read_yaml, \
    run_section
from hiddennets.data import DATASETS
from hiddennets.errors import ConfigError
from hiddennets.init import SCALE_FAN_BY, SCORE_INITS, resolve_init
from hiddennets.models import ARCHITECTURES
from hiddennets.optim import OPTIMIZERS, SCHEDULES

DEVICES = ("auto", "cpu", "cuda")
LOADERS = ("auto", "device", "torchvision")
# Sane bounds: beyond them a value is a typo, or overflows what it seeds or sizes.
MAX_SEED = 2**31 - 1
MAX_EPOCHS = 100_000
MAX_BATCH = 1 << 20
MAX_WIDTH = 64.0
MAX_LOADER_WORKERS = 256
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


def check_name(key: str, name: str) -> None:
    """A sweep or run name becomes one folder: one path component of safe characters, 1-100 long."""
    if not NAME_PATTERN.fullmatch(name) or name in (".", ".."):
        raise ConfigError(f"{key}: expected a folder name of 1-100 letters, digits, '_', '-' or '.' (not starting "
                          f"with '.' or '-'), got {name[:80]!r}")


def check_loader_workers(num_workers: int | str, cpus: float, where: str) -> None:
    """DataLoader processes beyond the CPUs a run has only queue (100,000 of them hang the machine)."""
    if isinstance(num_workers, int) and num_workers > max(1, int(cpus)):
        raise ConfigError(f"num_workers: {num_workers} loader processes but {where} has {int(cpus)} CPU(s); use at most "
                          f"{max(1, int(cpus))}")


def _in_range(key: str, value: float, low: float, high: float, what: str) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{key}: must be {what}, got {value}")


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
    check_choice("scale_fan_by", cfg.scale_fan_by, list(SCALE_FAN_BY))
    check_choice("optimizer.name", cfg.optimizer.name, sorted(OPTIMIZERS))
    check_choice("schedule.name", cfg.schedule.name, sorted(SCHEDULES))
    check_choice("device", cfg.device, list(DEVICES))
    check_choice("loader", cfg.loader, list(LOADERS))
    check_name("name", cfg.name)
    positive = {"epochs": cfg.epochs, "batch_size": cfg.batch_size, "eval_batch_size": cfg.eval_batch_size,
                "width": cfg.width, "test_every": cfg.test_every}
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}: must be positive, got {value}")
    _in_range("epochs", cfg.epochs, 1, MAX_EPOCHS, f"at most {MAX_EPOCHS}")
    for key in ("batch_size", "eval_batch_size"):
        _in_range(key, getattr(cfg, key), 1, MAX_BATCH, f"at most {MAX_BATCH}")
    _in_range("width", cfg.width, 0, MAX_WIDTH, f"at most {MAX_WIDTH:g} (a channel multiplier)")
    for key in ("seed", "split_seed"):
        _in_range(key, getattr(cfg, key), 0, MAX_SEED, f"in [0, {MAX_SEED}]")
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise ConfigError(f"val_fraction: must be in [0, 1), got {cfg.val_fraction}")
    if cfg.optimizer.lr <= 0:
        raise ConfigError(f"optimizer.lr: must be positive, got {cfg.optimizer.lr}")
    if cfg.optimizer.weight_decay < 0:
        raise ConfigError(f"optimizer.weight_decay: must be >= 0, got {cfg.optimizer.weight_decay}")
    if not 0 <= cfg.optimizer.momentum < 1:
        raise ConfigError(f"optimizer.momentum: must be in [0, 1), got {cfg.optimizer.momentum}")
    if not all(0 <= b < 1 for b in cfg.optimizer.betas):
        raise ConfigError(f"optimizer.betas: each must be in [0, 1), got {list(cfg.optimizer.betas)}")
    if not 0 <= cfg.schedule.warmup_epochs < cfg.epochs:
        raise ConfigError(f"schedule.warmup_epochs: must be in [0, epochs={cfg.epochs}), got {cfg.schedule.warmup_epochs}")
    if cfg.schedule.gamma <= 0:
        raise ConfigError(f"schedule.gamma: must be positive (the lr is multiplied by it), got {cfg.schedule.gamma}")
    outside = [m for m in cfg.schedule.milestones if not 1 <= m < cfg.epochs]
    if outside:
        raise ConfigError(f"schedule.milestones: each must be in [1, {cfg.epochs - 1}] (an epoch of the schedule, "
                          f"which has epochs={cfg.epochs}), got {outside[0]}")
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise ConfigError(f"label_smoothing: must be in [0, 1), got {cfg.label_smoothing}")
    # the CPUs a run really has are checked where it runs (pipeline.run: this machine; a sweep: its trials' share)
    if isinstance(cfg.num_workers, str):
        if cfg.num_workers != "auto":
            raise ConfigError(f"num_workers: expected a number of loader processes or auto, got {cfg.num_workers[:80]!r}")
    else:
        _in_range("num_workers", cfg.num_workers, 0, MAX_LOADER_WORKERS, f"in [0, {MAX_LOADER_WORKERS}]")
    for options in cfg.sections.values():  # every section, also other algorithms' (a grid may switch to them)
        check = getattr(options, "check", None)
        if check is not None:
            check()
    check_finite(flatten(cfg))  # after the range checks, which name their range for NaN and inf too
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
