"""scikit-learn's 1,797 8x8 handwritten digits: the embedded default dataset (no download).

The test set is a fixed stratified 20% (split seed 0, whatever the run's seed), so every run of
every sweep is scored on the same 360 images.
"""
from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from hiddennets.data.spec import DataInfo, DatasetSpec, Splits

TEST_FRACTION = 0.2
# pixel statistics of the whole set after /16
MEAN, STD = 0.3051, 0.3776


def load(cfg) -> Splits:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = (x - MEAN) / STD
    y = torch.tensor(bunch.target, dtype=torch.long)
    idx_train, idx_test = train_test_split(range(len(y)), test_size=TEST_FRACTION, random_state=0,
                                           stratify=bunch.target)
    train = TensorDataset(x[idx_train], y[idx_train])
    return Splits(train=train, train_eval=train, test=TensorDataset(x[idx_test], y[idx_test]))


SPEC = DatasetSpec(DataInfo(num_classes=10, in_channels=1, image_size=8), load)
