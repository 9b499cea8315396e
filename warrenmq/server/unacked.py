"""Unacked: a channel's delivered-but-unsettled messages, by delivery tag.

Delivery tags are consecutive per channel, so the messages live in one list in tag order
and a tag is found by arithmetic (``tag - first_tag``), not hashing. A batch delivered to
a consumer is added with one ``extend``; ``basic.ack`` with ``multiple`` takes a prefix
with one slice — no call per message — and a single out-of-order ack leaves a hole
(``None``) that is skipped later. Tags given to deliveries that need no ack (no_ack
consumers and gets) become holes only when something unsettled is already held, so a
no_ack channel keeps nothing. The consumed front of the list is dropped in one step once
it is more than half of it.

The entries are the queues' own ``QueuedMessage``s, which say their queue and consumer:
a delivery costs no extra allocation here.
"""

from __future__ import annotations

from warrenmq.errors import PreconditionFailed
from warrenmq.queues.ready import QueuedMessage


class Unacked:
    """Messages awaiting ack, nack or reject on one channel."""

    def __init__(self) -> None:
        self._entries: list[QueuedMessage | None] = []
        self._start = 0  # index of the entry with tag ``_first_tag``
        self._first_tag = 0
        self._holes = 0  # ``None`` entries at or after ``_start``
        self.count = 0  # live entries

    def __len__(self) -> int:
        return self.count

    def _next_tag(self) -> int:
        return self._first_tag + len(self._entries) - self._start

    def add(self, tag: int, qm: QueuedMessage) -> None:
        self.extend(tag, [qm])

    def extend(self, first: int, qms: list[QueuedMessage]) -> None:
        """Messages delivered with consecutive tags from ``first``."""
        entries = self._entries
        if self.count == 0:
            entries.clear()
            self._start = 0
            self._holes = 0
            self._first_tag = first
        else:
            gap = first - self._next_tag()  # tags of deliveries that needed no ack
            if gap > 0:
                entries.extend([None] * gap)
                self._holes += gap
        entries.extend(qms)
        self.count += len(qms)

    def take(self, tag: int, multiple: bool) -> list[QueuedMessage]:
        """Remove and return what an ack/nack/reject names: ``tag`` alone, or with
        ``multiple`` every entry up to it (0: all). 406 for a tag not held."""
        index = tag - self._first_tag + self._start
        entries = self._entries
        known = self._start <= index < len(entries) and entries[index] is not None
        if multiple:
            if tag == 0:
                return self.take_all()
            if not known:
                raise PreconditionFailed(f"unknown delivery tag {tag}")
            return self._take_prefix(index + 1)
        if not known:
            raise PreconditionFailed(f"unknown delivery tag {tag}")
        qm = entries[index]
        assert qm is not None
        if index == self._start:
            self._take_prefix(index + 1)
        else:
            entries[index] = None
            self._holes += 1
            self.count -= 1
        return [qm]

    def _take_prefix(self, stop: int) -> list[QueuedMessage]:
        entries = self._entries
        taken = entries[self._start : stop]
        self._first_tag += stop - self._start
        self._start = stop
        live: list[QueuedMessage]
        if self._holes:
            live = [qm for qm in taken if qm is not None]
            self._holes -= len(taken) - len(live)
        else:
            live = taken  # type: ignore[assignment]  # no holes: every entry is live
        self.count -= len(live)
        self._skip_holes()
        return live

    def _skip_holes(self) -> None:
        entries = self._entries
        start = self._start
        while self._holes and start < len(entries) and entries[start] is None:
            start += 1
            self._holes -= 1
            self._first_tag += 1
        self._start = start
        if start and start * 2 >= len(entries):
            del entries[:start]
            self._start = 0

    def take_all(self) -> list[QueuedMessage]:
        """Everything held, in tag order (channel close, basic.recover)."""
        live = [qm for qm in self._entries[self._start :] if qm is not None]
        self._entries = []
        self._start = 0
        self._holes = 0
        self.count = 0
        return live

    def values(self) -> list[QueuedMessage]:
        """The held messages in tag order, left in place (statistics)."""
        return [qm for qm in self._entries[self._start :] if qm is not None]

    def items(self) -> list[tuple[int, QueuedMessage]]:
        """(delivery tag, message) pairs held, in tag order (cold: transactions)."""
        first, start = self._first_tag, self._start
        return [(first + index - start, qm)
                for index, qm in enumerate(self._entries[start:], start) if qm is not None]

    def restore(self, pairs: list[tuple[int, QueuedMessage]]) -> None:
        """Put back messages taken earlier under their tags (tx.rollback; cold): the held
        ones and these are laid out again in tag order, with holes between."""
        merged = sorted([*self.items(), *pairs], key=lambda pair: pair[0])
        self.take_all()
        if not merged:
            return
        first = merged[0][0]
        entries: list[QueuedMessage | None] = [None] * (merged[-1][0] - first + 1)
        for tag, qm in merged:
            entries[tag - first] = qm
        self._entries = entries
        self._first_tag = first
        self._holes = len(entries) - len(merged)
        self.count = len(merged)
