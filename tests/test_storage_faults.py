"""Storage that fills up under a running sweep or run, on a real (small) tmpfs.

Mounting needs root (or CAP_SYS_ADMIN); where that is not available the tests are skipped with the
reason. Everything else is real: the sweep, Ray, the kernel's ENOSPC and EROFS.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from hiddennets.checkpoint import load_latest_checkpoint
from hiddennets.validation import config_from_dict
from hiddennets.engine import train
from tests.conftest import REPO, run_cli
from tests.test_sweep import assert_epochs_complete, write_spec


def _mount(point: Path, options: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True, text=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MiB tmpfs mounted at tmp_path/disk; yields (path, remount) and unmounts afterwards."""
    point = tmp_path / "disk"
    point.mkdir()
    mounted = _mount(point, "size=64m") if os.geteuid() == 0 else None
    if mounted is None or mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() if mounted else 'not root'})")

    def remount(options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(point)], check=True, capture_output=True)
    try:
        yield point, remount
    finally:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def test_a_full_disk_stops_a_run_with_one_line_and_keeps_its_last_checkpoint(small_disk, tmp_path):
    disk, _ = small_disk
    spec = tmp_path / "run.yaml"
    spec.write_text(yaml.safe_dump({"dataset": "digits", "arch": "conv_digits", "width": 0.25, "algo": "ep",
                                    "density": 0.5, "init": "signed_constant", "epochs": 1, "batch_size": 64}))
    run_dir = disk / "run"
    train(config_from_dict(yaml.safe_load(spec.read_text())), run_dir, log=None)
    first = (run_dir / "checkpoint.pt").read_bytes()
    # fill the disk: the next run's first checkpoint cannot be written
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / "filler").write_bytes(b"\0" * (free - len(first) // 2))  # room for half a checkpoint
    spec.write_text(yaml.safe_dump({**yaml.safe_load(spec.read_text()), "epochs": 2}))
    other = disk / "run2"
    proc = run_cli("pipeline.run", str(spec), "--out", str(other))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"error: storage failed (No space left on device: {other}/checkpoint.pt"), proc.stderr
    assert (run_dir / "checkpoint.pt").read_bytes() == first  # the earlier run is untouched
    assert not list(other.glob(".checkpoint.pt.tmp-*"))  # no partial file left to eat more space
    (disk / "filler").unlink()  # room again: the same command resumes and finishes
    proc = run_cli("pipeline.run", str(spec), "--out", str(other))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len((other / "metrics.jsonl").read_text().splitlines()) == 2


def fill(disk: Path) -> Path:
    """Take every free byte of the disk, as a runaway job would."""
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 2**20)
                fh.flush()
        except OSError:
            pass
    return filler


@pytest.mark.slow
def test_storage_filling_up_mid_sweep_is_reported_and_the_sweep_resumes_once_there_is_room(small_disk, tmp_path):
    disk, _ = small_disk
    spec = write_spec(tmp_path, "full", base={"epochs": 2, "width": 0.25}, grid={"seed": [0, 1]},
                      scheduler={"name": "fifo"}, max_failures=0)
    cmd = [sys.executable, "-m", "pipeline.sweep", str(spec), "--storage", str(disk), "--max-concurrent", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    driver = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sweep = disk / "full"
    deadline = time.time() + 300
    while time.time() < deadline and driver.poll() is None:  # until the tables hold some epochs
        if (sweep / "epochs.parquet").exists() and len(pd.read_parquet(sweep / "epochs.parquet")) >= 1:
            break
        time.sleep(0.1)
    filler = fill(disk)
    out, err = driver.communicate(timeout=600)
    assert driver.returncode == 1, out[-2000:] + err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: {sweep}: ") and "No space left on device" in last and \
        "run the same command to resume" in last, last
    # what was written before the disk filled is still readable and consistent
    trials, epochs = pd.read_parquet(sweep / "trials.parquet"), pd.read_parquet(sweep / "epochs.parquet")
    assert len(epochs) >= 1 and not epochs.duplicated(["trial_id", "epoch", "phase"]).any()

    filler.unlink()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials, epochs = pd.read_parquet(sweep / "trials.parquet"), pd.read_parquet(sweep / "epochs.parquet")
    assert len(trials) == 2 and (trials.status == "completed").all(), \
        trials[["trial_id", "status", "stop_reason", "epochs_completed"]].to_string() + proc.stdout[:1500] + proc.stderr[-3000:]
    assert_epochs_complete(trials, epochs)


def test_a_run_on_storage_that_turned_read_only_fails_in_one_line_and_its_results_stay_readable(small_disk,
                                                                                                  tmp_path):
    disk, remount = small_disk
    spec = tmp_path / "run.yaml"
    spec.write_text(yaml.safe_dump({"dataset": "digits", "arch": "conv_digits", "width": 0.25, "algo": "ep",
                                    "density": 0.5, "init": "signed_constant", "epochs": 1, "batch_size": 64}))
    train(config_from_dict(yaml.safe_load(spec.read_text())), disk / "run", log=None)
    before = (disk / "run" / "metrics.jsonl").read_text()
    remount("ro")  # nothing has a file open for writing now, so the kernel allows it
    try:
        proc = run_cli("pipeline.run", str(spec), "epochs=2", "--out", str(disk / "run2"))
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert proc.stderr.strip().splitlines()[-1].startswith(
            f"error: storage failed (Read-only file system: {disk / 'run2'}"), proc.stderr
        assert (disk / "run" / "metrics.jsonl").read_text() == before  # the earlier run is readable
        assert load_latest_checkpoint(disk / "run" / "checkpoint.pt", repair=False)["epoch"] == 1
    finally:
        remount("rw")
