"""ImageNet and Tiny-ImageNet from image folders.

`data_dir` holds `train/<class>/...` and `val/`. ImageNet's val/ is in class folders (as after the
usual valprep script). Tiny-ImageNet's val/ may be either class folders or the archive's own layout
(`val/images/*.JPEG` plus `val/val_annotations.txt`), which we read directly.
"""
from __future__ import annotations

from pathlib import Path

from torchvision import datasets

from hiddennets.data import transforms
from hiddennets.data.spec import DataError, Splits


class AnnotatedFolder(datasets.ImageFolder):
    """Tiny-ImageNet's val/: images/ plus a TSV of (file, class id, box); classes from train/."""

    def __init__(self, val_dir: Path, class_to_idx: dict[str, int], transform):
        self.class_to_idx = class_to_idx
        samples = []
        for line in (val_dir / "val_annotations.txt").read_text().splitlines():
            fields = line.split("\t")
            if len(fields) < 2:
                continue
            if fields[1] not in class_to_idx:
                raise DataError(f"{val_dir / 'val_annotations.txt'}: class '{fields[1]}' is not in train/")
            samples.append((str(val_dir / "images" / fields[0]), class_to_idx[fields[1]]))
        # Dataset fields as ImageFolder sets them, without its directory scan
        self.root, self.loader, self.transform, self.target_transform = str(val_dir), datasets.folder.default_loader, transform, None
        self.classes = sorted(class_to_idx, key=class_to_idx.get)
        self.samples = self.imgs = samples
        self.targets = [t for _, t in samples]


def _folder(name: str, root: Path, sub: str, tf) -> datasets.ImageFolder:
    path = root / sub
    if not path.is_dir():
        raise DataError(f"dataset {name}: no folder {path}; put the {sub} images there in one folder per class")
    try:
        return datasets.ImageFolder(str(path), transform=tf)
    except (FileNotFoundError, OSError) as exc:
        raise DataError(f"dataset {name}: {path}: {exc}") from None


def _load(name: str, tfs):
    def load(cfg) -> Splits:
        root = Path(cfg.data_dir).expanduser()
        train_tf, eval_tf = tfs(cfg.augment)
        train = _folder(name, root, "train", train_tf)
        train_eval = _folder(name, root, "train", eval_tf)
        if (root / "val" / "val_annotations.txt").is_file():
            test = AnnotatedFolder(root / "val", train.class_to_idx, eval_tf)
        else:
            test = _folder(name, root, "val", eval_tf)
            if test.class_to_idx != train.class_to_idx:
                raise DataError(f"dataset {name}: {root / 'val'} has other classes than {root / 'train'}")
        return Splits(train, train_eval, test)
    return load


load_imagenet = _load("imagenet", transforms.imagenet)
load_tinyimagenet = _load("tinyimagenet", lambda augment: transforms.small_image(transforms.TINYIMAGENET_STATS, 64, augment))
