"""The epoch loop: train, evaluate, checkpoint, resume.

`train(cfg)` runs one configuration to the end and returns its final metrics. Everything it writes
lives in the run folder: config.yaml, checkpoint.pt (all state needed to continue exactly),
metrics.jsonl (one row per epoch), result.json (at the end) and tb/ (TensorBoard events).

Exact resume: data order and augmentation randomness are re-seeded at every epoch start from
(seed, epoch, rank), so the checkpoint needs no RNG state to continue bit-identically on the same
machine; model, optimiser, schedule, epoch and the metric history are in the checkpoint.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from hiddennets.algorithms import ALGORITHMS, Algorithm
from hiddennets.build import build_model
from hiddennets.checkpoint import load_latest_checkpoint, save_checkpoint, write_json, write_jsonl
from hiddennets.config import ConfigError, RunConfig
from hiddennets.data import build_datasets
from hiddennets.errors import CheckpointError, DivergedError
from hiddennets.distributed import DistInfo, all_reduce_sum, barrier, broadcast_error, dist_info
from hiddennets.layers import measured_density
from hiddennets.optim import schedule_factor
from hiddennets.run_dir import claim_run_dir, default_run_dir

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 1


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
            raise DivergedError(f"diverged: {key} is {value} at epoch {metrics['epoch']} (lr {metrics['lr']:g})")


def _epoch_seed(cfg: RunConfig, epoch: int, rank: int) -> int:
    return (cfg.seed * 1_000_003 + epoch) * 1009 + rank


def make_loaders(cfg: RunConfig, info: DistInfo, datasets: tuple[Dataset, Dataset, Dataset]):
    train_ds, val_ds, test_ds = datasets
    sampler = DistributedSampler(train_ds, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                 seed=cfg.seed, drop_last=False)
    common = dict(num_workers=cfg.num_workers, pin_memory=torch.cuda.is_available(),
                  persistent_workers=False)
    train = DataLoader(train_ds, batch_size=cfg.batch_size, sampler=sampler,
                       generator=torch.Generator(), **common)

    def shard(ds: Dataset) -> DataLoader:
        # Evaluation shards by rank without padding; counts are summed across ranks afterwards.
        part = Subset(ds, range(info.rank, len(ds), info.world_size))
        return DataLoader(part, batch_size=cfg.eval_batch_size, shuffle=False, **common)

    return train, sampler, shard(val_ds), shard(test_ds)


def _autocast(device: torch.device, cfg: RunConfig):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp and device.type == "cuda")


def _count_correct(logits: torch.Tensor, target: torch.Tensor, k: int) -> torch.Tensor:
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return (top == target[:, None]).any(dim=1).sum()


def _summarise(sums: torch.Tensor, info: DistInfo, prefix: str) -> dict[str, float]:
    loss, top1, top5, n = all_reduce_sum(sums, info).tolist()
    n = max(n, 1.0)
    return {f"{prefix}_loss": loss / n, f"{prefix}_acc": 100.0 * top1 / n, f"{prefix}_top5": 100.0 * top5 / n}


def train_epoch(net: nn.Module, model: nn.Module, loader: DataLoader, optimizers: list[torch.optim.Optimizer],
                algorithm: Algorithm, cfg: RunConfig, device: torch.device, info: DistInfo, epoch: int) -> dict[str, float]:
    """One pass over the training data. `net` may be the DDP wrapper of `model`; every optimiser
    steps after each backward pass (Peek-a-Boo has two: Bop for signs, SGD for BN and the classifier)."""
    net.train()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top1, top5, n: no sync per step
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
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
def evaluate(model: nn.Module, loader: DataLoader, cfg: RunConfig, device: torch.device, info: DistInfo,
             prefix: str) -> dict[str, float]:
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with _autocast(device, cfg):
            logits = model(x).float()
        sums[:3] += torch.stack([F.cross_entropy(logits, y, reduction="sum"), _count_correct(logits, y, 1),
                                 _count_correct(logits, y, 5)]).double()
        sums[3] += len(y)
    return _summarise(sums, info, prefix)


def summarise_run(history: list[dict[str, Any]], run_dir: Path) -> dict[str, Any]:
    """The result of a run: last epoch's metrics, the epoch with the best val_acc, where outputs are."""
    last = history[-1]
    best = max(history, key=lambda m: m["val_acc"])
    phase_ends = {m["phase"]: m for m in history}  # each phase's last epoch (e.g. end of search, of fine-tune)
    return {"run_dir": str(run_dir), "epochs_completed": len(history), "final": last,
            "best_val_acc": best["val_acc"], "best_epoch": best["epoch"], "test_acc_at_best_val": best["test_acc"],
            "phases": {name: {"epoch": m["epoch"], "val_acc": m["val_acc"], "test_acc": m["test_acc"]}
                       for name, m in phase_ends.items()}}


def _as_list(saved_state) -> list:
    """Optimiser states as saved: a list (one per optimiser); older checkpoints held one dict."""
    if saved_state is None:
        return []
    return saved_state if isinstance(saved_state, list) else [saved_state]


def _format_line(m: dict[str, Any], epochs: int) -> str:
    return (f"epoch {m['epoch']:>3}/{epochs}  loss {m['train_loss']:.4f}  train {m['train_acc']:5.1f}%  "
            f"val {m['val_acc']:5.1f}%  test {m['test_acc']:5.1f}%  density {m['density']:.4f}  "
            f"lr {m['lr']:.4g}  {m['seconds']:.1f}s")


