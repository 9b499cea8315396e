"""Rates and consumer utilisation for the management API, from sampled counters.

Queues only count (plain ints bumped where messages pass anyway); a rate needs two
readings. ``Stats`` keeps a few recent samples of every queue's counters, of each
connection's byte counters (``recv_oct``/``send_oct``, bumped once per socket read and
per flush) and of the broker totals, taken at most once a second — on request, and every
``COLLECT_INTERVAL`` seconds from the management listener's timer, like RabbitMQ's
``collect_statistics_interval`` — and answers rates (per second) and consumer
utilisation over the last ``WINDOW`` seconds. Owns the samples; must not keep more
than a window's worth, and must not be called per message.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from warrenmq.broker.broker import Broker
from warrenmq.queues.queue import COUNTERS, Queue

COLLECT_INTERVAL = 5.0  # seconds between background samples
MIN_INTERVAL = 1.0  # a request never samples more often than this
WINDOW = 5.0  # rates and utilisation cover about this many seconds
#: broker totals: messages published by clients, then the queue counters summed
TOTALS = ("received", *COUNTERS)

QueueKey = tuple[str, str]  # (vhost, queue name)
#: connection counters with a rate, in sample order (RabbitMQ's ``*_details``)
CONNECTION_RATES = ("recv_oct", "send_oct")


class Counted(Protocol):
    """What the sampler reads of a connection (``server.connection.Connection``)."""

    @property
    def id(self) -> int: ...
    @property
    def recv_oct(self) -> int: ...
    @property
    def send_oct(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    # counters in COUNTERS order, then seconds with consumers and seconds saturated
    queues: dict[QueueKey, tuple[float, ...]]
    totals: tuple[int, ...]
    connections: dict[int, tuple[int, int]]  # connection id -> CONNECTION_RATES


def queue_reading(queue: Queue) -> tuple[float, ...]:
    return (*(getattr(queue, c) for c in COUNTERS), *queue.utilisation_seconds())


def broker_totals(broker: Broker) -> dict[str, int]:
    """Messages published by clients and the queue counters, deleted queues included."""
    totals = dict.fromkeys(TOTALS, 0)
    for vhost in broker.vhosts.values():
        totals["received"] += vhost.published
        for counter in COUNTERS:
            totals[counter] += vhost.retired[counter]
        for queue in vhost.queues.values():
            for counter in COUNTERS:
                totals[counter] += getattr(queue, counter)
    return totals


class Stats:
    def __init__(self, broker: Broker, clock: Callable[[], float] = time.monotonic,
                 connections: Callable[[], Iterable[Counted]] = tuple) -> None:
        self.broker = broker
        self.clock = clock
        self.connections = connections
        self.samples: deque[Sample] = deque()

    def refresh(self) -> None:
        """Take a sample unless the last one is under ``MIN_INTERVAL`` old."""
        now = self.clock()
        if self.samples and now - self.samples[-1].at < MIN_INTERVAL:
            return
        queues = {
            (vhost.name, queue.name): queue_reading(queue)
            for vhost in self.broker.vhosts.values()
            for queue in vhost.queues.values()
        }
        totals = broker_totals(self.broker)
        conns = {c.id: (c.recv_oct, c.send_oct) for c in list(self.connections())}
        self.samples.append(Sample(now, queues, tuple(totals[t] for t in TOTALS), conns))
        while len(self.samples) > 2 and now - self.samples[0].at > 2 * WINDOW:
            self.samples.popleft()

    def _pair(self) -> tuple[Sample, Sample] | None:
        """(reference, latest): the oldest sample within the window, else the previous."""
        if len(self.samples) < 2:
            return None
        latest = self.samples[-1]
        for sample in self.samples:
            if sample is latest:
                break
            if latest.at - sample.at <= WINDOW + MIN_INTERVAL:
                return sample, latest
        return self.samples[-2], latest

    def queue_rates(self, key: QueueKey) -> dict[str, float]:
        """Per-second rate of each counter over the window (0.0 without two samples)."""
        pair = self._pair()
        if pair is None or key not in pair[0].queues or key not in pair[1].queues:
            return dict.fromkeys(COUNTERS, 0.0)
        ref, latest = pair
        elapsed = latest.at - ref.at
        before, after = ref.queues[key], latest.queues[key]
        return {c: max(0.0, (after[i] - before[i]) / elapsed) for i, c in enumerate(COUNTERS)}

    def connection_rates(self, conn: Counted) -> dict[str, float]:
        """Bytes per second received and sent by ``conn`` over the window: from the
        oldest sample in it that has seen the connection (0.0 until two have)."""
        if len(self.samples) < 2 or conn.id not in self.samples[-1].connections:
            return dict.fromkeys(CONNECTION_RATES, 0.0)
        latest = self.samples[-1]
        ref = next((s for s in self.samples if s is not latest and conn.id in s.connections
                    and latest.at - s.at <= WINDOW + MIN_INTERVAL), None)
        if ref is None:
            ref = self.samples[-2]
            if conn.id not in ref.connections:
                return dict.fromkeys(CONNECTION_RATES, 0.0)
        elapsed = latest.at - ref.at
        before, after = ref.connections[conn.id], latest.connections[conn.id]
        return {name: round(max(0.0, (after[i] - before[i]) / elapsed), 1)
                for i, name in enumerate(CONNECTION_RATES)}

    def total_rates(self) -> dict[str, float]:
        pair = self._pair()
        if pair is None:
            return dict.fromkeys(TOTALS, 0.0)
        ref, latest = pair
        elapsed = latest.at - ref.at
        return {t: max(0.0, (latest.totals[i] - ref.totals[i]) / elapsed)
                for i, t in enumerate(TOTALS)}

    def utilisation(self, queue: Queue) -> float | None:
        """Share of the window's time with consumers in which they could take more
        messages; None when the queue has no consumers (RabbitMQ shows nothing then)."""
        if not queue.consumer_count:
            return None
        consumed, saturated = queue.utilisation_seconds()
        pair = self._pair()
        key = (queue.vhost, queue.name)
        if pair is not None and key in pair[0].queues:
            before = pair[0].queues[key]
            n = len(COUNTERS)
            window_consumed = consumed - before[n]
            if window_consumed > 0:
                return _share(window_consumed, saturated - before[n + 1])
        if consumed > 0:
            return _share(consumed, saturated)  # no usable window yet: the lifetime share
        return 1.0


def _share(consumed: float, saturated: float) -> float:
    return min(1.0, max(0.0, 1.0 - saturated / consumed))
