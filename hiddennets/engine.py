"""The phase runner: restore, then for each phase start it and run its epochs.

`train(cfg)` runs one configuration to the end and returns its final metrics. Everything it writes
lives in the run folder: config.yaml, checkpoint.pt (all state needed to continue exactly),
metrics.jsonl (one row per epoch), result.json (at the end) and tb/ (TensorBoard events). Those
writers are the default epoch outputs (`hiddennets.outputs`), called in a fixed order after each
epoch; the caller's own callbacks run after them, on every rank, once the checkpoint is on disk.

Exact resume: the epoch loop re-seeds from (seed, epoch, rank) (`hiddennets.loops`), and model,
optimisers, schedules, epoch and the metric history are in the checkpoint.
"""
from __future__ import annotations

import contextlib
import errno
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import torch
import torch.nn as nn

from hiddennets.algorithms import ALGORITHMS, Algorithm, Phase
from hiddennets.build import build_model
from hiddennets.checkpoint import load_latest_checkpoint, write_json
from hiddennets.config import RunConfig
from hiddennets.data import DATASETS, build_datasets
from hiddennets.distributed import DistInfo, barrier, broadcast_error, dist_info
from hiddennets.errors import CheckpointError, ConfigError, DivergedError
from hiddennets.folder_lock import describe, folder_lock
from hiddennets.frozen_weights import FrozenWeights
from hiddennets.history import present, result_json
from hiddennets.identity import config_diff, config_hash
from hiddennets.cost import CostMeter
from hiddennets.data.loaders import make_loaders, on_device
from hiddennets.loops import evaluate_splits, seed_epoch, train_epoch
from hiddennets.outputs import CHECKPOINT, CHECKPOINT_FORMAT, EpochEnd, Output, default_outputs
from hiddennets.run_dir import claim_run_dir, default_run_dir
from hiddennets.validation import config_from_dict

__all__ = ["CHECKPOINT", "CHECKPOINT_FORMAT", "EpochCallback", "train"]


class EpochCallback(Protocol):
    def __call__(self, metrics: dict[str, Any], checkpoint: Path | None) -> None: ...


@dataclass
class RunState:
    epoch: int = 0                                      # epochs completed
    history: list[dict[str, Any]] = field(default_factory=list)


def resolve_device(cfg: RunConfig, info: DistInfo) -> torch.device:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' requested but no CUDA device is available; use auto or cpu")
    if cfg.device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", info.local_rank)


def check_finite(metrics: dict[str, Any]) -> None:
    for key in ("train_loss", "val_loss"):
        value = metrics.get(key)
        if value is not None and not math.isfinite(value):
            lr = metrics.get("lr")
            raise DivergedError(f"diverged: {key} is {value} at epoch {metrics['epoch']} (lr {lr if lr is None else format(lr, 'g')})")


