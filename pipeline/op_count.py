"""Counting what a training step asks of the device, with torch's own dispatcher hook.

On a GPU every non-view op is (at least) one kernel launch, and small CIFAR networks are launch-bound,
so the op count predicts a step's time there; a host sync (`.item()`, `bool(t)`, `int(t)`: aten's
`_local_scalar_dense`) stalls the CPU until the GPU has caught up. Both are counted the same way on
the CPU, which is how the tests hold every algorithm to zero syncs per step without a GPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

SYNC_OPS = {torch.ops.aten._local_scalar_dense.default}


def _is_view(func) -> bool:
    """An op that returns an alias of its input (view, reshape, t, split...): metadata only, no kernel."""
    return any(r.alias_info is not None and not r.alias_info.is_write for r in func._schema.returns)


@dataclass
class OpCount:
    ops: int = 0      # non-view ops (kernel launches on a GPU)
    views: int = 0
    syncs: int = 0    # device-to-host reads of a value


class _Counter(TorchDispatchMode):
    def __init__(self, count: OpCount):
        super().__init__()
        self.count = count

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in SYNC_OPS:
            self.count.syncs += 1
        elif _is_view(func):
            self.count.views += 1
        else:
            self.count.ops += 1
        return func(*args, **(kwargs or {}))


def count_ops(fn: Callable[[], object]) -> OpCount:
    """What one call of `fn` dispatches (forward, backward and optimiser step alike)."""
    count = OpCount()
    with _Counter(count):
        fn()
    return count
