"""Run a sweep on Ray Tune: one trial per grid point, ASHA or FIFO, resumable.

    python -m pipeline.sweep SPEC.yaml [KEY=VALUE ...] [--address auto|HOST:PORT] [--storage PATH|s3://...]
                                       [--name NAME] [--dry-run] [--max-concurrent N] [--wait-for-nodes SECONDS]

Without --address a Ray instance is started on this machine. Every run is recorded in the storage's
run store (<storage>/runs/<hash>, pipeline.run_store) and a sweep is a view over it: running the same
command again after an interruption, or with a grown grid, or under another --name, trains only what
the store lacks (finished runs are replayed, interrupted ones continue from their last checkpoint).
Results: <storage>/<name>/trials.parquet and epochs.parquet (docs/TABLES.md), rebuilt from the store
as trials report; `python -m pipeline.status` shows where a sweep stands.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import atexit
import os
import signal
import sys
import time
import uuid

from pipeline.interrupts import (RESUME_HINT, Interrupted, Interrupts, exit_on_signals_until_ready,
                                 ray_imported_without_crash_handler)

if __name__ == "__main__":  # before the heavy imports below: a Ctrl-C while they load exits cleanly
    exit_on_signals_until_ready()

from hiddennets.algorithms import total_epochs
from hiddennets.config import shown
from hiddennets.errors import ConfigError
from pipeline.asha_phases import check_asha_comparable, check_metric_measured
from pipeline.cli import run_main
from pipeline.spec import SweepSpec, load_sweep, parse_overrides
from pipeline.worker_noise import stopped_trials_quiet
from pipeline.sweep_view import SweepTrial, check_sweep_name, expand_trials, record_version, write_view

DDP_DRIVER_MEMORY = 256 * 1024 ** 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipeline.sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("spec", help="sweep spec (YAML)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides of the spec's base run config")
    p.add_argument("--set", dest="more", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--address", help="Ray cluster to join: 'auto' or HOST:PORT (default: start Ray here)")
    p.add_argument("--storage", help="results root, a path or s3://bucket/prefix (default: the spec's storage)")
    p.add_argument("--name", help="the sweep's name (default: the spec's name); a sweep is a view over the "
                                  "storage's run store, so any name can reuse runs trained before")
    p.add_argument("--dry-run", action="store_true", help="print the trials and their resources; run nothing")
    p.add_argument("--max-concurrent", type=int, help="at most this many trials at once (default: as many as fit)")
    p.add_argument("--wait-for-nodes", type=float, default=0.0, metavar="SECONDS",
                   help="on an autoscaling cluster, wait this long for nodes that can run a trial")
    return p


def describe(spec: SweepSpec, trials: list[SweepTrial], store=None) -> str:
    """The trials in order, with what the run store already holds of each (when given one)."""
    r = spec.resources
    lines = [f"sweep {spec.name}: {len(trials)} trial(s), each {r.workers_per_trial} worker(s) x "
             f"({r.cpus_per_worker:g} CPU, {r.gpus_per_worker:g} GPU); scheduler {spec.scheduler.name}"
             + (f" on {spec.scheduler.metric} ({spec.scheduler.mode}), grace {spec.scheduler.grace_period}, "
                f"reduction {spec.scheduler.reduction_factor}" if spec.scheduler.name == "asha" else "")]
    for i, trial in enumerate(trials):
        desc = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in trial.overrides.items()) or "(base config)"
        state = ""
        if store is not None:
            found = store.read(trial.id)
            state = ("  [record damaged]" if found.damaged else "" if found.record is None
                     else f"  [in store: {len(found.record.history)}/{found.record.epochs_planned} epochs]")
        lines.append(f"  {i:>3}  {trial.id}  {desc}{state}")
    return "\n".join(lines)


def build_trainable(spec: SweepSpec, storage: str, label: str, attempt_uri: str, sweep_uri: str, fingerprint: str):
    from ray import tune

    from pipeline.trial import ddp_trial, single_worker_trial

    r = spec.resources
    common = {"base": spec.base, "storage": storage, "label": label, "plugins": spec.plugins,
              "sweep_uri": sweep_uri, "fingerprint": fingerprint}
    if r.workers_per_trial == 1:
        fn = tune.with_parameters(single_worker_trial, cpus=r.cpus_per_worker, **common)
        return tune.with_resources(fn, {"cpu": r.cpus_per_worker, "gpu": r.gpus_per_worker})
    fn = tune.with_parameters(ddp_trial, workers=r.workers_per_trial, cpus=r.cpus_per_worker,
                              gpus=r.gpus_per_worker, train_storage=f"{attempt_uri}/_train",
                              max_failures=spec.max_failures, **common)
    # The trial's own process only waits on the TorchTrainer, so it takes no CPU (a 2-worker trial must
    # fit on 2 CPUs); Ray refuses an empty request, so it reserves the memory the driver really uses.
    return tune.with_resources(fn, {"cpu": 0, "memory": DDP_DRIVER_MEMORY})


def trial_dirname(trial) -> str:
    """Trial folders named by the run's hash: the same in every attempt and every sweep."""
    return f"trial_{trial.config['trial']['id']}"


