"""What a run writes after each epoch, as callbacks the engine calls in a fixed order on rank 0:
the checkpoint first (so nothing can be reported for an epoch that is not saved), then
metrics.jsonl, TensorBoard and the console line. The engine then waits at a barrier, and only then
runs the caller's callbacks on every rank.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
import torch.nn as nn

from hiddennets.checkpoint import save_checkpoint, write_jsonl
from hiddennets.config import RunConfig
from hiddennets.frozen_weights import KEY as REGENERATED, FrozenWeights

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
METRICS_FILE = "metrics.jsonl"


@dataclass
class EpochEnd:
    """Everything an output may need once an epoch is done."""
    cfg: RunConfig
    run_dir: Path
    phase: str
    epoch: int                      # epochs completed, over all phases
    total_epochs: int
    metrics: dict[str, Any]         # this epoch's row
    history: list[dict[str, Any]]   # every row so far, this one last
    model: nn.Module
    optimizers: list[torch.optim.Optimizer]
    schedulers: list[Any]
    frozen: FrozenWeights | None = None  # the model's weights as built: what the checkpoint may leave out


class Output(Protocol):
    def write(self, end: EpochEnd) -> None: ...
    def close(self) -> None: ...


class CheckpointWriter:
    """checkpoint.pt: all the state needed to continue exactly (hiddennets.checkpoint keeps two generations),
    less the frozen random weights, rebuilt from the seed at resume (hiddennets.frozen_weights)."""

    def __init__(self, keep_previous: bool = True):
        self.keep_previous = keep_previous

    def write(self, end: EpochEnd) -> None:
        model, regenerated = end.frozen.model_state(end.model) if end.frozen else (end.model.state_dict(), {})
        save_checkpoint({"format": CHECKPOINT_FORMAT, "config": end.cfg.to_dict(), "epoch": end.epoch,
                         "phase": end.phase, "history": end.history, "model": model, REGENERATED: regenerated,
                         "optimizer": [opt.state_dict() for opt in end.optimizers],
                         "scheduler": [sched.state_dict() for sched in end.schedulers]}, end.run_dir / CHECKPOINT,
                        self.keep_previous)

    def close(self) -> None:
        pass


class MetricsLog:
    """metrics.jsonl: one row per epoch, rewritten whole (atomically) each time."""

    def write(self, end: EpochEnd) -> None:
        write_jsonl(end.history, end.run_dir / METRICS_FILE)

    def close(self) -> None:
        pass


class TensorBoardLog:
    """tb/: every float metric as a scalar, `val_acc` as `val/acc`."""

    def __init__(self, run_dir: Path):
        from tensorboardX import SummaryWriter  # only runs that keep their own TensorBoard log need it
        self.writer = SummaryWriter(str(run_dir / "tb"))

    def write(self, end: EpochEnd) -> None:
        for key, value in end.metrics.items():
            if isinstance(value, float):
                self.writer.add_scalar(key.replace("_", "/", 1), value, end.epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def format_line(m: dict[str, Any], epochs: int) -> str:
    lr = f"lr {m['lr']:.4g}" if m.get("lr") is not None else "lr -"
    val = f"val {m['val_acc']:5.1f}%  " if m.get("val_acc") is not None else ""  # none held out: no val column
    return (f"epoch {m['epoch']:>3}/{epochs}  loss {m['train_loss']:.4f}  train {m['train_acc']:5.1f}%  "
            f"{val}test {format(m['test_acc'], '5.1f') + '%' if m.get('test_acc') is not None else '    -  '}  density {m['density']:.4f}  "
            f"{lr}  {m['seconds']:.1f}s")


class ConsoleLine:
    def __init__(self, log: Callable[[str], None]):
        self.log = log

    def write(self, end: EpochEnd) -> None:
        self.log(format_line(end.metrics, end.total_epochs))

    def close(self) -> None:
        pass


def default_outputs(run_dir: Path, log: Callable[[str], None] | None, tensorboard: bool = True,
                    previous_checkpoint: bool = True) -> list[Output]:
    """The outputs of a run, in their fixed order. Under Ray Tune the trial passes tensorboard=False
    (Tune keeps the trial's one TensorBoard log from the reported metrics) and previous_checkpoint=False
    (its run folder is scratch; the run store keeps the fallback generation)."""
    outputs: list[Output] = [CheckpointWriter(previous_checkpoint), MetricsLog()]
    if tensorboard:
        outputs.append(TensorBoardLog(run_dir))
    if log is not None:
        outputs.append(ConsoleLine(log))
    return outputs
