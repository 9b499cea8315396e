"""Statistics behind /metrics and the API, without a server: consumer utilisation kept
on queue state transitions (driven through a real ``Queue`` with a credit-controlled
delivery target and a hand-moved coarse clock), the enqueue time of the head message,
and ``Stats`` rates and windows over a real ``Broker`` with an injected clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from warrenmq.broker.broker import Broker
from warrenmq.clock import COARSE
from warrenmq.management.stats import Stats, broker_totals
from warrenmq.message import Message
from warrenmq.protocol.fields import encode_shortstr
from warrenmq.queues.queue import DeliveryTarget, Queue
from warrenmq.queues.ready import QueuedMessage, ReadyList


class Target(DeliveryTarget):
    """A consumer whose credit the test sets; it keeps what it is given, unacked."""

    def __init__(self, credit: int) -> None:
        self.tag = "t"  # instance attributes: the compiled base class keeps them in slots
        self.exclusive = False
        self.available = credit
        self.got: list[QueuedMessage] = []

    def credit(self) -> int:
        return self.available

    def deliver(self, queue: Queue, qms: list[QueuedMessage]) -> int:
        self.got += qms
        self.available -= len(qms)
        return len(qms)


@pytest.fixture
def coarse() -> Iterator[None]:
    saved = COARSE.now
    yield
    COARSE.now = saved


def message(body: bytes = b"x", queue: str = "q") -> Message:
    return Message("", queue, encode_shortstr("") + encode_shortstr(queue), b"\x00\x00", body)


def at(when: float) -> None:
    COARSE.now = when


def test_utilisation_accumulates_on_transitions(coarse: None) -> None:
    queue = Queue("q")
    target = Target(credit=1)
    at(100.0)
    queue.add_consumer(target)
    at(101.0)
    queue.enqueue(message())  # taken at once: the consumer had credit
    assert queue.utilisation_seconds() == (1.0, 0.0)
    at(102.0)
    queue.enqueue(message())  # no credit left: the queue holds what it cannot hand over
    at(105.0)
    assert queue.utilisation_seconds() == (5.0, 3.0)
    target.available = 5
    at(106.0)
    queue.dispatch()  # the backlog drains: saturation ends
    assert len(target.got) == 2
    at(110.0)
    assert queue.utilisation_seconds() == (10.0, 4.0)
    queue.remove_consumer(target)
    at(120.0)
    assert queue.utilisation_seconds() == (10.0, 4.0)  # no consumers: the clock stops


def test_saturation_starts_when_dispatch_runs_out_of_credit(coarse: None) -> None:
    queue = Queue("q")
    at(10.0)
    for _ in range(3):
        queue.enqueue(message())  # no consumers: waiting is not saturation
    target = Target(credit=2)
    at(11.0)
    queue.add_consumer(target)  # takes two of three, one stays ready
    at(15.0)
    assert queue.utilisation_seconds() == (4.0, 4.0)
    queue.purge()  # nothing ready: not saturated any more
    at(16.0)
    assert queue.utilisation_seconds() == (5.0, 4.0)


def test_round_robin_pass_without_credit_saturates(coarse: None) -> None:
    queue = Queue("q")
    first, second = Target(credit=1), Target(credit=0)
    second.tag = "u"
    at(1.0)
    queue.add_consumer(first)
    queue.add_consumer(second)
    for _ in range(3):
        queue.enqueue(message())
    at(3.0)
    assert queue.utilisation_seconds() == (2.0, 2.0)
    assert len(first.got) == 1


def test_head_is_the_oldest_live_ready_message(coarse: None) -> None:
    ready = ReadyList()
    stamped = []
    for i in range(3):
        at(50.0 + i)
        qm = QueuedMessage(message(), i)
        stamped.append(qm)
        ready.append(qm)
    assert ready.head() is stamped[0]
    first = ready.pop()
    assert ready.head() is stamped[1]
    ready.put_back(first)  # a requeued message returns to its place at the head
    assert ready.head() is stamped[0]
    assert ready.head().enqueued_at == 50.0  # type: ignore[union-attr]
    ready.kill(stamped[0])
    assert ready.head() is stamped[1]
    ready.kill(stamped[1])
    ready.kill(stamped[2])
    assert ready.head() is None
    queue = Queue("empty")
    assert queue.head_enqueued_at() is None


def test_rates_over_the_window_and_totals_after_deletion() -> None:
    broker = Broker()
    vhost = broker.vhosts["/"]
    queue = vhost.declare_queue("q", owner=None)
    now = [0.0]
    stats = Stats(broker, clock=lambda: now[0])
    stats.refresh()
    assert stats.queue_rates(("/", "q"))["published"] == 0.0  # one sample: no rate yet
    exchange = vhost.exchanges[""]
    for _ in range(50):
        vhost.publish(exchange, message())
    now[0] = 5.0
    stats.refresh()
    assert stats.queue_rates(("/", "q"))["published"] == 10.0
    assert stats.total_rates()["received"] == 10.0
    for _ in range(10):
        queue.get()
    now[0] = 5.5  # under a second since the last sample: the same window answers
    stats.refresh()
    assert len(stats.samples) == 2
    now[0] = 10.0
    stats.refresh()
    assert stats.queue_rates(("/", "q"))["delivered"] == 2.0  # 10 over the last 5 s
    for step in range(11, 40):
        now[0] = float(step)
        stats.refresh()
    assert len(stats.samples) <= 12  # only about two windows are kept
    vhost.delete_queue("q", owner=None)
    totals = broker_totals(broker)
    assert (totals["received"], totals["published"], totals["delivered"], totals["gets"]) == (
        50, 50, 10, 10)
    assert stats.queue_rates(("/", "gone"))["published"] == 0.0


def test_utilisation_window_and_no_consumers(coarse: None) -> None:
    broker = Broker()
    queue = broker.vhosts["/"].declare_queue("q", owner=None)
    now = [0.0]
    stats = Stats(broker, clock=lambda: now[0])
    assert stats.utilisation(queue) is None  # no consumers: nothing to say
    at(100.0)
    target = Target(credit=0)
    queue.add_consumer(target)
    assert stats.utilisation(queue) == 1.0  # no time has passed yet
    queue.enqueue(message())  # saturated from now on
    at(102.0)
    stats.refresh()
    assert stats.utilisation(queue) == 0.0  # lifetime share: saturated all along
    at(104.0)
    target.available = 10
    queue.dispatch()  # drained: consumers can take more again
    at(106.0)
    now[0] = 2.0
    stats.refresh()
    share = stats.utilisation(queue)
    assert share == pytest.approx(0.5)  # saturated 2 of the 4 s since the first sample


class Counted:
    """A connection's traffic counters, as ``Stats`` reads them."""

    def __init__(self, ident: int) -> None:
        self.id = ident
        self.recv_oct = 0
        self.send_oct = 0


