"""Queue: the ready list, consumer round-robin and the settle/requeue rules.

Theory of operation
-------------------
Every message that enters the queue gets a sequence number. Ready messages sit in a
deque in sequence order; messages that come back (nack/reject with requeue, a closed
channel, basic.recover) go into a heap keyed by the same sequence number, so the next
message out is always the lowest-numbered one of the two heads. That is how a requeued
message returns to its original position (RabbitMQ's classic-queue behaviour) at
O(log n) per requeue instead of an O(n) insert into the deque.

``dispatch`` is the only place messages leave for consumers. It walks the consumers
round-robin, handing one message to each whose ``credit()`` is positive (prefetch, the
channel's global prefetch, channel.flow and the socket's write buffer all live behind
that one call), until the queue is empty or a full pass finds nobody with credit. With a
single consumer it hands over as many messages as the credit allows in one ``deliver``
call — the per-message cost of the round-robin bookkeeping is what it saves. Callers
invoke it after anything that can create credit: requeue, ack, a consumer added, a socket
drained, channel.flow. Enqueue never needs to: a message is left ready only when nobody
had credit.

Ownership: a queue's state is only touched from the event loop thread, and no method
here awaits, so "no await between read and mutate" holds trivially (design habit 14).
Outputs that cross layers — consumers to cancel when the queue is deleted — are returned
to the caller, never acted on by reaching into the server.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from warrenmq.errors import AccessRefused
from warrenmq.message import Message


class QueuedMessage:
    """One queue's hold on a message: its position and delivery history in this queue."""

    __slots__ = ("delivery_count", "message", "redelivered", "seq")

    def __init__(self, message: Message, seq: int) -> None:
        self.message = message
        self.seq = seq
        self.redelivered = False
        self.delivery_count = 0

    def __lt__(self, other: QueuedMessage) -> bool:
        return self.seq < other.seq


class DeliveryTarget(Protocol):
    """What a queue needs from a consumer; the server's ``Consumer`` implements it."""

    tag: str
    exclusive: bool

    def credit(self) -> int:
        """How many messages it can take right now; 0 or less means none."""
        ...

    def deliver(self, queue: Queue, qms: list[QueuedMessage]) -> int:
        """Send the messages, in order; return how many of them must be acked."""
        ...


