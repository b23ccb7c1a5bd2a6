"""Real Ray sweeps on CPU: ASHA, DDP trials, the driver killed and rerun, a two-node cluster, bad specs."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.cli import run_main
from pipeline.sweep import main as sweep_command
from tests.conftest import REPO, run_cli

BASE = {"dataset": "digits", "arch": "conv_digits", "algo": "ep", "density": 0.5, "init": "signed_constant",
        "epochs": 4, "batch_size": 64, "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}}


def write_spec(folder: Path, name: str, **sections) -> Path:
    spec = {"name": name, "base": {**BASE, **sections.pop("base", {})}, **sections}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def tables(storage: Path, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_parquet(storage / name / "trials.parquet"), pd.read_parquet(storage / name / "epochs.parquet")


def assert_epochs_complete(trials: pd.DataFrame, epochs: pd.DataFrame) -> None:
    """Every trial's epochs are 1..epochs_completed, each exactly once."""
    for row in trials.itertuples():
        got = epochs.loc[epochs.trial_id == row.trial_id, "epoch"].tolist()
        assert got == list(range(1, row.epochs_completed + 1)), (row.trial_id, got)


def test_asha_stops_hopeless_trials_and_every_epoch_is_in_the_tables(tmp_path):
    spec = write_spec(tmp_path, "asha", grid={"algo": ["ep", "random_mask"], "density": [0.1, 0.5]},
                      scheduler={"name": "asha", "metric": "val_acc", "mode": "max", "grace_period": 1,
                                 "reduction_factor": 2})
    proc = run_cli("pipeline.sweep", str(spec), "--storage", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"results: {tmp_path / 'out' / 'asha'}/trials.parquet" in proc.stdout
    # a healthy sweep's console: progress lines with done/total and an ETA, no ERROR, no traceback
    console = proc.stdout + proc.stderr
    assert "ERROR" not in console and "Traceback" not in console, console[-4000:]
    # nor Tune's own experiment box and TensorBoard hint: the progress line is the console
    assert "Configuration for experiment" not in console and "tensorboard --logdir" not in console, console[-4000:]
    assert re.search(r"^progress: \d/4 trials done.* \| epochs \d+/\d+ \| ETA \d+(m\d\ds|s) at [0-9.]+ epochs/s", console,
                     re.M), console[-3000:]
    assert re.search(r"^progress: 4/4 trials done \(\d completed, \d stopped_early\) \| epochs (\d+)/\1 \| "
                     r"best val_acc \d+\.\d\d \([0-9a-f]{10}\)$", console, re.M), console[-3000:]
    trials, epochs = tables(tmp_path / "out", "asha")
    assert len(trials) == 4 and set(trials.status) <= {"completed", "stopped_early"}
    stopped = trials[trials.status == "stopped_early"]
    assert len(stopped) >= 1 and (stopped.epochs_completed < 4).all() and (stopped.stop_reason == "asha").all()
    # the hopeless ones (at chance) are cut: they start after the edge-popup trials have set the rungs
    assert set(trials[trials.algo == "random_mask"].status) == {"stopped_early"}
    assert_epochs_complete(trials, epochs)
    assert len(epochs) == trials.epochs_completed.sum()
    # the schema researchers filter on
    assert {"sweep", "trial_id", "config_hash", "arch", "algo", "density", "sparsity", "init", "seed", "optimizer_lr",
            "best_val_acc", "last_test_acc", "wall_time_s", "device", "checkpoint", "versions"} <= set(trials.columns)
    assert (trials.sparsity == 1 - trials.density).all()
    ep = trials[(trials.algo == "ep") & (trials.density == 0.5)].iloc[0]
    assert ep.status == "completed" and ep.best_val_acc > 90
    # the copies resume needs, no more: a complete run keeps its last checkpoint, a stopped one its two newest
    for row in trials.itertuples():
        kept = sorted(p.name[:5] for p in (tmp_path / "out" / "runs" / row.config_hash / "ckpt").glob("*.pt"))
        newest = [f"{e:05d}" for e in range(1, row.epochs_completed + 1)]
        assert kept == (newest[-1:] if row.status == "completed" else newest[-2:]), (row.status, kept)
    # per-trial TensorBoard logs under the sweep folder
    for trial_id in trials.trial_id:
        assert list((tmp_path / "out" / "asha" / "tune").glob(f"attempt-*/trial_{trial_id}/events.out.tfevents.*"))
    # ASHA's decision for each trial it stopped: the rung, the trial's value there, the cut-off it missed
    assert (stopped.asha_rung >= 1).all() and (stopped.asha_value < stopped.asha_cutoff).all()
    assert trials[trials.status == "completed"].asha_rung.isna().all()
    # the report it points at counts what ASHA saved, as recomputed from the epoch rows
    report = tmp_path / "out" / "asha" / "report" / "report.md"
    assert f"report: {report}" in proc.stdout
    run = epochs.groupby("trial_id").size()
    saved = sum(4 - run[t] for t in stopped.trial_id)
    assert saved > 0
    assert (f"4 trials: {4 - len(stopped)} completed, {len(stopped)} stopped early, 0 errored. They ran "
            f"{len(epochs)} of the 16 epochs a full run of every trial would take; early stopping saved {saved} "
            f"epochs ({100 * saved / 16:.1f}% of the budget)") in report.read_text()
    # the published comparison on these tables counts the completed trials only
    from tests.test_protocols import assert_comparison_counts_completed_trials_only
    assert_comparison_counts_completed_trials_only(trials)


@pytest.mark.slow
def test_ddp_trials_run_back_to_back_and_a_killed_worker_is_replaced_from_the_last_checkpoint(tmp_path):
    # 2 CPUs hold one 2-worker trial at a time: a leaked placement group would hang the second trial.
    # While the first trial trains, its rank-0 worker process is SIGKILLed: Ray Train must restart the
    # worker group, which resumes from the run store's newest checkpoint, and the trial must complete.
    spec = write_spec(tmp_path, "ddp", base={"epochs": 4}, grid={"seed": [0, 1]}, scheduler={"name": "fifo"},
                      resources={"workers_per_trial": 2, "cpus_per_worker": 1}, max_failures=1)
    cmd = [sys.executable, "-m", "pipeline.sweep", str(spec), "--storage", str(tmp_path / "out")]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    driver = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed = None
    deadline = time.time() + 300
    while killed is None and time.time() < deadline and driver.poll() is None:
        for record in (tmp_path / "out" / "runs").glob("*/record.json"):
            try:
                rows = json.loads(record.read_text())["history"]
            except (OSError, ValueError):
                continue
            if 1 <= len(rows) <= 2:
                killed = (record.parent.name, rows[-1]["pid"], len(rows))
                os.kill(killed[1], signal.SIGKILL)
                break
        time.sleep(0.05)
    output, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, output[-3000:]
    trials, epochs = tables(tmp_path / "out", "ddp")
    assert sorted(trials.seed) == [0, 1] and (trials.status == "completed").all()
    assert_epochs_complete(trials, epochs)  # no gap, no duplicate, for the restarted trial too
    assert (trials.best_val_acc > 50).all()
    assert all(f"{tmp_path / 'out'}/runs/" in c for c in trials.checkpoint)  # the store holds the checkpoints
    if killed is None:  # each trial's epochs were recorded in one burst: no moment to kill was seen
        pytest.skip("the epochs arrived too late to kill a worker mid-trial on this machine")
    restarted = epochs[epochs.trial_id == killed[0]]
    after = restarted[restarted.pid != killed[1]]
    assert len(after) >= 1 and after.epoch.min() > 1  # a new worker, continuing from a checkpoint
    assert after.epoch.min() <= killed[2] + 1


def test_failing_and_diverging_trials_fail_once_with_their_whole_reason_and_the_sweep_goes_on(tmp_path):
    # The cifar10 points have no data. At lr 1e12 dense training diverges (NaN); the frozen random mask
    # trains nothing, so the lr cannot hurt it: the digits random-mask trial must complete. (Edge-popup
    # was that trial until its scores' NaN, at a finite loss, also counted as divergence:
    # tests/test_safety.py.) Both failures would repeat on a retry, so neither is retried.
    spec = write_spec(tmp_path, "failing", base={"epochs": 2, "data_dir": str(tmp_path / "no_data"),
                                                 "optimizer": {"name": "sgd", "lr": 1.0e12, "momentum": 0.9}},
                      grid={"dataset": ["digits", "cifar10"], "algo": ["random_mask", "dense"]}, max_failures=2)
    proc = run_cli("pipeline.sweep", str(spec), "--storage", str(tmp_path / "out"))
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "3 trial(s) errored" in proc.stdout
    trials, epochs = tables(tmp_path / "out", "failing")
    digits = trials[trials.dataset == "digits"].set_index("algo")
    assert digits.loc["random_mask", "status"] == "completed" and digits.loc["random_mask", "epochs_completed"] == 2
    diverged = digits.loc["dense"]
    assert diverged.status == "errored" and diverged.epochs_completed == 0
    assert re.fullmatch(r"diverged: train_loss is (nan|inf) at epoch 1 \(lr 1e\+12\)", diverged.stop_reason), \
        diverged.stop_reason
    bad = trials[(trials.dataset == "cifar10") & (trials.algo == "random_mask")].iloc[0]
    assert bad.status == "errored" and bad.epochs_completed == 0
    missing = (f"dataset cifar10: missing cifar-10-batches-py/data_batch_1, cifar-10-batches-py/data_batch_2, "
               f"cifar-10-batches-py/data_batch_3, cifar-10-batches-py/data_batch_4, cifar-10-batches-py/data_batch_5, "
               f"cifar-10-batches-py/test_batch, cifar-10-batches-py/batches.meta under {tmp_path / 'no_data'}; "
               f"extract the python-version archive of CIFAR10 in {tmp_path / 'no_data'}, or set download: true "
               "where a network is available")
    assert bad.stop_reason == missing  # whole: not cut before the fix
    console = proc.stdout + proc.stderr
    for trial in trials[trials.status == "errored"].itertuples():
        # one attempt each (max_failures: 2 is for real faults), one line, no traceback
        assert console.count(f"error: trial {trial.trial_id}: ") == 1, console[-4000:]
        assert not list((tmp_path / "out" / "failing" / "tune").glob(f"attempt-*/trial_{trial.trial_id}/error.txt"))
    assert f"error: trial {bad.trial_id}: {missing} (not retried" in console
    assert "Traceback" not in console, console[-4000:]
    # the dry-run finds the missing data before anything runs, with pipeline.run's message
    dry = run_cli("pipeline.sweep", str(spec), "--storage", str(tmp_path / "dry"), "--dry-run")
    assert dry.returncode == 2 and dry.stderr == f"error: {missing}\n", dry.stderr
    assert not (tmp_path / "dry").exists()


def test_storage_given_as_a_uri_goes_through_the_object_store_code_path(tmp_path, monkeypatch):
    # S3 is out of reach here; a file:// URI takes the same pyarrow-filesystem branches (probe, spec
    # record, tables written and results read through the URI) and Ray's syncing to remote storage.
    # Credentials come from the environment (the AWS chain) and must not end up in any result file.
    secret = "hn-test-secret-5f3a9c"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAHNTESTKEY0000")
    spec = write_spec(tmp_path, "remote", base={"epochs": 2}, grid={"seed": [0, 1]})
    uri = f"file://{tmp_path}/bucket/prefix"
    proc = run_cli("pipeline.sweep", str(spec), "--storage", uri)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"results: {uri}/remote/trials.parquet" in proc.stdout
    trials = pd.read_parquet(f"{uri}/remote/trials.parquet")
    epochs = pd.read_parquet(f"{uri}/remote/epochs.parquet")
    assert len(trials) == 2 and (trials.status == "completed").all()
    assert_epochs_complete(trials, epochs)
    written = [p for p in (tmp_path / "bucket").rglob("*") if p.is_file()]
    assert len(written) > 10
    for path in written:
        data = path.read_bytes()
        assert secret.encode() not in data and b"AKIAHNTESTKEY0000" not in data, path


def _ray(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ray.scripts.scripts", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **env})


@pytest.mark.slow
def test_two_node_local_cluster_runs_trials_on_both_nodes(tmp_path):
    port = 6391
    head = _ray("start", "--head", f"--port={port}", "--num-cpus=1", "--num-gpus=0", "--include-dashboard=true",
                "--dashboard-port=8275")
    assert head.returncode == 0, head.stderr
    try:
        # the head turned token authentication on; the joining node presents the token
        worker = _ray("start", f"--address=127.0.0.1:{port}", "--num-cpus=1", "--num-gpus=0",
                      '--resources={"second_node": 1}', RAY_AUTH_MODE="token")
        assert worker.returncode == 0, worker.stderr
        # two 1-CPU trials on two 1-CPU nodes: they can only run side by side, one on each node
        spec = write_spec(tmp_path, "twonode", base={"epochs": 3}, grid={"seed": [0, 1]},
                          scheduler={"name": "fifo"})
        proc = run_cli("pipeline.sweep", str(spec), "--storage", str(tmp_path / "out"), "--address",
                       f"127.0.0.1:{port}")
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        trials, epochs = tables(tmp_path / "out", "twonode")
        assert len(trials) == 2 and (trials.status == "completed").all()
        assert_epochs_complete(trials, epochs)
        assert epochs.node_id.nunique() == 2  # both nodes trained
    finally:
        _ray("stop", "--force")


@pytest.mark.parametrize("sections,message", [
    ({"grid": {"densty": [0.1]}}, "grid: unknown key 'densty': did you mean 'density'?"),
    ({"grid": {}}, "grid: empty"),
    ({"grid": {"density": []}}, "grid.density: empty list"),
    ({"grid": {"density": [0.5, 1.5]}}, "grid: density: must be in (0, 1]"),
    ({"grid": {"optimizer.lr": {"logunifrom": [0.01, 0.1]}}}, "grid.optimizer.lr: a sampled axis is one of"),
    ({"scheduler": {"name": "asha", "metrc": "val_acc"}}, "unknown key 'scheduler.metrc': did you mean 'scheduler.metric'?"),
    ({"scheduler": {"name": "hyperband"}}, "scheduler.name: unknown scheduler 'hyperband'; valid: asha, fifo"),
    ({"resources": {"workers_per_trial": 0}}, "resources.workers_per_trial: must be >= 1"),
    ({"resources": {"gpus_per_worker": 1.5}}, "resources.gpus_per_worker: fractions only below 1"),
    ({"storage": 3}, "storage: expected a path or s3:// URI"),
])
def test_bad_specs_fail_before_anything_runs(tmp_path, capsys, sections, message):
    spec = write_spec(tmp_path, "bad", **sections)
    assert run_main(sweep_command, [str(spec), "--storage", str(tmp_path / "out")] if "storage" not in sections
                    else [str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_unwritable_storage_fails_before_ray_starts(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    spec = write_spec(tmp_path, "s", grid={"seed": [0]})
    assert run_main(sweep_command, [str(spec), "--storage", str(blocker / "results")]) == 2
    assert f"storage: cannot write to {blocker / 'results'} (Not a directory)" in capsys.readouterr().err


def test_dry_run_lists_trials_and_resources_and_runs_nothing(tmp_path, capsys):
    spec = write_spec(tmp_path, "dry", grid={"algo": ["ep", "random_mask"], "density": [0.1, 0.5],
                                             "optimizer.lr": {"loguniform": [0.01, 0.2]}},
                      resources={"workers_per_trial": 2, "cpus_per_worker": 4, "gpus_per_worker": 0.5})
    assert run_main(sweep_command, [str(spec), "--dry-run", "--storage", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "4 trial(s), each 2 worker(s) x (4 CPU, 0.5 GPU)" in out
    # each trial with its run hash and its drawn value (drawn now, fixed by the grid point and the repeat)
    assert re.search(r"  3  [0-9a-f]{10}  algo=random_mask density=0.5 optimizer.lr=0\.[0-9]+\n", out), out
    assert not (tmp_path / "out").exists()


def test_infeasible_resources_fail_fast_instead_of_waiting(tmp_path):
    spec = write_spec(tmp_path, "gpu", grid={"seed": [0]}, resources={"workers_per_trial": 1, "gpus_per_worker": 1})
    start = time.time()
    proc = run_cli("pipeline.sweep", str(spec), "--storage", str(tmp_path / "out"), timeout=180)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "error: resources: a trial needs 1 worker(s) of 1 CPU and 1 GPU, but the cluster's 1 node(s) can hold 0" \
        in proc.stderr
    assert time.time() - start < 120
    assert not (tmp_path / "out" / "gpu").exists()  # nothing written
