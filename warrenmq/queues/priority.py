"""PriorityReadyList: the ready list of a queue declared with ``x-max-priority``.

One ``ReadyList`` per priority level (0..max). ``pop`` takes from the highest non-empty
level, so a higher priority leaves first and each level stays FIFO; a requeued message
goes back to its own level at its original position (that level's ``put_back``), and a
message killed in place (expiry) is a tombstone in its level. A message's level is its
``priority`` property, read from the raw property bytes (absent: 0; above the maximum:
the maximum, as RabbitMQ does); the property itself is passed on unchanged.

``evict`` is the victim of ``x-max-length``/``x-max-length-bytes`` with drop-head: the
oldest message of the LOWEST non-empty level. RabbitMQ 3.10's classic priority queue drops
its head, which is the highest-priority message (observed: see the integration tests);
dropping the least important message instead keeps the ones the publisher ranked higher.

It is a subclass of ``ReadyList`` with the same interface, so the queue holds one field of
one type and a queue without priorities pays nothing for this module (mypyc keeps the
calls native). It knows nothing of consumers, TTLs or dead-lettering.
"""

from __future__ import annotations

from collections.abc import Iterator

from warrenmq.queues.ready import QueuedMessage, ReadyList

# property flags (AMQP 0-9-1 basic class, bit 15 first): the ones before ``priority``
_CONTENT_TYPE, _CONTENT_ENCODING, _HEADERS, _DELIVERY_MODE, _PRIORITY = (
    0x8000, 0x4000, 0x2000, 0x1000, 0x0800)


def message_priority(properties: bytes) -> int:
    """The ``priority`` property of validated raw properties; 0 when absent."""
    if len(properties) < 2:
        return 0
    flags = (properties[0] << 8) | properties[1]
    if not flags & _PRIORITY:
        return 0
    offset = 2
    if flags & _CONTENT_TYPE:
        offset += 1 + properties[offset]
    if flags & _CONTENT_ENCODING:
        offset += 1 + properties[offset]
    if flags & _HEADERS:
        offset += 4 + int.from_bytes(properties[offset : offset + 4], "big")
    if flags & _DELIVERY_MODE:
        offset += 1
    return properties[offset]


class PriorityReadyList(ReadyList):
    __slots__ = ("_levels", "_live", "_top", "max_priority")

    def __init__(self, max_priority: int) -> None:
        super().__init__()
        self.max_priority = max_priority
        self._levels = [ReadyList() for _ in range(max_priority + 1)]
        self._live = 0
        self._top = 0  # no level above this one holds a message

    def level(self, qm: QueuedMessage) -> int:
        priority = message_priority(qm.message.properties)
        return priority if priority < self.max_priority else self.max_priority

    def __len__(self) -> int:
        return self._live

    def size(self) -> int:
        return self._live

    def __iter__(self) -> Iterator[QueuedMessage]:
        """Live messages, in no particular order."""
        for level in self._levels:
            yield from level

    def _added(self, qm: QueuedMessage, level: int) -> None:
        self._live += 1
        size = qm.message.size
        self.bytes += size
        if not qm.message.paged:
            self.resident += size
        if level > self._top:
            self._top = level

    def _removed(self, qm: QueuedMessage) -> None:
        self._live -= 1
        size = qm.message.size
        self.bytes -= size
        if not qm.message.paged:
            self.resident -= size

    def append(self, qm: QueuedMessage) -> None:
        level = self.level(qm)
        self._levels[level].append(qm)
        self._added(qm, level)

    def put_back(self, qm: QueuedMessage) -> None:
        """A message returning after a failed delivery: to its place in its level."""
        level = self.level(qm)
        self._levels[level].put_back(qm)
        self._added(qm, level)

    def pop(self) -> QueuedMessage:
        """The next message of the highest non-empty level; the list must not be empty."""
        levels = self._levels
        top = self._top
        while levels[top].size() == 0:
            top -= 1
        self._top = top
        qm = levels[top].pop()
        self._removed(qm)
        return qm

    def evict(self) -> QueuedMessage:
        """The oldest message of the lowest non-empty level (max-length's victim)."""
        for level in self._levels:
            if level.size():
                qm = level.pop()
                self._removed(qm)
                return qm
        raise IndexError("evict from an empty ready list")

    def head(self) -> QueuedMessage | None:
        """The message ``pop`` would return, without removing it (cold path)."""
        for index in range(self._top, -1, -1):
            qm = self._levels[index].head()
            if qm is not None:
                return qm
        return None

    def take_all(self, limit: int) -> list[QueuedMessage] | None:
        """Everything at once when it is all in one level and within ``limit``."""
        if self._live > limit:
            return None
        level = self._levels[self._top]
        if level.size() != self._live:
            return None
        taken = level.take_all(limit)
        if taken is not None:
            self._live = 0
            self.bytes = 0
            self.resident = 0
        return taken

    def kill(self, qm: QueuedMessage) -> None:
        """Mark a ready message dead where it stands, in its level."""
        self._levels[self.level(qm)].kill(qm)
        self._removed(qm)

    def clear(self) -> int:
        count = self._live
        for level in self._levels:
            level.clear()
        self._live = 0
        self._top = 0
        self.bytes = 0
        self.resident = 0
        return count
