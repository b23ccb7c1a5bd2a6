"""build_model: any architecture with the run's algorithm layers plugged in."""
from __future__ import annotations

import torch
import torch.nn as nn

from hiddennets.algorithms import ALGORITHMS
from hiddennets.config import RunConfig
from hiddennets.data import DATASETS
from hiddennets.layers import LayerFactory
from hiddennets.models import ARCHITECTURES


def build_model(cfg: RunConfig) -> nn.Module:
    """Build the model for `cfg`: weights and scores drawn from cfg.seed, the caller's RNG untouched."""
    info = DATASETS[cfg.dataset].info
    algorithm = ALGORITHMS[cfg.algo]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        factory = LayerFactory.for_run(algorithm, cfg)
        model = ARCHITECTURES[cfg.arch](factory, info.num_classes, info.in_channels, info.image_size, cfg.width)
    algorithm.prepare(model, cfg)
    return model
