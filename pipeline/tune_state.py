"""Keep a last good copy of Tune's experiment-state files, and put it back if a kill cut one short.

Tune copies its driver state (`experiment_state-*.json` and the search algorithm's
`basic-variant-state-*.json`, `tuner.pkl`) into the sweep folder with a plain, non-atomic write. A
driver killed during that copy (preemption, a full disk) leaves a truncated file, and
`Tuner.restore` then fails to read it, logs "Failed to restore the run state" and silently starts the
sweep afresh: every finished trial runs again under a new id and the tables lose the old ones. We
measured this in CI: a 0-byte `basic-variant-state` after a SIGKILL. Tune has no option for it, so
this module does it by hand: `StateBackup` (a Tune callback in the driver) copies every state file
that reads back whole into `.tune_state_backup/` (temporary name, then rename), and
`repair_tune_state` restores the ones that no longer read back before the sweep resumes.

Tune syncs the state whenever a trial's checkpoints rotate (num_to_keep 2), and a backup is taken
after every sync it sees, so a restored copy lags the truth by at most one sync and never names a
checkpoint that has been deleted. This module does not import Ray (the callback is built by the
sweep from `backup_state`).
"""
from __future__ import annotations

import json
import pickle
from fnmatch import fnmatch

import pyarrow.fs as pafs

from pipeline.storage import filesystem

STATE_PATTERNS = ("experiment_state-*.json", "basic-variant-state-*.json")
BACKUP_DIR = ".tune_state_backup"


def reads_back_whole(data: bytes) -> bool:
    """Tune writes these files as JSON or as (cloud)pickle; a truncated one parses as neither."""
    if not data:
        return False
    try:
        json.loads(data)
        return True
    except ValueError:
        pass
    try:
        pickle.loads(data)  # noqa: S301 - Tune's own file in the user's own sweep folder; Tune loads it too
        return True
    except Exception:  # noqa: BLE001 - any unpickling failure means "not whole"
        return False


def _state_files(fs: pafs.FileSystem, folder: str) -> list[pafs.FileInfo]:
    try:
        infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    except OSError:
        return []
    return [i for i in infos if i.type == pafs.FileType.File and any(fnmatch(i.base_name, p) for p in STATE_PATTERNS)]


def _read(fs: pafs.FileSystem, path: str) -> bytes | None:
    try:
        with fs.open_input_stream(path) as fh:
            return fh.read()
    except OSError:
        return None


def _write_atomically(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    tmp = f"{path}.tmp"
    with fs.open_output_stream(tmp) as fh:
        fh.write(data)
    fs.move(tmp, path)


def backup_state(sweep_uri: str, seen: dict[str, tuple] | None = None) -> None:
    """Copy each of Tune's state files that reads back whole (and changed since `seen`) to the backup."""
    fs, folder = filesystem(sweep_uri)
    seen = {} if seen is None else seen
    for info in _state_files(fs, folder):
        stamp = (info.size, info.mtime_ns)
        if seen.get(info.base_name) == stamp:
            continue
        data = _read(fs, info.path)
        if data is None or not reads_back_whole(data):
            continue  # mid-write right now: the previous backup stays
        try:
            fs.create_dir(f"{folder}/{BACKUP_DIR}", recursive=True)
            _write_atomically(fs, f"{folder}/{BACKUP_DIR}/{info.base_name}", data)
        except OSError:
            continue  # a full disk: keep the older backup; the sweep reports the storage itself
        seen[info.base_name] = stamp


def repair_tune_state(sweep_uri: str) -> list[str]:
    """Put back the last good copy of every state file that no longer reads back whole; the names
    of the files repaired."""
    fs, folder = filesystem(sweep_uri)
    repaired = []
    for info in _state_files(fs, folder):
        data = _read(fs, info.path)
        if data is not None and reads_back_whole(data):
            continue
        backup = _read(fs, f"{folder}/{BACKUP_DIR}/{info.base_name}")
        if backup is not None and reads_back_whole(backup):
            _write_atomically(fs, info.path, backup)
            repaired.append(info.base_name)
    return repaired
