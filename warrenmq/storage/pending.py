"""Records accepted but not yet laid out in the log, and the layout step itself.

Owns ``PendingPublish`` (a PUBLISH that has its ticket but no place on disk yet, with
the per-queue DELIVERED / FAILURES state that arrived meanwhile) and ``Layout`` (assigns
each record its segment and offset and groups the bytes into per-segment ``Chunk``s).
Must not do I/O or locking: ``log.MessageStore`` calls ``lay_out`` under its lock.

Why publishes wait: a message that every target queue acks before the batch holding it
is taken is never written at all -- no PUBLISH, DELIVERED or ACK record -- the way
RabbitMQ's message store skips writing messages removed before they were flushed. Its
publisher confirm still waits for the commit that covers its ticket. A queue that acks
some targets only shrinks the PUBLISH to the queues still holding it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from warrenmq.storage.files import Chunk
from warrenmq.storage.live import LiveSet
from warrenmq.storage.records import encode_delivered, encode_failures, encode_publish_prefix
from warrenmq.storage.recovery import BodyLocation

#: A PUBLISH record's size beyond properties and body is at most this (header, msg_id,
#: counts, short strings); the pending-bytes figure is an estimate until layout.
_OVERHEAD_ESTIMATE: Final = 64
_new_tuple = tuple.__new__  # a NamedTuple without its Python-level __new__ (per message)


class PendingPublish:
    """A persistent message's handle in the store, kept by the message as its location.

    Before layout ``body`` is the message body and ``location`` is None; after a
    successful write ``body`` is None and ``location`` says where the body lies.
    ``targets`` keeps insertion order (the queue order of the record).
    """

    __slots__ = (
        "body",
        "delivered",
        "estimate",
        "exchange",
        "failures",
        "location",
        "moved_from",
        "msg_id",
        "properties",
        "published_ms",
        "routing_key",
        "targets",
    )

    def __init__(
        self,
        msg_id: int,
        targets: dict[str, None],
        exchange: str,
        routing_key: str,
        properties: bytes,
        body: bytes,
        published_ms: int = 0,
    ) -> None:
        self.msg_id = msg_id
        self.published_ms = published_ms
        self.targets = targets
        self.exchange = exchange
        self.routing_key = routing_key
        self.properties = properties
        self.body: bytes | None = body
        self.delivered: set[str] | None = None
        self.failures: dict[str, int] | None = None
        self.location: BodyLocation | None = None
        self.moved_from = 0  # a compaction copy: the segment it is copied from
        # bytes this publish adds to the pending figure until it is laid out
        self.estimate = _OVERHEAD_ESTIMATE + len(properties) + len(body)

    def mark_delivered(self, queue: str) -> None:
        if self.delivered is None:
            self.delivered = set()
        self.delivered.add(queue)

    def set_failures(self, queue: str, count: int) -> None:
        if self.failures is None:
            self.failures = {}
        self.failures[queue] = count

    def forget(self, queue: str) -> None:
        """``queue`` is done with the message (acked, dropped): no record for it at all."""
        self.targets.pop(queue, None)
        if self.delivered:
            self.delivered.discard(queue)
        if self.failures:
            self.failures.pop(queue, None)

    @property
    def delivered_everywhere(self) -> bool:
        """Delivered in every queue still holding it: written as one PUBLISH_DELIVERED."""
        delivered = self.delivered
        if not delivered:
            return False
        targets = self.targets
        if len(targets) == 1:
            return next(iter(targets)) in delivered
        return all(q in delivered for q in targets)

    def records_after(self, delivered_everywhere: bool) -> list[bytes]:
        """DELIVERED and FAILURES records for the queues still holding the message."""
        out = []
        if self.delivered and not delivered_everywhere:
            out += [encode_delivered(q, self.msg_id) for q in self.delivered if q in self.targets]
        if self.failures:
            out += [encode_failures(q, self.msg_id, n) for q, n in self.failures.items()
                    if q in self.targets]
        return out


class Layout:
    """Lays records out from a head position, moving to the next segment first when a
    record would not fit (a record larger than a whole segment gets one of its own)."""

    def __init__(self, segment_size: int, segment: int, offset: int) -> None:
        self.segment_size = segment_size
        self.segment = segment
        self.offset = offset
        self.chunks: list[Chunk] = []
        self.size = 0

    def place(self, parts: Sequence[bytes], size: int) -> tuple[int, int]:
        """Append one record's bytes; returns its (segment, offset)."""
        if self.offset and self.offset + size > self.segment_size:
            self.segment += 1
            self.offset = 0
        segment, offset = self.segment, self.offset
        chunks = self.chunks
        if chunks and chunks[-1].segment == segment:
            chunk = chunks[-1]
        else:
            chunk = Chunk(segment, offset)
            chunks.append(chunk)
        for part in parts:
            chunk.data += part
        self.offset = offset + size
        self.size += size
        return segment, offset

    def place_publish(self, entry: PendingPublish) -> int:
        """Lay out ``entry``'s PUBLISH for its remaining targets (then its DELIVERED and
        FAILURES records); sets ``entry.location`` and returns the segment."""
        body = entry.body or b""
        everywhere = entry.delivered_everywhere
        prefix, size = encode_publish_prefix(entry.msg_id, tuple(entry.targets),
                                             entry.exchange, entry.routing_key,
                                             entry.properties, body, everywhere,
                                             entry.published_ms)
        segment, offset = self.place((prefix, body), size)
        entry.location = _new_tuple(BodyLocation, (segment, offset + len(prefix), len(body)))
        if entry.delivered or entry.failures:
            for record in entry.records_after(everywhere):
                self.place((record,), len(record))
        return segment


