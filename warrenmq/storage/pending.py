"""Records accepted but not yet laid out in the log, and the layout step itself.

Owns ``PendingPublish`` (a PUBLISH that has its ticket but no place on disk yet, with
the per-queue DELIVERED / FAILURES state that arrived meanwhile) and ``Layout`` (assigns
each record its segment and offset and groups the bytes into per-segment ``Chunk``s).
Must not do I/O or locking: ``log.MessageStore`` calls both under its lock.

Why publishes wait: a message that every target queue acks before the batch holding it
is taken is never written at all -- no PUBLISH, DELIVERED or ACK record -- the way
RabbitMQ's message store skips writing messages removed before they were flushed. Its
publisher confirm still waits for the commit that covers its ticket. A queue that acks
some targets only shrinks the PUBLISH to the queues still holding it.
"""

from __future__ import annotations

from collections.abc import Sequence

from warrenmq.storage.files import Chunk
from warrenmq.storage.records import encode_delivered, encode_failures, encode_publish
from warrenmq.storage.recovery import BodyLocation

#: A PUBLISH record's size beyond properties and body is at most this (header, msg_id,
#: counts, short strings); the pending-bytes figure is an estimate until layout.
_OVERHEAD_ESTIMATE = 64


class PendingPublish:
    """A persistent message's handle in the store, kept by the message as its location.

    Before layout ``body`` is the message body and ``location`` is None; after a
    successful write ``body`` is None and ``location`` says where the body lies.
    ``targets`` keeps insertion order (the queue order of the record).
    """

    __slots__ = (
        "body",
        "delivered",
        "exchange",
        "failures",
        "location",
        "msg_id",
        "properties",
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
    ) -> None:
        self.msg_id = msg_id
        self.targets = targets
        self.exchange = exchange
        self.routing_key = routing_key
        self.properties = properties
        self.body: bytes | None = body
        self.delivered: set[str] | None = None
        self.failures: dict[str, int] | None = None
        self.location: BodyLocation | None = None

    @property
    def estimate(self) -> int:
        """Bytes this publish adds to the pending figure until it is laid out."""
        return _OVERHEAD_ESTIMATE + len(self.properties) + len(self.body or b"")

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
        return bool(delivered) and all(q in delivered for q in self.targets)  # type: ignore[operator]

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
        parts = encode_publish(entry.msg_id, tuple(entry.targets), entry.exchange,
                               entry.routing_key, entry.properties, body, everywhere)
        size = len(parts[0]) + len(parts[1]) + len(body)
        segment, offset = self.place(parts, size)
        entry.location = BodyLocation(segment, offset + size - len(body), len(body))
        if entry.delivered or entry.failures:
            for record in entry.records_after(everywhere):
                self.place((record,), len(record))
        return segment
