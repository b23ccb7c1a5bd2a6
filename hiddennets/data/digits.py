"""scikit-learn's 1,797 8x8 handwritten digits: the embedded default dataset (no download).

The test set is a fixed stratified 20% (split seed 0, whatever the run's seed), so every run of
every sweep is scored on the same 360 images.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from hiddennets.data.digits_split import TEST_INDEX, TRAIN_INDEX
from hiddennets.data.spec import DataError, DataInfo, DatasetSpec, Splits

TEST_FRACTION = 0.2
# pixel statistics of the whole set after /16
MEAN, STD = 0.3051, 0.3776


def _digits_file() -> Path:
    """scikit-learn's own copy of the data, found without importing scikit-learn (which takes ~2 s)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("dataset digits: scikit-learn is not installed (pip install scikit-learn); it holds the data")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"


def load(cfg) -> Splits:
    # what sklearn.datasets.load_digits reads: 64 pixel columns (0..16), then the label
    data = np.loadtxt(_digits_file(), delimiter=",")
    x = torch.tensor(data[:, :-1].reshape(-1, 8, 8), dtype=torch.float32).unsqueeze(1) / 16.0
    x = (x - MEAN) / STD
    y = torch.tensor(data[:, -1].astype(int), dtype=torch.long)
    train_idx, test_idx = list(TRAIN_INDEX), list(TEST_INDEX)
    train = TensorDataset(x[train_idx], y[train_idx])
    return Splits(train=train, train_eval=train, test=TensorDataset(x[test_idx], y[test_idx]))


SPEC = DatasetSpec(DataInfo(num_classes=10, in_channels=1, image_size=8), load)
