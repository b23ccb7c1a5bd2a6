"""One epoch of training and one evaluation pass (the loaders are in hiddennets.data.loaders).

Exact resume: data order and augmentation randomness are re-seeded at every epoch start from
(seed, epoch, rank) (`seed_epoch`), so a checkpoint needs no RNG state to continue bit-identically.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DistributedSampler

from hiddennets.algorithms import Algorithm
from hiddennets.config import RunConfig
from hiddennets.data.device_path import batch_memory_format
from hiddennets.distributed import DistInfo, all_reduce_sum


def epoch_seed(cfg: RunConfig, epoch: int, rank: int) -> int:
    return (cfg.seed * 1_000_003 + epoch) * 1009 + rank


def seed_epoch(cfg: RunConfig, epoch: int, info: DistInfo, sampler: DistributedSampler, loader) -> None:
    """Everything random in an epoch follows from (seed, epoch, rank)."""
    torch.manual_seed(epoch_seed(cfg, epoch, info.rank))
    sampler.set_epoch(epoch)
    loader.epoch_generator.manual_seed(epoch_seed(cfg, epoch, info.rank))


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch on the run's device, image batches in `batch_memory_format` (a device-path batch is
    made there in that layout already: then this is a no-op)."""
    if x.dim() == 4:
        return x.to(device, non_blocking=True, memory_format=batch_memory_format(device))
    return x.to(device, non_blocking=True)


def _autocast(device: torch.device, cfg: RunConfig):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda")


def _count_correct(logits: torch.Tensor, target: torch.Tensor, k: int) -> torch.Tensor:
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return (top == target[:, None]).any(dim=1).sum()


def _summarise(sums: torch.Tensor, info: DistInfo, prefix: str) -> dict[str, float]:
    loss, top1, top5, n = all_reduce_sum(sums, info).tolist()
    n = max(n, 1.0)
    return {f"{prefix}_loss": loss / n, f"{prefix}_acc": 100.0 * top1 / n, f"{prefix}_top5": 100.0 * top5 / n}


def train_epoch(net: nn.Module, model: nn.Module, loader: Iterable, optimizers: list[torch.optim.Optimizer],
                algorithm: Algorithm, cfg: RunConfig, device: torch.device, info: DistInfo, epoch: int) -> dict[str, float]:
    """One pass over the training data. `net` may be the DDP wrapper of `model`; every optimiser
    steps after each backward pass (Peek-a-Boo has two: Bop for signs, SGD for BN and the classifier)."""
    net.train()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top1, top5, n: no sync per step
    for x, y in loader:
        x, y = to_device(x, device), y.to(device, non_blocking=True)
        algorithm.refresh(model, cfg, epoch)
        with _autocast(device, cfg):
            logits = net(x)
            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        if optimizers:
            penalty = algorithm.regularizer(model, cfg)
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            (loss if penalty is None else loss + penalty).backward()
            for optimizer in optimizers:
                optimizer.step()
            algorithm.after_step(model, cfg)
        with torch.no_grad():
            logits = logits.float()
            sums[:3] += torch.stack([loss.detach().float() * len(y), _count_correct(logits, y, 1),
                                     _count_correct(logits, y, 5)]).double()
        sums[3] += len(y)  # a Python number: no host-to-device copy per step
    return _summarise(sums, info, "train")


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, cfg: RunConfig, device: torch.device, info: DistInfo,
             prefix: str) -> dict[str, float]:
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    for x, y in loader:
        x, y = to_device(x, device), y.to(device, non_blocking=True)
        with _autocast(device, cfg):
            logits = model(x).float()
        sums[:3] += torch.stack([F.cross_entropy(logits, y, reduction="sum"), _count_correct(logits, y, 1),
                                 _count_correct(logits, y, 5)]).double()
        sums[3] += len(y)
    return _summarise(sums, info, prefix)


def evaluate_splits(net: nn.Module, val_loader: Iterable | None, test_loader: Iterable, cfg: RunConfig,
                    device: torch.device, info: DistInfo, test: bool | Callable[[dict], bool] = True) -> dict[str, float]:
    """val_* and test_* metrics; no val_* at all without a validation split (an empty split would read 0%).
    `test` may decide from the val_* metrics whether the test set is evaluated too (`test_every`)."""
    metrics = {} if val_loader is None else evaluate(net, val_loader, cfg, device, info, "val")
    if test(metrics) if callable(test) else test:
        metrics.update(evaluate(net, test_loader, cfg, device, info, "test"))
    return metrics
