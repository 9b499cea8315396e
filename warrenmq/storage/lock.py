"""Exclusive ownership of a data directory by one broker process.

Owns ``<data_dir>/.lock``: an advisory ``flock`` held for the life of the process, with
the holder's PID written into the file for the error message. The kernel drops the lock
when the process dies (even by ``kill -9``), so a stale file never blocks a restart; the
file itself is never deleted (deleting a lock file races with a process that just opened
it). Must not be used to serialise threads inside one process.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from warrenmq.storage.errors import DataDirLocked

LOCK_NAME = ".lock"


class DataDirLock:
    """``acquire()`` once at start-up, ``release()`` at shutdown (or use ``with``)."""

    def __init__(self, path: Path) -> None:
        self.directory = Path(path)
        self.lock_path = self.directory / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Create the directory if needed and take the lock, or raise DataDirLocked."""
        if self._fd is not None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        # O_CLOEXEC: a child process must not inherit (and so keep) the lock.
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise DataDirLocked(
                f"data directory {self.directory} is in use by another WarrenMQ (pid {holder})"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)  # closing the descriptor also drops the flock
            raise
        self._fd = fd

    def release(self) -> None:
        """Drop the lock; a no-op when not held."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass  # best effort: the PID is only informative
        finally:
            os.close(fd)

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"
