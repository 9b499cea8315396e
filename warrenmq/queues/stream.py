"""StreamQueue: a stream (``x-queue-type: stream``) — an append-only log read by offset.

A stream is not a classic queue with a flag: consuming never removes a message, every
consumer has its own read position (``Cursor``), and the log lives in segment files
(``storage.stream.StreamLog``). It subclasses ``Queue`` only so that routing, bindings,
policies, definitions and management treat it as a queue; every transition that differs
is overridden here, so classic queues run their own code unchanged.

Publish: ``enqueue`` appends the message to the log with its offset already written
into the ``x-stream-offset`` header (one rewrite per publish, none per delivery) and
takes a store ticket, so the publisher's confirm waits for the fdatasync that makes it
durable. Consumers only read committed records: the log calls ``dispatch`` when a commit
lands. Dispatch reads each cursor's next records from disk, up to the consumer's credit
(its prefetch), filters them (``x-stream-filter``: exact, per message) and delivers.

Acks only return credit. With ``x-stream-consumer-name`` the cursor also records which
delivered offsets were acked and stores the highest offset below which every delivered
one was acked (contiguous: with prefetch > 1 nothing unacked is ever skipped); a
consumer that comes back with that name and no ``x-stream-offset`` resumes after it.
basic.get, basic.nack/reject, no_ack consumers and queue.purge are 540, as in RabbitMQ.
Nothing here awaits.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, TypeAlias

import structlog

from warrenmq.clock import SYSTEM_CLOCK, Clock
from warrenmq.errors import NotImplemented_, PreconditionFailed
from warrenmq.message import Message
from warrenmq.queues.arguments import QueueArguments
from warrenmq.queues.queue import DeliveryTarget, Queue
from warrenmq.queues.ready import QueuedMessage
from warrenmq.queues.stream_args import (
    MAX_FILTER_VALUE,
    ConsumeStart,
    StreamArguments,
    looks_like_unix_time,
    parse_consume,
    parse_stream_arguments,
)
from warrenmq.queues.stream_props import with_stream_offset
from warrenmq.storage.stream import StreamLog
from warrenmq.storage.streams import StreamStore

log = structlog.get_logger("warrenmq.stream")

#: Seconds between retention checks by age (size is checked after every commit).
RETENTION_INTERVAL = 1.0
BATCH = 256
Entry: TypeAlias = tuple[int, bytes, Message, tuple[int, int]]
RECENT = 16384  # records kept decoded for the consumers that read them next
RECENT_BYTES = 8 * 1024 * 1024  # and at most this much of their bodies
_FILTER_KEY: Final = b"\x15x-stream-filter-value"


class Cursor:
    """One consumer's position in the stream and, if named, its acked offsets."""

    def __init__(self, consumer: DeliveryTarget, where: tuple[int, int], offset: int,
                 start: ConsumeStart) -> None:
        self.consumer = consumer
        self.where = where  # (segment's first offset, byte position) of the next record
        self.offset = offset  # the next offset to read (the record at ``where``)
        self.filters = start.filters
        self.match_unfiltered = start.match_unfiltered
        self.name = start.name
        self.outstanding: OrderedDict[int, bool] = OrderedDict()
        self.acked_upto = -1

    def wants(self, filter_value: bytes) -> bool:
        filters = self.filters
        if filters is None:
            return True
        if not filter_value:
            return self.match_unfiltered
        return filter_value in filters


class StreamDelivery(QueuedMessage):
    """A delivered stream message: ``seq`` is its offset; ``cursor`` who got it."""

    def __init__(self, message: Message, offset: int, cursor: Cursor, queue: Queue) -> None:
        super().__init__(message, offset, None, queue)
        self.cursor = cursor