def test_connection_byte_rates() -> None:
    now = [0.0]
    early, late = Counted(1), Counted(2)
    open_now = [early]
    stats = Stats(Broker(), clock=lambda: now[0], connections=lambda: open_now)
    stats.refresh()
    assert stats.connection_rates(early) == {"recv_oct": 0.0, "send_oct": 0.0}  # one sample
    early.recv_oct, early.send_oct = 10_000, 500
    open_now.append(late)  # opened between two samples
    late.recv_oct = 999
    now[0] = 5.0
    stats.refresh()
    assert stats.connection_rates(early) == {"recv_oct": 2000.0, "send_oct": 100.0}
    assert stats.connection_rates(late)["recv_oct"] == 0.0  # seen once: no rate yet
    late.recv_oct += 4000
    now[0] = 7.0
    stats.refresh()
    assert stats.connection_rates(late)["recv_oct"] == 2000.0  # from its first sample
    # the window is ~5 s: the 0 s sample is out, and nothing moved since the 5 s one
    assert stats.connection_rates(early)["recv_oct"] == 0.0
    early.recv_oct += 3000
    for step in range(8, 30):
        now[0] = float(step)
        stats.refresh()
        if step == 8:  # 3000 bytes over the 3 s since the oldest sample in the window
            assert stats.connection_rates(early)["recv_oct"] == 1000.0
    assert stats.connection_rates(early) == {"recv_oct": 0.0, "send_oct": 0.0}  # idle
    open_now.remove(early)
    now[0] = 31.0
    stats.refresh()
    assert stats.connection_rates(early) == {"recv_oct": 0.0, "send_oct": 0.0}  # closed
