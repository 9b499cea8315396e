"""Queue TTL, length limits, delivery limits, retry delays and dead-letter records,
driven with a FakeClock (plain Python: no broker, no sleeping)."""

from __future__ import annotations

import pytest

from warrenmq.clock import FakeClock
from warrenmq.errors import PreconditionFailed
from warrenmq.message import Message
from warrenmq.protocol.fields import encode_shortstr
from warrenmq.protocol.properties import encode_properties, get_property
from warrenmq.queues.arguments import QueueArguments, parse_arguments
from warrenmq.queues.queue import DeliveryTarget, Queue
from warrenmq.queues.ready import QueuedMessage


def msg(body: bytes = b"m", **props: object) -> Message:
    raw = encode_properties(props) if props else b"\x00\x00"
    return Message("ex", "rk", encode_shortstr("ex") + encode_shortstr("rk"), raw, body)


class Holder(DeliveryTarget):
    """A DeliveryTarget with a fixed credit that keeps what it is given."""

    def __init__(self, credit: int = 100) -> None:
        self.tag = "c"
        self.exclusive = False
        self.limit = credit
        self.held: list[QueuedMessage] = []

    def credit(self) -> int:
        return self.limit - len(self.held)

    def deliver(self, queue: Queue, qms: list[QueuedMessage]) -> int:
        self.held.extend(qms)
        return len(qms)


def make(clock: FakeClock, **args: object) -> Queue:
    return Queue("q", args=QueueArguments(dead_letter_exchange="dlx", **args),  # type: ignore[arg-type]
                 clock=clock)


def reasons(queue: Queue) -> list[tuple[bytes, str]]:
    return [(d.message.body, d.reason) for d in queue.take_dead()]


def test_queue_ttl_expires_messages_even_when_not_at_head() -> None:
    clock = FakeClock()
    queue = make(clock, message_ttl=1000)
    queue.enqueue(msg(b"a"))
    clock.advance(0.5)
    queue.enqueue(msg(b"b", expiration="100"))  # per-message TTL lower: b expires first
    queue.enqueue(msg(b"c"))
    clock.advance(0.2)
    queue.tick(clock.monotonic())
    assert reasons(queue) == [(b"b", "expired")]
    assert queue.message_count == 2
    clock.advance(0.4)  # a is now 1.1 s old
    queue.tick(clock.monotonic())
    assert reasons(queue) == [(b"a", "expired")]
    consumer = Holder()
    queue.add_consumer(consumer)
    assert [qm.message.body for qm in consumer.held] == [b"c"]


def test_expired_message_is_never_delivered() -> None:
    clock = FakeClock()
    queue = make(clock, message_ttl=100)
    queue.enqueue(msg(b"old"))
    queue.enqueue(msg(b"new", expiration="5000"))  # the queue's 100 ms is lower: it wins
    clock.advance(0.2)  # no tick ran: dispatch itself must not hand either out
    consumer = Holder()
    queue.add_consumer(consumer)
    assert consumer.held == []
    assert reasons(queue) == [(b"old", "expired"), (b"new", "expired")]
    assert queue.message_count == 0


def test_ttl_zero_without_consumer_dead_letters_at_once() -> None:
    clock = FakeClock()
    queue = make(clock, message_ttl=0)
    queue.enqueue(msg(b"x"))
    assert reasons(queue) == [(b"x", "expired")]
    consumer = Holder()
    queue.add_consumer(consumer)
    queue.enqueue(msg(b"y"))
    assert [qm.message.body for qm in consumer.held] == [b"y"]


def test_drop_head_dead_letters_the_oldest() -> None:
    queue = make(FakeClock(), max_length=2)
    for body in (b"1", b"2", b"3", b"4"):
        assert queue.enqueue(msg(body))
    assert reasons(queue) == [(b"1", "maxlen"), (b"2", "maxlen")]
    assert queue.message_count == 2


def test_max_length_bytes() -> None:
    queue = make(FakeClock(), max_length_bytes=10)
    for body in (b"12345", b"67890", b"abc"):
        queue.enqueue(msg(body))
    assert reasons(queue) == [(b"12345", "maxlen")]
    assert queue.ready_bytes == 8


@pytest.mark.parametrize("mode, dead", [("reject-publish", []),
                                        ("reject-publish-dlx", [(b"3", "maxlen")])])
def test_reject_publish_modes(mode: str, dead: list[tuple[bytes, str]]) -> None:
    queue = make(FakeClock(), max_length=2, overflow=mode)
    assert queue.enqueue(msg(b"1")) and queue.enqueue(msg(b"2"))
    assert not queue.enqueue(msg(b"3"))
    assert reasons(queue) == dead
    assert queue.message_count == 2


