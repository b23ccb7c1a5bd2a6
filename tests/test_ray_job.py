"""A sweep submitted as a Ray job (`ray job submit --working-dir`) to a real `ray start --head` on
127.0.0.1 with Ray's token authentication: a relative storage is refused with one line before
anything starts (it would land in Ray's temporary copy of the working folder); an absolute one
works, and `ray status` / `ray job list` answer once RAY_AUTH_MODE=token is set, as README says."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

from tests.conftest import REPO

PORT, DASHBOARD = 6397, 8297


def ray_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    return subprocess.run([sys.executable, "-m", "ray.scripts.scripts", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def stop_cluster(temp_dir: str) -> None:
    """Stop only this test's Ray (its processes name its own temp folder), never `ray stop`."""
    mine = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(temp_dir in part for part in proc.info["cmdline"] or []):
                mine.append(proc)
        except psutil.Error:
            continue
    for proc in mine:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(mine, timeout=10)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass


@pytest.fixture
def cluster():
    temp_dir = tempfile.mkdtemp(prefix="hnjob", dir="/tmp")  # short: Ray's socket paths must fit
    head = ray_cli("start", "--head", "--node-ip-address=127.0.0.1", f"--port={PORT}", "--num-cpus=2",
                   "--num-gpus=0", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                   f"--dashboard-port={DASHBOARD}", f"--temp-dir={temp_dir}")
    assert head.returncode == 0, head.stdout + head.stderr
    try:
        yield temp_dir
    finally:
        stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def working_dir(folder: Path) -> Path:
    """What a user's checkout uploads: the code and a spec whose storage is relative."""
    pkg = folder / "checkout"
    for name in ("pipeline", "hiddennets"):
        shutil.copytree(REPO / name, pkg / name, ignore=shutil.ignore_patterns("__pycache__"))
    spec = {"name": "jobsweep", "storage": "results",
            "base": {"dataset": "digits", "arch": "conv_digits", "algo": "ep", "density": 0.5, "epochs": 2},
            "grid": {"seed": [0]}, "scheduler": {"name": "fifo"}}
    (pkg / "job.yaml").write_text(yaml.safe_dump(spec))
    return pkg


def submit(pkg: Path, *args: str) -> subprocess.CompletedProcess:
    return ray_cli("job", "submit", f"--address=http://127.0.0.1:{DASHBOARD}", f"--working-dir={pkg}", "--",
                   sys.executable, "-m", "pipeline.sweep", "job.yaml", "--address", "auto", *args)


@pytest.mark.slow
def test_a_sweep_as_a_ray_job_refuses_relative_storage_and_keeps_results_at_an_absolute_one(tmp_path, cluster):
    pkg = working_dir(tmp_path)
    refused = submit(pkg)
    logs = refused.stdout + refused.stderr
    assert refused.returncode != 0, logs[-3000:]
    assert "error: storage: 'results' is relative, and this sweep runs as a Ray job whose working folder " in logs
    assert "runtime_resources/working_dir_files/_ray_pkg_" in logs  # it names Ray's copy
    assert "pass an absolute path (--storage /shared/results) or s3://bucket/prefix" in logs
    assert "Traceback" not in logs, logs[-3000:]
    assert not (pkg / "results").exists()

    out = tmp_path / "shared" / "results"
    done = submit(pkg, "--storage", str(out))
    logs = done.stdout + done.stderr
    assert done.returncode == 0, logs[-3000:]
    assert f"results: {out}/jobsweep/trials.parquet" in logs
    trials = pd.read_parquet(out / "jobsweep" / "trials.parquet")
    assert list(trials.status) == ["completed"] and trials.epochs_completed.iloc[0] == 2

    # what README tells a user of a token-authenticated cluster
    status = ray_cli("status", f"--address=127.0.0.1:{PORT}")
    assert status.returncode == 0 and "Resources" in status.stdout, status.stdout + status.stderr
    jobs = ray_cli("job", "list", f"--address=http://127.0.0.1:{DASHBOARD}")
    assert jobs.returncode == 0, jobs.stderr
    assert "FAILED" in jobs.stdout and "SUCCEEDED" in jobs.stdout, jobs.stdout
