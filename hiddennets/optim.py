"""Optimisers and learning-rate schedules (per epoch, with linear warmup)."""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch

from hiddennets.config import OptimizerConfig, ScheduleConfig


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    params = list(params)
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    cls = torch.optim.Adam if cfg.name == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def schedule_factor(sched: ScheduleConfig, total: int) -> Callable[[int], float]:
    """epoch within a phase of `total` epochs -> lr multiplier."""
    warm = sched.warmup_epochs

    def factor(epoch: int) -> float:
        if epoch < warm:
            return (epoch + 1) / warm
        if sched.name == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * (epoch - warm) / max(1, total - warm)))
        if sched.name == "multistep":
            return sched.gamma ** sum(epoch >= m for m in sched.milestones)
        return 1.0

    return factor