def trial_namer(view: list[SweepTrial]):
    """Tune's name for a trial: its number and hash as the dry-run lists them (`trial_003_7b43647b49`),
    whichever trials this attempt runs."""
    number = {t.id: i for i, t in enumerate(view)}

    def name(trial) -> str:
        run_hash = trial.config["trial"]["id"]
        return f"trial_{number[run_hash]:03d}_{run_hash}"
    return name


def attempt_name() -> str:
    """Each driver run is a fresh Tune experiment of its own (never restored: nothing of Tune's is read back)."""
    return time.strftime("attempt-%Y%m%d-%H%M%S") + f"-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def make_tuner(spec: SweepSpec, storage: str, sweep_uri: str, trials: list[SweepTrial], view: list[SweepTrial],
               fingerprint: str, label: str, concurrent: int, known: dict[str, tuple[str, int]], interrupts):
    """A fresh Tune experiment over `trials`, in order (every trial first asks the run store); the
    tables and the progress line show every trial of `view` (`known`: their status before Tune)."""
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    from pipeline.asha import RecordedASHA
    from pipeline.progress import Progress
    from pipeline.tune_tables import TablesCallback

    attempt = attempt_name()
    tune_root = f"{sweep_uri}/tune"
    s = spec.scheduler
    planned = {t.id: total_epochs(t.config) for t in view}
    # max_t is the longest trial's epochs, so each trial runs to its own (a sampled epochs axis); ASHA
    # compares them only at epochs that are the same phase in every trial (pipeline.asha_phases)
    scheduler = (RecordedASHA(sweep_uri=sweep_uri, fingerprint=fingerprint, planned=planned,
                              time_attr="epoch", metric=s.metric, mode=s.mode, max_t=max(planned.values()),
                              grace_period=s.grace_period, reduction_factor=s.reduction_factor)
                 if s.name == "asha" else FIFOScheduler())
    space = {"trial": tune.grid_search([{"id": t.id, "overrides": t.overrides} for t in trials])}
    tables = TablesCallback(sweep_uri, spec.name, storage, view, fingerprint, label,
                            interrupted=lambda: interrupts.received)
    progress = Progress(sweep_uri, fingerprint, planned, known, s.metric, s.mode, asha=s.name == "asha",
                        on_step=interrupts.deliver_to_tune, interrupted=lambda: interrupts.received)
    return tune.Tuner(
        build_trainable(spec, storage, label, f"{tune_root}/{attempt}", sweep_uri, fingerprint),
        param_space=space,
        tune_config=tune.TuneConfig(scheduler=scheduler, num_samples=1, max_concurrent_trials=concurrent,
                                    trial_dirname_creator=trial_dirname, trial_name_creator=trial_namer(view)),
        run_config=tune.RunConfig(
            name=attempt, storage_path=tune_root,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            callbacks=[tables, progress],
            verbose=0,  # our progress line replaces Tune's tables (which lack the scheduler's metric)
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


def trials_to_run(spec: SweepSpec, trials: list[SweepTrial], store) -> list[SweepTrial]:
    """What Tune must run. Under ASHA every trial, in order: complete and stopped ones only replay
    their recorded epochs, which rebuilds ASHA's rungs exactly. Under FIFO no trial depends on another,
    so complete runs are left out altogether (their rows come from the store)."""
    if spec.scheduler.name == "asha":
        return trials
    return [t for t in trials if not ((found := store.read(t.id)).record is not None and found.record.complete)]


def announce(spec: SweepSpec, sweep_uri: str, version, previous, trials: list[SweepTrial], store) -> None:
    started = sum(1 for t in trials if (found := store.read(t.id)).record is not None and found.record.history)
    if previous is None:
        print(f"sweep {spec.name}: spec version {version.number} recorded in {sweep_uri}/versions", flush=True)
    elif previous is version:
        print(f"resuming sweep {spec.name} from {sweep_uri} (spec version {version.number})", flush=True)
    else:
        changed = ", ".join(f"{k}: {shown(a)} -> {shown(b)}" for k, (a, b) in version.data["changed"].items())
        print(f"resuming sweep {spec.name} from {sweep_uri} as spec version {version.number} "
              f"(changed: {changed or 'the trials'})", flush=True)
    if started:
        print(f"{started} of {len(trials)} trial(s) have epochs in the run store {store.root}/runs: they are "
              "replayed or resumed, not trained again", flush=True)


def check_datasets(trials: list[SweepTrial]) -> str:
    """Every trial's dataset is readable on this node (each distinct one read once, as a run reads it):
    the dry-run's check. Raises DataError with pipeline.run's message."""
    from hiddennets.data import DATASETS
    seen = {}
    for trial in trials:
        cfg = trial.config
        key = (cfg.dataset, cfg.data_dir, cfg.download)
        if key not in seen:
            splits = DATASETS[cfg.dataset].load(cfg)
            seen[key] = f"{cfg.dataset} ({len(splits.train)} train / {len(splits.test)} test images)"
    return "data: present on this node: " + ", ".join(seen.values())


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from pipeline.cluster import use_cluster_token
    if args.address:
        use_cluster_token()  # Ray reads its auth mode when it is imported: first
    with ray_imported_without_crash_handler():
        import ray  # noqa: F401 - imported here, once, with that setting (sampled axes import Tune next)
    overrides = parse_overrides(args.overrides + args.more)
    if args.name is not None:
        overrides["name"] = args.name
    spec = load_sweep(args.spec, overrides, storage=args.storage)
    check_sweep_name(spec.name)
    if args.max_concurrent is not None and not 1 <= args.max_concurrent <= 100_000:
        raise ConfigError(f"--max-concurrent: must be in [1, 100000], got {args.max_concurrent}")
    if not 0 <= args.wait_for_nodes <= 86_400:  # NaN fails this too
        raise ConfigError(f"--wait-for-nodes: must be a number of seconds in [0, 86400], got {args.wait_for_nodes}")
    from pipeline.cluster import refuse_relative_storage_in_job
    refuse_relative_storage_in_job(spec.storage, "--storage" if args.storage else "storage")
    trials = expand_trials(spec)
    if spec.scheduler.name == "asha":
        check_asha_comparable(trials)
        check_metric_measured(spec.scheduler.metric, trials)
    if args.dry_run:
        from pipeline.run_store import RunStore
        print(describe(spec, trials, RunStore(spec.storage)), flush=True)
        print(check_datasets(trials))
        return 0
    with Interrupts().installed() as interrupts, stopped_trials_quiet():
        return run_sweep(args, spec, trials, interrupts)


def run_sweep(args, spec: SweepSpec, trials: list[SweepTrial], interrupts: Interrupts) -> int:
    from pipeline.cluster import check_storage, max_concurrent
    from pipeline.run_store import RunStore
    from pipeline.storage import StorageError, inside_root, probe_storage, storage_failure
    from pipeline.sweep_lock import hold_sweep

    storage = check_storage(spec.storage)
    sweep_uri = f"{storage.rstrip('/')}/{spec.name}"
    inside_root(storage, sweep_uri)
    store = RunStore(storage)
    view = None  # (fingerprint, label) once this spec version is recorded

    try:
        with hold_sweep(sweep_uri):  # a second driver on the same folder refuses here, before Ray starts
            try:
                try:
                    to_run = trials_to_run(spec, trials, store)
                    with ray_session(args, spec, interrupts) if to_run else contextlib.nullcontext():
                        version, previous = record_version(sweep_uri, spec, trials)  # the first write
                        view = (version.fingerprint, f"{spec.name}@v{version.number}")
                        interrupts.write_tables = lambda: write_view(sweep_uri, spec.name, store, trials, *view)
                        announce(spec, sweep_uri, version, previous, trials, store)
                        frame, _ = write_view(sweep_uri, spec.name, store, trials, *view)  # pending trials show
                        if to_run:
                            print(describe(spec, trials, store), flush=True)
                            known = {r.trial_id: (r.status, r.epochs_completed) for r in frame.itertuples()}
                            tuner = make_tuner(spec, storage, sweep_uri, to_run, trials, *view,
                                               args.max_concurrent or max_concurrent(spec.resources), known,
                                               interrupts)
                            with interrupts.forwarded_to_tune():
                                tuner.fit()
                        else:
                            print(f"sweep {spec.name}: every trial is complete in the run store; nothing to train",
                                  flush=True)
                        interrupts.finishing()
                except Interrupted:  # before Tune ran: what it would have trained is pending
                    pass
                interrupts.settled()
                if view is None:  # stopped before this spec version was written: nothing of it to show
                    print(RESUME_HINT, flush=True)
                    return interrupts.exit_code
                frame, _ = write_view(sweep_uri, spec.name, store, trials, *view)
            except Exception as exc:
                problem = storage_failure(exc) or probe_storage(sweep_uri)
                if problem is None:
                    raise
                raise StorageError(f"{sweep_uri}: the storage failed during the sweep ({problem}); the tables "
                                   "written before stay readable; make room or make it writable, then run the "
                                   "same command to resume") from None
            report = report_or_hint(sweep_uri)
    except Interrupted:  # while waiting for the sweep's lock
        print(RESUME_HINT, flush=True)
        return interrupts.exit_code
    print("\n" + summary(frame))
    counts = frame["status"].value_counts().to_dict()
    print(f"\n{len(frame)} trials: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    print(f"results: {sweep_uri}/trials.parquet and {sweep_uri}/epochs.parquet")
    print(f"report: {report}")
    if interrupts.received:
        print(RESUME_HINT, flush=True)
        return interrupts.exit_code
    errored = int((frame["status"] == "errored").sum())
    problem = probe_storage(sweep_uri) if errored else None
    if problem:  # the trials failed because the storage did
        raise StorageError(f"{sweep_uri}: {errored} trial(s) errored and the storage is failing ({problem}); the "
                           "tables written before stay readable; make room or make it writable, then run the "
                           "same command to resume")
    if errored:
        print(f"{errored} trial(s) errored (reasons in trials.parquet, column stop_reason); exit code 1")
        return 1
    return 0


@contextlib.contextmanager
def ray_session(args, spec: SweepSpec, interrupts: Interrupts):
    """Ray started (or joined) and able to place a trial, until the sweep ends. A Ray started here is
    stopped with everything it started, whatever ends the sweep."""
    from pipeline.cluster import check_resources, use_cluster_token, warn_token_permissions

    # Read when Ray is imported, so it comes first: Tune warns about frequent experiment snapshots
    # on every trial when epochs are short.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Tune's new console output prints its experiment box and a TensorBoard hint even at verbose=0;
    # the classic reporter at verbose=0 prints nothing, so our progress line is the whole console.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if args.address:
        use_cluster_token()
    import ray
    try:
        try:
            ray.init(address=args.address, logging_level=logging.WARNING, configure_logging=True)
        except SystemExit as exc:  # SIGTERM while Ray starts: Ray's own handler of that moment exits so
            if exc.code != signal.SIGTERM:
                raise
            interrupts.note(signal.SIGTERM)
            raise Interrupted from None
        interrupts.reinstall()  # ray.init installs its own SIGTERM handler (a stack dump, then abort)
        warn_token_permissions()
        check_resources(spec.resources, args.wait_for_nodes)
        yield
    finally:
        started_here = [] if args.address else local_ray_processes()
        ray.shutdown()
        if not args.address:
            # also what Ray spawned after that snapshot (a raylet starting workers as it was stopped):
            # orphaned by then, such a process is no child, but still in this driver's process group;
            # a second look catches what the first ones spawned during the grace period
            started_here += ray_processes_in_my_group(started_here)
            stop_leftovers(started_here)
            stop_leftovers(ray_processes_in_my_group([]), grace_s=1.0)
        else:
            stop_leftovers(started_here)


def local_ray_processes() -> list:
    import psutil
    return psutil.Process().children(recursive=True)


def ray_processes_in_my_group(known: list) -> list:
    """Ray's processes in this driver's process group (or its session, when the driver leads it) that
    `known` does not list: never another group's, and only Ray's, so a user's shell or a `| tee`
    beside the driver is never touched."""
    import psutil
    group, me, seen = os.getpgid(0), os.getpid(), {p.pid for p in known}
    own_session = os.getsid(0) == me  # a session leader (nohup, a scheduler, a test): the session is ours alone
    found = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            ours = os.getpgid(process.pid) == group or (own_session and os.getsid(process.pid) == me)
            if process.pid in seen or process.pid == me or not ours:
                continue
        except (ProcessLookupError, PermissionError):
            continue
        cmdline = " ".join(process.info.get("cmdline") or [])
        if "ray::" in cmdline or "/ray/" in cmdline:
            found.append(process)
    return found


def stop_leftovers(processes: list, grace_s: float = 5.0) -> None:
    """Ray's shutdown leaves its agents to notice on their own that the raylet is gone (up to a
    minute); the processes this driver's Ray started get `grace_s`, then are killed."""
    import psutil
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()


if __name__ == "__main__":
    code = run_main(main)
    if code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        # Interrupted: the tables, the report and the hint are out. The exit handlers (Ray's,
        # multiprocessing's) still run, but not the interpreter's teardown, which can crash (SIGSEGV) with
        # Ray's and torch's native threads half stopped after an interrupt.
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
