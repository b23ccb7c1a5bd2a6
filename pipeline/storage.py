"""One way to reach sweep storage, local path or URI (s3://, file://), through pyarrow filesystems."""
from __future__ import annotations

import errno
import os

import pyarrow.fs as pafs

# the storage itself is failing (full, read-only, gone), not the data or the code
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.ENOENT,
                  errno.ESTALE}
STORAGE_WORDS = ("No space left on device", "Read-only file system", "Disk quota exceeded", "Permission denied")


class StorageError(RuntimeError):
    """Writing to the sweep's storage failed; what was written before stays readable."""


def storage_failure(exc: BaseException) -> str | None:
    """The storage failure behind `exc` (walking causes and contexts), as a short text, or None.
    Ray re-raises errors from its own threads and workers as new exceptions, so their message text
    is searched too."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS and exc.errno != errno.ENOENT:
            return os.strerror(exc.errno) + (f": {exc.filename}" if exc.filename else "")
        text = str(exc)
        for words in STORAGE_WORDS:
            if words in text:
                return words
        exc = exc.__cause__ or exc.__context__
    return None


def is_uri(location: str) -> bool:
    return "://" in location


SCHEMES = ("file", "s3", "gs")  # what Ray Tune and pyarrow both reach
SYSTEM_FOLDERS = ("/etc", "/proc", "/sys", "/dev", "/boot", "/bin", "/sbin", "/lib", "/lib64", "/usr", "/var/lib",
                  "/run", "/root/.ssh")


def check_location(location: str, key: str = "storage") -> None:
    """Refuse storage that cannot or must not hold results: an unsupported URI scheme, the root, a
    system folder, or a dot-folder of the home (~/.ssh, ~/.config, ...). Checked on the resolved path."""
    from hiddennets.errors import ConfigError

    if is_uri(location):
        scheme = location.split("://", 1)[0].lower()
        if scheme not in SCHEMES:
            raise ConfigError(f"{key}: unsupported URI scheme '{scheme[:20]}://'; use a path or one of "
                              + ", ".join(f"{s}://" for s in SCHEMES))
        if scheme != "file":
            return
        location = location.split("://", 1)[1]
    resolved = os.path.realpath(os.path.expanduser(location))
    home = os.path.realpath(os.path.expanduser("~"))
    inside = lambda top: resolved == top or resolved.startswith(top.rstrip("/") + "/")  # noqa: E731
    hidden = inside(home) and resolved != home and os.path.relpath(resolved, home).split(os.sep)[0].startswith(".")
    if resolved == "/" or any(inside(top) for top in SYSTEM_FOLDERS) or hidden:
        raise ConfigError(f"{key}: {resolved} is a system or hidden folder; keep results in a folder of their own "
                          "(e.g. ./results) or on s3://")


def inside_root(root: str, child: str, key: str = "name") -> None:
    """A folder derived from a name must stay inside its storage root (checked on the resolved paths)."""
    from hiddennets.errors import ConfigError

    if is_uri(root):
        return
    top, below = os.path.realpath(os.path.expanduser(root)), os.path.realpath(os.path.expanduser(child))
    if not below.startswith(top.rstrip("/") + "/"):
        raise ConfigError(f"{key}: {below} would be outside the storage {top}")


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


def probe_storage(location: str, size: int = 2**20) -> str | None:
    """Can `location` take a write of `size` bytes right now? None if so, else what is wrong.
    Ray reports a full or read-only disk in many shapes (a truncated error file it cannot unpickle,
    a failed sync); asking the storage itself is the reliable test."""
    fs, path = filesystem(location)
    probe = f"{path.rstrip('/')}/.storage-probe-{os.getpid()}"
    try:
        with fs.open_output_stream(probe) as fh:
            fh.write(b"\0" * size)
    except OSError as exc:
        return storage_failure(exc) or str(exc)
    except Exception:  # noqa: BLE001 - an odd filesystem error: no verdict, let the real error show
        return None
    finally:
        try:
            fs.delete_file(probe)
        except OSError:
            pass
    return None
