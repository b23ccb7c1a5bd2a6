"""Atomic writes and safe loads of checkpoints and small result files.

A checkpoint is written to a temporary file in the same folder, flushed to disk, then renamed over
the old one, so a crash at any moment leaves either the previous or the new complete file. Loading
uses weights_only=True: a tampered checkpoint cannot run code.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch


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
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    _replace_atomically(path, lambda fh: torch.save(state, fh))


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def write_json(obj: Any, path: Path) -> None:
    _replace_atomically(path, lambda fh: fh.write(json.dumps(obj, indent=1, default=str).encode()))


def write_text(text: str, path: Path) -> None:
    _replace_atomically(path, lambda fh: fh.write(text.encode()))


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> None:
    _replace_atomically(path, lambda fh: fh.write("".join(json.dumps(r) + "\n" for r in rows).encode()))
