"""Types shared by the dataset modules."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from torch.utils.data import Dataset

from hiddennets.errors import ConfigError

if TYPE_CHECKING:
    from hiddennets.config import RunConfig


class DataError(ConfigError):
    """Data missing or unreadable: says where it looked and how to get the data."""


@dataclass(frozen=True)
class DataInfo:
    num_classes: int
    in_channels: int
    image_size: int


@dataclass
class Splits:
    train: Dataset       # training transforms (augmentation)
    train_eval: Dataset  # the same items with evaluation transforms (for the validation split)
    test: Dataset


@dataclass(frozen=True)
class DatasetSpec:
    info: DataInfo
    load: Callable[["RunConfig"], Splits]
