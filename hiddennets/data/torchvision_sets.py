"""MNIST, CIFAR-10 and CIFAR-100 in torchvision's on-disk formats under `data_dir`."""
from __future__ import annotations

import pickle
from pathlib import Path

from torchvision import datasets

from hiddennets.data import transforms
from hiddennets.data.spec import DataError, DataInfo, DatasetSpec, Splits


class _CIFAR10Files(datasets.CIFAR10):
    # torchvision verifies the official archive's md5 sums, which rejects any other set of batches in
    # the same format (our test fixtures, a re-exported subset). We check presence here; a damaged
    # file still fails when its pickle is read.
    def _check_integrity(self) -> bool:
        root = Path(self.root) / self.base_folder
        return all((root / name).is_file() for name, _ in self.train_list + self.test_list)


class _CIFAR100Files(datasets.CIFAR100):
    _check_integrity = _CIFAR10Files._check_integrity


def _open(name: str, root: Path, expected: list[str], how_to_get: str, make, download: bool):
    if not download:
        missing = [p for p in expected if not (root / p).is_file()]
        if missing:
            raise DataError(f"dataset {name}: missing {', '.join(missing)} under {root}; {how_to_get}, "
                            "or set download: true where a network is available")
    try:
        return make()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, RuntimeError, KeyError) as exc:
        raise DataError(f"dataset {name}: cannot read the files under {root} ({type(exc).__name__}: {exc}); "
                        "they may be truncated or corrupt") from None


def _mnist(cfg) -> Splits:
    root = Path(cfg.data_dir).expanduser()
    files = ["MNIST/raw/" + f for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]
    tf = transforms.plain(transforms.MNIST_STATS)
    how = "put the four uncompressed idx files there (torchvision's MNIST layout)"

    def make(train):
        return lambda: datasets.MNIST(str(root), train=train, transform=tf, download=cfg.download)

    train = _open("mnist", root, files, how, make(True), cfg.download)
    return Splits(train, train, _open("mnist", root, files, how, make(False), cfg.download))


def _cifar(name: str, cls, folder: str, train_files: list[str], stats) -> DatasetSpec:
    def load(cfg) -> Splits:
        root = Path(cfg.data_dir).expanduser()
        expected = [f"{folder}/{f}" for f in train_files + ["test"]] if name == "cifar100" else \
            [f"{folder}/{f}" for f in train_files + ["test_batch"]]
        how = f"extract the python-version archive of {name.upper()} in {root}"
        train_tf, eval_tf = transforms.small_image(stats, 32, cfg.augment)

        def make(train, tf):
            return lambda: cls(str(root), train=train, transform=tf, download=cfg.download)

        return Splits(_open(name, root, expected, how, make(True, train_tf), cfg.download),
                      _open(name, root, expected, how, make(True, eval_tf), False),
                      _open(name, root, expected, how, make(False, eval_tf), False))
    classes = 100 if name == "cifar100" else 10
    return DatasetSpec(DataInfo(classes, 3, 32), load)


MNIST_SPEC = DatasetSpec(DataInfo(10, 1, 28), _mnist)
CIFAR10_SPEC = _cifar("cifar10", _CIFAR10Files, "cifar-10-batches-py",
                      [f"data_batch_{i}" for i in range(1, 6)], transforms.CIFAR10_STATS)
CIFAR100_SPEC = _cifar("cifar100", _CIFAR100Files, "cifar-100-python", ["train", "meta"],
                       transforms.CIFAR100_STATS)
