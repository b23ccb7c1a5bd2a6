"""Dataset registry and the train / validation / test split.

Each dataset module provides a `DatasetSpec`: static facts (classes, channels, image size) that a
model can be built from without touching the disk, and a loader returning the training set twice
(with training and with evaluation transforms, same items) and the test set. The validation split
is held out of the training set with `split_seed`, so it never overlaps the test set.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Callable

import torch
from torch.utils.data import Dataset, Subset

from hiddennets.data import digits
from hiddennets.data.spec import DataError, DataInfo, DatasetSpec, Splits

if TYPE_CHECKING:
    from hiddennets.config import RunConfig



def _lazy(module: str, name: str) -> Callable[["RunConfig"], Splits]:
    """A loader imported when a run first reads the dataset: torchvision's import (about a second) is
    paid only by runs on its datasets, not by digits runs, validation or a sweep's driver."""
    def load(cfg: "RunConfig") -> Splits:
        return getattr(importlib.import_module(module), name)(cfg)
    return load


_SETS, _FOLDERS = "hiddennets.data.torchvision_sets", "hiddennets.data.folders"
DATASETS: dict[str, DatasetSpec] = {
    "digits": digits.SPEC,
    "mnist": DatasetSpec(DataInfo(10, 1, 28), _lazy(_SETS, "load_mnist")),
    "cifar10": DatasetSpec(DataInfo(10, 3, 32), _lazy(_SETS, "load_cifar10")),
    "cifar100": DatasetSpec(DataInfo(100, 3, 32), _lazy(_SETS, "load_cifar100")),
    "tinyimagenet": DatasetSpec(DataInfo(200, 3, 64), _lazy(_FOLDERS, "load_tinyimagenet")),
    "imagenet": DatasetSpec(DataInfo(1000, 3, 224), _lazy(_FOLDERS, "load_imagenet")),
}


def split_indices(n: int, val_fraction: float, split_seed: int) -> tuple[list[int], list[int]]:
    """(train indices, validation indices): a seeded permutation, the first round(f*n) held out."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed)).tolist()
    n_val = int(round(val_fraction * n))
    return sorted(order[n_val:]), sorted(order[:n_val])


def build_datasets(cfg: "RunConfig") -> tuple[Dataset, Dataset, Dataset]:
    """(train, validation, test) datasets for a run config."""
    splits = DATASETS[cfg.dataset].load(cfg)
    train_idx, val_idx = split_indices(len(splits.train), cfg.val_fraction, cfg.split_seed)
    return Subset(splits.train, train_idx), Subset(splits.train_eval, val_idx), splits.test


__all__ = ["DATASETS", "DataError", "DataInfo", "DatasetSpec", "Splits", "build_datasets", "split_indices"]