def test_delivery_limit_dead_letters_after_the_limit() -> None:
    queue = make(FakeClock(), delivery_limit=2)
    queue.enqueue(msg(b"poison"))
    consumer = Holder(credit=1)
    queue.add_consumer(consumer)
    counts = []
    for _ in range(3):
        qm = consumer.held.pop()
        counts.append(get_property(qm.properties, "headers"))
        queue.requeue([qm])
        queue.dispatch()
    assert consumer.held == []
    assert reasons(queue) == [(b"poison", "delivery_limit")]
    assert counts[0] is None  # the first delivery carries no count
    assert [qm_headers["x-delivery-count"] for qm_headers in counts[1:]] == [1, 2]


def test_retry_delays_hide_the_message_then_dead_letter() -> None:
    clock = FakeClock()
    queue = make(clock, retry_delays=(1000, 5000))
    queue.enqueue(msg(b"job"))
    consumer = Holder(credit=1)
    queue.add_consumer(consumer)
    queue.requeue([consumer.held.pop()])
    queue.dispatch()
    assert consumer.held == [] and queue.message_count == 1
    clock.advance(0.9)
    queue.tick(clock.monotonic())
    assert consumer.held == []
    clock.advance(0.2)
    queue.tick(clock.monotonic())
    assert [qm.message.body for qm in consumer.held] == [b"job"]
    assert consumer.held[0].redelivered
    queue.requeue([consumer.held.pop()])
    clock.advance(4.9)
    queue.tick(clock.monotonic())
    assert consumer.held == []
    clock.advance(0.2)
    queue.tick(clock.monotonic())
    queue.requeue([consumer.held.pop()])  # third failure: the delays are used up
    assert reasons(queue) == [(b"job", "delivery_limit")]
    assert queue.message_count == 0


def test_discard_is_rejected_and_no_dlx_means_no_record() -> None:
    queue = make(FakeClock())
    queue.enqueue(msg(b"r"))
    consumer = Holder()
    queue.add_consumer(consumer)
    queue.discard([consumer.held.pop()])
    assert reasons(queue) == [(b"r", "rejected")]
    plain = Queue("p", clock=FakeClock())
    plain.enqueue(msg(b"r"))
    plain.add_consumer(holder := Holder())
    plain.discard([holder.held.pop()])
    assert plain.take_dead() == []


def test_x_expires() -> None:
    clock = FakeClock()
    queue = make(clock, expires=1000)
    clock.advance(0.9)
    assert not queue.expired(clock.monotonic())
    queue.get()  # use resets the clock
    clock.advance(0.9)
    assert not queue.expired(clock.monotonic())
    clock.advance(0.2)
    assert queue.expired(clock.monotonic())
    queue.add_consumer(Holder())
    clock.advance(10)
    assert not queue.expired(clock.monotonic())


@pytest.mark.parametrize("args, fragment", [
    ({"x-message-ttl": -1}, "'x-message-ttl'"),
    ({"x-message-ttl": "10"}, "'x-message-ttl'"),
    ({"x-expires": 0}, "'x-expires'"),
    ({"x-overflow": "drop-tail"}, "unknown overflow mode 'drop-tail'"),
    ({"x-max-length": True}, "'x-max-length'"),
    ({"x-dead-letter-routing-key": "k"}, "'x-dead-letter-routing-key'"),
    ({"x-retry-delays": []}, "'x-retry-delays'"),
    ({"x-retry-delays": [100, -5]}, "'x-retry-delays'"),
    ({"x-delivery-limit": -2}, "'x-delivery-limit'"),
])
def test_invalid_arguments_name_the_argument(args: dict[str, object], fragment: str) -> None:
    with pytest.raises(PreconditionFailed) as info:
        parse_arguments(args, "queue 'q' in vhost '/'")
    assert fragment in info.value.text
    assert "queue 'q' in vhost '/'" in info.value.text


def test_restored_message_keeps_the_ttl_it_had_left() -> None:
    clock = FakeClock()
    queue = make(clock, message_ttl=10_000)
    now = clock.time()
    queue.restore([
        (msg(b"old"), False, 0, now - 7.0),  # published 7 s ago: 3 s left
        (msg(b"older"), False, 0, now - 60.0),  # its TTL ran out while the broker was down
        (msg(b"unknown"), False, 0, 0.0),  # no publish time: a whole TTL from now
    ])
    queue.tick(clock.monotonic())
    assert reasons(queue) == [(b"older", "expired")]
    clock.advance(3.1)
    queue.tick(clock.monotonic())
    assert reasons(queue) == [(b"old", "expired")]
    clock.advance(6.0)
    queue.tick(clock.monotonic())
    assert reasons(queue) == []
    clock.advance(1.0)
    queue.tick(clock.monotonic())
    assert reasons(queue) == [(b"unknown", "expired")]
