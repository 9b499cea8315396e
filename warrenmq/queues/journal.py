"""Journal: what a durable queue tells the message store as its messages move.

A protocol, so queues depend on no storage code: the store (``storage.log``) implements
it. Calls only append records to a buffer and return at once; the server's committer
makes them durable in batches off the event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Journal(Protocol):
    def ack(self, queue: str, msg_id: int) -> int:
        """The message left ``queue`` for good (acked, dead-lettered, dropped)."""
        ...

    def ack_many(self, queue: str, msg_ids: Sequence[int]) -> int:
        """``ack`` for several messages at once."""
        ...

    def delivered(self, queue: str, msg_id: int) -> int:
        """The message was handed to a consumer (it comes back redelivered after a crash)."""
        ...

    def failures(self, queue: str, msg_id: int, count: int) -> int:
        """The message's failed-delivery count, so x-delivery-limit survives restarts."""
        ...

    def drop_queue(self, queue: str) -> int:
        """The queue was deleted: none of its messages are needed any more."""
        ...