class Queue:
    """A FIFO queue with push delivery. See the module docstring for the algorithm."""

    def __init__(
        self,
        name: str,
        *,
        vhost: str = "/",
        durable: bool = False,
        exclusive_owner: object | None = None,
        auto_delete: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.vhost = vhost
        self.durable = durable
        self.exclusive_owner = exclusive_owner
        self.auto_delete = auto_delete
        self.arguments: dict[str, Any] = dict(arguments or {})
        self._ready: deque[QueuedMessage] = deque()
        self._returned: list[QueuedMessage] = []
        self._seq = itertools.count()
        self._consumers: list[DeliveryTarget] = []
        self._rr = 0
        self._dispatching = False
        self.had_consumers = False
        self.deleted = False
        self.unacked = 0
        self.ready_bytes = 0
        # counters for stats and metrics
        self.published = 0
        self.delivered = 0
        self.acked = 0
        self.redelivered = 0

    def __repr__(self) -> str:
        return f"<Queue {self.vhost}/{self.name} ready={self.message_count}>"

    # ------------------------------------------------------------------ state queries
    @property
    def message_count(self) -> int:
        return len(self._ready) + len(self._returned)

    @property
    def consumer_count(self) -> int:
        return len(self._consumers)

    @property
    def consumers(self) -> tuple[DeliveryTarget, ...]:
        return tuple(self._consumers)

    @property
    def exclusive(self) -> bool:
        return self.exclusive_owner is not None

    def is_unused(self) -> bool:
        return not self._consumers

    # ------------------------------------------------------------------ messages in
    def enqueue(self, message: Message) -> None:
        qm = QueuedMessage(message, next(self._seq))
        self.published += 1
        consumers = self._consumers
        if consumers and not self._ready and not self._returned and not self._dispatching:
            # Fast path: nothing is waiting, so hand it straight to the next consumer
            # with credit, skipping the deque round trip.
            count = len(consumers)
            for _ in range(count):
                index = self._rr % count
                self._rr = index + 1
                consumer = consumers[index]
                if consumer.credit() > 0:
                    qm.delivery_count = 1
                    self.delivered += 1
                    self.unacked += consumer.deliver(self, [qm])
                    return
        # Otherwise no consumer has credit (dispatch leaves messages ready only then), and
        # every event that creates credit dispatches by itself: nothing to do but wait.
        self._ready.append(qm)
        self.ready_bytes += len(message.body)

    def _pop(self) -> QueuedMessage:
        returned = self._returned
        ready = self._ready
        if returned and (not ready or returned[0].seq < ready[0].seq):
            qm = heapq.heappop(returned)
        else:
            qm = ready.popleft()
        return qm

    # ------------------------------------------------------------------ messages out
    def dispatch(self) -> None:
        """Push ready messages to consumers with credit, round-robin."""
        if self._dispatching:
            return
        self._dispatching = True
        try:
            consumers = self._consumers
            while (self._ready or self._returned) and consumers:
                if len(consumers) == 1:
                    self._dispatch_batches(consumers[0])
                    break
                if not self._dispatch_pass(consumers):
                    break
        finally:
            self._dispatching = False

    def _dispatch_batches(self, consumer: DeliveryTarget) -> None:
        while self._ready or self._returned:
            credit = consumer.credit()
            if credit <= 0:
                return
            batch = self._take(credit)
            self.delivered += len(batch)
            self.unacked += consumer.deliver(self, batch)

    def _dispatch_pass(self, consumers: list[DeliveryTarget]) -> bool:
        """One message to each consumer with credit, in turn; False if nobody took one."""
        delivered = False
        for _ in range(len(consumers)):
            if not consumers or not (self._ready or self._returned):
                return delivered
            index = self._rr % len(consumers)
            self._rr = index + 1
            consumer = consumers[index]
            if consumer.credit() > 0:
                batch = self._take(1)
                self.delivered += 1
                self.unacked += consumer.deliver(self, batch)
                delivered = True
        return delivered

    def _take(self, limit: int) -> list[QueuedMessage]:
        """Pop up to ``limit`` messages in order, counting the delivery attempt."""
        taken: list[QueuedMessage] = []
        ready = self._ready
        if not self._returned and len(ready) <= limit:
            taken.extend(ready)
            ready.clear()
        else:
            pop = self._pop
            for _ in range(limit):
                if not (ready or self._returned):
                    break
                taken.append(pop())
        for qm in taken:
            qm.delivery_count += 1
            self.ready_bytes -= len(qm.message.body)
        return taken

    def get(self) -> QueuedMessage | None:
        """basic.get: take the next message; the caller tracks it as unacked if needed."""
        if not (self._ready or self._returned):
            return None
        qm = self._pop()
        qm.delivery_count += 1
        self.delivered += 1
        self.ready_bytes -= len(qm.message.body)
        return qm

    def track_unacked(self) -> None:
        """Count a basic.get message as unacked (a no_ack get is never counted)."""
        self.unacked += 1

    # ------------------------------------------------------------------ settling
    def ack(self, qms: Sequence[QueuedMessage]) -> None:
        """Messages acked by their consumer: they leave the queue for good."""
        self.unacked -= len(qms)
        self.acked += len(qms)

    def requeue(self, qms: Iterable[QueuedMessage]) -> None:
        """Put settled-with-requeue messages back in their original positions.

        The caller dispatches afterwards; requeues usually come in batches.
        """
        for qm in qms:
            self.unacked -= 1
            if self.deleted:
                continue
            qm.redelivered = True
            self.redelivered += 1
            self.ready_bytes += len(qm.message.body)
            heapq.heappush(self._returned, qm)

    def discard(self, qms: Sequence[QueuedMessage]) -> None:
        """Unacked messages rejected without requeue."""
        self.unacked -= len(qms)

    def purge(self) -> int:
        count = self.message_count
        self._ready.clear()
        self._returned.clear()
        self.ready_bytes = 0
        return count

    # ------------------------------------------------------------------ consumers
    def check_consumer(self, *, exclusive: bool) -> None:
        """Raise 403 if a consumer with this exclusivity cannot join (basic.consume)."""
        if self._consumers and (exclusive or self._consumers[0].exclusive):
            raise AccessRefused(
                f"queue '{self.name}' in vhost '{self.vhost}' in exclusive use"
            )

    def add_consumer(self, consumer: DeliveryTarget) -> None:
        self.check_consumer(exclusive=consumer.exclusive)
        self._consumers.append(consumer)
        self.had_consumers = True
        self.dispatch()

    def remove_consumer(self, consumer: DeliveryTarget) -> bool:
        """Remove a consumer; True when an auto-delete queue has just lost its last one."""
        try:
            self._consumers.remove(consumer)
        except ValueError:
            return False
        return self.auto_delete and not self._consumers

    def delete(self) -> list[DeliveryTarget]:
        """Mark deleted; returns the consumers the server must notify with basic.cancel."""
        self.deleted = True
        consumers, self._consumers = self._consumers, []
        self.purge()
        return consumers
