"""What runs inside one Ray Tune trial: hiddennets.train, resumed from Ray's checkpoint.

- One worker: train in the trial process; every epoch `tune.report(metrics, checkpoint=...)`.
- Several workers: the trial builds a Ray Train `TorchTrainer` (DDP; gloo on CPU, NCCL on GPU) named
  after the trial id, so a restarted trial finds its Train run in storage and resumes from that
  run's latest checkpoint; metrics reach Tune through `TuneReportCallback`.

Ray's checkpoint is the authority: the local run folder is rebuilt from it at every (re)start, so the
epochs a trial reports always continue exactly after the checkpoint it resumed from.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import ray
import torch
from ray import tune

from hiddennets.checkpoint import digests_path
from hiddennets.config import RunConfig
from hiddennets.engine import CHECKPOINT, train
from hiddennets.run_dir import CONFIG_FILE
from hiddennets.validation import config_from_dict
from pipeline.spec import import_plugins

# what a reported checkpoint holds: enough to rebuild the run folder anywhere
# (the newest checkpoint and its digest list; Ray keeps the older generations itself)
CHECKPOINT_FILES = (CHECKPOINT, digests_path(Path(CHECKPOINT)).name, CONFIG_FILE, "metrics.jsonl")


def restore_run_dir(run_dir: Path, checkpoint: ray.tune.Checkpoint | None) -> None:
    """Make `run_dir` hold exactly Ray's latest checkpoint (or nothing, for a fresh start)."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            for name in CHECKPOINT_FILES:
                if (Path(folder) / name).is_file():
                    shutil.copy2(Path(folder) / name, run_dir / name)


def _device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "cpu"


def make_reporter(run_dir: Path, report: Callable[..., None], checkpoint_cls, attach: bool) -> Callable:
    """An epoch callback for hiddennets.train that reports metrics (+ checkpoint if `attach`) to Ray."""
    node_id = ray.get_runtime_context().get_node_id()
    device = _device_name()

    def on_epoch_end(metrics: dict[str, Any], checkpoint: Path | None) -> None:
        extra = {"node_id": node_id, "device": device, "pid": os.getpid()}
        if not attach:
            report({**metrics, **extra}, checkpoint=None)
            return
        with tempfile.TemporaryDirectory(prefix="hiddennets-ckpt-") as folder:
            for name in CHECKPOINT_FILES:
                if (run_dir / name).is_file():
                    shutil.copy2(run_dir / name, Path(folder) / name)
            report({**metrics, **extra}, checkpoint=checkpoint_cls.from_directory(folder))
    return on_epoch_end


def resend_resumed_epoch(run_dir: Path, reporter: Callable) -> None:
    """Report again the epoch a restored checkpoint ends at. Its metrics travel with its checkpoint
    in one report; a worker killed right then can leave the checkpoint saved while the metrics never
    reach Tune (seen with Ray Train restarting a DDP worker group), which would leave a gap in the
    epochs table. Earlier epochs cannot be missing: reports arrive in order. A duplicate is harmless:
    the tables keep one row per (trial, epoch, phase)."""
    path = run_dir / "metrics.jsonl"
    rows = path.read_text().splitlines() if path.is_file() else []
    if rows:
        reporter({**json.loads(rows[-1]), "resent": True}, None)


def _limit_threads(cpus: float) -> None:
    # Ray packs trials by their CPU share; torch would otherwise use every core in each trial.
    torch.set_num_threads(max(1, int(cpus)))


def single_worker_trial(overrides: dict[str, Any], *, base: dict[str, Any], cpus: float,
                        plugins: list[str] = ()) -> None:
    _limit_threads(cpus)
    import_plugins(plugins)  # a trial process is new: the spec's plugins register their algorithms here too
    cfg = config_from_dict(base, overrides)
    run_dir = Path(tune.get_context().get_trial_dir()) / "run"
    restore_run_dir(run_dir, tune.get_checkpoint())
    resend_resumed_epoch(run_dir, make_reporter(run_dir, tune.report, tune.Checkpoint, attach=False))
    # Tune keeps the trial's TensorBoard log from the reports: no second one inside the run folder
    train(cfg, run_dir, callbacks=[make_reporter(run_dir, tune.report, tune.Checkpoint, attach=True)], log=None,
          tensorboard=False)


def ddp_worker_loop(loop_config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker; torch.distributed is already initialised by TorchTrainer."""
    import ray.train
    _limit_threads(loop_config["cpus"])
    import_plugins(loop_config.get("plugins", []))
    cfg: RunConfig = config_from_dict(loop_config["run_config"])
    ctx = ray.train.get_context()
    run_dir = Path(tempfile.gettempdir()) / "hiddennets-train" / loop_config["trial_id"] / f"rank{ctx.get_world_rank()}"
    restore_run_dir(run_dir, ray.train.get_checkpoint())
    resend_resumed_epoch(run_dir, make_reporter(run_dir, ray.train.report, ray.train.Checkpoint, attach=False))
    reporter = make_reporter(run_dir, ray.train.report, ray.train.Checkpoint, attach=ctx.get_world_rank() == 0)
    train(cfg, run_dir, callbacks=[reporter], log=None, tensorboard=False)


def ddp_trial(overrides: dict[str, Any], *, base: dict[str, Any], workers: int, cpus: float, gpus: float,
              train_storage: str, max_failures: int, plugins: list[str] = ()) -> None:
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    import_plugins(plugins)
    cfg = config_from_dict(base, overrides)
    trial_id = tune.get_context().get_trial_id()
    per_worker = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}
    trainer = TorchTrainer(
        ddp_worker_loop,
        train_loop_config={"run_config": cfg.to_dict(), "trial_id": trial_id, "cpus": cpus, "plugins": list(plugins)},
        scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=gpus > 0, resources_per_worker=per_worker),
        run_config=ray.train.RunConfig(
            name=f"train-{trial_id}",  # stable: a restarted trial resumes this run from its checkpoint
            storage_path=train_storage,
            callbacks=[TuneReportCallback()],
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        ),
    )
    trainer.fit()
