"""MNIST, CIFAR-10 and CIFAR-100 in torchvision's on-disk formats under `data_dir`."""
from __future__ import annotations

import pickle
from pathlib import Path

from torchvision import datasets

from hiddennets.data import transforms
from hiddennets.data.spec import DataError, Splits


def _without_file_checksums(cls):
    """torchvision checks each batch file against the official md5 sums, which rejects every other set
    of batches in the same format (our test fixtures, a re-exported subset). With md5 None it checks
    presence only; a damaged file still fails when its pickle is read, and a download still verifies
    the archive's checksum."""
    return type(cls.__name__, (cls,), {
        "train_list": [[name, None] for name, _ in cls.train_list],
        "test_list": [[name, None] for name, _ in cls.test_list],
        "meta": {**cls.meta, "md5": None},
    })


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


def load_mnist(cfg) -> Splits:
    root = Path(cfg.data_dir).expanduser()
    files = ["MNIST/raw/" + f for f in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]
    tf = transforms.plain(transforms.MNIST_STATS)
    how = "put the four uncompressed idx files there (torchvision's MNIST layout)"

    def make(train):
        return lambda: datasets.MNIST(str(root), train=train, transform=tf, download=cfg.download)

    train = _open("mnist", root, files, how, make(True), cfg.download)
    return Splits(train, train, _open("mnist", root, files, how, make(False), cfg.download))


def _cifar(name: str, cls, folder: str, files: list[str], stats):
    def load(cfg) -> Splits:
        root = Path(cfg.data_dir).expanduser()
        expected = [f"{folder}/{f}" for f in files]
        how = f"extract the python-version archive of {name.upper()} in {root}"
        train_tf, eval_tf = transforms.small_image(stats, 32, cfg.augment)

        def make(train, tf):
            return lambda: cls(str(root), train=train, transform=tf, download=cfg.download)

        return Splits(_open(name, root, expected, how, make(True, train_tf), cfg.download),
                      _open(name, root, expected, how, make(True, eval_tf), False),
                      _open(name, root, expected, how, make(False, eval_tf), False))
    return load


load_cifar10 = _cifar("cifar10", _without_file_checksums(datasets.CIFAR10), "cifar-10-batches-py",
                      [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"],
                      transforms.CIFAR10_STATS)
load_cifar100 = _cifar("cifar100", _without_file_checksums(datasets.CIFAR100), "cifar-100-python",
                       ["train", "test", "meta"], transforms.CIFAR100_STATS)
