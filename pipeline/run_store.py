"""The run store: one entry per run hash under a storage root, shared by every sweep in that root.

    <storage>/runs/<hash>/record.json          config, epochs planned, the epoch history, the checkpoints
    <storage>/runs/<hash>/ckpt/<epoch>-<sha>.pt  the newest two checkpoints of a partial run, the last one of a
                                                complete run (torch files, loaded weights_only)
    <storage>/runs/<hash>/.lease               who trains the run now (pipeline.run_lease)

The store holds the checkpoints itself, through pyarrow's filesystems (a local path, file://, s3://):
every resume is a fresh Tune experiment, so there is no Tune checkpoint to hand over, and a run
trained by one sweep is resumed by another from here. A run's history and its checkpoint move
together: each epoch first writes a new checkpoint object (its name is new, so nothing is
overwritten), then replaces record.json (a temporary then a rename locally; one PUT, atomic, on an
object store), then deletes checkpoints the record no longer names. A crash at any moment leaves the
previous record, which names only complete checkpoints. Nothing here imports Ray or unpickles
anything but torch's weights-only format.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import pyarrow.fs as pafs

from hiddennets.algorithms import total_epochs
from hiddennets.config import RunConfig
from hiddennets.errors import CheckpointError, ConfigError
from hiddennets.identity import config_hash
from hiddennets.validation import config_from_dict
from pipeline.storage import filesystem

RUNS = "runs"
RECORD = "record.json"
CHECKPOINTS = "ckpt"
RECORD_FORMAT = 1
# A partial run keeps the newest and the one before (a damaged newest falls back, as in single runs);
# a complete run is never resumed, so it keeps only its last checkpoint (for analysis and reuse).
KEEP_CHECKPOINTS = 2


def join(*parts: str) -> str:
    return "/".join(p.strip("/") if i else p.rstrip("/") for i, p in enumerate(parts))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class RunRecord:
    """One run's entry. `history` rows are the engine's epoch rows plus where and when each ran
    (pid, node_id, device, end_time, trained_by: the sweep whose trial trained it)."""
    hash: str
    config: dict[str, Any]
    epochs_planned: int
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)  # newest first: file, epoch, sha256
    updated: float = 0.0

    @property
    def complete(self) -> bool:
        return len(self.history) >= self.epochs_planned

    def to_json(self) -> str:
        return json.dumps({"format": RECORD_FORMAT, **vars(self)}, default=str)


@dataclass
class RecordRead:
    """What reading a run's entry found: its record, nothing (a run never started), or damage."""
    record: RunRecord | None = None
    damaged: str = ""  # why the record cannot be used


def record_from_json(text: str, expected_hash: str) -> RunRecord:
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
        raise ValueError(f"not a run record of format {RECORD_FORMAT}")
    record = RunRecord(hash=data["hash"], config=data["config"], epochs_planned=int(data["epochs_planned"]),
                       history=list(data["history"]), checkpoints=list(data["checkpoints"]),
                       updated=float(data.get("updated", 0)))
    if record.hash != expected_hash:
        raise ValueError(f"it names run {record.hash!r}")
    if config_hash(config_from_dict(record.config)) != expected_hash:
        raise ValueError("its config does not have the hash it is filed under")
    epochs = [row.get("epoch") for row in record.history]
    if epochs != list(range(1, len(epochs) + 1)):
        raise ValueError(f"its epochs are not 1..{len(epochs)} in order")
    return record


