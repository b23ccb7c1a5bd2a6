"""What runs inside one Ray Tune trial: ask the run store first, then replay, resume or train.

- A complete run: its recorded epochs are reported to Tune again, in order (so ASHA and the tables
  treat it exactly like a trial that just ran), and nothing is trained.
- A partial run: under the run's lease (pipeline.run_lease), its newest usable checkpoint is taken
  from the store (a damaged newest one falls back to the previous, as in single runs), its epochs up
  to there are replayed, and training continues from it, wherever it was trained before.
- An unknown run: trained from the start and recorded.

A failure that would repeat on every retry (bad data or config, a divergence, an unusable checkpoint)
fails the trial once: its one-line reason is recorded as the trial's outcome and printed, and the
trial ends without an exception, so Tune neither retries it nor prints a traceback. Retries are
left to real faults (a killed worker, a lost node), which raise.

Each epoch is committed to the store (checkpoint, then record) before it is reported to Tune, so
an epoch Tune has seen is never lost. One worker trains in the trial process; several workers run
as a Ray Train `TorchTrainer` (DDP; gloo on CPU, NCCL on GPU) whose rank 0 commits to the store and
whose metrics reach Tune through `TuneReportCallback`. The store is the only authority: nothing is
restored from Tune's or Train's own checkpoints.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import ray
import torch
from ray import tune

from hiddennets.config import RunConfig
from hiddennets.engine import CHECKPOINT, train
from hiddennets.errors import CheckpointError, ConfigError, DivergedError
from hiddennets.identity import config_hash
from hiddennets.run_dir import claim_run_dir
from hiddennets.validation import config_from_dict
from pipeline.run_lease import hold_run
from pipeline.run_store import RunRecord, RunStore
from pipeline.spec import import_plugins
from pipeline.sweep_view import write_outcome
from pipeline.text import one_line

Report = Callable[[dict[str, Any]], None]
# Raised the same way on every attempt: DataError is a ConfigError
FAILS_THE_SAME_WAY = (ConfigError, DivergedError, CheckpointError)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "cpu"


def for_tune(row: dict[str, Any]) -> dict[str, Any]:
    """An epoch row as Tune sees it: without the per-layer counts (Tune would make a column of every
    layer; layers.parquet has them, from the store)."""
    return {k: v for k, v in row.items() if k != "layers"}


def replay(record: RunRecord, report: Report) -> None:
    """Report the recorded epochs again, in order, with their original pid, node and times."""
    for row in record.history:
        report({**for_tune(row), "replayed": True})


def restore_into(store: RunStore, record: RunRecord, run_dir: Path, repair: bool) -> RunRecord:
    """Put the run's newest usable checkpoint into `run_dir` for the engine to resume from. With
    `repair` (the one process that writes the record), a fallback to an older checkpoint cuts the
    record back to that epoch: the epochs after it are trained again, identically."""
    claim_run_dir(run_dir, config_from_dict(record.config))
    found = store.load_checkpoint(record, _warn if repair else (lambda _: None))
    if found is None:
        if record.history and repair:  # epochs without a checkpoint cannot be continued: train them again
            return store.truncate(record, 0)
        return record
    blob, _, epoch = found
    (run_dir / CHECKPOINT).write_bytes(blob)
    return store.truncate(record, epoch) if repair else record


def epoch_committer(store: RunStore, record: RunRecord, run_dir: Path, label: str, report: Report,
                    writer: bool) -> Callable:
    """The engine's epoch callback: commit the epoch to the store (the writer only), then report it."""
    node_id = ray.get_runtime_context().get_node_id()
    device = _device_name()
    state = {"record": record}

    def on_epoch_end(metrics: dict[str, Any], checkpoint: Path | None) -> None:
        row = {**metrics, "node_id": node_id, "device": device, "pid": os.getpid(), "end_time": time.time(),
               "trained_by": label}
        if writer:
            state["record"] = store.commit_epoch(state["record"], row, (run_dir / CHECKPOINT).read_bytes())
        report(for_tune(row))
    return on_epoch_end


def _limit_threads(cpus: float) -> None:
    # Ray packs trials by their CPU share; torch would otherwise use every core in each trial.
    torch.set_num_threads(max(1, int(cpus)))


def in_store(cfg: RunConfig, store: RunStore, report: Report, train_rest: Callable[[RunRecord, Path], None]) -> None:
    """Replay, resume or train `cfg`'s run; `train_rest(record, run_dir)` trains what the record
    lacks, from the checkpoint put into `run_dir`."""
    run_hash = config_hash(cfg)
    found = store.read(run_hash)
    if found.record is not None and found.record.complete:
        replay(found.record, report)
        return
    with hold_run(store, run_hash, notify=lambda m: print(m, flush=True)):
        record = store.start(cfg)  # read again: whoever held the lease may have finished it
        if not record.complete:
            with tempfile.TemporaryDirectory(prefix=f"hiddennets-{run_hash}-") as folder:
                run_dir = Path(folder) / "run"
                record = restore_into(store, record, run_dir, repair=True)
                replay(record, report)
                train_rest(record, run_dir)
            return
    replay(record, report)


