"""ReadyList: a queue's ready messages, in sequence order.

New messages append to a deque; messages that come back after a failed delivery go into
a heap keyed by their original sequence number, so ``pop`` (the lower of the two heads)
returns a requeued message to its original position at O(log n) instead of an O(n)
insert into the deque. A message killed while waiting (expired in the middle of the
queue) is marked dead in place and skipped when it reaches the head: a tombstone. The
list also keeps the byte count of its live messages for x-max-length-bytes and the
memory alarm. It knows nothing of consumers, TTLs or dead-lettering.

``QueuedMessage`` is one queue's hold on a message (the message itself is shared by every
queue it was routed to): its sequence number, state, delivery history and deadlines, and
when it entered the queue (``COARSE.now``, the timer tick's clock: no clock call per
message) for the age of the oldest ready message.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

from warrenmq.clock import COARSE
from warrenmq.message import Message

if TYPE_CHECKING:
    from warrenmq.queues.queue import DeliveryTarget, Queue

# QueuedMessage.state
READY: Final = 0
OUT: Final = 1
DEAD: Final = 2
DELAYED: Final = 3


class QueuedMessage:
    """One queue's hold on a message: its position and delivery history in this queue.

    While delivered and unsettled it is also the channel's unacked entry: it names its
    queue and the consumer it went to (None for basic.get), so a delivery allocates
    nothing more."""

    __slots__ = (
        "consumer",
        "delivery_count",
        "enqueued_at",
        "expires_at",
        "failures",
        "message",
        "properties",
        "queue",
        "redelivered",
        "seq",
        "state",
    )

    def __init__(
        self, message: Message, seq: int, expires_at: float | None = None,
        queue: Queue | None = None,
    ) -> None:
        self.message = message
        self.queue = queue
        self.consumer: DeliveryTarget | None = None
        self.seq = seq
        self.redelivered = False
        self.delivery_count = 0
        self.failures = 0
        self.expires_at = expires_at
        self.state = READY
        self.properties = message.properties  # replaced when x-delivery-count is added
        self.enqueued_at = COARSE.now

    def __lt__(self, other: QueuedMessage) -> bool:
        return self.seq < other.seq


class ReadyList:
    __slots__ = ("_fresh", "_returned", "_tombstones", "bytes", "resident")

    def __init__(self) -> None:
        self._fresh: deque[QueuedMessage] = deque()
        self._returned: list[QueuedMessage] = []
        self._tombstones = 0
        self.bytes = 0
        # bytes of bodies held in memory (not paged out); may over-count a message paged
        # out by another queue while it waits here, which only makes paging come sooner
        self.resident = 0

    def __len__(self) -> int:
        return len(self._fresh) + len(self._returned) - self._tombstones

    def size(self) -> int:
        """``len()``, as a method compiled code calls directly."""
        return len(self._fresh) + len(self._returned) - self._tombstones

    def __iter__(self) -> Iterator[QueuedMessage]:
        """Live messages, in no particular order."""
        for qm in self._fresh:
            if qm.state != DEAD:
                yield qm
        for qm in self._returned:
            if qm.state != DEAD:
                yield qm

    def append(self, qm: QueuedMessage) -> None:
        qm.state = READY
        self._fresh.append(qm)
        self.bytes += qm.message.size
        if not qm.message.paged:
            self.resident += qm.message.size

    def put_back(self, qm: QueuedMessage) -> None:
        """A message returning after a failed delivery: to its original position."""
        qm.state = READY
        heapq.heappush(self._returned, qm)
        self.bytes += qm.message.size
        if not qm.message.paged:
            self.resident += qm.message.size

    def pop(self) -> QueuedMessage:
        """Remove and return the next live message; the list must not be empty."""
        returned = self._returned
        fresh = self._fresh
        while True:
            if returned and (not fresh or returned[0].seq < fresh[0].seq):
                qm = heapq.heappop(returned)
            else:
                qm = fresh.popleft()
            if qm.state != DEAD:
                self.bytes -= qm.message.size
                if not qm.message.paged:
                    self.resident -= qm.message.size
                return qm
            self._tombstones -= 1

    def evict(self) -> QueuedMessage:
        """The message x-max-length drops (drop-head): the head; must not be empty."""
        return self.pop()

    def head(self) -> QueuedMessage | None:
        """The next live message without removing it (cold path: statistics)."""
        fresh = next((qm for qm in self._fresh if qm.state != DEAD), None)
        returned = self._returned[0] if self._returned else None
        if returned is not None and returned.state == DEAD:  # a tombstone on top: look on
            returned = min((qm for qm in self._returned if qm.state != DEAD), default=None)
        if fresh is None or (returned is not None and returned.seq < fresh.seq):
            return returned
        return fresh

    def take_all(self, limit: int) -> list[QueuedMessage] | None:
        """Everything at once when that is trivially in order and within ``limit``."""
        fresh = self._fresh
        if self._returned or self._tombstones or len(fresh) > limit:
            return None
        taken = list(fresh)
        fresh.clear()
        self.bytes = 0
        self.resident = 0
        return taken

    def kill(self, qm: QueuedMessage) -> None:
        """Mark a ready message dead where it stands; it is skipped when reached."""
        qm.state = DEAD
        self._tombstones += 1
        self.bytes -= qm.message.size
        if not qm.message.paged:
            self.resident -= qm.message.size

    def clear(self) -> int:
        """Drop every message (purge); returns how many were live."""
        count = len(self)
        for qm in self:
            qm.state = DEAD
        self._fresh.clear()
        self._returned.clear()
        self._tombstones = 0
        self.bytes = 0
        self.resident = 0
        return count
