"""queues/consumers.py through a real Queue: consumer priorities (x-priority) and single
active consumer, with plain DeliveryTargets that count what they were sent."""

from __future__ import annotations

import pytest

from warrenmq.errors import AccessRefused, PreconditionFailed
from warrenmq.message import Message
from warrenmq.queues.arguments import QueueArguments
from warrenmq.queues.consumers import consumer_priority
from warrenmq.queues.queue import DeliveryTarget, Queue
from warrenmq.queues.ready import QueuedMessage

ROUTE = b"\x00\x01q"


class Target(DeliveryTarget):
    def __init__(self, tag: str, prefetch: int = 0) -> None:
        self.tag = tag
        self.exclusive = False
        self.prefetch = prefetch
        self.held: list[QueuedMessage] = []

    def credit(self) -> int:
        return 5 if not self.prefetch else self.prefetch - len(self.held)

    def deliver(self, queue: Queue, qms: list[QueuedMessage]) -> int:
        self.held.extend(qms)
        return len(qms)

    def ack_all(self, queue: Queue) -> None:
        held, self.held = self.held, []
        queue.ack(held)
        queue.dispatch()


def publish(queue: Queue, n: int) -> None:
    for i in range(n):
        queue.enqueue(Message("", "q", ROUTE, b"\x00\x00", b"m%d" % i))


def bodies(target: Target) -> list[bytes]:
    return [qm.message.body for qm in target.held]


def test_x_priority_parsing() -> None:
    where = "queue 'q' in vhost '/'"
    assert consumer_priority({}, where) == 0
    assert consumer_priority({"x-priority": -7}, where) == -7
    assert consumer_priority({"x-priority": 2**40}, where) == 2**40
    for bad in ("5", True, None, 1.5):
        with pytest.raises(PreconditionFailed) as caught:
            consumer_priority({"x-priority": bad}, where)
        assert caught.value.text.startswith(
            f"invalid arg 'x-priority' for {where}: expected an integer, got ")


def test_higher_priority_first_round_robin_among_equals_lower_only_when_blocked() -> None:
    queue = Queue("q")
    high_a, high_b, low = Target("a", 2), Target("b", 2), Target("low", 10)
    queue.add_consumer(low, 0)
    queue.add_consumer(high_a, 5)
    queue.add_consumer(high_b, 5)
    publish(queue, 4)
    assert (bodies(high_a), bodies(high_b), bodies(low)) == (
        [b"m0", b"m2"], [b"m1", b"m3"], [])
    publish(queue, 3)  # both high ones are at their prefetch: the low one gets them
    assert bodies(low) == [b"m0", b"m1", b"m2"]
    high_b.ack_all(queue)
    publish(queue, 3)
    assert bodies(high_b) == [b"m0", b"m1"]
    assert bodies(low) == [b"m0", b"m1", b"m2", b"m2"]


def test_backlog_goes_to_the_highest_priority_with_credit_first() -> None:
    queue = Queue("q")
    publish(queue, 6)
    low, high = Target("low", 3), Target("high", 2)
    queue.add_consumer(low, -1)  # joins first and takes three of the backlog
    queue.add_consumer(high, 1)
    assert bodies(low) == [b"m0", b"m1", b"m2"]
    assert bodies(high) == [b"m3", b"m4"]
    low.ack_all(queue)
    assert bodies(low) == [b"m5"]
    high.ack_all(queue)
    publish(queue, 1)
    assert bodies(high) == [b"m0"]


def test_single_active_consumer_successor_order_and_status() -> None:
    queue = Queue("q", args=QueueArguments(single_active_consumer=True))
    first, second, urgent, late = Target("first"), Target("second"), Target("urgent"), \
        Target("late")
    queue.add_consumer(first, 0)
    queue.add_consumer(second, 0)
    queue.add_consumer(urgent, 9)  # registered later: does not take over
    queue.add_consumer(late, 9)
    assert queue.consumer_count == 4
    publish(queue, 2)
    assert bodies(first) == [b"m0", b"m1"] and not second.held and not urgent.held
    assert queue.single_active_consumer_tag == "first"
    assert [queue.consumer_activity(t) for t in (first, second, urgent)] == [
        "single_active", "waiting", "waiting"]
    queue.remove_consumer(first)
    assert queue.single_active_consumer_tag == "urgent"  # highest priority, then earliest
    queue.remove_consumer(urgent)
    assert queue.single_active_consumer_tag == "late"
    queue.remove_consumer(late)
    assert queue.single_active_consumer_tag == "second"
    queue.remove_consumer(second)
    assert queue.single_active_consumer_tag is None and queue.consumer_count == 0
    assert queue.consumer_activity(first) == "waiting"
    assert Queue("plain").consumer_activity(first) == "up"


def test_single_active_successor_is_served_even_when_the_old_one_was_full() -> None:
    """RabbitMQ 3.10.8 marks the successor active but sends it nothing when the cancelled
    consumer was at its prefetch limit; here the successor's own credit counts."""
    queue = Queue("q", args=QueueArguments(single_active_consumer=True))
    old, new = Target("old", 2), Target("new", 2)
    queue.add_consumer(old)
    queue.add_consumer(new)
    publish(queue, 5)
    assert bodies(old) == [b"m0", b"m1"]
    queue.remove_consumer(old)  # basic.cancel: old keeps its two unacked messages
    queue.dispatch()
    assert bodies(new) == [b"m2", b"m3"]
    assert queue.unacked == 4 and queue.message_count == 1


def test_exclusive_consumer_refused_on_a_single_active_consumer_queue() -> None:
    queue = Queue("q", args=QueueArguments(single_active_consumer=True))
    with pytest.raises(AccessRefused, match="in exclusive use"):
        queue.check_consumer(exclusive=True)


def test_delete_returns_waiting_consumers_too() -> None:
    queue = Queue("q", args=QueueArguments(single_active_consumer=True))
    targets = [Target("a"), Target("b")]
    for t in targets:
        queue.add_consumer(t)
    assert queue.delete() == targets
    assert queue.consumer_count == 0


def test_queue_priority_benchmark_runs_as_a_process() -> None:
    """The fast slice of benchmarks/queue_priority.py: it runs, verifies every delivery
    and prints its table."""
    import subprocess
    import sys
    from pathlib import Path

    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.queue_priority", "--messages", "300",
         "--repeat", "1"], cwd=Path(__file__).resolve().parents[2], capture_output=True,
        text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    rows = done.stdout.splitlines()
    assert rows[:2] == ["| case | msgs/s |", "|---|---|"]
    assert [row.split(" | ")[0] for row in rows[2:]] == [
        "| plain queue, one consumer", "| x-max-priority 10, one consumer",
        "| plain queue, consumers at x-priority 1 and 0"]