@torch.no_grad()
def check_tensors_finite(model: nn.Module, epoch: int, lr: float | None) -> None:
    """Stop a run whose trained parameters or floating buffers (scores, weights, BN statistics) hold a
    NaN or inf: its loss can stay finite meanwhile (a top-k of NaN scores still picks k weights). One
    host sync per epoch; only a failing check looks for the tensor to name."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    named += [(n, b) for n, b in model.named_buffers() if b.is_floating_point()]
    if not named or bool(torch.stack([t.isfinite().all() for _, t in named]).all()):
        return
    name, bad = next((n, t) for n, t in named if not bool(t.isfinite().all()))
    kind = "nan" if bool(bad.isnan().any()) else "inf"
    raise DivergedError(f"diverged: {name} is {kind} at epoch {epoch} (lr {lr if lr is None else format(lr, 'g')})")


def check_checkpoint_config(saved: dict[str, Any], cfg: RunConfig, path: Path) -> None:
    """A checkpoint is resumed only by the run that wrote it (same identity hash)."""
    try:
        theirs = config_from_dict(saved.get("config") or {})
    except ConfigError as exc:
        raise ConfigError(f"{path}: holds a checkpoint whose config this version cannot read ({exc}); use "
                          "another output folder") from None
    if config_hash(theirs) != config_hash(cfg):
        raise ConfigError(f"{path}: holds a checkpoint of another run (hash {config_hash(theirs)}) than this "
                          f"config (hash {config_hash(cfg)}): {config_diff(theirs, cfg)}; use that run's folder "
                          "or another one")


def _as_list(saved_state) -> list:
    """Optimiser states as saved: a list (one per optimiser); older checkpoints held one dict."""
    if saved_state is None:
        return []
    return saved_state if isinstance(saved_state, list) else [saved_state]


def _on_main(info: DistInfo, action: Callable[[], Any], error_type: type[Exception]) -> Any:
    """Run `action` on rank 0 (the writer) first; every rank raises its error if it failed."""
    result, error = None, None
    if info.is_main:
        try:
            result = action()
        except error_type as exc:
            error = str(exc)
    error = broadcast_error(error, info)
    if error:
        raise error_type(error)
    return result


@dataclass
class _Run:
    """One run's fixed parts, shared by its phases."""
    cfg: RunConfig
    run_dir: Path
    algorithm: Algorithm
    model: nn.Module
    device: torch.device
    info: DistInfo
    loaders: tuple
    outputs: list[Output]
    callbacks: list[EpochCallback]
    total: int
    cost: CostMeter
    frozen: FrozenWeights

    def start_phase(self, phase: Phase, fresh: bool, saved: dict[str, Any] | None):
        """The phase's optimisers and schedules (restored when resuming inside it), and the network to run."""
        self.algorithm.start_phase(self.model, self.cfg, phase, fresh)
        params = [p for p in self.model.parameters() if p.requires_grad]
        pairs = self.algorithm.optimizers(self.model, self.cfg, phase) if params else []
        optimizers = [opt for opt, _ in pairs]
        schedulers = [torch.optim.lr_scheduler.LambdaLR(opt, fn) for opt, fn in pairs]
        if optimizers and not fresh and saved is not None and saved.get("phase", "train") == phase.name:
            for opt, sched, opt_state, sched_state in zip(optimizers, schedulers, _as_list(saved["optimizer"]),
                                                           _as_list(saved["scheduler"]), strict=True):
                opt.load_state_dict(opt_state)
                sched.load_state_dict(sched_state)
        net = self.model
        if self.info.active and params:  # DDP registers the parameters that train when it wraps: each phase wraps anew
            net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.cfg.compile:
            # dynamo caches by the forward's code and its guards: the same model compiles once per process
            net = torch.compile(net)
        return optimizers, schedulers, net

    def wants_test(self, epoch: int, phase_start: int, phase_end: int, history: list[dict[str, Any]]):
        """Whether epoch `epoch` (0-based) evaluates the test set, given its val_* metrics (`test_every`)."""
        if self.cfg.test_every == 1 or epoch + 1 == phase_end or (epoch + 1 - phase_start) % self.cfg.test_every == 0:
            return True
        best = max((row["val_acc"] for row in history if present(row.get("val_acc"))), default=None)
        return lambda metrics: "val_acc" in metrics and (best is None or metrics["val_acc"] > best)

    def run_epoch(self, phase: Phase, epoch: int, net: nn.Module, optimizers: list, schedulers: list,
                  test: Any = True) -> dict[str, Any]:
        """Train one epoch and evaluate it; returns its metrics row."""
        cfg, model, algorithm, info, device = self.cfg, self.model, self.algorithm, self.info, self.device
        train_loader, sampler, val_loader, test_loader = self.loaders
        begin = time.perf_counter()
        seed_epoch(cfg, epoch, info, sampler, train_loader)
        metrics: dict[str, Any] = {"epoch": epoch + 1, "phase": phase.name}
        lr = algorithm.logged_lr(optimizers)  # the lr this epoch trains with, before the schedule steps
        if lr is not None:
            metrics["lr"] = lr
        algorithm.on_epoch_start(model, cfg, epoch)
        metrics.update(train_epoch(net, model, train_loader, optimizers, algorithm, cfg, device, info, epoch))
        extra = algorithm.epoch_metrics(optimizers)
        for scheduler in schedulers:
            scheduler.step()
        algorithm.refresh(model, cfg, epoch)
        metrics.update(evaluate_splits(net, val_loader, test_loader, cfg, device, info, test))
        check_finite(metrics)  # every rank sees the same reduced losses, so all stop together
        check_tensors_finite(model, epoch + 1, lr)  # DDP keeps the ranks' parameters equal: all stop together
        for suffix, mode in algorithm.evaluation_modes(model, cfg, phase).items():
            with mode:
                extra.update({f"{key}_{suffix}": value
                              for key, value in evaluate_splits(net, val_loader, test_loader, cfg, device, info,
                                                                 "test_acc" in metrics).items()})
        undeclared = sorted(set(extra) - set(algorithm.metrics))
        if undeclared:  # the tables' columns come from the declaration: an undeclared metric would be lost
            raise TypeError(f"algorithm '{algorithm.name}' reports undeclared metrics {undeclared}; add them to its metrics")
        metrics.update(extra)
        cost = self.cost.measure(model)  # density, parameters and FLOPs kept, each masked layer's counts
        metrics["density"] = cost.pop("density")
        metrics.update(cost)
        metrics["seconds"] = time.perf_counter() - begin
        return metrics

    def end_epoch(self, phase: Phase, state: RunState, optimizers: list, schedulers: list) -> None:
        end = EpochEnd(self.cfg, self.run_dir, phase.name, state.epoch, self.total, state.history[-1], state.history,
                       self.model, optimizers, schedulers, self.frozen)
        for output in self.outputs:  # rank 0 only; the checkpoint first
            output.write(end)
        barrier(self.info)  # nobody reads a checkpoint that rank 0 is still writing
        for callback in self.callbacks:
            callback(end.metrics, self.run_dir / CHECKPOINT)


