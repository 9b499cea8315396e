"""Priority queues, consumer priorities and single active consumer as hypothesis state
machines: the rules and invariants of test_queue_machine (conservation, every message in
exactly one place, prefetch respected, push delivery, redelivered flags) over a queue
with the new behaviour, plus each behaviour's own invariant, checked at every delivery:

- PriorityMachine (x-max-priority 3, messages with no priority or 0..6): a message
  leaving the queue is the first of the ready ones by (priority clamped to the maximum,
  highest first; then publish order, requeued messages back in their place);
- PriorityMaxLengthMachine: the same with x-max-length 4 (drop-head): what overflows is
  the oldest message of the lowest priority (WarrenMQ's choice, see queues/priority.py),
  and it is counted as dead-lettered;
- ConsumerPriorityMachine: consumers with x-priority -1..2; a delivery never goes to a
  consumer while one of a higher priority has credit;
- SingleActiveMachine: only the model's active consumer ever receives; when it goes, the
  highest-priority, earliest-registered waiting consumer takes over; the queue reports it
  (single_active_consumer_tag, consumer_activity).
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from tests.property.test_queue_machine import (
    FakeConsumer,
    Ledger,
    QueueMachine,
    make_message,
)
from warrenmq.message import Message
from warrenmq.protocol.properties import encode_properties
from warrenmq.queues.arguments import QueueArguments
from warrenmq.queues.queue import Queue

MAX = 3
PRIORITIES = st.one_of(st.none(), st.integers(0, 6))
SETTINGS = settings(max_examples=100, stateful_step_count=40, deadline=None)


def priority_message(index: int, priority: int | None) -> Message:
    plain = make_message(index)  # same body, so ready_bytes stays comparable
    props = encode_properties({"priority": priority, "content_type": "text/plain"})
    return Message("", "q", plain.route, props, plain.body)


class PriorityMachine(QueueMachine):
    max_length: int | None = None

    def __init__(self) -> None:
        super().__init__()
        self.queue = Queue("q", args=QueueArguments(max_priority=MAX,
                                                    max_length=self.max_length))
        self.levels: dict[int, int] = {}
        self.ledger.order = lambda index: (-self.levels[index], index)
        self.dropped = 0

    @rule(priorities=st.lists(PRIORITIES, min_size=1, max_size=4))
    def enqueue(self, priorities: list[int | None]) -> None:  # type: ignore[override]
        for priority in priorities:
            index = self.published
            self.published += 1
            self.levels[index] = min(priority or 0, MAX)
            self.ledger.ready.add(index)
            self.ledger.where[index] = "ready"
            self.queue.enqueue(priority_message(index, priority))
            self.model_overflow()

    def model_overflow(self) -> None:
        if self.max_length is None:
            return
        while len(self.ledger.ready) > self.max_length:
            victim = min(self.ledger.ready, key=lambda i: (self.levels[i], i))
            self.ledger.ready.discard(victim)
            del self.ledger.where[victim]
            self.dropped += 1

    @invariant()
    def conservation(self) -> None:
        held = sum(len(h) for _, h in self.holders())
        assert self.queue.message_count == len(self.ledger.ready)
        assert self.queue.unacked == held
        assert self.queue.message_count + self.queue.unacked == (
            self.published - self.acked - self.discarded - self.purged
            - self.ledger.auto_acked - self.dropped
        )
        assert self.queue.dead_lettered == self.dropped + self.discarded


class PriorityMaxLengthMachine(PriorityMachine):
    max_length = 4


class TieredLedger(Ledger):
    def __init__(self, consumers: list[FakeConsumer]) -> None:
        super().__init__()
        self.consumers = consumers

    def check_recipient(self, consumer: FakeConsumer) -> None:
        higher = [c.tag for c in self.consumers
                  if c.priority > consumer.priority and c.has_credit()]
        assert not higher, f"{consumer.tag} served while {higher} had credit"


class ConsumerPriorityMachine(QueueMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ledger = TieredLedger(self.consumers)

    @precondition(lambda self: len(self.consumers) < 4)
    @rule(prefetch=st.integers(0, 3), no_ack=st.sampled_from([False, False, False, True]),
          priority=st.integers(-1, 2))
    def add_consumer(  # type: ignore[override]
        self, prefetch: int, no_ack: bool, priority: int
    ) -> None:
        consumer = FakeConsumer(f"c{self.next_tag}", prefetch, no_ack, self.ledger, priority)
        self.next_tag += 1
        self.consumers.append(consumer)
        self.queue.add_consumer(consumer, priority)
        assert self.queue.consumer_count == len(self.consumers)


class SacLedger(Ledger):
    def __init__(self) -> None:
        super().__init__()
        self.active: FakeConsumer | None = None

    def check_recipient(self, consumer: FakeConsumer) -> None:
        assert consumer is self.active, f"{consumer.tag} is not the single active consumer"


class SingleActiveMachine(ConsumerPriorityMachine):
    def __init__(self) -> None:
        super().__init__()
        self.queue = Queue("q", args=QueueArguments(single_active_consumer=True))
        self.sac = SacLedger()
        self.ledger = self.sac
        self.orphans: list[FakeConsumer] = []  # cancelled, still holding unacked messages

    @precondition(lambda self: len(self.consumers) < 4)
    @rule(prefetch=st.integers(0, 3), no_ack=st.sampled_from([False, False, False, True]),
          priority=st.integers(-1, 2))
    def add_consumer(  # type: ignore[override]
        self, prefetch: int, no_ack: bool, priority: int
    ) -> None:
        consumer = FakeConsumer(f"c{self.next_tag}", prefetch, no_ack, self.ledger, priority)
        self.next_tag += 1
        self.consumers.append(consumer)
        if self.sac.active is None:  # later consumers wait, whatever their priority
            self.sac.active = consumer
        self.queue.add_consumer(consumer, priority)

    @precondition(lambda self: self.consumers)
    @rule(data=st.data(), channel_closed=st.booleans())
    def remove_consumer(  # type: ignore[override]
        self, data: st.DataObject, channel_closed: bool
    ) -> None:
        consumer = data.draw(st.sampled_from(self.consumers), label="consumer")
        self.consumers.remove(consumer)
        if consumer is self.sac.active:
            best = None  # highest priority, then earliest registered
            for c in self.consumers:
                if best is None or c.priority > best.priority:
                    best = c
            self.sac.active = best
        assert self.queue.remove_consumer(consumer) is False
        if channel_closed:  # its channel closed: what it held comes back first
            held, consumer.held = consumer.held, []
            self.ledger.back(held)
            self.queue.requeue(held)
        else:  # basic.cancel: it keeps its unacked messages until it settles them
            self.orphans.append(consumer)
        self.queue.dispatch()

    def holders(self):  # type: ignore[no-untyped-def]
        return super().holders() + [(c.tag, c.held) for c in self.orphans]

    @invariant()
    def nothing_waits_while_a_consumer_has_credit(self) -> None:
        active = self.sac.active
        if active is not None and active.has_credit():
            assert self.queue.message_count == 0

    @invariant()
    def the_queue_reports_the_active_consumer(self) -> None:
        active = self.sac.active
        assert self.queue.single_active_consumer_tag == (active.tag if active else None)
        for c in self.consumers:
            status = self.queue.consumer_activity(c)
            assert status == ("single_active" if c is active else "waiting")


for machine in (PriorityMachine, PriorityMaxLengthMachine, ConsumerPriorityMachine,
                SingleActiveMachine):
    machine.TestCase.settings = SETTINGS

TestPriorityMachine = PriorityMachine.TestCase
TestPriorityMaxLengthMachine = PriorityMaxLengthMachine.TestCase
TestConsumerPriorityMachine = ConsumerPriorityMachine.TestCase
TestSingleActiveMachine = SingleActiveMachine.TestCase
