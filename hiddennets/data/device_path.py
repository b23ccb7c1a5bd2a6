"""The device-resident data path: a dataset's uint8 images held on the run's device, each batch
cropped, flipped and normalised there in a few whole-batch ops (as airbench does for CIFAR).

torchvision's per-image PIL transforms cost a CPU-second per ~11k CIFAR images; a GPU trains a
small network several times faster than that, so the loader, not the GPU, would set a trial's pace.
Here the images are read once through the same torchvision readers, moved to the device once, and
the augmentations the torchvision path would apply are read from its own `Compose` (so both paths
always mean the same augmentation; an unknown transform leaves the dataset on the torchvision path).

Randomness: per epoch, a CPU generator seeded from (seed, epoch, rank) (`hiddennets.loops.seed_epoch`)
draws every image's crop offsets and flip for the whole epoch, in the shard's order. Batches depend
on nothing else (not on the device, the batch size or the worker count), so exact resume and DDP
sharding (the same DistributedSampler as the torchvision path) hold.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, DistributedSampler, Subset, TensorDataset

from hiddennets.data.spec import DataError

# Auto puts a dataset on the device when its images take at most this (CIFAR-10: 150 MiB,
# Tiny-ImageNet 64x64: 1.1 GiB; ImageNet at 224 would be 180 GiB).
DEVICE_DATA_LIMIT = 4 << 30


class Unsupported(Exception):
    """This dataset's transforms have no device equivalent: use the torchvision path."""


@dataclass(frozen=True)
class Augmentation:
    """What the torchvision Compose does to a uint8 CHW image, in its order: pad-and-crop, flip, to
    float in [0, 1], normalise. `to_unit` False: the images are floats already (digits)."""
    pad: int = 0
    flip: float = 0.0          # probability of a horizontal flip
    to_unit: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    @property
    def random(self) -> bool:
        return self.pad > 0 or self.flip > 0


def augmentation_of(transform, size: int) -> Augmentation:
    """Read a torchvision transform (None, or a Compose of RandomCrop(size, padding), RandomHorizontalFlip,
    ToTensor, Normalize) into an Augmentation; anything else raises Unsupported."""
    if transform is None:  # before importing torchvision: a digits run never imports it
        return Augmentation()
    from torchvision import transforms as T

    steps = transform.transforms if isinstance(transform, T.Compose) else [transform]
    pad, flip, to_unit, mean, std = 0, 0.0, False, None, None
    for step in steps:
        if isinstance(step, T.RandomCrop):
            if tuple(step.size) != (size, size) or step.padding_mode != "constant" or step.fill != 0 \
                    or step.pad_if_needed or not isinstance(step.padding, int):
                raise Unsupported(f"RandomCrop{tuple(step.size)} padding {step.padding} {step.padding_mode}")
            pad = step.padding
        elif isinstance(step, T.RandomHorizontalFlip):
            flip = float(step.p)
        elif isinstance(step, T.ToTensor):
            to_unit = True
        elif isinstance(step, T.Normalize) and to_unit:
            mean, std = tuple(map(float, step.mean)), tuple(map(float, step.std))
        else:
            raise Unsupported(type(step).__name__)
    return Augmentation(pad, flip, to_unit, mean, std)


@dataclass
class ImageTensors:
    """A split held as tensors: images (N, C, H, W), uint8 (or float when already normalised), labels (N,)."""
    images: torch.Tensor
    labels: torch.Tensor
    augmentation: Augmentation

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device) -> "ImageTensors":
        return ImageTensors(self.images.to(device), self.labels.to(device), self.augmentation)


def _base(dataset: Dataset) -> tuple[Dataset, list[int] | None]:
    if isinstance(dataset, Subset):
        inner, indices = _base(dataset.dataset)
        picked = list(dataset.indices)
        return inner, picked if indices is None else [indices[i] for i in picked]
    return dataset, None


