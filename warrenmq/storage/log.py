"""MessageStore: the append-only segment log that makes persistent messages durable.

Theory of operation
-------------------
Threads. Two threads use a store. The event-loop thread calls ``publish``, ``ack``,
``delivered``, ``failures`` and ``drop_queue``: each queues one record (see ``records``)
in an in-memory *pending* list and returns a *ticket* at once, with no I/O. A PUBLISH
waits there unencoded as a ``pending.PendingPublish``: acks, deliveries and failure
counts that arrive for it before the layout change it in place, so a message acked
everywhere by then is never written at all (see ``pending``). ``prepare_commit`` (loop
thread) lays everything pending out and takes it as a batch; ``write_prepared`` (a
worker thread, via ``run_in_executor``) writes it and fsyncs once for the whole batch
(group commit); ``finish_commit`` (loop thread) marks it durable and the broker sends the
publisher confirms up to its ticket. ``_lock`` guards the pending list, the ticket
counter and the live-message bookkeeping and is held only for list and dictionary work,
never across I/O; ``_commit_lock`` serialises writers; file descriptors belong to
``files.SegmentFiles``.

Positions. A record's place in the log -- segment number and byte offset -- is fixed when
it is laid out: the store keeps a head ``(segment, offset)`` and advances it by each
record's size, moving to the next segment first when the record would not fit (a record
larger than a whole segment gets a segment of its own). ``commit`` writes each chunk with
``pwrite`` at its assigned offset, which makes a retry after a failed commit idempotent:
the same bytes go to the same places. A message's handle (``Published.handle``, kept by
the message) serves its body from memory until the write succeeded, then from the file.

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
which is equally consistent. A dead segment after a live one is kept until everything
before it dies -- or until compaction (see ``compaction``) copies the few live messages
of the oldest segment to the head: then it is dead too and the prefix goes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, Literal, NamedTuple

import structlog

from warrenmq.storage.atomic import fsync_dir
from warrenmq.storage.compaction import LiveCopy, choose, copies_of, scan_live
from warrenmq.storage.errors import StorageError
from warrenmq.storage.files import Chunk, SegmentFiles
from warrenmq.storage.live import LiveSet
from warrenmq.storage.pending import Layout, PendingPublish, lay_out
from warrenmq.storage.records import (
    check_publish,
    encode_ack,
    encode_ack_many,
    encode_delivered,
    encode_drop_queue,
    encode_failures,
)
from warrenmq.storage.recovery import BodyLocation, Recovery, replay

log = structlog.get_logger("warrenmq.storage")
_new_tuple = tuple.__new__  # skips NamedTuple's Python-level __new__ on the hot path

Ticket = int
FsyncPolicy = Literal["group", "always", "never"]
FSYNC_POLICIES: Final[tuple[FsyncPolicy, ...]] = ("group", "always", "never")
DEFAULT_SEGMENT_SIZE: Final = 64 * 1024 * 1024
DEFAULT_KEEP_IN_MEMORY: Final = 64 * 1024
MIN_SEGMENT_SIZE: Final = 64


class Published(NamedTuple):
    """What ``publish`` returns: the record's ticket and the message's handle in the store
    (its ``location`` once laid out; keep the handle, not the location, for ``read_body``)."""

    ticket: Ticket
    handle: PendingPublish

    @property
    def location(self) -> BodyLocation | None:
        return self.handle.location


class PreparedCommit(NamedTuple):
    """A batch taken by ``prepare_commit``: chunks to write, the ticket they make durable,
    the head segment at the time, the dead segment prefix to delete afterwards and the
    publishes laid out in it (their bodies are released once it is written)."""

    chunks: list[Chunk]
    target: Ticket
    head: int
    doomed: list[int]
    placed: list[PendingPublish]
    compact: int  # a segment whose live messages the writer looks up for copying, or 0
    found: list[LiveCopy]  # filled by the writer


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
        state: LiveSet,
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
        # Loop side, under _lock: records in order, not yet laid out.
        self._ticket: Ticket = 0
        self._head_segment = head_segment
        self._head_offset = 0
        self._pending: list[bytes | PendingPublish] = []
        self._unplaced: dict[int, PendingPublish] = {}
        self._pending_bytes = 0
        self._set = state
        # msg_id -> its compaction copy, while the message lives (read_body goes there)
        self._moved: dict[int, PendingPublish] = {}
        self._compacting: int | None = None
        self._closed = False
        # Laid out but not yet written (a failed batch stays here for the next commit).
        self._durable: Ticket = 0
        self._unwritten: list[Chunk] = []
        self._unwritten_placed: list[PendingPublish] = []
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
        published: float = 0.0,
    ) -> Published:
        """Accept one PUBLISH for a message routed to ``queues`` (deduplicated), published
        at wall-clock ``published`` seconds; it is encoded when its batch is taken, for the
        queues that still hold it then."""
        if len(exchange) > 63 or len(routing_key) > 63 or not queues or msg_id >> 64:
            check_publish(msg_id, queues, exchange, routing_key)  # may be too long: exact
        entry = PendingPublish(msg_id, dict.fromkeys(queues), exchange, routing_key,
                               properties, body, int(published * 1000))
        with self._lock:
            if self._closed:
                raise StorageError(f"message store {self.directory} is closed")
            self._pending.append(entry)
            self._unplaced[msg_id] = entry
            self._pending_bytes += entry.estimate
            self._ticket += 1
            return _new_tuple(Published, (self._ticket, entry))

    def ack(self, queue: str, msg_id: int) -> Ticket:
        """The message left ``queue`` for good (acked, or dead-lettered, expired, ...)."""
        with self._lock:
            entry = self._unplaced.get(msg_id)
            if entry is not None:
                entry.forget(queue)
                self._ticket += 1
                return self._ticket
            ticket = self._append(encode_ack(queue, msg_id))
            self._set.remove(queue, (msg_id,))
            if self._moved:
                self._prune_moved((msg_id,))
            return ticket

    def ack_many(self, queue: str, msg_ids: Sequence[int]) -> Ticket:
        """``ack`` for several messages of one queue (a multiple ack): one lock, one
        append of all the records."""
        with self._lock:
            unplaced = self._unplaced
            written = []
            for msg_id in msg_ids:
                entry = unplaced.get(msg_id)
                if entry is None:
                    written.append(msg_id)
                else:
                    entry.forget(queue)
            if not written:
                self._ticket += 1
                return self._ticket
            ticket = self._append(encode_ack(queue, written[0]) if len(written) == 1
                                  else encode_ack_many(queue, written))
            self._set.remove(queue, written)
            if self._moved:
                self._prune_moved(written)
            return ticket

    def delivered(self, queue: str, msg_id: int) -> Ticket:
        """Recovery will mark the message redelivered."""
        with self._lock:
            entry = self._unplaced.get(msg_id)
            if entry is None:
                self._set.mark_delivered(queue, msg_id)
                return self._append(encode_delivered(queue, msg_id))
            entry.mark_delivered(queue)
            self._ticket += 1
            return self._ticket

    def failures(self, queue: str, msg_id: int, count: int) -> Ticket:
        """Set the message's failure count in ``queue`` (the last record wins)."""
        with self._lock:
            entry = self._unplaced.get(msg_id)
            if entry is None:
                self._set.set_failures(queue, msg_id, count)
                return self._append(encode_failures(queue, msg_id, count))
            entry.set_failures(queue, count)
            self._ticket += 1
            return self._ticket

    def drop_queue(self, queue: str) -> Ticket:
        """Every message published to ``queue`` so far is gone, unacked ones included."""
        with self._lock:
            for entry in self._unplaced.values():
                entry.forget(queue)
            ticket = self._append(encode_drop_queue(queue))
            self._set.drop(queue)
            if self._moved:
                self._prune_moved(list(self._moved))
            return ticket

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"message store {self.directory} is closed")

    def _append(self, record: bytes) -> Ticket:
        """Queue an encoded record behind everything pending (caller holds _lock)."""
        self._check_open()
        self._pending.append(record)
        self._pending_bytes += len(record)
        self._ticket += 1
        return self._ticket

    def reserve_ticket(self) -> Ticket:
        """A ticket with no record of its own: durable once the next commit lands. Stream
        appends take one, so their confirms keep their place among the store's."""
        with self._lock:
            self._ticket += 1
            return self._ticket

    def _prune_moved(self, msg_ids: Sequence[int]) -> None:
        """Forget the copies of messages no queue holds any more (caller holds _lock)."""
        for msg_id in msg_ids:
            copy = self._moved.get(msg_id)
            if copy is not None and all(
                self._set.segment_of(q, msg_id) is None for q in copy.targets
            ):
                del self._moved[msg_id]

    def _lay_out(self) -> list[PendingPublish]:
        """Give every pending record its place after the head (caller holds _lock);
        returns the publishes laid out (see ``pending.lay_out``)."""
        layout = Layout(self.segment_size, self._head_segment, self._head_offset)
        placed, estimated = lay_out(self._pending, layout, self._unplaced, self._set,
                                    self._moved)
        self._pending = []
        self._head_segment, self._head_offset = layout.segment, layout.offset
        self._pending_bytes += layout.size - estimated
        self._unwritten.extend(layout.chunks)
        self._unwritten_placed.extend(placed)
        return placed

    def _queue_copies(self, segment: int, found: list[LiveCopy]) -> None:
        """Loop thread: pend a copy of each message still live in ``segment``."""
        with self._lock:
            for copy in copies_of(found, segment, self._set):
                self._pending.append(copy)
                self._pending_bytes += copy.estimate
                self._moved[copy.msg_id] = copy
        log.info("storage_segment_compacted", segment=segment, copied=len(found))

    # -- the broker's split commit: no lock on the loop thread's data while writing -------

    def prepare_commit(self, *, compact: bool = True) -> PreparedCommit:
        """Loop thread: lay out everything pending and take it (after a failed batch, if
        any) as the next batch. With ``write_prepared`` in a worker and ``finish_commit``
        back on the loop, the appends never wait for a lock the writer holds. The batch
        may also name a segment to compact (see ``compaction``)."""
        with self._lock:
            self._check_open()
            self._lay_out()
            head = self._head_segment
            segment = 0
            if compact and self._compacting is None:
                chosen = choose(self._files.segments, head, self._set.segment_live)
                if chosen is not None:
                    self._compacting = segment = chosen
            return PreparedCommit(list(self._unwritten), self._ticket, head,
                                  self._dead_prefix(head), list(self._unwritten_placed),
                                  segment, [])

    def write_prepared(self, batch: PreparedCommit) -> Ticket:
        """Worker thread: write and fsync a prepared batch; returns its durable ticket."""
        with self._commit_lock:
            return self._write(batch)

    def _write(self, batch: PreparedCommit) -> Ticket:
        if batch.chunks:
            self._files.write(batch.chunks)
        self._files.close_writers(below=batch.head)
        if batch.doomed:
            self._files.delete_prefix(batch.doomed)
        if batch.compact:
            segment = batch.compact
            try:
                batch.found.extend(scan_live(self.directory, segment, self._in_segment(segment)))
            except OSError as exc:  # the batch itself is durable; compaction can wait
                log.warning("storage_compaction_failed", segment=segment, error=str(exc))
        return batch.target

    def _in_segment(self, segment: int) -> Callable[[str, int], bool]:
        def check(queue: str, msg_id: int) -> bool:
            with self._lock:
                return self._set.segment_of(queue, msg_id) == segment
        return check

    def finish_commit(self, batch: PreparedCommit, ok: bool) -> None:
        """Loop thread: account for a written batch (a failed one stays for the next)."""
        if batch.compact:
            self._compacting = None
            if ok and batch.found:
                self._queue_copies(batch.compact, batch.found)
        if not ok:
            return
        with self._lock:
            del self._unwritten[: len(batch.chunks)]
            del self._unwritten_placed[: len(batch.placed)]
            self._pending_bytes -= sum(len(chunk.data) for chunk in batch.chunks)
            self._durable = max(self._durable, batch.target)
            for entry in batch.placed:
                entry.body = None  # on disk now: read_body goes to the file

    def commit(self, *, compact: bool = True) -> Ticket:
        """Write and fsync everything appended so far; return the highest durable ticket.

        On OSError nothing new is durable and the data is kept for the next commit (see
        the module docstring). Then deletes the dead prefix of segments (errors there are
        logged, not raised: the data is already durable).
        """
        with self._commit_lock:
            batch = self.prepare_commit(compact=compact)
            try:
                self._write(batch)
            except BaseException:
                self.finish_commit(batch, ok=False)
                raise
            self.finish_commit(batch, ok=True)
            return batch.target

    def _dead_prefix(self, head: int) -> list[int]:
        doomed = []
        for segment in self._files.segments:
            if segment >= head or segment in self._set.segment_live:
                break
            doomed.append(segment)
        return doomed

    # -- any thread ----------------------------------------------------------------------

    def read_body(self, location: PendingPublish | BodyLocation, msg_id: int = 0) -> bytes:
        """The body of a message: from memory until it is written, then from its segment
        (or from its compaction copy's, given its ``msg_id``).

        Valid while the message is live in some queue: the segment of a message acked
        everywhere may already be deleted (then OSError).
        """
        if msg_id and self._moved:
            copy = self._moved.get(msg_id)
            if copy is not None:
                location = copy
        if isinstance(location, PendingPublish):
            if location.body is not None:
                return location.body
            if location.location is None:
                raise StorageError(f"message {location.msg_id} was never written")
            location = location.location
        segment, offset, length = location
        with self._lock:
            self._check_open()
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
            self.commit(compact=False)
        finally:
            self.abandon()

    def abandon(self) -> None:
        """Release every file WITHOUT writing what is pending: what a crash does.

        For tests, and for shutting down after an unrecoverable storage error.
        """
        with self._commit_lock, self._lock:
            self._closed = True
            self._files.close()
