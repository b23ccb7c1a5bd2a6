"""Tiny datasets written in the real on-disk formats (never downloaded), read back by the real code."""
from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image


def write_cifar(root: Path, n_per_batch: int = 20, n_test: int = 30, hundred: bool = False, seed: int = 0) -> Path:
    """CIFAR-10 pickle batches (cifar-10-batches-py/) or CIFAR-100 (cifar-100-python/).

    The real files were pickled by Python 2, whose str keys load as str under encoding="latin1"
    (how torchvision reads them); Python 3 str keys load the same way."""
    rng = np.random.default_rng(seed)
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True, exist_ok=True)
    label_key, classes = ("fine_labels", 100) if hundred else ("labels", 10)

    def batch(name: str, n: int) -> None:
        data = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                label_key: rng.integers(0, classes, n).tolist(), "filenames": ["x.png"] * n}
        (folder / name).write_bytes(pickle.dumps(data, protocol=2))

    if hundred:
        batch("train", n_per_batch * 5)
        batch("test", n_test)
        meta = {"fine_label_names": [f"c{i}" for i in range(100)], "coarse_label_names": [f"s{i}" for i in range(20)]}
        (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    else:
        for i in range(1, 6):
            batch(f"data_batch_{i}", n_per_batch)
        batch("test_batch", n_test)
        (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}, protocol=2))
    return folder


def write_mnist(root: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> Path:
    """The four uncompressed idx files under MNIST/raw/ (big-endian header, then uint8 data)."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x803, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, n) + labels.tobytes())
    return raw


def _jpeg(path: Path, size: int, rng) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path, "JPEG")


def write_imagefolder(root: Path, classes=("n01", "n02", "n03"), per_class: int = 4, size: int = 40, seed: int = 0) -> Path:
    """ImageNet layout: train/<wnid>/*.JPEG and val/<wnid>/*.JPEG."""
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for c in classes:
            for i in range(per_class):
                _jpeg(root / split / c / f"{c}_{i}.JPEG", size, rng)
    return root


def write_tinyimagenet(root: Path, classes=("n01", "n02"), per_class: int = 5, seed: int = 0) -> Path:
    """Tiny-ImageNet archive layout: train/<wnid>/images/*.JPEG, val/images/*.JPEG + val_annotations.txt."""
    rng = np.random.default_rng(seed)
    lines = []
    for c in classes:
        for i in range(per_class):
            _jpeg(root / "train" / c / "images" / f"{c}_{i}.JPEG", 64, rng)
    for j in range(len(classes) * 2):
        name = f"val_{j}.JPEG"
        _jpeg(root / "val" / "images" / name, 64, rng)
        lines.append(f"{name}\t{classes[j % len(classes)]}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return root
