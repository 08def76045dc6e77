"""How the review tools change files other processes read (the KB folder the knowledge service
follows, the NLU data `rasa train` reads): one writer at a time per folder, and each file replaced
whole, so a reader sees the old file or the new one, never half of it."""
from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Dict, Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: one process only
    fcntl = None  # type: ignore[assignment]

#: mkstemp creates 0600: the action server and Rasa may run as another user of the group
NEW_FILE_MODE = 0o644
_LOCKS: Dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """One writer of ``folder`` at a time, from reading to replacing: a thread lock per folder for
    this process, ``flock`` on the folder for other processes (released when the descriptor closes)."""
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(str(Path(folder).resolve()), threading.Lock())
    with lock:
        if fcntl is None:  # pragma: no cover
            yield
            return
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)


def write_atomic(path: Path, text: str) -> None:
    """Writes ``text`` to a temporary file next to ``path`` (``.<name>.*.tmp``: neither a KB article
    nor NLU data), fsyncs it and renames it over ``path``; a failure leaves ``path`` untouched. A
    replaced file keeps its permissions."""
    mode = (path.stat().st_mode & 0o7777) if path.exists() else NEW_FILE_MODE
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Makes a rename durable (best effort: not every platform can open a directory)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
