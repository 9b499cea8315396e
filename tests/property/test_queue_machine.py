"""Queue (warrenmq.queues.queue.Queue) as a hypothesis state machine, plain Python.

Fake consumers implement the queue's ``DeliveryTarget`` protocol the way the server's
consumers do: credit from prefetch and an "active" flag (channel.flow, the socket), and
``deliver`` holds the message until settled unless the consumer is no_ack. Rules: enqueue,
add/remove consumers (removal requeues what the consumer held, like a channel close),
ack, nack-with-requeue, reject-discard, basic.get, toggling a consumer's flow, purge.

Invariants after every step:
- ready + unacked == published - acked - discarded - purged - auto-acked;
- every live message is in exactly one place (ready, or held by one consumer or the
  getter): never lost, never duplicated; the queue's counters agree with the model;
- no consumer holds more than its prefetch;
- push delivery: if any consumer has credit, nothing is ready;
- order: every message leaving the queue is the lowest-published of the ready ones
  (requeued messages return to their original position) and carries redelivered exactly
  when it was requeued before.
Plus plain tests of round-robin fairness and of requeue position.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from warrenmq.message import Message
from warrenmq.queues.queue import DeliveryTarget, Queue
from warrenmq.queues.ready import QueuedMessage

ROUTE = b"\x00\x01q"  # exchange "" and routing key "q", as short strings
PROPS = b"\x00\x00"


def make_message(index: int) -> Message:
    # Bodies of different lengths so ready_bytes is meaningful.
    return Message("", "q", ROUTE, PROPS, b"m%d" % index + b"." * (index % 7))


def index_of(qm: QueuedMessage) -> int:
    return int(qm.message.body.split(b".")[0][1:])


class Ledger:
    """The model: where every live message is, by publish index. ``order`` ranks ready
    messages by which must leave first (publish order here; priority first in
    test_priority_machine), ``check_recipient`` vets the consumer a delivery goes to."""

    def __init__(self) -> None:
        self.order: Callable[[int], Any] = lambda index: index
        self.ready: set[int] = set()
        self.where: dict[int, str] = {}  # index -> "ready" or a holder's name
        self.requeued: set[int] = set()
        self.auto_acked = 0
        self.deliveries: list[tuple[str, int]] = []

    def take(self, qm: QueuedMessage, holder: str | None) -> None:
        """A message left the queue: it must be the lowest-published ready one."""
        index = index_of(qm)
        assert index in self.ready, f"m{index} left the queue but was not ready"
        first = min(self.ready, key=self.order)
        assert index == first, f"m{index} out of order; ready={sorted(self.ready)}"
        assert qm.redelivered == (index in self.requeued), f"m{index} redelivered flag"
        self.ready.discard(index)
        if holder is None:
            del self.where[index]
            self.auto_acked += 1
        else:
            self.where[index] = holder

    def check_recipient(self, consumer: FakeConsumer) -> None:
        """Any consumer may receive (one priority, no single active consumer)."""

    def back(self, qms: list[QueuedMessage]) -> None:
        for qm in qms:
            index = index_of(qm)
            self.ready.add(index)
            self.where[index] = "ready"
            self.requeued.add(index)


class FakeConsumer(DeliveryTarget):
    """A DeliveryTarget: credit from prefetch and flow, holds unacked messages."""

    def __init__(self, tag: str, prefetch: int, no_ack: bool, ledger: Ledger,
                 priority: int = 0) -> None:
        self.tag = tag
        self.priority = priority
        self.exclusive = False
        self.prefetch = prefetch
        self.no_ack = no_ack
        self.active = True
        self.held: list[QueuedMessage] = []
        self.ledger = ledger

    #: credit reported when unlimited: small, so batches of several calls are exercised
    UNLIMITED_BATCH = 2

    def credit(self) -> int:
        if not self.active:
            return 0
        if self.no_ack or self.prefetch == 0:
            return self.UNLIMITED_BATCH
        return self.prefetch - len(self.held)

    def has_credit(self) -> bool:
        return self.credit() > 0

    def deliver(self, queue: Queue, qms: list[QueuedMessage]) -> int:
        assert 0 < len(qms) <= self.credit(), f"{self.tag} got {len(qms)} past its credit"
        self.ledger.check_recipient(self)
        for qm in qms:
            self.ledger.deliveries.append((self.tag, index_of(qm)))
            if self.no_ack:
                self.ledger.take(qm, None)
            else:
                self.ledger.take(qm, self.tag)
                self.held.append(qm)
        return 0 if self.no_ack else len(qms)


class QueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.queue = Queue("q")
        self.ledger = Ledger()
        self.consumers: list[FakeConsumer] = []
        self.getter: list[QueuedMessage] = []  # basic.get messages awaiting ack
        self.published = 0
        self.acked = 0
        self.discarded = 0
        self.purged = 0
        self.next_tag = 0

    # ----------------------------------------------------------------- helpers
    def holders(self) -> list[tuple[str, list[QueuedMessage]]]:
        return [(c.tag, c.held) for c in self.consumers] + [("getter", self.getter)]

    def pick_holder(self, data: st.DataObject) -> tuple[str, list[QueuedMessage]] | None:
        nonempty = [h for h in self.holders() if h[1]]
        if not nonempty:
            return None
        return data.draw(st.sampled_from(nonempty), label="holder")

    # ----------------------------------------------------------------- rules
    @rule(count=st.integers(1, 4))
    def enqueue(self, count: int) -> None:
        for _ in range(count):
            index = self.published
            self.published += 1
            self.ledger.ready.add(index)
            self.ledger.where[index] = "ready"
            self.queue.enqueue(make_message(index))

    @precondition(lambda self: len(self.consumers) < 4)
    @rule(prefetch=st.integers(0, 3), no_ack=st.sampled_from([False, False, False, True]))
    def add_consumer(self, prefetch: int, no_ack: bool) -> None:
        consumer = FakeConsumer(f"c{self.next_tag}", prefetch, no_ack, self.ledger)
        self.next_tag += 1
        self.consumers.append(consumer)
        self.queue.add_consumer(consumer)
        assert self.queue.consumer_count == len(self.consumers)

    @precondition(lambda self: self.consumers)
    @rule(data=st.data())
    def remove_consumer(self, data: st.DataObject) -> None:
        consumer = data.draw(st.sampled_from(self.consumers), label="consumer")
        self.consumers.remove(consumer)
        assert self.queue.remove_consumer(consumer) is False  # not auto-delete
        assert self.queue.remove_consumer(consumer) is False  # already gone
        held, consumer.held = consumer.held, []
        # like a channel close: requeue what it held, then dispatch
        self.ledger.back(held)
        self.queue.requeue(held)
        self.queue.dispatch()

    @rule(data=st.data())
    def ack_one(self, data: st.DataObject) -> None:
        picked = self.pick_holder(data)
        if picked is None:
            return
        _, held = picked
        qm = held.pop(data.draw(st.integers(0, len(held) - 1), label="which"))
        del self.ledger.where[index_of(qm)]
        self.acked += 1
        self.queue.ack([qm])
        self.queue.dispatch()

    @rule(data=st.data())
    def nack_requeue_some(self, data: st.DataObject) -> None:
        picked = self.pick_holder(data)
        if picked is None:
            return
        _, held = picked
        chosen = data.draw(
            st.lists(st.integers(0, len(held) - 1), min_size=1, unique=True), label="which"
        )
        batch = [held[i] for i in chosen]
        for qm in batch:
            held.remove(qm)
        self.ledger.back(batch)
        self.queue.requeue(batch)
        self.queue.dispatch()

    @rule(data=st.data())
    def reject_discard(self, data: st.DataObject) -> None:
        picked = self.pick_holder(data)
        if picked is None:
            return
        _, held = picked
        qm = held.pop(data.draw(st.integers(0, len(held) - 1), label="which"))
        del self.ledger.where[index_of(qm)]
        self.discarded += 1
        self.queue.discard([qm])
        self.queue.dispatch()

    @rule(no_ack=st.booleans())
    def basic_get(self, no_ack: bool) -> None:
        was_ready = set(self.ledger.ready)
        qm = self.queue.get()
        if qm is None:
            assert not was_ready
            return
        if no_ack:
            self.ledger.take(qm, None)
        else:
            self.ledger.take(qm, "getter")
            self.queue.track_unacked()
            self.getter.append(qm)

    @precondition(lambda self: self.consumers)
    @rule(data=st.data())
    def toggle_flow(self, data: st.DataObject) -> None:
        consumer = data.draw(st.sampled_from(self.consumers), label="consumer")
        consumer.active = not consumer.active
        self.queue.dispatch()

    @rule()
    def purge(self) -> None:
        count = self.queue.purge()
        assert count == len(self.ledger.ready)
        self.purged += count
        for index in self.ledger.ready:
            del self.ledger.where[index]
        self.ledger.ready.clear()

    # ----------------------------------------------------------------- invariants
    @invariant()
    def conservation(self) -> None:
        held = sum(len(h) for _, h in self.holders())
        assert self.queue.message_count == len(self.ledger.ready)
        assert self.queue.unacked == held
        assert self.queue.message_count + self.queue.unacked == (
            self.published - self.acked - self.discarded - self.purged
            - self.ledger.auto_acked
        )
        assert self.queue.published == self.published

    @invariant()
    def every_message_in_exactly_one_place(self) -> None:
        seen: dict[int, str] = {}
        for index in self.ledger.ready:
            seen[index] = "ready"
        for name, held in self.holders():
            for qm in held:
                index = index_of(qm)
                assert index not in seen, f"m{index} both {seen[index]} and {name}"
                seen[index] = name
        assert seen == self.ledger.where

    @invariant()
    def prefetch_respected(self) -> None:
        for c in self.consumers:
            if c.prefetch and not c.no_ack:
                assert len(c.held) <= c.prefetch, f"{c.tag} holds {len(c.held)}"
            if c.no_ack:
                assert not c.held

    @invariant()
    def nothing_waits_while_a_consumer_has_credit(self) -> None:
        if any(c.has_credit() for c in self.consumers):
            assert self.queue.message_count == 0

    @invariant()
    def ready_bytes_match(self) -> None:
        expected = sum(len(make_message(i).body) for i in self.ledger.ready)
        assert self.queue.ready_bytes == expected


QueueMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
TestQueueMachine = QueueMachine.TestCase


# ------------------------------------------------------------------ plain tests


def _consumers(ledger: Ledger, n: int, prefetch: int = 0) -> list[FakeConsumer]:
    return [FakeConsumer(f"c{i}", prefetch, False, ledger) for i in range(n)]


def _enqueue(queue: Queue, ledger: Ledger, indices: range) -> None:
    for i in indices:
        ledger.ready.add(i)
        ledger.where[i] = "ready"
        queue.enqueue(make_message(i))


def test_round_robin_fairness_on_arrival() -> None:
    queue, ledger = Queue("q"), Ledger()
    consumers = _consumers(ledger, 3)
    for c in consumers:
        queue.add_consumer(c)
    _enqueue(queue, ledger, range(30))
    assert [len(c.held) for c in consumers] == [10, 10, 10]
    tags = [tag for tag, _ in ledger.deliveries]
    # strictly cyclic: every window of three deliveries reaches all three consumers
    for i in range(len(tags) - 2):
        assert len(set(tags[i : i + 3])) == 3, tags
    # so each consumer gets every third message, in publish order
    residues = [{index_of(qm) % 3 for qm in c.held} for c in consumers]
    assert all(len(r) == 1 for r in residues)
    assert set.union(*residues) == {0, 1, 2}
    for c in consumers:
        indices = [index_of(qm) for qm in c.held]
        assert indices == sorted(indices)


def test_round_robin_fairness_from_a_backlog() -> None:
    queue, ledger = Queue("q"), Ledger()
    consumers = _consumers(ledger, 3)
    for c in consumers:
        c.active = False
        queue.add_consumer(c)
    _enqueue(queue, ledger, range(30))
    assert queue.message_count == 30
    for c in consumers:
        c.active = True
    queue.dispatch()
    assert queue.message_count == 0
    assert [len(c.held) for c in consumers] == [10, 10, 10]
    tags = [tag for tag, _ in ledger.deliveries]
    for i in range(len(tags) - 2):
        assert len(set(tags[i : i + 3])) == 3, tags
    # one after the other in publish order
    assert [i for _, i in ledger.deliveries] == list(range(30))


def test_round_robin_with_prefetch_one_and_acks() -> None:
    queue, ledger = Queue("q"), Ledger()
    consumers = _consumers(ledger, 3, prefetch=1)
    for c in consumers:
        queue.add_consumer(c)
    _enqueue(queue, ledger, range(12))
    assert queue.message_count == 9
    received: dict[str, int] = {c.tag: 0 for c in consumers}
    for _ in range(12):  # each round every consumer acks what it holds
        for c in consumers:
            if c.held:
                qm = c.held.pop()
                del ledger.where[index_of(qm)]
                received[c.tag] += 1
                queue.ack([qm])
                queue.dispatch()
    assert received == {"c0": 4, "c1": 4, "c2": 4}
    assert queue.message_count == queue.unacked == 0


def test_requeued_messages_return_to_their_original_position() -> None:
    queue = Queue("q")
    for i in range(5):
        queue.enqueue(make_message(i))
    first, second = queue.get(), queue.get()
    assert first is not None and second is not None
    queue.track_unacked()
    queue.track_unacked()
    queue.requeue([second, first])
    out: list[Any] = []
    while (qm := queue.get()) is not None:
        out.append((index_of(qm), qm.redelivered, qm.delivery_count))
    assert out == [(0, True, 2), (1, True, 2), (2, False, 1), (3, False, 1), (4, False, 1)]
    assert queue.unacked == 0  # requeue released both tracked gets
