"""One driver per sweep folder: a second `pipeline.sweep` on the same storage and name refuses.

Local storage: an exclusive `flock` on `<sweep>/.lock`. The kernel drops it when the holder dies,
even by SIGKILL or preemption, so a rerun after a crash resumes at once and never finds a stale lock.
Object stores (s3://) have no locks: the driver keeps a lease object `<sweep>/.lease.json` with a
heartbeat, and another driver refuses while the heartbeat is fresh. That check-then-write is not
atomic, so two drivers started within the same second could both pass; it catches the common case
(a second terminal, a duplicated job) which is what it is for.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from hiddennets.errors import ConfigError
from hiddennets.folder_lock import describe, folder_lock, holder as _holder
from pipeline.heartbeat import heartbeat
from pipeline.storage import filesystem, is_uri, read_text, write_text

LOCK_FILE = ".lock"
LEASE_FILE = ".lease.json"
HEARTBEAT_S = 20.0
LEASE_EXPIRES_S = 90.0


def _busy(sweep: str, holder: dict) -> ConfigError:
    return ConfigError(f"{sweep}: this sweep is already being run ({describe(holder)}); wait for that driver to "
                       "finish or stop it - running the same command afterwards resumes the sweep")


@contextlib.contextmanager
def _local_lock(sweep_dir: Path) -> Iterator[None]:
    created = not sweep_dir.exists()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with folder_lock(sweep_dir, lambda who: _busy(str(sweep_dir), who), LOCK_FILE):
        try:
            yield
        finally:
            # a sweep that never got further than the lock (e.g. refused input) leaves no trace
            with contextlib.suppress(OSError):
                if created and [p.name for p in sweep_dir.iterdir()] == [LOCK_FILE]:
                    (sweep_dir / LOCK_FILE).unlink()
                    sweep_dir.rmdir()


@contextlib.contextmanager
def _lease(sweep_uri: str) -> Iterator[None]:
    location = f"{sweep_uri}/{LEASE_FILE}"
    text = read_text(location)
    if text:
        holder = json.loads(text)
        mine = holder.get("host") == socket.gethostname() and holder.get("pid") == os.getpid()
        if not mine and time.time() - float(holder.get("heartbeat", 0)) < LEASE_EXPIRES_S:
            raise _busy(sweep_uri, holder)
    lease = _holder()
    write_text(location, json.dumps(lease))
    beat = lambda: write_text(location, json.dumps({**lease, "heartbeat": time.time()}))  # noqa: E731
    try:
        with heartbeat(beat, HEARTBEAT_S, "sweep-lease"):
            yield
    finally:
        with contextlib.suppress(Exception):  # never hide the sweep's own outcome
            current = json.loads(read_text(location) or "{}")
            if current.get("pid") == lease["pid"] and current.get("host") == lease["host"]:
                fs, path = filesystem(location)
                fs.delete_file(path)


def canonical_folder(sweep_uri: str) -> Path | None:
    """The local folder behind a path or a file:// URI, symlinks resolved (None for an object store):
    the same folder reached three ways is one sweep, with one lock."""
    if is_uri(sweep_uri):
        if sweep_uri.split("://", 1)[0].lower() != "file":
            return None
        sweep_uri = filesystem(sweep_uri)[1]
    return Path(os.path.realpath(os.path.expanduser(sweep_uri)))


def hold_sweep(sweep_uri: str):
    """Context manager: this process is the sweep's only driver until it exits (ConfigError if not)."""
    folder = canonical_folder(sweep_uri)
    return _lease(sweep_uri) if folder is None else _local_lock(folder)
