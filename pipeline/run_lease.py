"""Who trains a run now: two sweeps that need the same run never train it at once.

Local storage: an exclusive `flock` on `runs/<hash>/.lease`, released by the kernel when the holder
dies (even by SIGKILL), so a waiting trial goes on at once. Object stores: a heartbeat object
`runs/<hash>/lease.json`, refreshed every HEARTBEAT_S; another trial waits while it is fresh. As with
the sweep lease, that check-then-write is not atomic on an object store: two trials starting in the
same second could both train the run; both then write the same deterministic epochs, and the
record ends as the last writer left it (the same metrics; only pids and times differ).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from typing import Callable, Iterator

from hiddennets.folder_lock import describe, holder
from pipeline.heartbeat import heartbeat
from pipeline.run_store import RunStore

LOCAL_LEASE = ".lease"
REMOTE_LEASE = "lease.json"
HEARTBEAT_S = 20.0
EXPIRES_S = 90.0
POLL_S = 1.0


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except ValueError:
        return {}


@contextlib.contextmanager
def _local(store: RunStore, run_hash: str, notify: Callable[[str], None]) -> Iterator[None]:
    folder = store.path_of(run_hash)
    os.makedirs(folder, exist_ok=True)
    fd = os.open(f"{folder}/{LOCAL_LEASE}", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told:
                    notify(f"run {run_hash} is being trained by {describe(_read_holder(fd))}; waiting for it")
                    told = True
                time.sleep(POLL_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder()).encode(), 0)
        yield
    finally:
        os.close(fd)


def _fresh(data: bytes | None) -> dict | None:
    try:
        who = json.loads(data or b"{}")
    except ValueError:
        return None
    return who if who and time.time() - float(who.get("heartbeat", 0)) < EXPIRES_S else None


@contextlib.contextmanager
def _remote(store: RunStore, run_hash: str, notify: Callable[[str], None]) -> Iterator[None]:
    path = store.path_of(run_hash, REMOTE_LEASE)
    mine = holder()
    told = False
    while (who := _fresh(store.read_bytes(path))) and (who.get("host"), who.get("pid")) != (mine["host"], mine["pid"]):
        if not told:
            notify(f"run {run_hash} is being trained by {describe(who)}; waiting for it")
            told = True
        time.sleep(POLL_S)
    store.write_atomic(path, json.dumps(mine).encode())
    beat = lambda: store.write_atomic(path, json.dumps({**mine, "heartbeat": time.time()}).encode())  # noqa: E731
    try:
        with heartbeat(beat, HEARTBEAT_S, f"run-lease-{run_hash}"):
            yield
    finally:
        with contextlib.suppress(Exception):
            store.fs.delete_file(path)


def hold_run(store: RunStore, run_hash: str, notify: Callable[[str], None] = print):
    """Context manager: this process alone trains `run_hash` until it leaves (waits its turn)."""
    return (_local if store.local else _remote)(store, run_hash, notify)


def run_holder(store: RunStore, run_hash: str) -> dict | None:
    """Who holds the run's lease now (None: nobody is training it)."""
    if not store.local:
        return _fresh(store.read_bytes(store.path_of(run_hash, REMOTE_LEASE)))
    try:
        fd = os.open(store.path_of(run_hash, LOCAL_LEASE), os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_holder(fd) or {"pid": "?"}
    finally:
        os.close(fd)  # also drops the probe's shared lock
    return None