def _all_images(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of a torchvision dataset as it is stored (uint8 NCHW) and its labels, read once."""
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[0], dataset.tensors[1]
    from torchvision import datasets

    if isinstance(dataset, datasets.MNIST):
        return dataset.data.unsqueeze(1), torch.as_tensor(dataset.targets, dtype=torch.long)
    if isinstance(dataset, datasets.CIFAR10):  # CIFAR-100 too: numpy NHWC uint8
        return torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous(), torch.as_tensor(dataset.targets)
    if isinstance(dataset, datasets.ImageFolder):
        return _decode_folder(dataset)
    raise Unsupported(type(dataset).__name__)


def _decode_folder(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    # The folder's own loader (PIL), so the pixels equal the torchvision path's exactly.
    first = None
    images = None
    for i, (path, _) in enumerate(dataset.samples):
        array = np.array(dataset.loader(path))  # a writable copy
        if array.ndim == 2:
            array = array[:, :, None]
        if first is None:
            first = array.shape
            images = torch.empty((len(dataset.samples), first[2], first[0], first[1]), dtype=torch.uint8)
        elif array.shape != first:
            raise DataError(f"{path}: image of shape {array.shape[:2]}, the others are {first[:2]}; the device "
                            "loader needs images of one size (resize them, or set loader: torchvision)")
        images[i] = torch.from_numpy(array).permute(2, 0, 1)
    return images, torch.tensor([t for _, t in dataset.samples], dtype=torch.long)


def tensors_of(dataset: Dataset, size: int) -> ImageTensors:
    """The split `dataset` (a torchvision dataset, or a Subset of one) as tensors with its augmentation.
    Raises Unsupported when its transforms or its type have no device equivalent."""
    base, indices = _base(dataset)
    augmentation = augmentation_of(getattr(base, "transform", None), size)
    images, labels = _all_images(base)
    if images.dtype == torch.uint8 and not augmentation.to_unit:
        raise Unsupported("uint8 images without ToTensor")
    if indices is not None:
        picked = torch.as_tensor(indices, dtype=torch.long)
        images, labels = images[picked], labels[picked]
    return ImageTensors(images, labels.long(), augmentation)


def image_bytes(dataset: Dataset, channels: int, size: int) -> int:
    return len(dataset) * channels * size * size


def batch_memory_format(device: torch.device) -> torch.memory_format:
    """How image batches are laid out on `device`: channels-last on CUDA (the model is too: cuDNN's fast
    convolution kernels want NHWC). Values and logical indexing are the same either way."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def augment_batch(images: torch.Tensor, aug: Augmentation, rows: torch.Tensor | None = None,
                  cols: torch.Tensor | None = None, flips: torch.Tensor | None = None,
                  memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """A batch (B, C, H, W) as the model sees it, laid out in `memory_format` (the float copy writes it
    so: no second copy to reorder it). `rows`/`cols` (B,) are crop offsets into the image padded by
    `aug.pad`; `flips` (B,) bools. The crop and the flip are one gather."""
    if rows is not None:
        b, c, h, w = images.shape
        padded = F.pad(images, (aug.pad,) * 4) if aug.pad else images
        ys = rows[:, None] + torch.arange(h, device=images.device)                        # (B, H)
        xs = torch.arange(w, device=images.device).expand(b, w)
        xs = cols[:, None] + torch.where(flips[:, None], w - 1 - xs, xs)                   # (B, W), flipped
        # two gathers, rows then columns (one 4-D advanced index is several times slower on a CPU)
        picked_rows = padded.gather(2, ys[:, None, :, None].expand(b, c, h, padded.shape[3]))
        images = picked_rows.gather(3, xs[:, None, None, :].expand(b, c, h, w))
    if not aug.to_unit:
        return images.contiguous(memory_format=memory_format)
    # the same ops as ToTensor and Normalize (div by 255, then sub_ and div_ by (C, 1, 1) tensors), so the
    # values are bit-identical to the torchvision path's; in place, one float copy
    x = images.to(torch.float32, memory_format=memory_format).div_(255)
    if aug.mean is not None:
        x.sub_(torch.as_tensor(aug.mean, device=x.device).view(-1, 1, 1))
        x.div_(torch.as_tensor(aug.std, device=x.device).view(-1, 1, 1))
    return x


def draw_epoch(aug: Augmentation, n: int, generator: torch.Generator) -> tuple[torch.Tensor, ...] | None:
    """One epoch's crop rows, crop columns and flips for `n` images in shard order, or None."""
    if not aug.random:
        return None
    offsets = torch.randint(0, 2 * aug.pad + 1, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < aug.flip
    return offsets[:, 0], offsets[:, 1], flips


class DeviceTrainLoader:
    """The training batches of one rank: the sampler's order (DistributedSampler, as on the torchvision
    path), `batch_size` a batch, the last one short."""

    def __init__(self, data: ImageTensors, sampler: DistributedSampler, batch_size: int):
        self.data, self.sampler, self.batch_size = data, sampler, batch_size
        self.memory_format = batch_memory_format(data.images.device)
        self.epoch_generator = torch.Generator()  # re-seeded by seed_epoch

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        device = self.data.images.device
        order = torch.tensor(list(self.sampler), dtype=torch.long)
        draws = draw_epoch(self.data.augmentation, len(order), self.epoch_generator)
        order = order.to(device, non_blocking=True)
        if draws is not None:
            draws = tuple(t.to(device, non_blocking=True) for t in draws)
        for start in range(0, len(order), self.batch_size):
            part = slice(start, start + self.batch_size)
            idx = order[part]
            images = self.data.images.index_select(0, idx)
            crops = tuple(t[part] for t in draws) if draws is not None else (None, None, None)
            x = augment_batch(images, self.data.augmentation, *crops, memory_format=self.memory_format)
            yield x, self.data.labels.index_select(0, idx)


class DeviceEvalLoader:
    """Evaluation batches, unaugmented, in order: rank r of w gets items r, r+w, ... (as the torchvision path)."""

    def __init__(self, data: ImageTensors, batch_size: int, rank: int = 0, world_size: int = 1):
        self.data, self.batch_size = data, batch_size
        self.indices = torch.arange(rank, len(data), world_size, device=data.images.device)
        self.memory_format = batch_memory_format(data.images.device)

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        aug = self.data.augmentation
        plain = Augmentation(to_unit=aug.to_unit, mean=aug.mean, std=aug.std)
        for start in range(0, len(self.indices), self.batch_size):
            idx = self.indices[start:start + self.batch_size]
            yield (augment_batch(self.data.images.index_select(0, idx), plain, memory_format=self.memory_format),
                   self.data.labels.index_select(0, idx))
