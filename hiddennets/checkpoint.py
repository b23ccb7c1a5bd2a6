"""Atomic writes and safe loads of checkpoints and small result files.

Files are written to a temporary name in the same folder, flushed to disk, then renamed over the
old one, so a crash at any moment leaves either the previous or the new complete file.

Checkpoints keep two generations, `checkpoint.pt` and `checkpoint.prev.pt`, and a manifest of their
SHA-256 digests (`checkpoint.sha256.json`). A save first adds the new digest to the manifest, then
moves the newest file to the previous slot, renames the new file in, and finally rewrites the
manifest to just the two files on disk; so whatever moment a crash hits, every checkpoint file on
disk has its digest in the manifest. Loading checks the digest, then loads with weights_only=True (a
tampered file cannot run code), and falls back to the previous generation, saying why, if the
newest is truncated or corrupt.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch

from hiddennets.errors import CheckpointError

PREVIOUS_SUFFIX = ".prev.pt"
DIGESTS_SUFFIX = ".sha256.json"

log = logging.getLogger(__name__)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_atomically(path: Path, write) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # name the file (a failed write() names none), keep the errno
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def previous_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).stem + PREVIOUS_SUFFIX)


def digests_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).stem + DIGESTS_SUFFIX)


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads(digests_path(path).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _known_digests(path: Path) -> set[str] | None:
    """Every digest a checkpoint file on disk may have: current, previous, and those of saves in flight."""
    manifest = _read_manifest(path)
    if manifest is None:
        return None
    return {manifest.get("current"), manifest.get("previous"), *manifest.get("pending", [])} - {None}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_checkpoint(state: dict[str, Any], path: Path, keep_previous: bool = True) -> None:
    """Write `state` as the newest checkpoint at `path`; the one it replaces becomes the previous.
    `keep_previous=False` keeps only the new one (a scratch folder whose fallback is kept elsewhere)."""
    path, previous = Path(path), previous_path(path)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    blob = buffer.getvalue()
    new = _sha256(blob)
    old = _read_manifest(path)
    if old is None:  # a folder without a (readable) manifest: vouch for the files that are there now
        old = {"pending": [_sha256(p.read_bytes()) for p in (path, previous) if p.is_file()]}
    interrupted = bool(old.get("pending"))  # an earlier save died part-way: the names may not match
    write_json({**old, "pending": sorted({*old.get("pending", []), new})}, digests_path(path))
    if not keep_previous:
        _replace_atomically(path, lambda fh: fh.write(blob))
        write_json({"current": new}, digests_path(path))
        previous.unlink(missing_ok=True)
        return
    kept = None
    if path.exists():
        kept = None if interrupted else old.get("current")
        os.replace(path, previous)
    if kept is None and previous.exists():  # only after an interrupted save: hash what is really there
        digest = _sha256(previous.read_bytes())
        kept = digest if digest in {old.get("current"), old.get("previous"), *old.get("pending", [])} else None
    _replace_atomically(path, lambda fh: fh.write(blob))
    write_json({"current": new, **({"previous": kept} if kept else {})}, digests_path(path))


def _remove_stale_temporaries(path: Path) -> None:
    # a process killed mid-write leaves its temporary file behind (the rename never happened)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        stale.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load one checkpoint file, safely (weights_only=True), without checking digests."""
    return torch.load(path, map_location="cpu", weights_only=True)


def _set_aside(bad: Path) -> None:
    target, n = bad.with_name(bad.name + ".corrupt"), 1
    while target.exists():  # keep every damaged file for inspection
        target, n = bad.with_name(f"{bad.name}.corrupt{n}"), n + 1
    os.replace(bad, target)


def load_latest_checkpoint(path: Path, repair: bool = True) -> dict[str, Any] | None:
    """The newest usable checkpoint of `path` and its previous generation, or None if neither exists.

    A file whose digest is not among the recorded ones, or that does not load, is reported (a logged
    warning), skipped, and renamed to `<name>.corrupt` (kept for inspection, and no longer in the way
    of the good generation) when `repair` (the one process that writes the folder; other ranks of
    a distributed run read only). Raises CheckpointError, touching nothing, if files exist but none
    is usable: silently starting over would throw away the run."""
    path = Path(path)
    if repair and path.parent.is_dir():
        _remove_stale_temporaries(path)
    candidates = [p for p in (path, previous_path(path)) if p.is_file()]
    known = _known_digests(path)
    problems, rejected = [], []
    for candidate in candidates:
        try:
            blob = candidate.read_bytes()
        except FileNotFoundError:  # set aside by the writing process meanwhile
            continue
        if known is not None and _sha256(blob) not in known:
            problems.append(f"{candidate.name}: SHA-256 does not match any recorded in {digests_path(path).name} "
                            f"(truncated or corrupted, {len(blob)} bytes)")
            rejected.append(candidate)
            continue
        try:
            state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure to unpickle means unusable
            problems.append(f"{candidate.name}: cannot be loaded ({type(exc).__name__}: {str(exc)[:120]})")
            rejected.append(candidate)
            continue
        for bad in rejected if repair else []:
            _set_aside(bad)
        if problems:
            log.warning("checkpoint problem in %s: %s (moved aside as .corrupt); resuming from %s (epoch %s)",
                        path.parent, "; ".join(problems), candidate.name, state.get("epoch"))
        return state
    if candidates:
        raise CheckpointError(f"{path.parent}: no usable checkpoint ({'; '.join(problems)}); move the folder "
                              "away to start the run over")
    return None


def write_json(obj: Any, path: Path) -> None:
    _replace_atomically(path, lambda fh: fh.write(json.dumps(obj, indent=1, default=str).encode()))


def write_text(text: str, path: Path) -> None:
    _replace_atomically(path, lambda fh: fh.write(text.encode()))


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> None:
    _replace_atomically(path, lambda fh: fh.write("".join(json.dumps(r) + "\n" for r in rows).encode()))
