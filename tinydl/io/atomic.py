"""Atomic file writes: a temporary file in the same folder, flushed and fsynced, then renamed
over the target (and the folder fsynced), so an interrupted write leaves the previous file
intact and never a half-written one. Checkpoints, run folders and downloads all write this way."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_write", "atomic_writer"]


def _write_chunks(f, data: bytes) -> None:
    """Write ``data`` in 1 MiB pieces (tests replace this to simulate a crash mid-write)."""
    view = memoryview(data)
    for i in range(0, len(view), 1 << 20):
        f.write(view[i : i + (1 << 20)])


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; elsewhere a no-op)."""
    if hasattr(os, "O_DIRECTORY"):
        with contextlib.suppress(OSError):
            dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)


@contextlib.contextmanager
def atomic_writer(path, fn: str = "save") -> Iterator:
    """A binary file to write; on a clean exit it replaces ``path`` in one rename.

    On any exception (KeyboardInterrupt too) the temporary file is removed and ``path`` keeps
    its previous contents. ``fn`` names the caller in the error for a missing folder."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{fn}: the folder '{path.parent}' does not exist; create it first")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # 0o666 so the umask applies, as for a file opened with open(path, "wb")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)


def atomic_write(path, data: bytes | str, fn: str = "save") -> None:
    """Write ``data`` (bytes, or str as UTF-8) to ``path`` atomically."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_writer(path, fn) as f:
        _write_chunks(f, data)