def failing_once(run: Callable[[], None], run_hash: str, sweep_uri: str, fingerprint: str) -> None:
    """Run the trial; a failure that a retry would repeat becomes the trial's recorded outcome."""
    try:
        run()
    except FAILS_THE_SAME_WAY as exc:
        reason = one_line(exc)
        print(f"error: trial {run_hash}: {reason} (not retried: it would fail the same way)", flush=True)
        write_outcome(sweep_uri, run_hash, {"status": "errored", "reason": reason, "at": time.time(),
                                            "version_fingerprint": fingerprint, "retried": False})


def quiet_when_stopped() -> None:
    """Ray stops a trial's process with SIGTERM (ASHA, the end of a sweep), and its handler raises
    SystemExit wherever Python is. Landing in a weakref callback, that prints "Exception ignored in ..."
    with a traceback to the sweep's console. The process is stopping as asked: print nothing then."""
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        if not isinstance(unraisable.exc_value, SystemExit):
            previous(unraisable)
    sys.unraisablehook = hook


def single_worker_trial(params: dict[str, Any], *, base: dict[str, Any], cpus: float, storage: str, label: str,
                        sweep_uri: str, fingerprint: str, plugins: list[str] = ()) -> None:
    quiet_when_stopped()
    _limit_threads(cpus)
    run_hash = params["trial"]["id"]
    failing_once(lambda: _single_worker(params, base, storage, label, plugins), run_hash, sweep_uri, fingerprint)


def _single_worker(params, base, storage, label, plugins) -> None:
    import_plugins(plugins)  # a trial process is new: the spec's plugins register their algorithms here too
    cfg = config_from_dict(base, params["trial"]["overrides"])
    store = RunStore(storage)

    def train_rest(record: RunRecord, run_dir: Path) -> None:
        # Tune keeps the trial's TensorBoard log from the reports: no second one inside the run folder
        train(cfg, run_dir, callbacks=[epoch_committer(store, record, run_dir, label, tune.report, writer=True)],
              log=None, tensorboard=False, previous_checkpoint=False)
    in_store(cfg, store, tune.report, train_rest)


def ddp_worker_loop(loop_config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker; torch.distributed is already initialised by TorchTrainer. Each
    (re)start of the worker group resumes from the store's newest checkpoint; rank 0 writes it."""
    import ray.train
    quiet_when_stopped()
    _limit_threads(loop_config["cpus"])
    import_plugins(loop_config.get("plugins", []))
    cfg: RunConfig = config_from_dict(loop_config["run_config"])
    store = RunStore(loop_config["storage"])
    rank = ray.train.get_context().get_world_rank()
    record = store.read(config_hash(cfg)).record
    with tempfile.TemporaryDirectory(prefix=f"hiddennets-{record.hash}-rank{rank}-") as folder:
        run_dir = Path(folder) / "run"
        restore_into(store, record, run_dir, repair=False)  # the trial process already chose a usable one
        reporter = epoch_committer(store, record, run_dir, loop_config["label"],
                                   lambda row: ray.train.report(row), writer=rank == 0)
        train(cfg, run_dir, callbacks=[reporter], log=None, tensorboard=False, previous_checkpoint=False)


def ddp_trial(params: dict[str, Any], *, base: dict[str, Any], workers: int, cpus: float, gpus: float,
              storage: str, label: str, sweep_uri: str, fingerprint: str, train_storage: str, max_failures: int,
              plugins: list[str] = ()) -> None:
    failing_once(lambda: _ddp(params, base, workers, cpus, gpus, storage, label, train_storage, max_failures,
                              plugins), params["trial"]["id"], sweep_uri, fingerprint)


def _ddp(params, base, workers, cpus, gpus, storage, label, train_storage, max_failures, plugins) -> None:
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from hiddennets.data import DATASETS

    import_plugins(plugins)
    cfg = config_from_dict(base, params["trial"]["overrides"])
    # Missing data fails here, once: inside the workers Train would retry it as a fault.
    DATASETS[cfg.dataset].load(cfg)
    store = RunStore(storage)

    def train_rest(record: RunRecord, _run_dir: Path) -> None:  # the workers restore their own copies
        per_worker = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
        trainer = TorchTrainer(
            ddp_worker_loop,
            train_loop_config={"run_config": cfg.to_dict(), "storage": storage, "label": label, "cpus": cpus,
                               "plugins": list(plugins)},
            scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=gpus > 0,
                                                   resources_per_worker=per_worker),
            run_config=ray.train.RunConfig(
                name=f"train-{record.hash}-{os.getpid()}-{int(time.time())}",  # this attempt's own
                storage_path=train_storage,
                callbacks=[TuneReportCallback()],
                failure_config=ray.train.FailureConfig(max_failures=max_failures),
            ),
        )
        trainer.fit()
    in_store(cfg, store, tune.report, train_rest)