class StreamQueue(Queue):
    def __init__(self, name: str, *, vhost: str, arguments: Mapping[str, Any],
                 stream_args: StreamArguments, streams: StreamStore,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(name, vhost=vhost, durable=True, arguments=arguments,
                         args=QueueArguments(), clock=clock)
        self.streams = streams
        self.stream_args = stream_args
        self.log: StreamLog = streams.open(vhost, name, stream_args.segment_size)
        self.log.on_commit = self._committed
        self.cursors: dict[DeliveryTarget, Cursor] = {}
        # the records read last, for every offset from _recent_base on, contiguous:
        # (offset, filter value, message, position after it)
        self._recent: list[Entry] = []
        self._recent_base = 0
        self._recent_bytes = 0
        self.ticket = 0  # the store ticket of the last append
        self._next_retention = clock.monotonic()

    def __repr__(self) -> str:
        return f"<StreamQueue {self.vhost}/{self.name} offsets={self.log.first_offset}..>"

    @property
    def where(self) -> str:
        return f"queue '{self.name}' in vhost '{self.vhost}'"

    def reconfigure(self, args: QueueArguments) -> None:
        """A policy changed: max-age, max-length-bytes and the segment size come from the
        policy when it sets them (it wins over the declared arguments)."""
        self._use_args(args)
        self.stream_args = parse_stream_arguments(
            self.arguments, self.where, self.effective_policy_definition)
        self.log.segment_size = self.stream_args.segment_size
        self._retain()

    @property
    def message_count(self) -> int:
        return 0  # as RabbitMQ's declare-ok for a stream

    @property
    def stream_messages(self) -> int:
        return self.log.committed - self.log.first_offset

    # ------------------------------------------------------------------ publish
    def enqueue(self, message: Message) -> bool:
        self.published += 1
        offset = self.log.next_offset
        filter_value = b""
        properties = message.properties
        # decode the headers only when they may hold it: the headers flag, then a search
        if properties[0] & 0x20 and properties.find(_FILTER_KEY) >= 0:
            headers = message.headers()
            value = headers.get("x-stream-filter-value") if headers else None
            if isinstance(value, str):
                filter_value = value.encode()[:MAX_FILTER_VALUE]
            elif isinstance(value, bytes | bytearray):
                filter_value = bytes(value)[:MAX_FILTER_VALUE]
        properties = with_stream_offset(message.properties, offset)
        self.log.append(int(self.clock.time() * 1000), filter_value, message.route,
                        properties, message.body)
        self.ticket = self.streams.reserve_ticket()
        return True

    def _committed(self) -> None:
        self._retain_bytes()
        self.dispatch()

    # ------------------------------------------------------------------ consumers
    def consume_start(self, *, no_ack: bool, prefetch: int, arguments: Mapping[str, Any]
                      ) -> ConsumeStart:
        """basic.consume's checks for a stream (540 no_ack, 406 prefetch or arguments)."""
        if no_ack:
            raise NotImplemented_(
                f"automatic acknowledgement not supported by stream queues {self.where}")
        if prefetch <= 0:
            raise PreconditionFailed(f"consumer prefetch count is not set for '{self.where}'")
        return parse_consume(arguments, self.where, int(self.clock.time() * 1000))

    def add_reader(self, consumer: DeliveryTarget, start: ConsumeStart) -> None:
        offset = self._start_offset(start)
        cursor = Cursor(consumer, self.log.position(offset), offset, start)
        cursor.acked_upto = offset - 1
        self.cursors[consumer] = cursor
        log.info("stream_consumer_started", queue=self.name, vhost=self.vhost,
                 consumer_tag=consumer.tag, start=start.kind, offset=offset,
                 consumer_name=start.name)
        self.add_consumer(consumer)

    def _start_offset(self, start: ConsumeStart) -> int:
        stream = self.log
        kind = start.kind
        if kind == "tracked":
            tracked = self.streams.tracked(stream).get(start.name or "")
            if tracked is None:
                return stream.committed
            log.info("stream_consumer_resumed", queue=self.name, consumer_name=start.name,
                     offset=tracked + 1)
            return max(tracked + 1, stream.first_offset)
        if kind == "first":
            return stream.first_offset
        if kind == "last":
            return max(stream.first_offset, min(stream.last_chunk, stream.committed))
        if kind == "next":
            return stream.committed
        if kind == "time":
            return stream.offset_at_time(start.value)
        number = start.value
        if number > stream.committed:
            unit = looks_like_unix_time(number, int(self.clock.time() * 1000))
            if unit is not None:
                log.warning("stream_offset_looks_like_timestamp", queue=self.name,
                            vhost=self.vhost, offset=number, last_offset=stream.committed - 1,
                            hint=f"x-stream-offset {number} looks like a Unix time in {unit};"
                                 " pass a timestamp (AMQP type T, e.g. a datetime in Python)"
                                 " to start at a time. Starting at the end of the stream.")
            return stream.committed
        return max(number, stream.first_offset)

    def remove_consumer(self, consumer: DeliveryTarget) -> bool:
        self.cursors.pop(consumer, None)
        return super().remove_consumer(consumer)

    def dispatch(self) -> None:
        if self._dispatching or not self.cursors:
            return
        self._dispatching = True
        try:
            for cursor in list(self.cursors.values()):
                self._feed(cursor)
        finally:
            self._dispatching = False

    def _feed(self, cursor: Cursor) -> None:
        consumer = cursor.consumer
        while True:
            credit = min(consumer.credit(), BATCH)
            if credit <= 0:
                return
            records = self._records(cursor, credit)
            if not records:
                return
            batch: list[QueuedMessage] = []
            named = cursor.name is not None
            for offset, filter_value, message, _after in records:
                if cursor.filters is None or cursor.wants(filter_value):
                    batch.append(StreamDelivery(message, offset, cursor, self))
                    if named:
                        cursor.outstanding[offset] = False
                elif named:
                    cursor.outstanding[offset] = True  # skipped counts as done
            if batch:
                self.delivered += len(batch)
                self.unacked += consumer.deliver(self, batch)
            if named:
                self._advance(cursor)

    def _records(self, cursor: Cursor, limit: int) -> list[Entry]:
        """The next ``limit`` records at the cursor (moving it past them).

        Consumers reading the same part of the stream share one read, one decode and one
        ``Message`` per record: the records read last are kept in ``_recent``, a list
        indexed by offset from ``_recent_base`` (a slice serves a cursor inside it: no
        hashing, no entry per record per consumer). A read that continues the list
        extends it, one that starts past its end starts it again there, one behind it
        (a consumer far behind the others) is not kept; the oldest quarter goes when the
        list holds more than ``RECENT`` records or ``RECENT_BYTES`` of bodies."""
        recent = self._recent
        at = cursor.offset - self._recent_base
        out: list[Entry] = []
        if 0 <= at < len(recent):
            out = recent[at:at + limit]
            last = out[-1]
            cursor.offset = last[0] + 1
            cursor.where = last[3]
            if len(out) >= limit:
                return out
        ends: list[tuple[int, int]] = []
        records, end = self.log.read(cursor.where, limit - len(out), ends)
        if not records:
            cursor.where = end
            return out
        first = records[0].offset
        keep = first == self._recent_base + len(recent)
        if not keep and (not recent or first > self._recent_base + len(recent)):
            recent.clear()
            self._recent_bytes = 0
            self._recent_base = first
            keep = True
        added = 0
        for record, after in zip(records, ends, strict=True):
            body = record.body
            entry = (record.offset, record.filter_value,
                     Message("", "", record.route, record.properties, body), after)
            out.append(entry)
            if keep:
                recent.append(entry)
                added += len(body)
        cursor.offset = records[-1].offset + 1
        cursor.where = ends[-1]
        if keep:
            self._recent_bytes += added
            if len(recent) > RECENT or self._recent_bytes > RECENT_BYTES:
                self._trim_recent()
        return out

    def _trim_recent(self) -> None:
        recent = self._recent
        drop = max(1, len(recent) // 4)
        self._recent_bytes -= sum(len(entry[2].body) for entry in recent[:drop])
        del recent[:drop]
        self._recent_base += drop

    # ------------------------------------------------------------------ settling
    def ack(self, qms: Sequence[QueuedMessage]) -> None:
        self.unacked -= len(qms)
        self.acked += len(qms)
        touched: set[Cursor] = set()
        for qm in qms:
            if isinstance(qm, StreamDelivery) and qm.cursor.name is not None:
                qm.cursor.outstanding[qm.seq] = True
                touched.add(qm.cursor)
        for cursor in touched:
            self._advance(cursor)

    def _advance(self, cursor: Cursor) -> None:
        """Move the cursor's tracked offset over every acked (or skipped) offset in a
        row from the oldest; store it if it moved."""
        outstanding = cursor.outstanding
        moved = False
        while outstanding:
            offset, done = next(iter(outstanding.items()))
            if not done:
                break
            outstanding.popitem(last=False)
            cursor.acked_upto = offset
            moved = True
        if moved and cursor.name is not None:
            self.streams.track(self.log, cursor.name, cursor.acked_upto)

    def requeue(self, qms: Iterable[QueuedMessage]) -> None:
        """The channel went away with these unacked: nothing to put back in a log."""
        self.unacked -= sum(1 for _ in qms)

    def discard(self, qms: Sequence[QueuedMessage]) -> None:
        self.unacked -= len(qms)

    def get(self) -> QueuedMessage | None:
        raise NotImplemented_(f"basic.get not supported by stream queues {self.where}")

    def purge(self) -> int:
        raise NotImplemented_(f"queue.purge not supported by stream queues {self.where}")

    def delete(self) -> list[DeliveryTarget]:
        self.deleted = True
        consumers, self._consumers = self._consumers, []
        self.cursors.clear()
        self._recent.clear()
        self.utilisation.consumers_left()
        self.streams.remove(self.log)
        return consumers

    # ------------------------------------------------------------------ retention
    def next_deadline(self) -> float | None:
        return self._next_retention

    def tick(self, now: float) -> None:
        self._next_retention = now + RETENTION_INTERVAL
        self._retain()

    def expired(self, now: float) -> bool:
        return False

    def _retain(self) -> None:
        args = self.stream_args
        if args.max_age_ms is None and args.max_length_bytes is None:
            return
        if self.log.retain(args.max_length_bytes, args.max_age_ms,
                           int(self.clock.time() * 1000)):
            self._recent.clear()
            self._recent_bytes = 0
            self.dispatch()  # cursors in a deleted segment move to the new start

    def _retain_bytes(self) -> None:
        if self.stream_args.max_length_bytes is not None and len(self.log.segments) > 1:
            self._retain()

    def tracked_offsets(self) -> dict[str, int]:
        return dict(self.streams.tracked(self.log))


def stream_ticket(queues: Sequence[Queue], ticket: int) -> int:
    """The highest store ticket among the stream queues a message was appended to."""
    for queue in queues:
        if isinstance(queue, StreamQueue) and queue.ticket > ticket:
            ticket = queue.ticket
    return ticket


def stream_fields(queue: Queue) -> dict[str, Any]:
    """The management API's view of a stream (nothing for other queues): its type,
    message count, offsets, size, segments and committed consumer offsets."""
    if not isinstance(queue, StreamQueue):
        return {}
    stream = queue.log
    count = queue.stream_messages
    return {
        "type": "stream",
        "messages": count,
        "messages_ready": count,
        "stream": {
            "first_offset": stream.first_offset,
            "last_offset": stream.committed - 1 if count else None,
            "committed_offset": stream.committed,
            "size_bytes": stream.size_bytes,
            "segments": len(stream.segments),
            "max_age_ms": queue.stream_args.max_age_ms,
            "max_length_bytes": queue.stream_args.max_length_bytes,
            "segment_size_bytes": queue.stream_args.segment_size,
            "consumer_offsets": queue.tracked_offsets(),
        },
    }
