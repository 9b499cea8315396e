"""MessageStore: the append-only segment log that makes persistent messages durable.

Theory of operation
-------------------
Threads. Two threads use a store. The event-loop thread calls ``publish``, ``ack``,
``delivered``, ``failures`` and ``drop_queue``: each encodes one record (see ``records``),
appends it to an in-memory *pending* buffer and returns a *ticket* at once, with no I/O.
A worker thread (the broker runs ``commit`` via ``run_in_executor``) swaps the pending
buffer out, writes it, fsyncs once for the whole batch (group commit) and returns the
highest ticket that is now durable; the broker then sends the publisher confirms up to that
ticket. ``_lock`` guards the pending buffer, the ticket counter and the live-message
bookkeeping and is held only for dictionary and list operations, never across I/O;
``_commit_lock`` serialises commits; file descriptors belong to ``files.SegmentFiles``.

Positions. A record's place in the log -- segment number and byte offset -- is fixed when
it is appended, in the loop thread: the store keeps a logical head ``(segment, offset)``
and advances it by the record's size, moving to the next segment first when the record
would not fit (a record larger than a whole segment gets a segment of its own). So
``publish`` can return the body's ``BodyLocation`` before anything is written, and
``commit`` writes each chunk with ``pwrite`` at its preassigned offset. That also makes a
retry after a failed commit idempotent: the same bytes go to the same places.

Errors. If ``commit`` raises (ENOSPC, EIO...), the durable ticket does not move, so nothing
from the failed batch is claimed durable, and the batch is kept ahead of newer appends. The
next ``commit`` rewrites *every* byte of it before fsyncing again, which does not rely on
the kernel still holding the dirty pages after a failed fsync. If the broker dies
instead, any prefix of the failed batch may be on disk; recovery keeps the records that
validate, like after any crash. A nacked publish may therefore still be recovered: a
nack never promises absence.

Durability. ``fsync="group"`` and ``"always"`` fdatasync every segment written by a commit,
and the directory when a segment file was created, before returning; since every commit is
already one batch, the two policies are the same here. ``"never"`` leaves flushing to the
OS: a commit then only means "handed to the kernel", which survives kill -9 but not a power
cut.

Recovery (``open``) replays all segments (see ``recovery``) and always starts writing a NEW
segment, so new records are never appended after a torn or corrupt tail.

Garbage collection. The store counts, per segment, the live (queue, message) pairs
published in it; an ACK or DROP_QUEUE decrements the count of the segment holding the
PUBLISH. After a successful commit the store deletes segments that are dead (count zero)
and complete (below the head), but only a PREFIX of them, oldest first, fsyncing the
directory after each unlink. The reason: an ACK or DROP_QUEUE record lives in a later
segment than the PUBLISH it cancels. Deleting a later dead segment while an earlier one
survives could delete the ACK of a message whose PUBLISH is still on disk, and recovery
would bring the acked message back. With prefix deletion every surviving PUBLISH keeps all
of its later records, and a crash part-way through a GC leaves a shorter prefix deleted,
which is equally consistent. A fully dead segment after a live one is kept until
everything before it dies.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, NamedTuple

import structlog

from warrenmq.storage.atomic import fsync_dir
from warrenmq.storage.errors import StorageError
from warrenmq.storage.files import Chunk, SegmentFiles
from warrenmq.storage.records import (
    encode_ack,
    encode_delivered,
    encode_drop_queue,
    encode_failures,
    encode_publish,
)
from warrenmq.storage.recovery import BodyLocation, LiveState, Recovery, replay

log = structlog.get_logger("warrenmq.storage")

Ticket = int
FsyncPolicy = Literal["group", "always", "never"]
FSYNC_POLICIES: tuple[FsyncPolicy, ...] = ("group", "always", "never")
DEFAULT_SEGMENT_SIZE = 64 * 1024 * 1024
DEFAULT_KEEP_IN_MEMORY = 64 * 1024
MIN_SEGMENT_SIZE = 64


class Published(NamedTuple):
    """What ``publish`` returns: the record's ticket and where the body will lie on disk."""

    ticket: Ticket
    location: BodyLocation


class PreparedCommit(NamedTuple):
    """A batch taken by ``prepare_commit``: chunks to write, the ticket they make durable,
    the head segment at the time and the dead segment prefix to delete afterwards."""

    chunks: list[Chunk]
    target: Ticket
    head: int
    doomed: list[int]


