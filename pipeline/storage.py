"""One way to reach sweep storage, local path or URI (s3://, file://), through pyarrow filesystems."""
from __future__ import annotations

import os

import pyarrow.fs as pafs


def is_uri(location: str) -> bool:
    return "://" in location


def filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path (made absolute) or a URI."""
    if is_uri(location):
        return pafs.FileSystem.from_uri(location)
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(location))


def read_text(location: str) -> str | None:
    """The file's text, or None if it does not exist."""
    fs, path = filesystem(location)
    try:
        with fs.open_input_stream(path) as fh:
            return fh.read().decode()
    except FileNotFoundError:
        return None


def write_bytes(location: str, data: bytes) -> None:
    fs, path = filesystem(location)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as fh:
        fh.write(data)


def write_text(location: str, text: str) -> None:
    write_bytes(location, text.encode())
