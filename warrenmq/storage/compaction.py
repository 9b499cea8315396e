"""Compaction: copying the few live messages of an old segment forward so it can go.

Segments are deleted oldest first only (see ``log``: an ACK must not be deleted while
the PUBLISH it cancels survives), so one long-lived message -- a dead-lettered order
waiting for an operator, say -- would keep every later segment on disk. When the oldest
segment holds few live messages and dead segments pile up behind it, the store copies
those messages to the head of the log and the segment becomes dead; the ordinary prefix
GC then deletes it, and every dead segment behind it, once the copies are durable.

Owns the choice of segment (``choose``), the worker-thread scan that finds the live
PUBLISH records in it (``scan_live``) and the copies made of them (``copies_of``). A
copy is an ordinary PUBLISH with the same msg_id, written for the queues that still hold
the message, followed by its DELIVERED / FAILURES state; recovery already lets the newer
PUBLISH of an id win, and restores each queue in msg_id order, which is publish order,
so a copy keeps its place in the queue. Until the copy is written, and while the message
lives, ``MessageStore.read_body`` finds the body through the copy (by msg_id).
Must not mutate the store's bookkeeping: ``log.MessageStore`` does that on its thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from warrenmq.storage.live import LiveSet
from warrenmq.storage.pending import PendingPublish
from warrenmq.storage.records import (
    T_DELIVERED,
    T_PUBLISH,
    T_PUBLISH_DELIVERED,
    decode_publish_head,
    decode_publish_tail,
    decode_queue_msg,
)
from warrenmq.storage.segment import scan, segment_name

#: Compact a segment only while it holds at most this many live (queue, message) pairs:
#: the copy is bounded work, and a segment full of live messages frees little anyway.
MAX_LIVE = 10_000
#: ... and only once at least this many dead segments wait behind it.
MIN_DEAD_BEHIND = 2

_PUBLISHES = (T_PUBLISH, T_PUBLISH_DELIVERED)


class LiveCopy(NamedTuple):
    """A PUBLISH found in the compacted segment that some queue may still hold."""

    msg_id: int
    queues: list[str]
    exchange: str
    routing_key: str
    published_ms: int
    properties: bytes
    body: bytes
    delivered: set[str]  # queues it was delivered in, as far as the segment says


def choose(
    segments: Sequence[int], head: int, segment_live: dict[int, int],
    max_live: int = MAX_LIVE, min_dead_behind: int = MIN_DEAD_BEHIND,
) -> int | None:
    """The oldest segment, if it is live but small and pins enough dead ones behind it."""
    complete = [s for s in segments if s < head]
    if not complete:
        return None
    oldest = complete[0]
    live = segment_live.get(oldest, 0)
    if live == 0 or live > max_live:
        return None  # dead: the prefix GC takes it; or mostly live: little to gain
    dead_behind = sum(1 for s in complete[1:] if s not in segment_live)
    return oldest if dead_behind >= min_dead_behind else None


def scan_live(
    directory: Path, segment: int, maybe_live: Callable[[str, int], bool]
) -> list[LiveCopy]:
    """Worker thread: the PUBLISH records of ``segment`` that ``maybe_live(queue,
    msg_id)`` says some queue may still hold (the loop thread re-checks them), with the
    queues the segment itself says they were delivered in (PUBLISH_DELIVERED, DELIVERED;
    deliveries recorded later are in the store's live-set notes)."""
    path = directory / segment_name(segment)
    buf = path.read_bytes()
    damaged: list[tuple[str, int]] = []
    found: dict[int, LiveCopy] = {}
    for rtype, _rstart, start, end in scan(buf, path, damaged):
        try:
            if rtype == T_DELIVERED:
                queue, msg_id = decode_queue_msg(buf, start, end)
                if msg_id in found:
                    found[msg_id].delivered.add(queue)
                continue
            if rtype not in _PUBLISHES:
                continue
            msg_id, queues, pos = decode_publish_head(buf, start, end)
            if not any(maybe_live(q, msg_id) for q in queues):
                continue
            exchange, routing_key, published, properties, body_start = decode_publish_tail(
                buf, pos, end)
        except ValueError:
            continue  # recovery already warned about it; nothing to copy
        delivered = set(queues) if rtype == T_PUBLISH_DELIVERED else set()
        found[msg_id] = LiveCopy(msg_id, queues, exchange, routing_key, published, properties,
                                 buf[body_start:end], delivered)
    return list(found.values())


def copies_of(found: list[LiveCopy], segment: int, live: LiveSet) -> list[PendingPublish]:
    """Loop thread: a pending copy of each found message for the queues that still hold
    it in ``segment`` (acks may have come in while the writer scanned)."""
    out = []
    for c in found:
        targets = [q for q in c.queues if live.segment_of(q, c.msg_id) == segment]
        if targets:
            copy = PendingPublish(c.msg_id, dict.fromkeys(targets), c.exchange,
                                  c.routing_key, c.properties, c.body, c.published_ms)
            copy.moved_from = segment
            copy.delivered = (c.delivered & set(targets)) or None
            # the copy's records come after every DELIVERED/FAILURES record already in
            # the log, and recovery lets a PUBLISH reset them: carry the live state over
            for q in targets:
                delivered, failures = live.note(q, c.msg_id)
                if delivered:
                    copy.mark_delivered(q)
                if failures:
                    copy.set_failures(q, failures)
            out.append(copy)
    return out
