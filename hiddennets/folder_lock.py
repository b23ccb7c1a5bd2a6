"""An exclusive lock on a folder: `flock` on a file inside it, released by the kernel when the holder
dies (even by SIGKILL), so a rerun never meets a stale lock. The run folder (hiddennets.engine) and
the sweep folder on local storage (pipeline.sweep_lock) both use it."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Callable, Iterator


def holder() -> dict:
    """Who holds a lock: written into the lock file, read back by whoever is refused."""
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime()), "heartbeat": time.time()}


def describe(who: dict) -> str:
    return f"pid {who.get('pid', '?')} on {who.get('host', '?')} since {who.get('since', '?')}"


@contextlib.contextmanager
def folder_lock(folder: Path, busy: Callable[[dict], Exception], name: str = ".lock") -> Iterator[None]:
    """Hold `folder/name` exclusively, or raise busy(holder) at once if another process does.
    OSError (e.g. a read-only folder) propagates: the caller decides what that means."""
    fd = os.open(Path(folder) / name, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                who = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
            except ValueError:
                who = {}
            raise busy(who) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock
