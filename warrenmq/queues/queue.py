"""Queue: the ready list, consumer round-robin, settle/requeue rules, TTL and limits.

Theory of operation
-------------------
Every message that enters the queue gets a sequence number; ready messages live in a
``ReadyList`` (ready.py), which returns a requeued message (nack/reject with requeue, a
closed channel, basic.recover) to its original position, RabbitMQ's classic-queue
behaviour, and lets a message die in place.

With ``x-max-priority`` the ready list is a ``PriorityReadyList`` (priority.py): the
same interface, one level per priority, chosen once at construction.

``dispatch`` is the only place messages leave for consumers. It walks the consumers
round-robin, handing one message to each whose ``credit()`` is positive (prefetch, the
channel's global prefetch, channel.flow and the socket's write buffer all live behind
that one call), until the queue is empty or a full pass finds nobody with credit. With a
single consumer it hands over as many messages as the credit allows in one ``deliver``
call — the per-message cost of the round-robin bookkeeping is what it saves. Callers
invoke it after anything that can create credit: requeue, ack, a consumer added or
removed (a single active consumer's successor), a socket drained, channel.flow. Enqueue
never needs to: a message is left ready only when nobody had credit. Which consumers it
walks is the ``Roster``'s (consumers.py): all of them, or only the single active one;
when their ``x-priority`` differ (``_tiered``) the roster picks each one.

Expiry (x-message-ttl, the per-message ``expiration``; the lower wins) is kept in a heap
of (deadline, message). A message expiring in the middle of the queue is killed in place
so it leaves at once, not when it would have reached the head; ``_take`` also drops
expired messages so none is ever delivered. Retry delays (x-retry-delays) park a
requeued message in a heap by due time, invisible to consumers, until ``tick`` returns
it to its original position.

Outputs that cross layers are returned or queued, never acted on here: consumers to
cancel when the queue is deleted come back from ``delete``; dead-letter records
(rejected, expired, maxlen, delivery_limit) collect in ``dead`` for the virtual host to
route through the dead-letter exchange (``take_dead``). Time comes from the injected
``Clock``; the server calls ``tick(now)`` when ``next_deadline()`` is due.

Statistics are plain int counters (published, delivered, gets, acked, redelivered,
dead_lettered) bumped where messages pass anyway; consumer utilisation is kept on state
transitions by ``utilisation.Utilisation``.

Ownership: a queue's state is only touched from the event loop thread, and no method
here awaits, so "no await between read and mutate" holds trivially (design habit 14).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from mypy_extensions import mypyc_attr

from warrenmq.clock import SYSTEM_CLOCK, Clock
from warrenmq.errors import AccessRefused
from warrenmq.message import Message
from warrenmq.queues import dead_letter as dl
from warrenmq.queues.arguments import QueueArguments
from warrenmq.queues.consumers import Roster
from warrenmq.queues.dedup import DedupCache
from warrenmq.queues.expiry import message_expiration_ms, with_delivery_count
from warrenmq.queues.journal import Journal
from warrenmq.queues.priority import PriorityReadyList
from warrenmq.queues.ready import DEAD, DELAYED, OUT, READY, QueuedMessage, ReadyList
from warrenmq.queues.utilisation import Utilisation

#: Bytes of persistent bodies a durable queue keeps in memory before paging the rest out
#: (the config's storage.queue_memory_limit overrides it).
DEFAULT_MEMORY_LIMIT: Final = 64 * 1024 * 1024

#: The queue's message counters, as attribute names (summed by statistics).
COUNTERS: Final = ("published", "delivered", "gets", "acked", "redelivered", "dead_lettered")


@mypyc_attr(allow_interpreted_subclasses=True)
class DeliveryTarget:
    """What a queue needs from a consumer; the server's ``Consumer`` implements it.

    A native base class rather than a ``Protocol``: the queue calls ``credit`` and
    ``deliver`` for every batch, and a native class's methods are called through a
    vtable where a protocol's are looked up by name. Implementations subclass it (tests'
    fakes too: interpreted subclasses are allowed; mypyc traits would refuse them). They
    set ``tag`` and ``exclusive`` on the instance: compiled, these are slots of this class,
    which class attributes of a subclass do not fill."""

    tag: str
    exclusive: bool

    def credit(self) -> int:
        """How many messages it can take right now; 0 or less means none."""
        raise NotImplementedError

    def deliver(self, queue: Queue, qms: list[QueuedMessage]) -> int:
        """Send the messages, in order; return how many of them must be acked."""
        raise NotImplementedError


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
        args: QueueArguments | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.name = name
        self.vhost = vhost
        self.durable = durable
        self.exclusive_owner = exclusive_owner
        self.auto_delete = auto_delete
        self.arguments: dict[str, Any] = dict(arguments or {})  # as declared
        # a policy's part (set by the broker): its name, definition, and the declared
        # arguments merged with it, which ``args`` was parsed from
        self.policy: str | None = None
        self.effective_policy_definition: dict[str, Any] = {}
        self.effective_arguments: dict[str, Any] = self.arguments
        self.clock = clock
        self._use_args(args or QueueArguments())
        levels = self.args.max_priority
        self._ready = PriorityReadyList(levels) if levels else ReadyList()
        self._expiry: list[tuple[float, int, QueuedMessage]] = []
        self._delayed: list[tuple[float, int, QueuedMessage]] = []
        self._next_seq = 0  # the next message's sequence number (its place in the queue)
        self._roster = Roster(self.args.single_active_consumer)
        self._consumers = self._roster.eligible  # the roster updates this list in place
        self._tiered = False  # consumers' x-priority differ: the roster picks each one
        self._rr = 0
        self._dispatching = False
        self.dead: list[dl.DeadLetter] = []
        # set by the virtual host for durable queues when the broker has a message store
        self.journal: Journal | None = None
        self.journal_key = f"{vhost}\x00{name}"
        self.memory_limit = DEFAULT_MEMORY_LIMIT  # bodies kept in RAM before paging
        self.deleted = False
        self.unacked = 0
        self.last_used = clock.monotonic()
        # counters for stats and metrics
        self.published = 0
        self.delivered = 0
        self.acked = 0
        self.redelivered = 0
        self.dead_lettered = 0
        self.gets = 0  # basic.get deliveries (also counted in delivered)
        self.dedup: DedupCache | None = None  # x-message-deduplication (broker/dedup.py)
        self.utilisation = Utilisation()

    def __repr__(self) -> str:
        return f"<Queue {self.vhost}/{self.name} ready={self.message_count}>"

    def _use_args(self, args: QueueArguments) -> None:
        self.args = args
        # flags read on every enqueue, so the hot path tests a bool, not the arguments
        self._has_ttl = args.message_ttl is not None
        self._rejects = args.has_limits and args.overflow != "drop-head"
        self._drops_head = args.has_limits and args.overflow == "drop-head"

    def reconfigure(self, args: QueueArguments) -> None:
        """New effective arguments (a policy was set or cleared), in force at once.

        As RabbitMQ's classic queue: limits apply now (with drop-head the excess leaves
        from the head, dead-lettered as maxlen; the reject modes only refuse what comes
        next), a message keeps the expiry it got when it was enqueued, a changed
        x-expires restarts the idle clock. Dead letters wait in ``dead`` for the vhost.
        """
        expires = self.args.expires
        self._use_args(args)
        if args.expires != expires:
            self.touch()
        if self._drops_head:
            self._drop_head_over_limit()

    # ------------------------------------------------------------------ state queries
    @property
    def ready_count(self) -> int:
        return self._ready.size()

    def ready_messages(self) -> list[QueuedMessage]:
        """A snapshot of the ready messages, in no particular order (cold path: a dry-run
        replay looks at them without taking them)."""
        return list(self._ready)

    @property
    def ready_bytes(self) -> int:
        return self._ready.bytes

    @property
    def resident_bytes(self) -> int:
        """Bytes of ready bodies held in memory (the rest are paged out to the store)."""
        return self._ready.resident

    @property
    def message_count(self) -> int:
        """Messages held and not delivered: ready plus those waiting out a retry delay."""
        return self.ready_count + len(self._delayed)

    @property
    def consumer_count(self) -> int:
        return len(self._roster)

    @property
    def exclusive(self) -> bool:
        return self.exclusive_owner is not None

    def is_unused(self) -> bool:
        return not self._consumers

    def touch(self) -> None:
        """Record use (declare, basic.get, consume) for x-expires."""
        self.last_used = self.clock.monotonic()

    # ------------------------------------------------------------------ messages in
    def enqueue(self, message: Message) -> bool:
        """Add a published message; False if the queue refuses it (reject-publish)."""
        self.published += 1
        expires_at = None
        if self._has_ttl or message.properties[0] & 0x01:  # 0x01: expiration is set
            expires_at = self._deadline(message)
        if self._rejects and self._full(message.size):
            return self._refuse(message)
        seq = self._next_seq
        self._next_seq = seq + 1
        qm = QueuedMessage(message, seq, expires_at, self)
        consumers = self._consumers
        if consumers and self._ready.size() == 0 and not self._dispatching:
            # Fast path: nothing is waiting, so hand it straight to the next consumer
            # with credit, skipping the deque round trip.
            if self._tiered:  # x-priority differ: only the roster's choice, if any
                consumers = self._roster.chosen()
            count = len(consumers)
            for _ in range(count):
                index = self._rr % count
                self._rr = index + 1
                consumer = consumers[index]
                if consumer.credit() > 0:
                    qm.delivery_count = 1
                    qm.state = OUT
                    self.delivered += 1
                    if self.journal is not None and message.msg_id:
                        self.journal.delivered(self.journal_key, message.msg_id)
                    self.unacked += consumer.deliver(self, [qm])
                    return True
            # nobody had credit: the queue starts holding messages its consumers can't take
            # (once: with messages ready the next enqueues do not come here)
            self.utilisation.saturate()
        # Otherwise no consumer has credit (dispatch leaves messages ready only then), and
        # every event that creates credit dispatches by itself: nothing to do but wait.
        if expires_at is not None:
            if expires_at <= self.clock.monotonic():
                self._dead_letter(message, dl.EXPIRED)  # TTL 0 and nobody to take it
                return True
            heapq.heappush(self._expiry, (expires_at, qm.seq, qm))
        if self.journal is not None and self._ready.resident + message.size > self.memory_limit:
            message.page_out()  # only a message the store holds can be paged
        self._ready.append(qm)
        if self._drops_head:
            self._drop_head_over_limit()
        return True

    def _refuse(self, message: Message) -> bool:
        """The queue is full and refuses new messages (x-overflow reject-publish[-dlx])."""
        if self.args.overflow == "reject-publish-dlx":
            self._dead_letter(message, dl.MAXLEN)
        else:
            self._forget(message)
        return False

    def restore(self, recovered: Iterable[tuple[Message, bool, int, float]]) -> None:
        """Messages recovered from the store at startup, in their original order, with
        (redelivered, failed deliveries, wall-clock publish time). A TTL runs from the
        publish time, as in RabbitMQ: a message whose TTL ran out while the broker was
        down expires at the first tick."""
        counts = self.args.counts_deliveries
        for message, redelivered, failures, published in recovered:
            expires_at = self._deadline(message, published) \
                if self._has_ttl or message.properties[0] & 0x01 else None
            qm = QueuedMessage(message, self._next_seq, expires_at, self)
            self._next_seq += 1
            qm.redelivered = redelivered
            qm.failures = failures
            if failures and counts:
                qm.properties = with_delivery_count(message.properties, failures)
            if expires_at is not None:
                heapq.heappush(self._expiry, (expires_at, qm.seq, qm))
            self._ready.append(qm)

    def _deadline(self, message: Message, published: float = 0.0) -> float | None:
        ttl = self.args.message_ttl
        per_message = message_expiration_ms(message.properties)
        if per_message is not None and (ttl is None or per_message < ttl):
            ttl = per_message
        if ttl is None:
            return None
        deadline = self.clock.monotonic() + ttl / 1000.0
        if published:  # recovered: the time since the publish is already spent
            deadline -= max(0.0, self.clock.time() - published)
        return deadline

    def _full(self, extra_bytes: int) -> bool:
        args = self.args
        if args.max_length is not None and self.ready_count >= args.max_length:
            return True
        limit = args.max_length_bytes
        return limit is not None and self.ready_bytes + extra_bytes > limit

    def _drop_head_over_limit(self) -> None:
        args = self.args
        max_length, max_bytes = args.max_length, args.max_length_bytes
        while self.ready_count and (
            (max_length is not None and self.ready_count > max_length)
            or (max_bytes is not None and self.ready_bytes > max_bytes)
        ):
            self._kill(self._ready.evict(), dl.MAXLEN)

    # ------------------------------------------------------------------ messages out
    def dispatch(self) -> None:
        """Push ready messages to consumers with credit, round-robin."""
        if self._dispatching:
            return
        self._dispatching = True
        try:
            consumers = self._consumers
            while self.ready_count and consumers:
                if len(consumers) == 1:
                    self._dispatch_batches(consumers[0])
                    break
                progressed = self._dispatch_tiers() if self._tiered \
                    else self._dispatch_pass(consumers)
                if not progressed:
                    self.utilisation.saturate()
                    break
        finally:
            self._dispatching = False
        if self.utilisation.saturated_since and not (consumers and self.ready_count):
            self.utilisation.relieve()

    def _dispatch_batches(self, consumer: DeliveryTarget) -> None:
        while self.ready_count:
            credit = consumer.credit()
            if credit <= 0:
                self.utilisation.saturate()
                return
            batch = self._take(credit)
            if batch:
                self.delivered += len(batch)
                self.unacked += consumer.deliver(self, batch)

    def _dispatch_pass(self, consumers: list[DeliveryTarget]) -> bool:
        """One message to each consumer with credit, in turn; False if nobody took one."""
        delivered = False
        for _ in range(len(consumers)):
            if not consumers or not self.ready_count:
                return delivered
            index = self._rr % len(consumers)
            self._rr = index + 1
            consumer = consumers[index]
            if consumer.credit() > 0:
                batch = self._take(1)
                if batch:
                    self.delivered += 1
                    self.unacked += consumer.deliver(self, batch)
                    delivered = True
        return delivered

    def _dispatch_tiers(self) -> bool:
        """Messages to the highest-priority consumers with credit until none is left or
        nobody can take one; False if nobody took one."""
        delivered = False
        while self.ready_count:
            consumer, count = self._roster.pick()
            if consumer is None:
                return delivered
            batch = self._take(count)
            if batch:
                self.delivered += len(batch)
                self.unacked += consumer.deliver(self, batch)
                delivered = True
        return delivered

    def _take(self, limit: int) -> list[QueuedMessage]:
        """Pop up to ``limit`` live messages in order; expired ones are dead-lettered."""
        ready = self._ready
        taken = None if self._expiry else ready.take_all(limit)
        if taken is None:
            taken = []
            now = self.clock.monotonic() if self._expiry else 0.0
            while len(taken) < limit and ready:
                qm = ready.pop()
                if qm.expires_at is not None and qm.expires_at <= now:
                    self._kill(qm, dl.EXPIRED)
                    continue
                taken.append(qm)
        journal = self.journal
        for qm in taken:
            qm.delivery_count += 1
            qm.state = OUT
            if journal is not None and qm.message.msg_id:
                journal.delivered(self.journal_key, qm.message.msg_id)
        return taken

    def get(self) -> QueuedMessage | None:
        """basic.get: take the next message; the caller tracks it as unacked if needed."""
        self.touch()
        taken = self._take(1)
        if not taken:
            return None
        self.delivered += 1
        self.gets += 1
        return taken[0]

    def track_unacked(self) -> None:
        """Count a basic.get message as unacked (a no_ack get is never counted)."""
        self.unacked += 1

    # ------------------------------------------------------------------ settling
    def ack(self, qms: Sequence[QueuedMessage]) -> None:
        """Messages acked by their consumer: they leave the queue for good."""
        self.unacked -= len(qms)
        self.acked += len(qms)
        if self.journal is not None:
            ids = [qm.message.msg_id for qm in qms if qm.message.msg_id]
            if ids:
                self.journal.ack_many(self.journal_key, ids)

    def auto_acked(self, qms: Sequence[QueuedMessage]) -> None:
        """Messages delivered with no_ack (basic.get or a no_ack consumer): settled on
        delivery, so the store must forget them as an ack would."""
        if self.journal is not None:
            for qm in qms:
                self._forget(qm.message)

    def requeue(self, qms: Iterable[QueuedMessage]) -> None:
        """Return messages after a failed delivery (nack/reject requeue, channel gone).

        Each return counts against x-delivery-limit; with x-retry-delays the message
        waits out the next delay first. Past either it is dead-lettered (delivery_limit).
        The caller dispatches afterwards; requeues usually come in batches.
        """
        args = self.args
        for qm in qms:
            self.unacked -= 1
            if self.deleted:
                continue
            qm.failures += 1
            if args.counts_deliveries:
                if self._exhausted(qm):
                    self._kill(qm, dl.DELIVERY_LIMIT)
                    continue
                qm.properties = with_delivery_count(qm.message.properties, qm.failures)
                if self.journal is not None and qm.message.msg_id:
                    self.journal.failures(self.journal_key, qm.message.msg_id, qm.failures)
            qm.redelivered = True
            self.redelivered += 1
            if args.retry_delays:
                due = self.clock.monotonic() + args.retry_delays[qm.failures - 1] / 1000.0
                qm.state = DELAYED
                heapq.heappush(self._delayed, (due, qm.seq, qm))
                continue
            self._return(qm)

    def _exhausted(self, qm: QueuedMessage) -> bool:
        limit = self.args.delivery_limit
        if limit is not None and qm.failures > limit:
            return True
        delays = self.args.retry_delays
        return bool(delays) and qm.failures > len(delays)

    def _return(self, qm: QueuedMessage) -> None:
        self._ready.put_back(qm)
        if qm.expires_at is not None:
            heapq.heappush(self._expiry, (qm.expires_at, qm.seq, qm))

    def discard(self, qms: Sequence[QueuedMessage]) -> None:
        """Unacked messages rejected without requeue: dead-lettered as ``rejected``."""
        self.unacked -= len(qms)
        for qm in qms:
            self._kill(qm, dl.REJECTED)

    def purge(self) -> int:
        if self.journal is not None:
            for qm in self._ready:
                self._forget(qm.message)
            for _, _, qm in self._delayed:
                self._forget(qm.message)
        count = self._ready.clear() + len(self._delayed)
        self._delayed.clear()
        self._expiry.clear()
        self.utilisation.relieve()
        return count

    # ------------------------------------------------------------------ dead letters
    def _kill(self, qm: QueuedMessage, reason: str) -> None:
        """End the life here of a message no longer in the ready list."""
        qm.state = DEAD
        self._dead_letter(qm.message, reason)

    def _forget(self, message: Message) -> None:
        if self.journal is not None and message.msg_id:
            self.journal.ack(self.journal_key, message.msg_id)

    def _dead_letter(self, message: Message, reason: str) -> None:
        self._forget(message)
        self.dead_lettered += 1
        if self.args.dead_letter_exchange is not None and not self.deleted:
            self.dead.append(dl.DeadLetter(message, reason, self.name))

    def take_dead(self) -> list[dl.DeadLetter]:
        """Dead-letter records waiting to be routed via the DLX (the queue forgets them)."""
        dead, self.dead = self.dead, []
        return dead

    # ------------------------------------------------------------------ time
    def next_deadline(self) -> float | None:
        """The earliest monotonic time at which ``tick`` has work, or None."""
        times = []
        if self._expiry:
            times.append(self._expiry[0][0])
        if self._delayed:
            times.append(self._delayed[0][0])
        if self.args.expires is not None and not self._consumers:
            times.append(self.last_used + self.args.expires / 1000.0)
        return min(times) if times else None

    def tick(self, now: float) -> None:
        """Expire messages, release retry-delayed ones, then dispatch."""
        expiry = self._expiry
        while expiry and expiry[0][0] <= now:
            _, _, qm = heapq.heappop(expiry)
            if qm.state == READY:
                self._ready.kill(qm)
                self._dead_letter(qm.message, dl.EXPIRED)
        delayed = self._delayed
        released = False
        while delayed and delayed[0][0] <= now:
            _, _, qm = heapq.heappop(delayed)
            if qm.expires_at is not None and qm.expires_at <= now:
                qm.state = DEAD
                self._dead_letter(qm.message, dl.EXPIRED)
                continue
            self._return(qm)
            released = True
        if released:
            self.dispatch()

    def expired(self, now: float) -> bool:
        """x-expires: unused (no consumers, no get, no redeclare) for that long."""
        expires = self.args.expires
        return expires is not None and not self._consumers and \
            now - self.last_used >= expires / 1000.0

    # ------------------------------------------------------------------ statistics
    def utilisation_seconds(self) -> tuple[float, float]:
        """(seconds with consumers, seconds of those with messages none could take) so
        far: statistics take the difference over a window (see ``utilisation``)."""
        return self.utilisation.seconds(bool(self._consumers and self.ready_count))

    def consumer_activity(self, consumer: object) -> str:
        """RabbitMQ's ``activity_status``: up, single_active or waiting."""
        return self._roster.activity(consumer)

    @property
    def single_active_consumer_tag(self) -> str | None:
        return self._roster.active_tag

    def head_enqueued_at(self) -> float | None:
        """When the oldest ready message entered the queue (wall clock, tick precision)."""
        head = self._ready.head()
        return None if head is None else head.enqueued_at

    # ------------------------------------------------------------------ consumers
    def check_consumer(self, *, exclusive: bool) -> None:
        """Raise 403 if a consumer with this exclusivity cannot join (basic.consume);
        a single-active-consumer queue refuses exclusive consumers (RabbitMQ's text)."""
        consumers = self._consumers
        if (consumers and (exclusive or consumers[0].exclusive)) or (
                exclusive and self.args.single_active_consumer):
            raise AccessRefused(
                f"queue '{self.name}' in vhost '{self.vhost}' in exclusive use"
            )

    def add_consumer(self, consumer: DeliveryTarget, priority: int = 0) -> None:
        """A consumer joins with its ``x-priority`` (see consumers.py) and is served."""
        self.check_consumer(exclusive=consumer.exclusive)
        if not self._consumers:
            self.utilisation.consumers_came()
        self._roster.add(consumer, priority)
        self._tiered = self._roster.tiered
        self.touch()
        self.dispatch()

    def remove_consumer(self, consumer: DeliveryTarget) -> bool:
        """Remove a consumer; True when an auto-delete queue has just lost its last one.

        It does not dispatch: the caller does once the consumer's channel has requeued
        what it held, so a single active consumer's successor gets those first."""
        if not self._roster.remove(consumer):
            return False
        self._tiered = self._roster.tiered
        if not self._consumers:
            self.utilisation.consumers_left()
        self.touch()
        return self.auto_delete and not self._consumers

    def delete(self) -> list[DeliveryTarget]:
        """Mark deleted; returns the consumers the server must notify with basic.cancel."""
        self.deleted = True
        consumers = self._roster.clear()
        self._tiered = False
        self.utilisation.consumers_left()
        if self.journal is not None:
            self.journal.drop_queue(self.journal_key)
            self.journal = None
        self.purge()
        self.dead.clear()
        return consumers
