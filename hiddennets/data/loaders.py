"""The loaders a run reads: the device path where the dataset fits (`loader: auto | device`), else
torchvision's DataLoader; the same DistributedSampler shards the training set on both.

`on_device(cfg, datasets)` decides and reads the images once, before the run folder is written (bad
data or an impossible `loader: device` fails first); `make_loaders` then builds the loaders.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, Subset

from hiddennets.data.device_path import (DEVICE_DATA_LIMIT, DeviceEvalLoader, DeviceTrainLoader, ImageTensors,
                                         Unsupported, image_bytes, tensors_of)
from hiddennets.errors import ConfigError

if TYPE_CHECKING:
    from hiddennets.config import RunConfig
    from hiddennets.distributed import DistInfo


def on_device(cfg: "RunConfig", datasets: tuple[Dataset, Dataset, Dataset]) -> list[ImageTensors] | None:
    """(train, val, test) as tensors (still on the CPU) for the device path, or None for torchvision's."""
    if cfg.loader == "torchvision":
        return None
    from hiddennets.data import DATASETS

    info = DATASETS[cfg.dataset].info
    size = sum(image_bytes(ds, info.in_channels, info.image_size) for ds in datasets)
    try:
        if size > DEVICE_DATA_LIMIT:
            raise Unsupported(f"{size / 2**30:.0f} GiB of images, more than the {DEVICE_DATA_LIMIT / 2**30:.0f} GiB "
                              "the device path holds")
        return [tensors_of(ds, info.image_size) for ds in datasets]
    except Unsupported as exc:
        if cfg.loader == "device":
            raise ConfigError(f"loader: device cannot hold dataset {cfg.dataset} ({exc}); use loader: auto or "
                              "torchvision") from None
        return None


def loader_workers(cfg: "RunConfig") -> int:
    """num_workers, with auto = the CPU threads this process has (Ray sets them to a trial's reserved cores)."""
    return torch.get_num_threads() if cfg.num_workers == "auto" else int(cfg.num_workers)


class SeededOrder(Sampler):
    """The sampler's indices, each paired with its own augmentation seed drawn from `generator` (which
    `seed_epoch` re-seeds from (seed, epoch, rank) every epoch)."""

    def __init__(self, sampler: DistributedSampler, generator: torch.Generator):
        self.sampler, self.generator = sampler, generator

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        base = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        return ((index, base + position) for position, index in enumerate(self.sampler))


class SeededItems(Dataset):
    """Seeds torch's RNG from the item's own seed before its transforms run. An image's crop and flip
    then depend on (seed, epoch, rank, position) only, not on which loader process made it, so
    persistent workers (never re-seeded between epochs) still give an exact resume."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        # the CPU generator torchvision's transforms draw from; torch.manual_seed would also re-seed every
        # CUDA device each call (~200 us an image, more than the transforms)
        torch.default_generator.manual_seed(seed)
        return self.dataset[index]


def make_loaders(cfg: "RunConfig", info: "DistInfo", datasets: tuple[Dataset, Dataset, Dataset],
                 tensors: list[ImageTensors] | None, device: torch.device):
    """(train loader, its sampler, val loader, test loader); training data sharded by rank. The val
    loader is None when the run holds out nothing (`val_fraction: 0`, the seeds' own protocol)."""
    train_ds, val_ds, test_ds = datasets
    sampler = DistributedSampler(train_ds, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                 seed=cfg.seed, drop_last=False)
    if tensors is not None:
        train_t, val_t, test_t = (t.to(device) for t in tensors)

        def on(data: ImageTensors) -> DeviceEvalLoader:
            return DeviceEvalLoader(data, cfg.eval_batch_size, info.rank, info.world_size)

        return (DeviceTrainLoader(train_t, sampler, cfg.batch_size), sampler, on(val_t) if len(val_t) else None,
                on(test_t))
    workers = loader_workers(cfg)
    common: dict[str, Any] = dict(num_workers=workers, pin_memory=device.type == "cuda",
                                  persistent_workers=workers > 0)
    order = SeededOrder(sampler, torch.Generator())
    train = DataLoader(SeededItems(train_ds), batch_size=cfg.batch_size, sampler=order, **common)
    # What seed_epoch re-seeds. Not the DataLoader's own generator: a persistent loader draws from that
    # at its first epoch only, a fresh one (after a resume) at its first epoch too, so they would differ.
    train.epoch_generator = order.generator  # type: ignore[attr-defined]

    def shard(ds: Dataset) -> DataLoader:
        # Evaluation shards by rank without padding; counts are summed across ranks afterwards.
        part = Subset(ds, range(info.rank, len(ds), info.world_size))
        return DataLoader(part, batch_size=cfg.eval_batch_size, shuffle=False, **common)

    return train, sampler, (shard(val_ds) if len(val_ds) else None), shard(test_ds)