class RunStore:
    """The runs under one storage root (a local path or a URI)."""

    def __init__(self, root: str):
        self.root = root.rstrip("/")
        self.fs, self._path = filesystem(self.root)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)

    def location(self, run_hash: str, *parts: str) -> str:
        """A store file as the user gives storage (path or URI): for tables and messages."""
        return join(self.root, RUNS, run_hash, *parts)

    def path_of(self, run_hash: str, *parts: str) -> str:
        return join(self._path, RUNS, run_hash, *parts)

    # --- reading ------------------------------------------------------------------------------
    def read_bytes(self, path: str) -> bytes | None:
        try:
            with self.fs.open_input_stream(path) as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    def read(self, run_hash: str) -> RecordRead:
        try:
            data = self.read_bytes(self.path_of(run_hash, RECORD))
        except OSError as exc:
            return RecordRead(damaged=f"{RECORD} cannot be read ({exc})")
        if data is None:
            return RecordRead()
        try:
            return RecordRead(record_from_json(data.decode(), run_hash))
        except (ValueError, KeyError, TypeError, ConfigError, UnicodeDecodeError) as exc:
            reason = " ".join(str(exc).split())[:200]
            return RecordRead(damaged=f"{self.location(run_hash, RECORD)} is damaged ({type(exc).__name__}: {reason})")

    def hashes(self) -> list[str]:
        """Every run with an entry in this store."""
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(join(self._path, RUNS), allow_not_found=True))
        except OSError:
            return []
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def size(self, run_hash: str) -> int:
        infos = self.fs.get_file_info(pafs.FileSelector(self.path_of(run_hash), recursive=True, allow_not_found=True))
        return sum(i.size or 0 for i in infos if i.type == pafs.FileType.File)

    def load_checkpoint(self, record: RunRecord, warn) -> tuple[bytes, dict[str, Any], int] | None:
        """The newest checkpoint that is whole and loads (weights only), as (bytes, state, epoch); a
        damaged newest one is reported through `warn` and the previous one used. None if the run has
        no checkpoint; CheckpointError if it has some and none is usable."""
        import torch

        problems = []
        for entry in record.checkpoints:
            name = entry["file"]
            try:
                blob = self.read_bytes(self.path_of(record.hash, name))
            except OSError as exc:
                blob, why = None, str(exc)
            else:
                why = "missing"
            if blob is not None and sha256(blob) != entry["sha256"]:
                blob, why = None, f"SHA-256 does not match the record (truncated or corrupted, {len(blob)} bytes)"
            state = None
            if blob is not None:
                try:
                    state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
                except Exception as exc:  # noqa: BLE001 - any failure to unpickle means unusable
                    why = f"cannot be loaded ({type(exc).__name__}: {str(exc)[:120]})"
            if state is None or state.get("epoch") != entry["epoch"]:
                problems.append(f"{name}: {why if state is None else 'holds another epoch'}")
                continue
            if problems:
                warn(f"checkpoint problem in {self.location(record.hash)}: {'; '.join(problems)}; resuming from "
                     f"{name} (epoch {entry['epoch']})")
            return blob, state, entry["epoch"]
        if problems:
            raise CheckpointError(f"{self.location(record.hash)}: no usable checkpoint ({'; '.join(problems)}); "
                                  "move that folder away to train the run again")
        return None

    # --- writing ------------------------------------------------------------------------------
    def write_atomic(self, path: str, data: bytes) -> None:
        """Replace `path` atomically: readers see the old bytes or the new, never a part."""
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        if not self.local:  # an object store's PUT is atomic
            with self.fs.open_output_stream(path) as fh:
                fh.write(data)
            return
        tmp = f"{path.rsplit('/', 1)[0]}/.{path.rsplit('/', 1)[1]}.tmp-{os.getpid()}"
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def start(self, cfg: RunConfig) -> RunRecord:
        """The record of `cfg`'s run, created (without epochs) if the store has none."""
        run_hash = config_hash(cfg)
        found = self.read(run_hash)
        if found.damaged:
            raise CheckpointError(f"{found.damaged}; move {self.location(run_hash)} away to train the run again")
        if found.record is not None:
            return found.record
        record = RunRecord(run_hash, cfg.to_dict(), total_epochs(cfg), updated=time.time())
        self.write_atomic(self.path_of(run_hash, RECORD), record.to_json().encode())
        return record

    def commit_epoch(self, record: RunRecord, row: dict[str, Any], checkpoint: bytes) -> RunRecord:
        """Add one epoch: its checkpoint object, then the record naming it, then drop older objects."""
        epoch = row["epoch"]
        if epoch != len(record.history) + 1:
            raise ValueError(f"run {record.hash}: epoch {epoch} does not follow {len(record.history)}")
        digest = sha256(checkpoint)
        name = f"{CHECKPOINTS}/{epoch:05d}-{digest[:12]}.pt"
        self.write_atomic(self.path_of(record.hash, name), checkpoint)
        complete = epoch >= record.epochs_planned
        kept = [{"file": name, "epoch": epoch, "sha256": digest}] + \
            ([] if complete else record.checkpoints[:KEEP_CHECKPOINTS - 1])
        new = RunRecord(record.hash, record.config, record.epochs_planned, record.history + [row], kept, time.time())
        self.write_atomic(self.path_of(record.hash, RECORD), new.to_json().encode())
        self.drop_unlisted_checkpoints(new)
        return new

    def truncate(self, record: RunRecord, epoch: int) -> RunRecord:
        """The record cut back to `epoch` (after falling back to an older checkpoint)."""
        if epoch >= len(record.history):
            return record
        for damaged in (c for c in record.checkpoints if c["epoch"] > epoch):
            self.set_aside(record.hash, damaged["file"])
        new = RunRecord(record.hash, record.config, record.epochs_planned, record.history[:epoch],
                        [c for c in record.checkpoints if c["epoch"] <= epoch], time.time())
        self.write_atomic(self.path_of(record.hash, RECORD), new.to_json().encode())
        return new

    def set_aside(self, run_hash: str, name: str) -> None:
        """Keep a damaged checkpoint for inspection, out of the way (`<name>.corrupt`)."""
        try:
            self.fs.move(self.path_of(run_hash, name), self.path_of(run_hash, name) + ".corrupt")
        except OSError:
            pass  # already gone: nothing to keep

    def drop_unlisted_checkpoints(self, record: RunRecord) -> None:
        listed = {c["file"].rsplit("/", 1)[-1] for c in record.checkpoints}
        for info in self._list(self.path_of(record.hash, CHECKPOINTS)):
            if info.base_name not in listed and not info.base_name.startswith(".") \
                    and not info.base_name.endswith(".corrupt"):
                try:
                    self.fs.delete_file(info.path)
                except OSError:
                    pass  # another copy of this cleanup got there first

    def _list(self, path: str) -> Iterator[pafs.FileInfo]:
        try:
            yield from self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        except OSError:
            return

    def delete(self, run_hash: str) -> None:
        self.fs.delete_dir(self.path_of(run_hash))
