"""Depth and counter history kept by the broker, for charts: the last 10 minutes at 5 s.

Every ``INTERVAL`` seconds (the management listener's timer) ``History.record`` reads
the broker totals (ready, unacked, and the cumulative counters) and each queue's depth
and counters into fixed-size rings, so a dashboard that is opened or reloaded sees the
last ``SAMPLES`` points at once instead of starting empty. The API hands them out as
RabbitMQ's management API does, on request only: ``lengths_age``/``lengths_incr`` and
``msg_rates_age``/``msg_rates_incr`` query parameters add ``samples`` (newest first,
``{"sample", "timestamp"}`` with epoch milliseconds), ``avg`` and ``avg_rate`` to the
``*_details`` objects of ``/api/overview`` and ``/api/queues/{vhost}/{name}``.

Memory is bounded: one ring of ``SAMPLES`` timestamps, and per tracked queue one
``array('q')`` of ``SAMPLES x len(QUEUE_FIELDS)`` integers (about 6 KB). At most
``MAX_QUEUES`` queues are tracked; past that, a queue is tracked from the moment its
page is viewed, evicting the queue viewed longest ago. Owns the rings; must not be
called per message, and must not keep queue objects (only their (vhost, name)).
"""

from __future__ import annotations

import time
from array import array
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Any

from warrenmq.broker.broker import Broker
from warrenmq.management.stats import broker_totals
from warrenmq.queues.queue import Queue

INTERVAL = 5.0  # seconds between samples (RabbitMQ's collect_statistics_interval)
SAMPLES = 120  # 10 minutes at 5 s
MAX_QUEUES = 1000
#: per-queue fields, in ring order
QUEUE_FIELDS = ("messages_ready", "messages_unacknowledged", "published", "delivered",
                "acked", "redelivered", "gets")
#: broker-wide fields, in ring order (``received`` is what clients published)
TOTAL_FIELDS = ("messages_ready", "messages_unacknowledged", "received", "delivered",
                "acked", "redelivered", "gets", "dead_lettered", "sync_ops")
#: management API name -> counter field, for message_stats
RATE_NAMES = {"publish": "published", "deliver_get": "delivered", "ack": "acked",
              "redeliver": "redelivered", "get": "gets"}
QueueKey = tuple[str, str]


class _Series:
    __slots__ = ("data", "first")

    def __init__(self, fields: int, first: int) -> None:
        self.data = array("q", bytes(8 * SAMPLES * fields))
        self.first = first  # sequence number of this series' first sample


