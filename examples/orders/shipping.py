"""Shipping: each customer's order events, in order, through a consistent-hash exchange.

Owns the lifecycle part of the demo: every placed order gives three events, OrderPlaced,
OrderPaid and OrderShipped, numbered per customer (``seq``); the publisher interleaves
customers at random but keeps each customer's own order, and publishes to the
``order-lifecycle`` exchange (x-consistent-hash) with the customer id as routing key, so
one customer's events always reach the same shipment queue. Each shipment queue has
single active consumer on: two workers subscribe, the first is active, the second waits
as a standby. Mid-stream the run kills one active worker after it handled an event and
before it acked it; the broker returns its unacked events to the queue and makes the
standby active, which gets them again, in order. The :class:`Ledger` checks every
customer's events as the workers handle them: an event handled for the first time must
be the customer's next one (else an ordering violation); one seen before is a redelivery
and is skipped (the consumer-side idempotency).
Must not decide whether the run passed (``tally.Tally`` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from topology import LIFECYCLE, SHIPMENT_QUEUES

EVENTS = ("OrderPlaced", "OrderPaid", "OrderShipped")
WORK_TIME = 0.002  # seconds a worker spends on one event
PREFETCH = 5
CONFIRM_BATCH = 50


@dataclass(frozen=True)
class Event:
    customer: str
    seq: int          # 1, 2, 3, ... per customer
    order_id: str
    kind: str

    @property
    def event_id(self) -> str:
        return f"{self.order_id}:{self.kind}"


def lifecycle(order_ids: list[str], customers: int, seed: int) -> list[Event]:
    """Three events per order; orders go to ``customers`` customers in turn; the events
    interleaved across customers at random, each customer's kept in its own order."""
    pending: dict[str, list[Event]] = {}
    for i, order_id in enumerate(order_ids):
        customer = f"customer-{i % customers + 1:03d}"
        queue = pending.setdefault(customer, [])
        for kind in EVENTS:
            queue.append(Event(customer, len(queue) + 1, order_id, kind))
    rng = random.Random(seed)  # noqa: S311 - an interleaving, not a secret
    out: list[Event] = []
    while pending:
        customer = rng.choice(sorted(pending))
        out.append(pending[customer].pop(0))
        if not pending[customer]:
            del pending[customer]
    return out


@dataclass
class Ledger:
    """What the workers handled, checked per customer as it happens."""

    last: dict[str, int] = field(default_factory=dict)        # customer -> last seq handled
    handled: set[str] = field(default_factory=set)            # event ids handled once
    violations: list[str] = field(default_factory=list)
    redelivered_skipped: int = 0
    by_worker: Counter[str] = field(default_factory=Counter)
    queues_of: dict[str, set[str]] = field(default_factory=dict)  # customer -> queues
    expected: int = 0
    complete: asyncio.Event = field(default_factory=asyncio.Event)  # all expected handled

    def handle(self, worker: str, queue: str, customer: str, seq: int, event_id: str) -> None:
        self.queues_of.setdefault(customer, set()).add(queue)
        if event_id in self.handled:
            self.redelivered_skipped += 1  # a redelivery: handled before, skip it
            return
        expected = self.last.get(customer, 0) + 1
        if seq != expected:
            self.violations.append(f"{customer}: event {seq} ({event_id}) handled when"
                                   f" {expected} was next (by {worker})")
        self.last[customer] = max(seq, self.last.get(customer, 0))
        self.handled.add(event_id)
        self.by_worker[worker] += 1
        if len(self.handled) >= self.expected:
            self.complete.set()


class Worker:
    """One shipment worker on one queue, on its own connection, one event at a time."""

    def __init__(self, url: str, queue: str, name: str, ledger: Ledger) -> None:
        self.url, self.queue, self.name, self.ledger = url, queue, name, ledger
        self.connection: aio_pika.abc.AbstractConnection | None = None
        self.crash_after: int | None = None  # die after handling this many, before acking
        self.crashed = asyncio.Event()
        self.received = 0
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._loop: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.connection = await aio_pika.connect(self.url, timeout=10)
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        queue = await channel.get_queue(self.queue, ensure=False)
        await queue.consume(self._deliver)
        self._loop = asyncio.create_task(self._work())

    async def _deliver(self, message: AbstractIncomingMessage) -> None:
        self._inbox.put_nowait(message)

    async def _work(self) -> None:
        while not self.crashed.is_set():
            message = await self._inbox.get()
            self.received += 1
            body = json.loads(message.body)
            await asyncio.sleep(WORK_TIME)
            self.ledger.handle(self.name, self.queue, body["customer"], body["seq"],
                               body["event_id"])
            if self.received == self.crash_after:
                self.crashed.set()  # handled but never acked: the broker redelivers it
                return
            await message.ack()

    async def kill(self) -> None:
        """The worker's process dies: its TCP connection drops without connection.close."""
        if self._loop is not None:
            self._loop.cancel()
        amqp = self.connection.transport if self.connection is not None else None
        writer = getattr(amqp, "writer", None) if amqp is not None else None
        if writer is not None:
            writer.transport.abort()
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.connection.close(), 5)

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.connection.close(), 5)