def _restore(ckpt_path: Path, info: DistInfo, repair: bool = True) -> dict[str, Any] | None:
    # rank 0 (the writer) checks and repairs the folder first; the others then only read it
    saved = _on_main(info, lambda: load_latest_checkpoint(ckpt_path, repair=repair), CheckpointError)
    return saved if info.is_main else load_latest_checkpoint(ckpt_path, repair=False)


def train(cfg: RunConfig, run_dir: str | Path | None = None, callbacks: Iterable[EpochCallback] = (),
          log: Callable[[str], None] | None = print, tensorboard: bool = True,
          previous_checkpoint: bool = True) -> dict[str, Any]:
    """Train one run to completion (resuming from its checkpoint if one exists); return its result.

    Under torch.distributed every rank calls this; data is sharded by rank, evaluation metrics are
    summed across ranks and only rank 0 writes files. Callbacks run on every rank after each epoch.
    `tensorboard=False` leaves out the run's own TensorBoard log (a Ray trial has Tune's);
    `previous_checkpoint=False` keeps one checkpoint generation (a trial's scratch folder: the run
    store keeps the fallback).
    """
    info = dist_info()
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
    datasets = build_datasets(cfg)  # missing or broken data fails before the run folder is written
    tensors = on_device(cfg, datasets)  # the device path's images, read once (None: torchvision's loaders)
    _on_main(info, lambda: claim_run_dir(run_dir, cfg), ConfigError)
    with contextlib.ExitStack() as stack:
        read_only = _on_main(info, lambda: _lock_run(stack, run_dir), ConfigError)
        return _train_locked(cfg, run_dir, (datasets, tensors), info, list(callbacks), log,
                            dict(tensorboard=tensorboard, previous_checkpoint=previous_checkpoint), read_only)


def _lock_run(stack: contextlib.ExitStack, run_dir: Path) -> bool:
    """One process trains a run folder at a time. Returns True when the folder is read-only (no lock
    can be taken: only a finished run may then go on, to print its result)."""
    busy = lambda who: ConfigError(  # noqa: E731
        f"{run_dir}: this run is already being trained ({describe(who)}); wait for it to finish or stop it - "
        "running the same command afterwards resumes the run")
    try:
        stack.enter_context(folder_lock(run_dir, busy))
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return True
        raise
    return False


def _train_locked(cfg: RunConfig, run_dir: Path, data, info: DistInfo, callbacks: list[EpochCallback],
                  log: Callable[[str], None] | None, output_options: dict[str, bool], read_only: bool
                  ) -> dict[str, Any]:
    device = resolve_device(cfg, info)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # fixed shapes all run long: pick the fastest conv kernels once
    algorithm = ALGORITHMS[cfg.algo]
    model = build_model(cfg)
    frozen = FrozenWeights(model)  # digests of the weights as built: the checkpoint leaves out what stays so
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    phases = algorithm.phases(cfg)
    total = sum(phase.epochs for phase in phases)

    state = RunState()
    saved = _restore(run_dir / CHECKPOINT, info, repair=not read_only)
    if saved is not None:
        check_checkpoint_config(saved, cfg, run_dir / CHECKPOINT)
        state = RunState(saved["epoch"], list(saved["history"]))
    if state.epoch >= total and state.history:  # finished: nothing to train, nothing to write
        result = result_json(state.history, str(run_dir))
        if info.is_main and not read_only and not (run_dir / "result.json").is_file():
            write_json(result, run_dir / "result.json")
        return result
    if saved is not None:
        frozen.restore(model, saved, str(run_dir / CHECKPOINT))
        if log and info.is_main:
            log(f"resuming {run_dir} from epoch {state.epoch}")

    outputs = default_outputs(run_dir, log, **output_options) if info.is_main else []
    shape = DATASETS[cfg.dataset].info
    run = _Run(cfg, run_dir, algorithm, model, device, info, make_loaders(cfg, info, *data, device), outputs,
               callbacks, total, CostMeter(shape.in_channels, shape.image_size), frozen)
    try:
        phase_start = 0
        for phase in phases:
            phase_end = phase_start + phase.epochs
            if state.epoch < phase_end:
                optimizers, schedulers, net = run.start_phase(phase, state.epoch == phase_start, saved)
                for epoch in range(state.epoch, phase_end):
                    metrics = run.run_epoch(phase, epoch, net, optimizers, schedulers,
                                            run.wants_test(epoch, phase_start, phase_end, state.history))
                    state.epoch, state.history = epoch + 1, state.history + [metrics]
                    run.end_epoch(phase, state, optimizers, schedulers)
            phase_start = phase_end
    finally:
        for output in outputs:
            output.close()
    result = result_json(state.history, str(run_dir))
    if info.is_main:
        write_json(result, run_dir / "result.json")
    return result
