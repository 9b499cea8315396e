"""SegmentFiles: the open files of a segment directory, for writing, reading and deleting.

Owns every file descriptor of the log: one writer per segment that still has data in
flight, a small cache of readers for ``read_body``, and the list of segment files on disk.
Knows nothing of tickets, records or liveness: ``MessageStore`` decides what to write where
and which segments are dead. Writes use ``pwrite`` at offsets fixed in advance, so writing
the same chunk twice is harmless (that is how a failed commit is retried).
Thread rule: ``write``, ``close_writers`` and ``delete_prefix`` run only in the committing
thread; ``read`` may run anywhere (readers are under their own lock).
"""

from __future__ import annotations

import bisect
import contextlib
import os
import threading
from collections.abc import Iterable
from pathlib import Path

import structlog

from warrenmq.storage.atomic import fsync_dir
from warrenmq.storage.segment import segment_name

log = structlog.get_logger("warrenmq.storage")

_READER_CACHE = 16
_datasync = getattr(os, "fdatasync", os.fsync)


class Chunk:
    """Contiguous bytes for one segment, starting at ``offset`` in its file."""

    __slots__ = ("data", "offset", "segment")

    def __init__(self, segment: int, offset: int) -> None:
        self.segment = segment
        self.offset = offset
        self.data = bytearray()


class SegmentFiles:
    def __init__(self, directory: Path, *, durable: bool, existing: Iterable[int]) -> None:
        self.directory = directory
        self.durable = durable  # False: fsync policy "never"
        self.segments = sorted(existing)  # on disk, oldest first
        self._writers: dict[int, int] = {}
        self._readers: dict[int, int] = {}
        self._read_lock = threading.Lock()
        self._dir_dirty = False  # a segment was created since the last directory fsync
        self._gc_dir_dirty = False  # an unlink is not known to be durable yet

    def path(self, segment: int) -> Path:
        return self.directory / segment_name(segment)

    def write(self, chunks: Iterable[Chunk]) -> int:
        """Write every chunk, then fdatasync each file touched (and the directory when a
        file was created). Returns the bytes written; raises OSError with nothing claimed.
        """
        touched: dict[int, int] = {}
        written = 0
        for chunk in chunks:
            fd = self._writer(chunk.segment)
            _pwrite_all(fd, chunk.data, chunk.offset)
            touched[chunk.segment] = fd
            written += len(chunk.data)
        if self.durable:
            for fd in touched.values():
                _datasync(fd)
            if self._dir_dirty:
                fsync_dir(self.directory)
        self._dir_dirty = False
        return written

    def _writer(self, segment: int) -> int:
        fd = self._writers.get(segment)
        if fd is None:
            fd = os.open(self.path(segment), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self._writers[segment] = fd
            if segment not in self.segments:
                bisect.insort(self.segments, segment)
                self._dir_dirty = True
        return fd

    def close_writers(self, below: int) -> None:
        """Close the writers of segments that will receive no more data."""
        for segment in [s for s in self._writers if s < below]:
            with contextlib.suppress(OSError):  # the data is already durable
                os.close(self._writers.pop(segment))

    def delete_prefix(self, doomed: list[int]) -> None:
        """Unlink ``doomed`` (the oldest segments, in order), making each unlink durable
        before the next (see ``log`` for why the order matters). Errors are logged and
        stop this round; the next call starts again from the oldest survivor.
        """
        try:
            if self._gc_dir_dirty and self.durable:
                fsync_dir(self.directory)
            self._gc_dir_dirty = False
            for segment in doomed:
                if not self.segments or self.segments[0] != segment:
                    break  # not a prefix any more: never delete out of order
                self._forget_reader(segment)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path(segment))
                self.segments.pop(0)
                self._gc_dir_dirty = True
                if self.durable:
                    fsync_dir(self.directory)
                self._gc_dir_dirty = False
                log.debug("storage_segment_deleted", segment=segment)
        except OSError as exc:
            log.warning("storage_gc_failed", directory=str(self.directory), error=str(exc))

    def read(self, segment: int, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset`` (short at the end of the file)."""
        with self._read_lock:
            fd = self._readers.get(segment)
            if fd is None:
                fd = os.open(self.path(segment), os.O_RDONLY | os.O_CLOEXEC)
                if len(self._readers) >= _READER_CACHE:
                    os.close(self._readers.pop(next(iter(self._readers))))
                self._readers[segment] = fd
            return os.pread(fd, length, offset)

    def _forget_reader(self, segment: int) -> None:
        with self._read_lock:
            fd = self._readers.pop(segment, None)
            if fd is not None:
                os.close(fd)

    def close(self) -> None:
        """Close every descriptor (nothing is written)."""
        for fd in self._writers.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._writers.clear()
        with self._read_lock:
            for fd in self._readers.values():
                os.close(fd)
            self._readers.clear()


def _pwrite_all(fd: int, data: bytearray, offset: int) -> None:
    with memoryview(data) as view:
        done = 0
        while done < len(view):
            n = os.pwrite(fd, view[done:], offset + done)
            if n <= 0:
                raise OSError(f"pwrite wrote nothing at offset {offset + done}")
            done += n