def train(cfg: RunConfig, run_dir: str | Path | None = None, callbacks: Iterable[EpochCallback] = (),
          log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Train one run to completion (resuming from its checkpoint if one exists); return its result.

    Under torch.distributed every rank calls this; data is sharded by rank, evaluation metrics are
    summed across ranks and only rank 0 writes files. Callbacks run on every rank after each epoch.
    """
    info = dist_info()
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
    datasets = build_datasets(cfg)  # missing or broken data fails before the run folder is written
    error = None
    if info.is_main:
        try:
            claim_run_dir(run_dir, cfg)
        except ConfigError as exc:
            error = str(exc)
    error = broadcast_error(error, info)
    if error:
        raise ConfigError(error)

    device = resolve_device(cfg, info)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    algorithm = ALGORITHMS[cfg.algo]
    model = build_model(cfg).to(device)
    phases = algorithm.phases(cfg)
    total = sum(phase.epochs for phase in phases)

    state, saved = RunState(), None
    ckpt_path = run_dir / CHECKPOINT
    # rank 0 (the writer) checks and repairs the folder first; the others then only read it
    saved, error = None, None
    if info.is_main:
        try:
            saved = load_latest_checkpoint(ckpt_path, repair=True)
        except CheckpointError as exc:
            error = str(exc)
    error = broadcast_error(error, info)
    if error:
        raise CheckpointError(error)
    if not info.is_main:
        saved = load_latest_checkpoint(ckpt_path, repair=False)
    if saved is not None:
        model.load_state_dict(saved["model"])
        state = RunState(saved["epoch"], list(saved["history"]))
        if log and info.is_main and state.epoch < total:
            log(f"resuming {run_dir} from epoch {state.epoch}")

    train_loader, sampler, val_loader, test_loader = make_loaders(cfg, info, datasets)
    writer = None
    if info.is_main:
        from tensorboardX import SummaryWriter
        writer = SummaryWriter(str(run_dir / "tb"))
    try:
        starts = [sum(p.epochs for p in phases[:i]) for i in range(len(phases))]
        for phase, phase_start in zip(phases, starts):
            phase_end = phase_start + phase.epochs
            if state.epoch >= phase_end:
                continue
            fresh = state.epoch == phase_start
            algorithm.start_phase(model, cfg, phase, fresh)
            params = [p for p in model.parameters() if p.requires_grad]
            factor = schedule_factor(phase.schedule, phase.epochs)
            pairs = algorithm.optimizers(model, cfg, phase) if params else []
            optimizers = [opt for opt, _ in pairs]
            schedulers = [torch.optim.lr_scheduler.LambdaLR(opt, fn) for opt, fn in pairs]
            if optimizers and not fresh and saved is not None and saved.get("phase", "train") == phase.name:
                for opt, sched, opt_state, sched_state in zip(optimizers, schedulers, _as_list(saved["optimizer"]),
                                                               _as_list(saved["scheduler"]), strict=True):
                    opt.load_state_dict(opt_state)
                    sched.load_state_dict(sched_state)
            # DDP registers the parameters that train when it wraps, so each phase wraps anew
            net = model
            if info.active and params:
                net = nn.parallel.DistributedDataParallel(
                    model, device_ids=[device.index] if device.type == "cuda" else None)
            for epoch in range(state.epoch, phase_end):
                begin = time.perf_counter()
                torch.manual_seed(_epoch_seed(cfg, epoch, info.rank))
                sampler.set_epoch(epoch)
                train_loader.generator.manual_seed(_epoch_seed(cfg, epoch, info.rank))
                metrics: dict[str, Any] = {"epoch": epoch + 1, "phase": phase.name,
                                           "lr": phase.optimizer.lr * factor(epoch - phase_start)}
                algorithm.on_epoch_start(model, cfg, epoch)
                metrics.update(train_epoch(net, model, train_loader, optimizers, algorithm, cfg, device, info, epoch))
                metrics.update(algorithm.epoch_metrics(optimizers))
                for scheduler in schedulers:
                    scheduler.step()
                algorithm.refresh(model, cfg, epoch)
                metrics.update(evaluate(net, val_loader, cfg, device, info, "val"))
                metrics.update(evaluate(net, test_loader, cfg, device, info, "test"))
                check_finite(metrics)  # every rank sees the same reduced losses, so all stop together
                for suffix, mode in algorithm.evaluation_modes(model, cfg, phase).items():
                    with mode:
                        extra = {**evaluate(net, val_loader, cfg, device, info, "val"),
                                 **evaluate(net, test_loader, cfg, device, info, "test")}
                    metrics.update({f"{key}_{suffix}": value for key, value in extra.items()})
                metrics["density"] = measured_density(model)
                metrics["seconds"] = time.perf_counter() - begin
                state.epoch, state.history = epoch + 1, state.history + [metrics]
                if info.is_main:
                    save_checkpoint({"format": CHECKPOINT_FORMAT, "config": cfg.to_dict(), "epoch": state.epoch,
                                     "phase": phase.name, "history": state.history, "model": model.state_dict(),
                                     "optimizer": [opt.state_dict() for opt in optimizers],
                                     "scheduler": [sched.state_dict() for sched in schedulers]}, ckpt_path)
                    write_jsonl(state.history, run_dir / "metrics.jsonl")
                    for key, value in metrics.items():
                        if isinstance(value, float):
                            writer.add_scalar(key.replace("_", "/", 1), value, epoch + 1)
                    writer.flush()
                    if log:
                        log(_format_line(metrics, total))
                barrier(info)  # nobody reads a checkpoint that rank 0 is still writing
                for callback in callbacks:
                    callback(metrics, ckpt_path)
    finally:
        if writer is not None:
            writer.close()
    result = summarise_run(state.history, run_dir)
    if info.is_main:
        write_json(result, run_dir / "result.json")
    return result
