"""What the trainer needs to know about torch.distributed (works unchanged when it is not initialised)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def dist_info() -> DistInfo:
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return DistInfo()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.active:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier(info: DistInfo) -> None:
    if info.active:
        dist.barrier()


def broadcast_error(message: str | None, info: DistInfo) -> str | None:
    """Rank 0's error (or None) reaches every rank, so all ranks stop together instead of hanging."""
    if not info.active:
        return message
    box = [message]
    dist.broadcast_object_list(box, src=0)
    return box[0]