class MessageStore:
    """Create with ``MessageStore.open(directory)``; see the module docstring."""

    def __init__(
        self,
        directory: Path,
        *,
        segment_size: int,
        fsync: FsyncPolicy,
        head_segment: int,
        disk_segments: list[int],
        state: LiveState,
    ) -> None:
        if segment_size < MIN_SEGMENT_SIZE:
            raise ValueError(f"segment_size must be at least {MIN_SEGMENT_SIZE} bytes")
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync policy must be one of {FSYNC_POLICIES}, not {fsync!r}")
        self.directory = directory
        self.segment_size = segment_size
        self.fsync_policy: FsyncPolicy = fsync
        self._lock = threading.Lock()
        self._commit_lock = threading.Lock()
        # Loop side, under _lock.
        self._ticket: Ticket = 0
        self._head_segment = head_segment
        self._head_offset = 0
        self._pending: list[Chunk] = []
        self._pending_bytes = 0
        self._live = state.live
        self._segment_live = state.segment_live
        self._closed = False
        # Commit side (only the thread holding _commit_lock; _unwritten is swapped under _lock).
        self._durable: Ticket = 0
        self._unwritten: list[Chunk] = []
        self._files = SegmentFiles(directory, durable=fsync != "never", existing=disk_segments)

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        fsync: FsyncPolicy = "group",
        keep_in_memory: int = DEFAULT_KEEP_IN_MEMORY,
    ) -> tuple[MessageStore, Recovery]:
        """Recover the log in ``directory`` (the segment directory itself, normally
        ``<data_dir>/messages``; created if missing) and return a store writing after it.

        Bodies longer than ``keep_in_memory`` bytes are recovered as a location only.
        """
        directory = Path(directory)
        if not directory.is_dir():
            directory.mkdir(parents=True)
            if fsync != "never":
                fsync_dir(directory.parent)
        recovery, state = replay(directory, keep_in_memory)
        head = recovery.segments[-1] + 1 if recovery.segments else 1
        store = cls(
            directory,
            segment_size=segment_size,
            fsync=fsync,
            head_segment=head,
            disk_segments=list(recovery.segments),
            state=state,
        )
        log.info(
            "storage_recovered",
            directory=str(directory),
            segments=len(recovery.segments),
            records=recovery.records,
            queues=len(recovery.queues),
            messages=sum(len(m) for m in recovery.queues.values()),
            damaged=len(recovery.damaged),
        )
        return store, recovery

    # -- loop thread ---------------------------------------------------------------------

    def publish(
        self,
        msg_id: int,
        queues: Sequence[str],
        exchange: str,
        routing_key: str,
        properties: bytes,
        body: bytes,
    ) -> Published:
        """Append one PUBLISH record for a message routed to ``queues`` (deduplicated)."""
        targets = tuple(queues) if len(queues) == 1 else tuple(dict.fromkeys(queues))
        parts = encode_publish(msg_id, targets, exchange, routing_key, properties, body)
        size = len(parts[0]) + len(parts[1]) + len(body)
        with self._lock:
            ticket, segment, offset = self._append(parts, size)
            live = self._live
            for q in targets:
                ids = live.get(q)
                if ids is None:
                    ids = live[q] = {}
                elif msg_id in ids:  # duplicate id: the newer publish wins, as in replay
                    self._release(ids[msg_id])
                ids[msg_id] = segment
            segment_live = self._segment_live
            segment_live[segment] = segment_live.get(segment, 0) + len(targets)
        return Published(ticket, BodyLocation(segment, offset + size - len(body), len(body)))

    def ack(self, queue: str, msg_id: int) -> Ticket:
        """The message left ``queue`` for good (acked, or dead-lettered, expired, ...)."""
        record = encode_ack(queue, msg_id)
        with self._lock:
            ticket = self._append((record,), len(record))[0]
            ids = self._live.get(queue)
            if ids is not None:
                segment = ids.pop(msg_id, None)
                if segment is not None:
                    self._release(segment)
                if not ids:
                    del self._live[queue]
            return ticket

    def ack_many(self, queue: str, msg_ids: Sequence[int]) -> Ticket:
        """``ack`` for several messages of one queue (a multiple ack): one lock, one
        append of all the records."""
        if not msg_ids:
            return self._ticket
        record = b"".join([encode_ack(queue, msg_id) for msg_id in msg_ids])
        with self._lock:
            ticket = self._append((record,), len(record))[0]
            ids = self._live.get(queue)
            if ids is not None:
                for msg_id in msg_ids:
                    segment = ids.pop(msg_id, None)
                    if segment is not None:
                        self._release(segment)
                if not ids:
                    del self._live[queue]
            return ticket

    def delivered(self, queue: str, msg_id: int) -> Ticket:
        """Recovery will mark the message redelivered."""
        record = encode_delivered(queue, msg_id)
        with self._lock:
            return self._append((record,), len(record))[0]

    def failures(self, queue: str, msg_id: int, count: int) -> Ticket:
        """Set the message's failure count in ``queue`` (the last record wins)."""
        record = encode_failures(queue, msg_id, count)
        with self._lock:
            return self._append((record,), len(record))[0]

    def drop_queue(self, queue: str) -> Ticket:
        """Every message published to ``queue`` so far is gone, unacked ones included."""
        record = encode_drop_queue(queue)
        with self._lock:
            ticket = self._append((record,), len(record))[0]
            for segment in self._live.pop(queue, {}).values():
                self._release(segment)
            return ticket

    def _append(self, parts: Sequence[bytes], size: int) -> tuple[Ticket, int, int]:
        """Assign the record its position and ticket (caller holds _lock)."""
        if self._closed:
            raise StorageError(f"message store {self.directory} is closed")
        if self._head_offset and self._head_offset + size > self.segment_size:
            self._head_segment += 1
            self._head_offset = 0
        segment, offset = self._head_segment, self._head_offset
        pending = self._pending
        if pending and pending[-1].segment == segment:
            chunk = pending[-1]
        else:
            chunk = Chunk(segment, offset)
            pending.append(chunk)
        for part in parts:
            chunk.data += part
        self._head_offset = offset + size
        self._pending_bytes += size
        self._ticket += 1
        return self._ticket, segment, offset

    def _release(self, segment: int) -> None:
        n = self._segment_live[segment] - 1
        if n:
            self._segment_live[segment] = n
        else:
            del self._segment_live[segment]

    # -- worker thread -------------------------------------------------------------------

    def commit(self) -> Ticket:
        """Write and fsync everything appended so far; return the highest durable ticket.

        On OSError nothing new is durable and the data is kept for the next commit (see
        the module docstring). Then deletes the dead prefix of segments (errors there are
        logged, not raised: the data is already durable).
        """
        with self._commit_lock:
            with self._lock:
                if self._closed:
                    raise StorageError(f"message store {self.directory} is closed")
                self._unwritten.extend(self._pending)
                self._pending = []
                target = self._ticket
                head = self._head_segment
                doomed = self._dead_prefix(head)
            if self._unwritten:
                written = self._files.write(self._unwritten)
                with self._lock:
                    self._unwritten = []
                    self._pending_bytes -= written
            self._durable = target
            self._files.close_writers(below=head)
            if doomed:
                self._files.delete_prefix(doomed)
            return target

    # -- the broker's split commit: no lock on the loop thread's data while writing -------

    def prepare_commit(self) -> PreparedCommit:
        """Loop thread: take everything appended so far (after a failed batch, if any) as
        the next batch. With ``write_prepared`` in a worker and ``finish_commit`` back on
        the loop, the appends never wait for a lock the writer holds."""
        with self._lock:
            if self._closed:
                raise StorageError(f"message store {self.directory} is closed")
            self._unwritten.extend(self._pending)
            self._pending = []
            head = self._head_segment
            return PreparedCommit(list(self._unwritten), self._ticket, head,
                                  self._dead_prefix(head))

    def write_prepared(self, batch: PreparedCommit) -> Ticket:
        """Worker thread: write and fsync a prepared batch; returns its durable ticket."""
        with self._commit_lock:
            if batch.chunks:
                self._files.write(batch.chunks)
            self._files.close_writers(below=batch.head)
            if batch.doomed:
                self._files.delete_prefix(batch.doomed)
            return batch.target

    def finish_commit(self, batch: PreparedCommit, ok: bool) -> None:
        """Loop thread: account for a written batch (a failed one stays for the next)."""
        if not ok:
            return
        with self._lock:
            del self._unwritten[: len(batch.chunks)]
            self._pending_bytes -= sum(len(chunk.data) for chunk in batch.chunks)
            self._durable = max(self._durable, batch.target)

    def _dead_prefix(self, head: int) -> list[int]:
        doomed = []
        for segment in self._files.segments:
            if segment >= head or segment in self._segment_live:
                break
            doomed.append(segment)
        return doomed

    # -- any thread ----------------------------------------------------------------------

    def read_body(self, location: BodyLocation) -> bytes:
        """The body at ``location`` (from the pending buffer if not yet written).

        Valid while the message is live in some queue: the segment of a message acked
        everywhere may already be deleted (then OSError).
        """
        segment, offset, length = location
        with self._lock:
            if self._closed:
                raise StorageError(f"message store {self.directory} is closed")
            for chunk in itertools.chain(self._unwritten, self._pending):
                start = offset - chunk.offset
                if chunk.segment == segment and start >= 0 and start + length <= len(chunk.data):
                    return bytes(chunk.data[start : start + length])
        data = self._files.read(segment, offset, length)
        if len(data) != length:
            raise StorageError(f"body at {location} is beyond the end of its segment")
        return data

    @property
    def pending_bytes(self) -> int:
        """Bytes appended but not yet written (including a failed commit's batch)."""
        return self._pending_bytes

    @property
    def last_ticket(self) -> Ticket:
        return self._ticket

    @property
    def durable_ticket(self) -> Ticket:
        """Every append with a ticket up to this one survived a commit."""
        return self._durable

    @property
    def segments(self) -> list[int]:
        """Segment files on disk, oldest first (a snapshot, for tests and metrics)."""
        return list(self._files.segments)

    def close(self) -> None:
        """Commit what is pending, then release every file (idempotent).

        If that last commit raises, the files are released anyway and the error propagates.
        """
        if self._closed:
            return
        try:
            self.commit()
        finally:
            self.abandon()

    def abandon(self) -> None:
        """Release every file WITHOUT writing what is pending: what a crash does.

        For tests, and for shutting down after an unrecoverable storage error.
        """
        with self._commit_lock, self._lock:
            self._closed = True
            self._files.close()
