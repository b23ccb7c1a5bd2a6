"""Helpers for tests that run `pipeline.sweep` as a user would and interrupt it: start the driver in
a session of its own, watch the run store, kill the session (the driver and the Ray it started)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from tests.conftest import REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
METRICS = ["epoch", "phase", "train_loss", "train_acc", "val_acc", "val_loss", "test_acc", "test_loss",
           "measured_density"]


def start(spec: Path, storage: Path, *args: str, log: Path | None = None) -> subprocess.Popen:
    out = open(log, "a") if log else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "pipeline.sweep", str(spec), "--storage", str(storage), *args],
                            cwd=REPO, env=ENV, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def run(spec: Path, storage: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.sweep", str(spec), "--storage", str(storage), *args],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)


def session_members(sid: int) -> list[int]:
    """Every live process of session `sid` (the driver's own session holds the Ray it started)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                pids.append(int(entry.name))
    return pids


def kill_session(driver: subprocess.Popen, sig: int = signal.SIGKILL, grace_s: float = 60.0) -> None:
    """Send `sig` to the driver's process group; then make sure nothing of its session outlives it
    (only what this test started is stopped: never `ray stop`)."""
    try:
        os.killpg(driver.pid, sig)
    except ProcessLookupError:
        pass
    try:
        driver.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    deadline = time.time() + 30
    while (left := session_members(driver.pid)) and time.time() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


def epochs_in_store(storage: Path) -> dict[str, int]:
    """Epochs recorded per run (records being replaced read as missing for that instant)."""
    found = {}
    for path in (storage / "runs").glob("*/record.json"):
        try:
            found[path.parent.name] = len(json.loads(path.read_text())["history"])
        except (OSError, ValueError):
            continue
    return found


def tables(storage: Path, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_parquet(storage / name / "trials.parquet"), pd.read_parquet(storage / name / "epochs.parquet")


def outcome(storage: Path, name: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A sweep's results without what differs between equal runs (times, pids, nodes)."""
    trials, epochs = tables(storage, name)
    trials = trials[["trial_id", "status", "stop_reason", "epochs_completed", "best_val_acc",
                     "last_test_acc"]].sort_values("trial_id").reset_index(drop=True)
    epochs = epochs[["trial_id"] + METRICS].sort_values(["trial_id", "epoch"]).reset_index(drop=True)
    return trials, epochs


def assert_epochs_whole(trials: pd.DataFrame, epochs: pd.DataFrame) -> None:
    """Every trial's epochs are 1..epochs_completed, each exactly once."""
    for row in trials.itertuples():
        got = epochs.loc[epochs.trial_id == row.trial_id, "epoch"].tolist()
        assert got == list(range(1, row.epochs_completed + 1)), (row.trial_id, got)
