"""Consumer utilisation of one queue, kept on state transitions, never per message.

While a queue has consumers it is *saturated* from the moment messages stay ready because
no consumer had credit (an enqueue that missed the fast path, a dispatch that ran out of
credit) until a dispatch empties the ready list or the last consumer leaves.
``seconds()`` returns the seconds with consumers and the saturated part of them;
1 - saturated / with-consumers over a window is the share of time the consumers could
take more (RabbitMQ's consumer utilisation). Times come from ``COARSE`` (the timer
tick's clock, 20 ms precision). Owned by its ``Queue``; must not know about messages.
"""

from __future__ import annotations

from warrenmq.clock import COARSE


class Utilisation:
    __slots__ = ("consumer_seconds", "consumers_since", "saturated_seconds", "saturated_since")

    def __init__(self) -> None:
        self.consumer_seconds = 0.0  # closed intervals with consumers
        self.saturated_seconds = 0.0  # closed saturated intervals
        self.consumers_since = 0.0  # COARSE time the first consumer came; 0: none
        self.saturated_since = 0.0  # COARSE time messages started waiting; 0: not

    def saturate(self) -> None:
        """Messages stay ready: no consumer had credit."""
        if not self.saturated_since:
            self.saturated_since = COARSE.now

    def relieve(self) -> None:
        """Nothing waits any more (drained, purged) or nobody consumes."""
        if self.saturated_since:
            self.saturated_seconds += max(0.0, COARSE.now - self.saturated_since)
            self.saturated_since = 0.0

    def consumers_came(self) -> None:
        self.consumers_since = COARSE.now

    def consumers_left(self) -> None:
        self.relieve()
        if self.consumers_since:
            self.consumer_seconds += max(0.0, COARSE.now - self.consumers_since)
            self.consumers_since = 0.0

    def seconds(self, still_waiting: bool) -> tuple[float, float]:
        """(seconds with consumers, seconds of those saturated) so far, open intervals
        included; ``still_waiting``: the queue has consumers and ready messages now."""
        if not still_waiting:
            self.relieve()  # e.g. expiry emptied the queue since the last dispatch
        now = COARSE.now
        consumed = self.consumer_seconds
        if self.consumers_since:
            consumed += max(0.0, now - self.consumers_since)
        saturated = self.saturated_seconds
        if self.saturated_since:
            saturated += max(0.0, now - self.saturated_since)
        return consumed, saturated