@dataclass
class ShippingResult:
    events: int = 0
    published: int = 0
    handled: int = 0
    violations: list[str] = field(default_factory=list)
    redelivered_skipped: int = 0
    killed: str = ""
    standby_took_over: bool = False
    customers_per_queue: dict[str, int] = field(default_factory=dict)


class Shipping:
    def __init__(self, url: str, events: Callable[[str], None]) -> None:
        self.url = url
        self.say = events
        self.ledger = Ledger()

    async def run(self, order_ids: list[str], customers: int, seed: int,
                  deadline: float) -> ShippingResult:
        loop = asyncio.get_running_loop()
        stream = lifecycle(order_ids, customers, seed)
        self.ledger.expected = len(stream)
        result = ShippingResult(events=len(stream))
        workers: dict[str, list[Worker]] = {}
        for queue in SHIPMENT_QUEUES:  # the first to subscribe is active, then a standby
            workers[queue] = [Worker(self.url, queue, f"{queue}/{role}", self.ledger)
                              for role in ("a", "b")]
            for worker in workers[queue]:
                await worker.start()
        self.say(f"shipping: {len(stream)} events of {customers} customers (OrderPlaced,"
                 f" OrderPaid, OrderShipped per order, interleaved) -> {LIFECYCLE}"
                 f" (x-consistent-hash on the customer id) -> {len(SHIPMENT_QUEUES)} queues,"
                 " each with an active worker and a standby (single active consumer)")
        try:
            # the active worker of the first queue dies mid-stream: after its 5th event
            victim = workers[SHIPMENT_QUEUES[0]][0]
            victim.crash_after = 5
            publisher = asyncio.create_task(self._publish(stream, result))
            try:
                await asyncio.wait_for(victim.crashed.wait(), max(0.1, deadline - loop.time()))
            except TimeoutError:
                self.say(f"shipping: gave up waiting for {victim.name}'s 5th event")
            else:
                await victim.kill()
                result.killed = victim.name
                self.say(f"shipping: worker {victim.name} KILLED after handling an event it"
                         " never acked; the broker hands its queue to the standby")
            await asyncio.wait_for(publisher, max(0.1, deadline - loop.time()))
            with contextlib.suppress(TimeoutError):  # the tally says what was missing
                await asyncio.wait_for(self.ledger.complete.wait(),
                                       max(0.1, deadline - loop.time()))
        finally:
            for queue_workers in workers.values():
                for worker in queue_workers:
                    await worker.stop()
        standby = workers[SHIPMENT_QUEUES[0]][1]
        result.standby_took_over = self.ledger.by_worker[standby.name] > 0
        result.handled = len(self.ledger.handled)
        result.customers_per_queue = self._spread()
        result.violations = list(self.ledger.violations)
        result.redelivered_skipped = self.ledger.redelivered_skipped
        self.say(f"shipping: {result.handled}/{len(stream)} events handled, standby"
                 f" {standby.name} handled {self.ledger.by_worker[standby.name]} after the"
                 f" takeover, {result.redelivered_skipped} redelivery skipped,"
                 f" {len(result.violations)} ordering violation(s); customers per queue:"
                 f" {result.customers_per_queue}")
        return result

    def _spread(self) -> dict[str, int]:
        """How many customers each queue carried (each customer on exactly one)."""
        out = dict.fromkeys(SHIPMENT_QUEUES, 0)
        for customer, queues in self.ledger.queues_of.items():
            if len(queues) > 1:
                self.ledger.violations.append(f"{customer}: events in {sorted(queues)}")
            for queue in queues:
                out[queue] += 1
        return out

    async def _publish(self, stream: list[Event], result: ShippingResult) -> None:
        connection = await aio_pika.connect(self.url, timeout=10)
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(LIFECYCLE, ensure=False)
            for start in range(0, len(stream), CONFIRM_BATCH):
                batch = stream[start:start + CONFIRM_BATCH]
                await asyncio.gather(*(exchange.publish(aio_pika.Message(
                    json.dumps({"event": e.kind, "event_id": e.event_id, "order_id": e.order_id,
                                "customer": e.customer, "seq": e.seq}).encode(),
                    content_type="application/json", message_id=e.event_id, type=e.kind,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=e.customer) for e in batch))
                result.published += len(batch)
        finally:
            await connection.close()
