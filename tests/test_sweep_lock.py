"""Two drivers on one sweep folder: the second refuses, says who holds it, and touches nothing."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from hiddennets.errors import ConfigError
from pipeline.sweep_lock import LEASE_FILE, LOCK_FILE, _lease, hold_sweep
from tests.conftest import REPO, run_cli
from tests.test_sweep import write_spec


def snapshot(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_second_driver_on_a_running_sweep_refuses_and_writes_nothing(tmp_path):
    spec = write_spec(tmp_path, "busy")
    sweep = tmp_path / "out" / "busy"
    sweep.mkdir(parents=True)
    (sweep / "trials.parquet").write_bytes(b"results of the first driver")
    with hold_sweep(str(sweep)):  # this test process plays the first driver
        before = snapshot(sweep)
        started = time.monotonic()
        proc = run_cli("pipeline.sweep", str(spec), "--storage", str(tmp_path / "out"))
        assert time.monotonic() - started < 60  # refused before any Ray start, not after a timeout
        assert snapshot(sweep) == before
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith(f"error: {sweep}: this sweep is already being run (pid {os.getpid()} on "
                           f"{socket.gethostname()} since ")
    assert "running the same command afterwards resumes the sweep" in line


def test_the_lock_is_released_when_its_holder_exits_and_leaves_no_trace_on_a_refused_start(tmp_path):
    sweep = tmp_path / "s"
    with hold_sweep(str(sweep)):
        assert (sweep / LOCK_FILE).is_file()
        with pytest.raises(ConfigError, match="already being run"):
            with hold_sweep(str(sweep)):  # a second open file description: flock refuses it too
                pass
    assert not sweep.exists()  # nothing else was written, so the folder it created is gone
    sweep.mkdir()
    (sweep / "keep").write_text("x")
    with hold_sweep(str(sweep)):
        pass
    with hold_sweep(str(sweep)):  # free again
        pass
    assert (sweep / "keep").read_text() == "x"


def test_object_store_lease_refuses_while_fresh_and_is_taken_over_when_stale(tmp_path):
    # the object-store lease, reached through a file:// URI (hold_sweep itself gives file:// the flock:
    # the next test)
    uri = f"file://{tmp_path}/sweep"
    (tmp_path / "sweep").mkdir()
    other = {"host": "elsewhere", "pid": 1, "since": "then", "heartbeat": time.time()}
    (tmp_path / "sweep" / LEASE_FILE).write_text(json.dumps(other))
    with pytest.raises(ConfigError, match=r"already being run \(pid 1 on elsewhere since then\)"):
        with _lease(uri):
            pass
    (tmp_path / "sweep" / LEASE_FILE).write_text(json.dumps({**other, "heartbeat": time.time() - 3600}))
    with _lease(uri):  # the other driver stopped beating an hour ago: a crashed driver
        held = json.loads((tmp_path / "sweep" / LEASE_FILE).read_text())
        assert held["pid"] == os.getpid()
    assert not (tmp_path / "sweep" / LEASE_FILE).exists()


def test_a_path_its_file_uri_and_a_symlink_to_it_are_one_sweep_with_one_lock(tmp_path):
    """The same folder given three ways once ran two drivers into the same trial folders."""
    (tmp_path / "out").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "out")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pipeline.sweep_lock import hold_sweep\n"
        f"with hold_sweep({str(tmp_path / 'out' / 'grow')!r}):\n"
        "    print('held', flush=True); time.sleep(60)")], cwd=REPO, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "held"
        for other in (f"file://{tmp_path}/out/grow", str(tmp_path / "link" / "grow"), f"file://{tmp_path}/link/grow/"):
            with pytest.raises(ConfigError, match=rf"already being run \(pid {holder.pid} on "):
                with hold_sweep(other):
                    pass
    finally:
        holder.kill()
        holder.wait()
    with hold_sweep(f"file://{tmp_path}/link/grow"):  # free once the holder is gone (killed: the kernel let go)
        pass
