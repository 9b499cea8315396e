"""StreamStore: every stream log of a broker, their tracked consumer offsets, and the
commit that makes them durable together with the message store.

Layout: ``<data_dir>/streams/<sha256 of vhost NUL name, 32 hex>/`` holds the segments
(``stream.StreamLog``), ``stream.json`` (vhost and name, for people and tools) and
``offsets.json`` (consumer name -> last contiguously acked offset), rewritten atomically
by the committer's worker at most once per commit.

``WithStreams`` wraps the ``MessageStore`` as the server's committer sees it: one
``prepare_commit`` also takes every stream's appended records and changed offsets, one
``write_prepared`` writes and fdatasyncs them before the store's batch, so a stream
publish's ticket (``MessageStore.reserve_ticket``) is durable exactly when its bytes are.
No asyncio; must not import the broker, queues or server.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from pathlib import Path

import structlog

from warrenmq.storage.atomic import read_json, write_json_atomic
from warrenmq.storage.log import MessageStore, PreparedCommit
from warrenmq.storage.stream import DEFAULT_STREAM_SEGMENT_SIZE, StreamBatch, StreamLog

log = structlog.get_logger("warrenmq.stream")

STREAMS_DIR = "streams"
OFFSETS_FILE = "offsets.json"


def stream_dirname(vhost: str, name: str) -> str:
    return hashlib.sha256(f"{vhost}\x00{name}".encode()).hexdigest()[:32]


class StreamStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.logs: dict[str, StreamLog] = {}  # by directory name
        self.offsets: dict[str, dict[str, int]] = {}
        self._dirty: set[str] = set()
        self.tickets: MessageStore | None = None  # set by WithStreams
        # held while a batch is written: close() waits for a commit in flight
        self.write_lock = threading.Lock()

    def reserve_ticket(self) -> int:
        """The store ticket that becomes durable with the next commit (0: none yet)."""
        return self.tickets.reserve_ticket() if self.tickets is not None else 0

    def mark_dirty(self, key: str) -> None:
        self._dirty.add(key)

    def open(self, vhost: str, name: str, segment_size: int = DEFAULT_STREAM_SEGMENT_SIZE
             ) -> StreamLog:
        key = stream_dirname(vhost, name)
        existing = self.logs.get(key)
        if existing is not None:
            return existing
        path = self.directory / key
        fresh = not path.exists()
        stream = StreamLog.open(path, segment_size)
        if fresh:
            write_json_atomic(path / "stream.json", {"vhost": vhost, "name": name})
        self.logs[key] = stream
        try:
            offsets = read_json(path / OFFSETS_FILE)
        except FileNotFoundError:
            offsets = {}
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("stream_offsets_unreadable", stream=name, vhost=vhost, error=str(exc))
            offsets = {}
        self.offsets[key] = {str(k): int(v) for k, v in offsets.items()}
        return stream

    def orphans(self) -> list[tuple[Path, str, str, int]]:
        """Stream directories no open stream owns (its definition was lost: a definitions
        file restored from elsewhere, a crash before the definitions were saved):
        ``(directory, vhost, name, bytes)``. They are kept, not deleted: a stream is
        history, and declaring it again (same vhost and name) opens them as they are."""
        if not self.directory.is_dir():
            return []
        out = []
        for path in sorted(self.directory.iterdir()):
            if not path.is_dir() or path.name in self.logs:
                continue
            try:
                meta = read_json(path / "stream.json")
                vhost, name = str(meta["vhost"]), str(meta["name"])
            except (OSError, ValueError, KeyError, TypeError):
                vhost = name = "?"
            size = sum(f.stat().st_size for f in path.glob("*.seg"))
            out.append((path, vhost, name, size))
        return out

    def key_of(self, stream: StreamLog) -> str:
        return stream.directory.name

    def track(self, stream: StreamLog, consumer: str, offset: int) -> None:
        """Remember ``offset`` as consumer ``consumer``'s last contiguously acked one."""
        key = self.key_of(stream)
        offsets = self.offsets.setdefault(key, {})
        if offsets.get(consumer) != offset:
            offsets[consumer] = offset
            self._dirty.add(key)

    def tracked(self, stream: StreamLog) -> dict[str, int]:
        return self.offsets.get(self.key_of(stream), {})

    def remove(self, stream: StreamLog) -> None:
        """The stream queue was deleted: its files go."""
        key = self.key_of(stream)
        self.logs.pop(key, None)
        self.offsets.pop(key, None)
        self._dirty.discard(key)
        with self.write_lock:  # not under a commit in flight (a short wait, cold path)
            stream.close()
        shutil.rmtree(stream.directory, ignore_errors=True)

    @property
    def pending(self) -> bool:
        return bool(self._dirty) or any(s.pending_bytes for s in self.logs.values())

    def take(self) -> tuple[list[tuple[StreamLog, StreamBatch]], list[tuple[Path, dict[str, int]]]]:
        batches = []
        for stream in self.logs.values():
            batch = stream.take() if stream.pending_bytes else None
            if batch is not None:
                batches.append((stream, batch))
        offsets = [(self.directory / key / OFFSETS_FILE, dict(self.offsets.get(key, {})))
                   for key in self._dirty if key in self.logs]
        self._dirty.clear()
        return batches, offsets

    def close(self) -> None:
        """Write what is pending (after any commit in flight), then close every file."""
        with self.write_lock:
            batches, offsets = self.take()
            try:
                write_streams(batches, offsets)
            finally:
                for stream in self.logs.values():
                    stream.close()


def write_streams(batches: list[tuple[StreamLog, StreamBatch]],
                  offsets: list[tuple[Path, dict[str, int]]]) -> None:
    """Worker thread: every stream's batch, then the changed offset files."""
    for stream, batch in batches:
        if not stream.closed:
            stream.write(batch)
    for path, values in offsets:
        if path.parent.exists():
            write_json_atomic(path, values)


class WithStreams:
    """The message store plus the streams, as one ``Committable`` (see the docstring)."""

    def __init__(self, store: MessageStore, streams: StreamStore) -> None:
        self.store = store
        self.streams = streams
        streams.tickets = store
        self._taken: tuple[list[tuple[StreamLog, StreamBatch]],
                           list[tuple[Path, dict[str, int]]]] = ([], [])
        self._streams_wrote = False  # the last finished commit wrote stream data

    @property
    def pending_bytes(self) -> int:
        return self.store.pending_bytes + (1 if self.streams.pending else 0)

    def prepare_commit(self) -> PreparedCommit:
        # the committer runs one batch at a time: a failed one is taken back in finish
        self._taken = self.streams.take()
        return self.store.prepare_commit()

    def write_prepared(self, batch: PreparedCommit) -> int:
        with self.streams.write_lock:
            write_streams(*self._taken)
        return self.store.write_prepared(batch)

    def finish_commit(self, batch: PreparedCommit, ok: bool) -> None:
        batches, offsets = self._taken
        self._taken = ([], [])
        self._streams_wrote = ok and bool(batches or offsets)
        for stream, taken in batches:
            stream.finish(taken, ok)
        if not ok:
            for path, _ in offsets:
                self.streams.mark_dirty(path.parent.name)
        self.store.finish_commit(batch, ok)

    def synced(self, batch: PreparedCommit) -> bool:
        """The finished commit wrote messages, stream records or stream offsets."""
        return bool(batch.chunks) or self._streams_wrote
