"""In-process cost of a priority queue next to a plain one (`python -m benchmarks.queue_priority`).

Role: time the queue alone (no sockets, no codec): enqueue --messages messages while the
one consumer has no credit, then give it credit and drain, for a plain queue, one with
x-max-priority 10 (messages spread over priorities 0..9), and a plain queue with two
consumers of different x-priority (the roster's tiered dispatch). Best of --repeat runs.
It measures this process on whatever else the machine runs: compare rows of one run.
"""

from __future__ import annotations

import argparse
import time

from warrenmq.message import Message
from warrenmq.protocol.properties import encode_properties
from warrenmq.queues.arguments import QueueArguments
from warrenmq.queues.queue import DeliveryTarget, Queue
from warrenmq.queues.ready import QueuedMessage


class Sink(DeliveryTarget):
    """A DeliveryTarget that takes everything once switched on and acks nothing."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.exclusive = False
        self.on = False
        self.count = 0

    def credit(self) -> int:
        return 256 if self.on else 0

    def deliver(self, queue: Queue, qms: list[QueuedMessage]) -> int:
        self.count += len(qms)
        return 0


def run(args: QueueArguments, messages: list[Message], priorities: tuple[int, ...]) -> float:
    queue = Queue("q", args=args)
    sinks = [Sink(f"c{i}") for i in range(len(priorities))]
    for sink, priority in zip(sinks, priorities, strict=True):
        queue.add_consumer(sink, priority)
    start = time.perf_counter()
    for message in messages:
        queue.enqueue(message)
    for sink in sinks:
        sink.on = True
    queue.dispatch()
    elapsed = time.perf_counter() - start
    assert sum(s.count for s in sinks) == len(messages), "not every message was delivered"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    messages = [Message("", "q", b"\x00\x01q", encode_properties({"priority": i % 10}),
                        b"x" * 32) for i in range(options.messages)]
    cases = (
        ("plain queue, one consumer", QueueArguments(), (0,)),
        ("x-max-priority 10, one consumer", QueueArguments(max_priority=10), (0,)),
        ("plain queue, consumers at x-priority 1 and 0", QueueArguments(), (1, 0)),
    )
    print("| case | msgs/s |\n|---|---|")
    for label, args, priorities in cases:
        best = min(run(args, messages, priorities) for _ in range(options.repeat))
        print(f"| {label} | {options.messages / best:,.0f} |")


if __name__ == "__main__":
    main()
