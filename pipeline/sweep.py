"""Run a sweep on Ray Tune: one trial per grid point, ASHA or FIFO, resumable.

    python -m pipeline.sweep SPEC.yaml [KEY=VALUE ...] [--address auto|HOST:PORT] [--storage PATH|s3://...]
                                       [--dry-run] [--max-concurrent N] [--wait-for-nodes SECONDS]

Without --address a Ray instance is started on this machine. Running the same command again after an
interruption resumes the sweep: finished trials are kept, interrupted ones continue from their last
checkpoint, trials stopped early stay stopped. Results: <storage>/<name>/trials.parquet and
epochs.parquet (docs/TABLES.md), written as trials report.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from hiddennets.errors import ConfigError
from pipeline.cli import run_main
from pipeline.spec import SweepSpec, load_sweep, parse_overrides

SPEC_RECORD = "sweep_spec.json"
DDP_DRIVER_MEMORY = 256 * 1024 ** 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("spec", help="sweep spec (YAML)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides of the spec's base run config")
    p.add_argument("--set", dest="more", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--address", help="Ray cluster to join: 'auto' or HOST:PORT (default: start Ray here)")
    p.add_argument("--storage", help="results root, a path or s3://bucket/prefix (default: the spec's storage)")
    p.add_argument("--dry-run", action="store_true", help="print the trials and their resources; run nothing")
    p.add_argument("--max-concurrent", type=int, help="at most this many trials at once (default: as many as fit)")
    p.add_argument("--wait-for-nodes", type=float, default=0.0, metavar="SECONDS",
                   help="on an autoscaling cluster, wait this long for nodes that can run a trial")
    return p


def describe(spec: SweepSpec) -> str:
    r = spec.resources
    points = spec.grid_points()
    lines = [f"sweep {spec.name}: {len(points)} trial(s), each {r.workers_per_trial} worker(s) x "
             f"({r.cpus_per_worker:g} CPU, {r.gpus_per_worker:g} GPU); scheduler {spec.scheduler.name}"
             + (f" on {spec.scheduler.metric} ({spec.scheduler.mode}), grace {spec.scheduler.grace_period}, "
                f"reduction {spec.scheduler.reduction_factor}" if spec.scheduler.name == "asha" else "")]
    sampled = spec.sampled_axes()
    for i, point in enumerate(points):
        desc = " ".join(f"{k}={v}" for k, v in point.items()) or "(base config)"
        draws = " ".join(f"{k}~{next(iter(v))}{next(iter(v.values()))}" for k, v in sampled.items())
        lines.append(f"  {i:>3}  {desc}  {draws}".rstrip())
    return "\n".join(lines)


def guard_spec(sweep_uri: str, spec: SweepSpec) -> None:
    """One sweep folder, one spec: a rerun with a changed spec would silently mix two experiments."""
    from pipeline.storage import read_text, write_text

    location = f"{sweep_uri}/{SPEC_RECORD}"
    record = {"fingerprint": spec.fingerprint(), "name": spec.name, "base": spec.base, "grid": spec.grid}
    text = read_text(location)
    if text is None:
        write_text(location, json.dumps(record, indent=1, default=str))
        return
    old = json.loads(text)
    if old.get("fingerprint") == spec.legacy_fingerprint():  # recorded before fingerprints were semantic
        write_text(location, json.dumps(record, indent=1, default=str))
    elif old.get("fingerprint") != record["fingerprint"]:
        raise ConfigError(f"{sweep_uri}: holds sweep '{spec.name}' run with a different spec or overrides; "
                          "give this one another name or --storage, or delete that folder")


def _search_space(spec: SweepSpec) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = {k: tune.grid_search(v) for k, v in spec.grid_axes().items()}
    samplers = {"loguniform": lambda a: tune.loguniform(*a), "uniform": lambda a: tune.uniform(*a),
                "choice": tune.choice, "randint": lambda a: tune.randint(*a)}
    for key, value in spec.sampled_axes().items():
        kind, args = next(iter(value.items()))
        space[key] = samplers[kind](args)
    return space


def build_trainable(spec: SweepSpec, sweep_uri: str):
    from ray import tune

    from pipeline.trial import ddp_trial, single_worker_trial

    r = spec.resources
    if r.workers_per_trial == 1:
        fn = tune.with_parameters(single_worker_trial, base=spec.base, cpus=r.cpus_per_worker, plugins=spec.plugins)
        return tune.with_resources(fn, {"cpu": r.cpus_per_worker, "gpu": r.gpus_per_worker})
    fn = tune.with_parameters(ddp_trial, base=spec.base, workers=r.workers_per_trial, cpus=r.cpus_per_worker,
                              gpus=r.gpus_per_worker, train_storage=f"{sweep_uri}/_train",
                              max_failures=spec.max_failures, plugins=spec.plugins)
    # The trial's own process only waits on the TorchTrainer, so it takes no CPU (a 2-worker trial must
    # fit on 2 CPUs); Ray refuses an empty request, so it reserves the memory the driver really uses.
    return tune.with_resources(fn, {"cpu": 0, "memory": DDP_DRIVER_MEMORY})


def trial_dirname(trial) -> str:
    """Trial folders named by trial id alone: stable across restarts (Tune's default adds a timestamp)."""
    return f"trial_{trial.trial_id}"


def make_tuner(spec: SweepSpec, storage: str, sweep_uri: str, concurrent: int):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from pipeline.tune_tables import TablesCallback

    trainable = build_trainable(spec, sweep_uri)
    if tune.Tuner.can_restore(sweep_uri):
        print(f"resuming sweep {spec.name} from {sweep_uri}", flush=True)
        # errored trials run again from their last checkpoint: the cause (storage, data) may be fixed now
        return tune.Tuner.restore(sweep_uri, trainable, resume_unfinished=True, resume_errored=True,
                                  restart_errored=False, param_space=_search_space(spec))
    s = spec.scheduler
    scheduler = (ASHAScheduler(time_attr="epoch", metric=s.metric, mode=s.mode, max_t=spec.max_epochs(),
                               grace_period=s.grace_period, reduction_factor=s.reduction_factor)
                 if s.name == "asha" else FIFOScheduler())
    return tune.Tuner(
        trainable,
        param_space=_search_space(spec),
        tune_config=tune.TuneConfig(scheduler=scheduler, num_samples=spec.num_samples,
                                    max_concurrent_trials=concurrent, trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=spec.name, storage_path=storage,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=[TablesCallback(spec, sweep_uri)],
            verbose=1,
        ),
    )


def summary(trials) -> str:
    cols = [c for c in ("trial_id", "algo", "arch", "density", "init", "seed", "status", "epochs_completed",
                        "best_val_acc", "last_test_acc") if c in trials.columns]
    import pandas as pd
    with pd.option_context("display.width", 160, "display.max_rows", 200, "display.float_format", "{:.2f}".format):
        return trials[cols].to_string(index=False)


def report_or_hint(sweep_uri: str) -> str:
    """Where the report is; a failure to draw it must not hide the finished sweep's results."""
    from pipeline.report import write_report
    try:
        return write_report(sweep_uri)
    except Exception as exc:  # noqa: BLE001 - any failure: the tables are written, say how to retry
        return f"not written ({type(exc).__name__}: {exc}); retry with python -m pipeline.report {sweep_uri}"


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    spec = load_sweep(args.spec, parse_overrides(args.overrides + args.more), storage=args.storage)
    if args.max_concurrent is not None and not 1 <= args.max_concurrent <= 100_000:
        raise ConfigError(f"--max-concurrent: must be in [1, 100000], got {args.max_concurrent}")
    if not 0 <= args.wait_for_nodes <= 86_400:  # NaN fails this too
        raise ConfigError(f"--wait-for-nodes: must be a number of seconds in [0, 86400], got {args.wait_for_nodes}")
    if args.dry_run:
        print(describe(spec))
        return 0
    from pipeline.cluster import check_resources, check_storage, max_concurrent, use_cluster_token, warn_token_permissions
    from pipeline.storage import StorageError, inside_root, probe_storage, storage_failure
    from pipeline.sweep_lock import hold_sweep

    storage = check_storage(spec.storage)
    sweep_uri = f"{storage.rstrip('/')}/{spec.name}"
    inside_root(storage, sweep_uri)

    # Both settings are read when Ray is imported, so they come first.
    # Tune forces an experiment snapshot whenever num_to_keep checkpoints have rotated (so a restore
    # never points at a deleted checkpoint); with short epochs it warns about that on every trial.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    with hold_sweep(sweep_uri):  # a second driver on the same folder refuses here, before Ray starts
        if args.address:
            use_cluster_token()
        import ray
        ray.init(address=args.address, logging_level=logging.WARNING, configure_logging=True)
        warn_token_permissions()
        try:
            check_resources(spec.resources, args.wait_for_nodes)
            guard_spec(sweep_uri, spec)  # the first write, once every check has passed
            print(describe(spec), flush=True)
            tuner = make_tuner(spec, storage, sweep_uri, args.max_concurrent or max_concurrent(spec.resources))
            grid = tuner.fit()
            from pipeline.tables import write_tables
            from pipeline.tune_tables import record_from_result
            trials, _ = write_tables(sweep_uri, spec.name, [record_from_result(r, spec) for r in grid])
        except Exception as exc:
            problem = storage_failure(exc) or probe_storage(sweep_uri)
            if problem is None:
                raise
            raise StorageError(f"{sweep_uri}: the storage failed during the sweep ({problem}); the tables written "
                               "before stay readable; make room or make it writable, then run the same command "
                               "to resume") from None
        finally:
            ray.shutdown()
        report = report_or_hint(sweep_uri)
    print("\n" + summary(trials))
    counts = trials["status"].value_counts().to_dict()
    print(f"\n{len(trials)} trials: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    print(f"results: {sweep_uri}/trials.parquet and {sweep_uri}/epochs.parquet")
    print(f"report: {report}")
    errored = int((trials["status"] == "errored").sum())
    problem = probe_storage(sweep_uri) if errored else None
    if problem:  # the trials failed because the storage did
        raise StorageError(f"{sweep_uri}: {errored} trial(s) errored and the storage is failing ({problem}); the "
                           "tables written before stay readable; make room or make it writable, then run the "
                           "same command to resume")
    if errored:
        print(f"{errored} trial(s) errored (reasons in trials.parquet, column stop_reason); exit code 1")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