def lay_out(
    items: list[bytes | PendingPublish],
    layout: Layout,
    unplaced: dict[int, PendingPublish],
    live: LiveSet,
    moved: dict[int, PendingPublish],
) -> tuple[list[PendingPublish], int]:
    """Lay ``items`` out in order; returns the publishes laid out and the pending-bytes
    estimate the items had. Publishes whose queues all acked them meanwhile are skipped;
    the others become live in the segment they land in, with their DELIVERED / FAILURES
    state; compaction copies move their queues' live pairs to the new segment."""
    placed = []
    estimated = 0
    for item in items:
        if isinstance(item, bytes):
            layout.place((item,), len(item))
            estimated += len(item)
            continue
        estimated += item.estimate
        if item.moved_from:
            if _lay_out_copy(layout, item, live, moved):
                placed.append(item)
            continue
        if unplaced.get(item.msg_id) is item:  # (a duplicate id may have replaced it)
            del unplaced[item.msg_id]
        if not item.targets:
            item.body = None  # acked everywhere before it was written: never will be
            continue
        segment = layout.place_publish(item)
        placed.append(item)
        live.add(item.targets, item.msg_id, segment)
        # (delivered flags are in the record: compaction reads them from the segment)
        if item.failures:
            for q, n in item.failures.items():
                live.set_failures(q, item.msg_id, n)
    return placed, estimated


def _lay_out_copy(
    layout: Layout, copy: PendingPublish, live: LiveSet, moved: dict[int, PendingPublish]
) -> bool:
    """A compaction copy, for the queues that still hold the message in the segment it
    is copied from, with their current state; False (and forgotten) if none does."""
    old, msg_id = copy.moved_from, copy.msg_id
    targets = [q for q in copy.targets if live.segment_of(q, msg_id) == old]
    if not targets:
        if moved.get(msg_id) is copy:
            del moved[msg_id]
        return False
    copy.targets = dict.fromkeys(targets)
    notes = {q: live.note(q, msg_id) for q in targets}
    seen = copy.delivered or set()  # delivered before the old record was written
    copy.delivered = {q for q, (delivered, _) in notes.items() if delivered or q in seen} or None
    copy.failures = {q: n for q, (_, n) in notes.items() if n} or None
    segment = layout.place_publish(copy)
    for q in targets:
        live.move(q, msg_id, segment)
    return True
