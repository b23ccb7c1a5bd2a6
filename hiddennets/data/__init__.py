"""Dataset registry and the train / validation / test split.

Each dataset module provides a `DatasetSpec`: static facts (classes, channels, image size) that a
model can be built from without touching the disk, and a loader returning the training set twice
(with training and with evaluation transforms, same items) and the test set. The validation split
is held out of the training set with `split_seed`, so it never overlaps the test set.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.utils.data import Dataset, Subset

from hiddennets.data import digits, folders, torchvision_sets
from hiddennets.data.spec import DataError, DataInfo, DatasetSpec, Splits

if TYPE_CHECKING:
    from hiddennets.config import RunConfig

DATASETS: dict[str, DatasetSpec] = {
    "digits": digits.SPEC,
    "mnist": torchvision_sets.MNIST_SPEC,
    "cifar10": torchvision_sets.CIFAR10_SPEC,
    "cifar100": torchvision_sets.CIFAR100_SPEC,
    "tinyimagenet": folders.TINYIMAGENET_SPEC,
    "imagenet": folders.IMAGENET_SPEC,
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
