"""Datasets in their real on-disk formats, loaded through the real code path, with a held-out split."""
import pytest
import torch

from hiddennets.errors import ConfigError
from hiddennets.validation import config_from_dict
from hiddennets.data import build_datasets, split_indices
from tests import fixtures


def datasets_for(**kw):
    return build_datasets(config_from_dict(kw))


def test_digits_split_is_seeded_disjoint_and_separate_from_test():
    train, val, test = datasets_for(dataset="digits", val_fraction=0.1)
    assert (len(train), len(val), len(test)) == (1293, 144, 360)  # 1797 = 1437 + 360; 10% of 1437 held out
    assert not set(train.indices) & set(val.indices)
    x, y = train[0]
    assert x.shape == (1, 8, 8) and 0 <= int(y) < 10
    again = datasets_for(dataset="digits", val_fraction=0.1, seed=5)  # run seed does not move the split
    assert again[1].indices == val.indices
    assert split_indices(100, 0.2, 1)[1] != split_indices(100, 0.2, 2)[1]


def test_cifar10_pickle_batches(tmp_path):
    fixtures.write_cifar(tmp_path, n_per_batch=20, n_test=30)
    train, val, test = datasets_for(dataset="cifar10", data_dir=str(tmp_path), val_fraction=0.2)
    assert (len(train), len(val), len(test)) == (80, 20, 30)
    x, y = train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    # validation items use the evaluation transform: the same item twice is identical
    assert torch.equal(val[0][0], val[0][0])
    # training items are augmented (crop with padding + flip): 20 draws of one image are not all equal
    draws = {train[0][0].sum().item() for _ in range(20)}
    assert len(draws) > 1


def test_cifar100_pickle_files(tmp_path):
    fixtures.write_cifar(tmp_path, n_per_batch=10, n_test=15, hundred=True)
    train, val, test = datasets_for(dataset="cifar100", data_dir=str(tmp_path), val_fraction=0.1)
    assert (len(train), len(val), len(test)) == (45, 5, 15)
    assert all(0 <= test[i][1] < 100 for i in range(15))


def test_mnist_idx_files(tmp_path):
    fixtures.write_mnist(tmp_path, n_train=60, n_test=20)
    train, val, test = datasets_for(dataset="mnist", data_dir=str(tmp_path), val_fraction=0.25)
    assert (len(train), len(val), len(test)) == (45, 15, 20)
    assert train[0][0].shape == (1, 28, 28)


def test_imagenet_folders_with_jpegs(tmp_path):
    fixtures.write_imagefolder(tmp_path, per_class=4, size=40)
    train, val, test = datasets_for(dataset="imagenet", data_dir=str(tmp_path), val_fraction=0.25)
    assert (len(train), len(val), len(test)) == (9, 3, 12)
    assert train[0][0].shape == (3, 224, 224) and test[0][0].shape == (3, 224, 224)
    assert sorted({test[i][1] for i in range(12)}) == [0, 1, 2]


def test_tinyimagenet_archive_layout(tmp_path):
    fixtures.write_tinyimagenet(tmp_path, classes=("n01", "n02"), per_class=5)
    train, val, test = datasets_for(dataset="tinyimagenet", data_dir=str(tmp_path), val_fraction=0.2)
    assert (len(train), len(val), len(test)) == (8, 2, 4)
    assert [test[i][1] for i in range(4)] == [0, 1, 0, 1]  # labels from val_annotations.txt
    assert test[0][0].shape == (3, 64, 64)


@pytest.mark.parametrize("dataset,expect", [
    ("mnist", "missing MNIST/raw/train-images-idx3-ubyte"),
    ("cifar100", "missing cifar-100-python/train"),
    ("imagenet", "no folder"),
])
def test_missing_data_names_the_place(tmp_path, dataset, expect):
    with pytest.raises(ConfigError, match=f"dataset {dataset}: {expect}.*{tmp_path}"):
        datasets_for(dataset=dataset, data_dir=str(tmp_path))


def test_truncated_cifar_batch_is_reported(tmp_path):
    folder = fixtures.write_cifar(tmp_path)
    blob = (folder / "data_batch_3").read_bytes()
    (folder / "data_batch_3").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ConfigError, match="dataset cifar10: cannot read the files.*truncated or corrupt"):
        datasets_for(dataset="cifar10", data_dir=str(tmp_path))


def test_digits_read_without_scikit_learn_equal_load_digits_and_its_stratified_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from hiddennets.data import digits
    from hiddennets.data.digits_split import TEST_INDEX, TRAIN_INDEX

    bunch = load_digits()
    train, test = train_test_split(range(len(bunch.target)), test_size=digits.TEST_FRACTION, random_state=0,
                                   stratify=bunch.target)
    assert list(TRAIN_INDEX) == list(train) and list(TEST_INDEX) == list(test)
    splits = digits.load(None)
    expected = (torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0 - digits.MEAN) / digits.STD
    assert torch.equal(splits.test.tensors[0], expected[list(test)])
    assert torch.equal(splits.train.tensors[1], torch.tensor(bunch.target)[list(train)])
