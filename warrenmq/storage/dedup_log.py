"""DedupLog: the deduplication keys of durable queues and exchanges, kept on disk.

One append-only file, ``<data_dir>/dedup.log``, of records framed like the message
log's (magic, type, length, CRC32; ``records.DEDUP_KEY`` and ``DEDUP_CLEAR``), so the
same scanner reads it back and skips a torn tail. A key's record is appended on the loop
thread and gets a ticket from the message store (``reserve_ticket``); ``WithDedup``
joins the file to the store's group commit, so one commit writes and fdatasyncs the keys
before the store's batch and a key is durable no later than the publisher confirm of
the message that set it (and of any duplicate dropped because of it).

Why not the message segments: a segment is deleted once no queue holds a message in it,
and keys live by another rule (a cache's size and TTL), so keys there would either pin
segments or vanish with them. This file is bounded instead by snapshots: when it has
grown past twice the last snapshot plus ``COMPACT_SLACK``, the next commit writes a
fresh file holding only the live entries of every durable cache (expired ones and those
of deleted entities left out) and renames it over the old one. Its size therefore stays
below about twice the live keys' records plus the slack.

Recovery reads the file into ``recovered`` (entity -> key -> expiry, oldest first;
``DEDUP_CLEAR`` empties an entity: it was deleted, or turned deduplication off, or is
a new entity of an old name), and rewrites it at once without the damage and the
cleared keys. The broker hands each entity's keys back to its cache when the entity is
restored (``adopt``); what is not adopted is dropped by the next snapshot.

Threads: ``append_*``, ``take`` and ``finish`` run on the loop thread, ``write`` in the
committer's worker (one batch at a time). Must not import the broker or queues.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Final, Protocol

import structlog

from warrenmq.storage.atomic import fsync_dir, write_atomic
from warrenmq.storage.log import PreparedCommit
from warrenmq.storage.records import MAGIC, T_DEDUP_CLEAR, T_DEDUP_KEY
from warrenmq.storage.segment import scan

log = structlog.get_logger("warrenmq.storage")

DEDUP_FILE: Final = "dedup.log"
#: Bytes the file may grow past twice its last snapshot before it is rewritten.
COMPACT_SLACK: Final = 1024 * 1024
_U16: Final = struct.Struct(">H")
_U64: Final = struct.Struct(">Q")


class Live(Protocol):
    """A durable cache as the snapshot sees it (``queues.dedup.DedupCache``)."""

    def live(self) -> list[tuple[bytes, int]]: ...


class Tickets(Protocol):
    def reserve_ticket(self) -> int: ...


def _record(rtype: int, payload: bytes) -> bytes:
    type_len = ((rtype << 32) | len(payload)).to_bytes(5, "big")
    crc = zlib.crc32(payload, zlib.crc32(type_len))
    return MAGIC + type_len + crc.to_bytes(4, "big") + payload


def _entity(entity: str) -> bytes:
    raw = entity.encode("utf-8")
    return _U16.pack(len(raw)) + raw


def encode_key(entity: str, key: bytes, expires_ms: int) -> bytes:
    return _record(T_DEDUP_KEY, _entity(entity) + _U64.pack(expires_ms) + key)


def encode_clear(entity: str) -> bytes:
    return _record(T_DEDUP_CLEAR, _entity(entity))


def replay(buf: bytes, path: Path) -> dict[str, dict[bytes, int]]:
    """entity -> key -> expiry (wall-clock ms, 0: none), in the order first seen."""
    out: dict[str, dict[bytes, int]] = {}
    for rtype, _, start, end in scan(buf, path):
        try:
            (n,) = _U16.unpack_from(buf, start)
            entity = buf[start + 2 : start + 2 + n].decode("utf-8")
            if rtype == T_DEDUP_CLEAR:
                out.pop(entity, None)
            elif rtype == T_DEDUP_KEY:
                (expires,) = _U64.unpack_from(buf, start + 2 + n)
                keys = out.setdefault(entity, {})
                key = buf[start + 10 + n : end]
                keys.pop(key, None)
                keys[key] = expires
        except (struct.error, UnicodeDecodeError) as exc:
            log.warning("dedup_record_undecodable", file=str(path), error=str(exc))
    return out


class DedupBatch:
    """Records taken by one commit: appended at ``offset``, or (``rewrite``) a whole new
    file. ``written`` is set by the worker once the bytes are on disk."""

    def __init__(self, records: list[bytes], offset: int, data: bytes, rewrite: bool) -> None:
        self.records = records
        self.offset = offset
        self.data = data
        self.rewrite = rewrite
        self.written = False


class DedupLog:
    def __init__(self, path: Path, *, fsync: bool = True, slack: int = COMPACT_SLACK) -> None:
        self.path = path
        self.fsync = fsync
        self.tickets: Tickets | None = None  # the message store, set by WithDedup
        # durable caches by entity, with a test of whether their entity still exists
        self.caches: dict[str, tuple[Live, Callable[[], bool]]] = {}
        self.recovered: dict[str, dict[bytes, int]] = {}
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._fd = -1
        self._size = 0
        self.slack = slack
        self._compact_at = slack

    @classmethod
    def open(cls, path: Path, *, fsync: bool = True, slack: int = COMPACT_SLACK,
             clock: Callable[[], float] = time.time) -> DedupLog:
        """Read the file back (``recovered``), rewrite it compacted, open it for appends."""
        store = cls(path, fsync=fsync, slack=slack)
        try:
            buf = path.read_bytes()
        except FileNotFoundError:
            buf = b""
        store.recovered = replay(buf, path)
        now_ms = int(clock() * 1000)
        data = b"".join(encode_key(entity, key, expires)
                        for entity, keys in store.recovered.items()
                        for key, expires in keys.items() if not expires or expires > now_ms)
        if buf != data:
            if fsync:
                write_atomic(path, data)
            else:
                path.write_bytes(data)
        created = not path.exists()
        store._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        if created and fsync:
            fsync_dir(path.parent)  # the new name itself survives a power cut
        store._size = len(data)
        store._compact_at = 2 * len(data) + slack
        log.info("dedup_keys_recovered", file=str(path), entities=len(store.recovered),
                 keys=sum(len(k) for k in store.recovered.values()))
        return store

    # -- loop thread -----------------------------------------------------------------
    def adopt(self, entity: str) -> dict[bytes, int] | None:
        """The keys recovered for ``entity`` (once), or None."""
        return self.recovered.pop(entity, None)

    def discard_recovered(self) -> None:
        """Start-up is over: keys of entities that did not come back are dropped."""
        self.recovered = {}

    def register(self, entity: str, cache: Live, alive: Callable[[], bool]) -> None:
        self.caches[entity] = (cache, alive)

    def unregister(self, entity: str) -> None:
        self.caches.pop(entity, None)

    def append_key(self, entity: str, key: bytes, expires_ms: int) -> int:
        return self._append(encode_key(entity, key, expires_ms))

    def append_clear(self, entity: str) -> int:
        return self._append(encode_clear(entity))

    def _append(self, record: bytes) -> int:
        self._pending.append(record)
        self._pending_bytes += len(record)
        tickets = self.tickets
        return tickets.reserve_ticket() if tickets is not None else 0

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    @property
    def size(self) -> int:
        """Bytes of the file as written so far."""
        return self._size

    def take(self) -> DedupBatch | None:
        """Everything pending, as the next commit's batch: appended, or a snapshot of the
        live caches when the file has grown too big (see the module docstring)."""
        if not self._pending:
            return None
        records, self._pending, self._pending_bytes = self._pending, [], 0
        data = b"".join(records)
        if self._size + len(data) <= self._compact_at:
            return DedupBatch(records, self._size, data, rewrite=False)
        return DedupBatch(records, 0, self.snapshot(), rewrite=True)

    def snapshot(self) -> bytes:
        """Every live key of every durable cache whose entity still exists."""
        parts: list[bytes] = []
        for entity, (cache, alive) in list(self.caches.items()):
            if not alive():
                del self.caches[entity]
                continue
            parts.extend(encode_key(entity, key, expires) for key, expires in cache.live())
        return b"".join(parts)

    def finish(self, batch: DedupBatch, ok: bool) -> None:
        """After the commit: account for what was written, or pend it again."""
        if batch.written:
            self._size = batch.offset + len(batch.data)
            if batch.rewrite:
                self._compact_at = 2 * len(batch.data) + self.slack
                log.info("dedup_log_compacted", file=str(self.path), bytes=len(batch.data))
            return
        self._pending[:0] = batch.records
        self._pending_bytes += sum(len(r) for r in batch.records)

    # -- worker thread ---------------------------------------------------------------
    def write(self, batch: DedupBatch) -> None:
        if batch.rewrite:
            if self.fsync:
                write_atomic(self.path, batch.data)
            else:
                self.path.write_bytes(batch.data)
            fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC)
            old, self._fd = self._fd, fd
            if old >= 0:
                os.close(old)
        else:
            view = memoryview(batch.data)
            offset = batch.offset
            while view:
                done = os.pwrite(self._fd, view, offset)
                view, offset = view[done:], offset + done
            if self.fsync:
                os.fdatasync(self._fd)
        batch.written = True

    def close(self) -> None:
        """Write what is pending (the committer has stopped), then close the file."""
        if self._fd < 0:
            return
        try:
            batch = self.take()
            if batch is not None:
                self.write(batch)
                self.finish(batch, True)
        finally:
            os.close(self._fd)
            self._fd = -1


class Committable(Protocol):
    """What the server's committer drives (``server/committer.py``): the message store
    wrapped by ``WithStreams``, wrapped by ``WithDedup``. Defined here, in the storage
    layer, so that the wrappers need nothing from the server."""

    @property
    def pending_bytes(self) -> int: ...

    def prepare_commit(self) -> PreparedCommit: ...

    def write_prepared(self, batch: PreparedCommit) -> int: ...

    def finish_commit(self, batch: PreparedCommit, ok: bool) -> None: ...

    def synced(self, batch: PreparedCommit) -> bool:
        """Whether the finished ``batch`` wrote (and so synced) anything: messages,
        stream records or offsets, deduplication keys."""
        ...


class WithDedup:
    """The store (with its streams) plus the dedup log, as one ``Committable``: the keys
    are written and synced before the store's batch, in the same commit."""

    def __init__(self, inner: Committable, dedup: DedupLog, tickets: Tickets) -> None:
        self.inner = inner
        self.dedup = dedup
        dedup.tickets = tickets
        self._taken: DedupBatch | None = None
        self._wrote = False  # the last finished commit wrote keys

    @property
    def pending_bytes(self) -> int:
        return self.inner.pending_bytes + self.dedup.pending_bytes

    def prepare_commit(self) -> PreparedCommit:
        # taken first: every ticket reserved before this is covered by the store's target
        self._taken = self.dedup.take()
        return self.inner.prepare_commit()

    def write_prepared(self, batch: PreparedCommit) -> int:
        taken = self._taken
        if taken is not None:
            self.dedup.write(taken)
        return self.inner.write_prepared(batch)

    def finish_commit(self, batch: PreparedCommit, ok: bool) -> None:
        taken, self._taken = self._taken, None
        self._wrote = taken is not None and taken.written
        if taken is not None:
            self.dedup.finish(taken, ok)
        self.inner.finish_commit(batch, ok)

    def synced(self, batch: PreparedCommit) -> bool:
        """The finished commit wrote messages, stream data or deduplication keys."""
        return self.inner.synced(batch) or self._wrote