class History:
    def __init__(self, broker: Broker, sync_ops: Callable[[], int],
                 clock: Callable[[], float] = time.time) -> None:
        self.broker = broker
        self.sync_ops = sync_ops
        self.clock = clock
        self.times: deque[int] = deque(maxlen=SAMPLES)  # epoch ms of each sample
        self.seq = -1  # sequence number of the newest sample
        self.totals = _Series(len(TOTAL_FIELDS), 0)
        self.queues: OrderedDict[QueueKey, _Series] = OrderedDict()

    # ----------------------------------------------------------------- recording
    def record(self) -> None:
        self.seq += 1
        self.times.append(int(self.clock() * 1000))
        slot = self.seq % SAMPLES
        totals = broker_totals(self.broker)
        ready = unacked = 0
        alive: set[QueueKey] = set()
        for vhost in self.broker.vhosts.values():
            for queue in vhost.queues.values():
                ready += queue.message_count
                unacked += queue.unacked
                key = (vhost.name, queue.name)
                alive.add(key)
                series = self.queues.get(key)
                if series is None:
                    if len(self.queues) >= MAX_QUEUES:
                        continue
                    series = self.queues[key] = _Series(len(QUEUE_FIELDS), self.seq)
                self._put(series, slot, _queue_values(queue))
        values = [ready, unacked, *(totals[f] for f in TOTAL_FIELDS[2:-1]), self.sync_ops()]
        self._put(self.totals, slot, values)
        for key in [k for k in self.queues if k not in alive]:
            del self.queues[key]

    @staticmethod
    def _put(series: _Series, slot: int, values: list[int]) -> None:
        width = len(values)
        series.data[slot * width:(slot + 1) * width] = array("q", values)

    def track(self, queue: Queue) -> None:
        """Keep (or start keeping) ``queue``'s history; a viewed queue goes to the back
        of the eviction line."""
        key = (queue.vhost, queue.name)
        if key in self.queues:
            self.queues.move_to_end(key)
            return
        while len(self.queues) >= MAX_QUEUES:
            self.queues.popitem(last=False)
        self.queues[key] = _Series(len(QUEUE_FIELDS), self.seq + 1)

    # ----------------------------------------------------------------- reading
    def _points(self, series: _Series, fields: tuple[str, ...], name: str, age: float,
                incr: float) -> list[dict[str, int]]:
        """Newest first, one point per ``incr`` seconds over the last ``age`` seconds."""
        if self.seq < 0:
            return []
        index = fields.index(name)
        width = len(fields)
        step = max(1, round(incr / INTERVAL))
        count = min(SAMPLES, int(age / INTERVAL) + 1)
        oldest = max(series.first, self.seq - SAMPLES + 1, self.seq - count + 1)
        times = list(self.times)
        out = []
        for seq in range(self.seq, oldest - 1, -step):
            slot = seq % SAMPLES
            out.append({"sample": series.data[slot * width + index],
                        "timestamp": times[len(times) - 1 - (self.seq - seq)]})
        return out

    def rate(self, name: str) -> float:
        """Per-second rate of a total over the last two samples (0.0 before two)."""
        points = self._points(self.totals, TOTAL_FIELDS, name, INTERVAL, INTERVAL)
        if len(points) < 2:
            return 0.0
        seconds = (points[0]["timestamp"] - points[1]["timestamp"]) / 1000
        return max(0.0, (points[0]["sample"] - points[1]["sample"]) / seconds) if seconds else 0.0

    def decorate_overview(self, overview: dict[str, Any], query: Mapping[str, str]) -> None:
        self._decorate(overview.get("queue_totals", {}), overview.get("message_stats", {}),
                       self.totals, TOTAL_FIELDS, "received", query)

    def decorate_queue(self, item: dict[str, Any], queue: Queue,
                       query: Mapping[str, str]) -> None:
        self.track(queue)
        series = self.queues.get((queue.vhost, queue.name))
        if series is not None:
            self._decorate(item, item.get("message_stats", {}), series, QUEUE_FIELDS,
                           "published", query)

    def _decorate(self, lengths: dict[str, Any], stats: dict[str, Any], series: _Series,
                  fields: tuple[str, ...], published: str, query: Mapping[str, str]) -> None:
        age, incr = _window(query, "lengths")
        if age:
            for name in ("messages_ready", "messages_unacknowledged"):
                lengths[f"{name}_details"] = _details(self._points(series, fields, name,
                                                                    age, incr))
            ready = lengths["messages_ready_details"]["samples"]
            unacked = lengths["messages_unacknowledged_details"]["samples"]
            lengths["messages_details"] = _details([
                {"sample": r["sample"] + u["sample"], "timestamp": r["timestamp"]}
                for r, u in zip(ready, unacked, strict=True)])
        age, incr = _window(query, "msg_rates")
        if age:
            for api_name, field in RATE_NAMES.items():
                name = published if api_name == "publish" else field
                stats[f"{api_name}_details"] = _details(
                    self._points(series, fields, name, age, incr),
                    rate=stats.get(f"{api_name}_details", {}).get("rate", 0.0))


def _queue_values(queue: Queue) -> list[int]:
    return [queue.message_count, queue.unacked, queue.published, queue.delivered,
            queue.acked, queue.redelivered, queue.gets]


def _window(query: Mapping[str, str], prefix: str) -> tuple[float, float]:
    """(age, incr) seconds asked for with ``{prefix}_age`` and ``{prefix}_incr``."""
    try:
        age = float(query.get(f"{prefix}_age", 0))
        incr = float(query.get(f"{prefix}_incr", INTERVAL))
    except ValueError:
        return 0.0, INTERVAL
    return (min(max(age, 0.0), SAMPLES * INTERVAL), max(incr, INTERVAL))


def _details(samples: list[dict[str, int]], rate: float | None = None) -> dict[str, Any]:
    """RabbitMQ's ``*_details`` with samples: the average value and the average rate."""
    out: dict[str, Any] = {"samples": samples}
    if samples:
        out["avg"] = round(sum(s["sample"] for s in samples) / len(samples), 2)
        span = (samples[0]["timestamp"] - samples[-1]["timestamp"]) / 1000
        out["avg_rate"] = (round((samples[0]["sample"] - samples[-1]["sample"]) / span, 2)
                           if span > 0 else 0.0)
    else:
        out["avg"] = out["avg_rate"] = 0.0
    if rate is None:
        out["rate"] = (_rate(samples[0], samples[1]) if len(samples) > 1 else 0.0)
    else:
        out["rate"] = rate
    return out


def _rate(newer: dict[str, int], older: dict[str, int]) -> float:
    seconds = (newer["timestamp"] - older["timestamp"]) / 1000
    return round((newer["sample"] - older["sample"]) / seconds, 2) if seconds > 0 else 0.0
