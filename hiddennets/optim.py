"""Optimisers and learning-rate schedules (per epoch, with linear warmup).

`OPTIMIZERS` and `SCHEDULES` are the names a config may use; validation reads them from here.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch

from hiddennets.config import OptimizerConfig, ScheduleConfig


def _sgd(params: list, cfg: OptimizerConfig, fused: bool) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay, fused=fused or None)


def _adam(params: list, cfg: OptimizerConfig, fused: bool) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=fused or None)


def _adamw(params: list, cfg: OptimizerConfig, fused: bool) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=fused or None)


OPTIMIZERS: dict[str, Callable[[list, OptimizerConfig, bool], torch.optim.Optimizer]] = {
    "sgd": _sgd, "adam": _adam, "adamw": _adamw}


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimizerConfig,
                    fused: bool | None = None) -> torch.optim.Optimizer:
    """`fused` None: torch's fused kernel (one launch for every tensor) when the parameters are on CUDA,
    where a small network's step is launch-bound; on the CPU torch's default per-tensor loop, which
    the CPU results (and the README's numbers) were measured with."""
    params = list(params)
    if fused is None:
        fused = bool(params) and all(p.is_cuda for p in params)
    return OPTIMIZERS[cfg.name](params, cfg, fused)


def _constant(sched: ScheduleConfig, epoch: int, total: int) -> float:
    return 1.0


def _cosine(sched: ScheduleConfig, epoch: int, total: int) -> float:
    warm = sched.warmup_epochs
    return 0.5 * (1.0 + math.cos(math.pi * (epoch - warm) / max(1, total - warm)))


def _multistep(sched: ScheduleConfig, epoch: int, total: int) -> float:
    return sched.gamma ** sum(epoch >= m for m in sched.milestones)


# lr multiplier after warmup, given (schedule, epoch within the phase, the phase's epochs)
SCHEDULES: dict[str, Callable[[ScheduleConfig, int, int], float]] = {
    "constant": _constant, "cosine": _cosine, "multistep": _multistep}


def schedule_factor(sched: ScheduleConfig, total: int) -> Callable[[int], float]:
    """epoch within a phase of `total` epochs -> lr multiplier."""
    after_warmup = SCHEDULES[sched.name]

    def factor(epoch: int) -> float:
        if epoch < sched.warmup_epochs:
            return (epoch + 1) / sched.warmup_epochs
        return after_warmup(sched, epoch, total)

    return factor
