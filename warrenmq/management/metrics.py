"""Prometheus ``/metrics``: a prometheus_client collector that reads the broker on scrape.

Nothing is recorded per message for metrics: queues keep plain int counters, and this
collector turns them, the queue depths and the server's connections and alarms into
metric families when Prometheus asks (``generate_latest`` writes the text format).
Names follow rabbitmq_prometheus (``rabbitmq_queue_messages_ready``,
``rabbitmq_connections``, ``rabbitmq_alarms_memory_used_watermark``...) so dashboards
and alerts written for RabbitMQ carry over; WarrenMQ's own additions keep the same
prefix and are listed in docs/management.md. Owns its registry (one per broker, never
the process-global one); must not mutate anything it reads.
"""

from __future__ import annotations

import os
import resource
import shutil
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from warrenmq import __version__
from warrenmq.broker.delays import is_delayed
from warrenmq.clock import COARSE
from warrenmq.management.dedup import metrics as dedup_metrics
from warrenmq.management.edge import ServerView
from warrenmq.management.stats import Stats, broker_totals

__all__ = ["CONTENT_TYPE_LATEST", "BrokerCollector", "render"]

LABELS = ["vhost", "queue"]
#: (metric name without _total, Queue attribute, help)
QUEUE_COUNTERS = (
    ("rabbitmq_queue_messages_published", "published", "Messages published into the queue"),
    ("rabbitmq_queue_messages_delivered", "delivered",
     "Messages delivered to consumers or fetched with basic.get"),
    ("rabbitmq_queue_messages_acked", "acked", "Messages acknowledged by consumers"),
    ("rabbitmq_queue_messages_redelivered", "redelivered",
     "Messages returned to the queue for redelivery"),
    ("rabbitmq_queue_messages_dead_lettered", "dead_lettered",
     "Messages that died in the queue (rejected, expired, overflow, delivery limit)"),
)
GLOBAL_COUNTERS = (
    ("rabbitmq_global_messages_received", "received", "Messages published by clients"),
    ("rabbitmq_global_messages_delivered", "delivered", "Messages delivered or fetched"),
    ("rabbitmq_global_messages_acknowledged", "acked", "Messages acknowledged"),
    ("rabbitmq_global_messages_redelivered", "redelivered", "Messages redelivered"),
    ("rabbitmq_global_messages_dead_lettered", "dead_lettered", "Messages dead-lettered"),
)


def resident_memory_bytes() -> int:
    """The process RSS from /proc (Linux); the peak RSS elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def directory_bytes(root: Path) -> int:
    """Bytes of the files under ``root`` (the data directory); 0 if it is gone."""
    total = 0
    stack = [root]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


class BrokerCollector(Collector):
    """Builds every metric family from the broker's state at scrape time."""

    def __init__(self, server: ServerView, stats: Stats, data_dir: Path | None) -> None:
        self.server = server
        self.stats = stats
        self.data_dir = data_dir

    def collect(self) -> Iterator[Metric]:
        yield from self._queues()
        yield from self._delayed()
        yield from self._broker()
        yield from dedup_metrics(self.server)

    def _delayed(self) -> Iterator[Metric]:
        """What each x-delayed-message exchange holds (WarrenMQ's; docs/delayed.md)."""
        labels = ["vhost", "exchange"]
        held = GaugeMetricFamily("rabbitmq_exchange_messages_delayed",
                                 "Messages an x-delayed-message exchange holds", labels=labels)
        size = GaugeMetricFamily("rabbitmq_exchange_messages_delayed_bytes",
                                 "Body bytes an x-delayed-message exchange holds",
                                 labels=labels)
        lost = CounterMetricFamily("rabbitmq_exchange_messages_delayed_unroutable",
                                   "Delayed messages no queue took when released",
                                   labels=labels)
        for vhost in self.server.broker.vhosts.values():
            for exchange in list(vhost.exchanges.values()):
                if is_delayed(exchange):
                    names = [vhost.name, exchange.name]
                    held.add_metric(names, len(exchange.held))
                    size.add_metric(names, exchange.held.body_bytes)
                    lost.add_metric(names, exchange.unroutable)
        yield from (held, size, lost)

    def _queues(self) -> Iterator[Metric]:
        def gauge(name: str, text: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, text, labels=LABELS)

        ready = gauge("rabbitmq_queue_messages_ready", "Messages ready to be delivered")
        unacked = gauge("rabbitmq_queue_messages_unacked",
                        "Messages delivered and not yet acknowledged")
        total = gauge("rabbitmq_queue_messages", "Messages ready plus unacknowledged")
        ready_bytes = gauge("rabbitmq_queue_messages_ready_bytes", "Bytes of ready messages")
        consumers = gauge("rabbitmq_queue_consumers", "Consumers on the queue")
        utilisation = gauge(
            "rabbitmq_queue_consumer_utilisation",
            "Share of the last seconds with consumers in which they could take more messages")
        head = gauge("rabbitmq_queue_head_message_timestamp",
                     "When the oldest ready message entered the queue, Unix seconds")
        age = gauge("rabbitmq_queue_head_message_age_seconds",
                    "Age of the oldest ready message in seconds (0 when none is ready)")
        counters = [CounterMetricFamily(name, text, labels=LABELS)
                    for name, _, text in QUEUE_COUNTERS]
        self.stats.refresh()
        now = COARSE.now
        for vhost in self.server.broker.vhosts.values():
            for queue in list(vhost.queues.values()):
                labels = [vhost.name, queue.name]
                ready.add_metric(labels, queue.message_count)
                unacked.add_metric(labels, queue.unacked)
                total.add_metric(labels, queue.message_count + queue.unacked)
                ready_bytes.add_metric(labels, queue.ready_bytes)
                consumers.add_metric(labels, queue.consumer_count)
                share = self.stats.utilisation(queue)
                if share is not None:
                    utilisation.add_metric(labels, share)
                enqueued = queue.head_enqueued_at()
                if enqueued is not None:
                    head.add_metric(labels, enqueued)
                age.add_metric(labels, max(0.0, now - enqueued) if enqueued is not None else 0)
                for family, (_, attribute, _) in zip(counters, QUEUE_COUNTERS, strict=True):
                    family.add_metric(labels, getattr(queue, attribute))
        yield from (ready, unacked, total, ready_bytes, consumers, utilisation, head, age)
        yield from counters

    def _broker(self) -> Iterator[Metric]:
        server = self.server
        connections = list(server.connections)
        queues = [q for v in server.broker.vhosts.values() for q in v.queues.values()]
        yield GaugeMetricFamily("rabbitmq_connections", "Open client connections",
                                value=len(connections))
        yield GaugeMetricFamily("rabbitmq_channels", "Open channels",
                                value=sum(len(c.channels) for c in connections))
        yield GaugeMetricFamily("rabbitmq_consumers", "Consumers",
                                value=sum(q.consumer_count for q in queues))
        yield GaugeMetricFamily("rabbitmq_queues", "Queues", value=len(queues))
        totals = broker_totals(server.broker)
        for name, key, text in GLOBAL_COUNTERS:
            yield CounterMetricFamily(name, text, value=totals[key])
        yield GaugeMetricFamily("rabbitmq_process_resident_memory_bytes",
                                "Resident memory of the broker process",
                                value=resident_memory_bytes())
        yield GaugeMetricFamily("rabbitmq_queue_messages_ready_bytes_total",
                                "Bytes of ready message bodies in all queues (what the memory"
                                " alarm measures)", value=server.held_bytes())
        if self.data_dir is not None:
            yield GaugeMetricFamily("rabbitmq_data_dir_bytes",
                                    "Bytes of the files in the data directory",
                                    value=directory_bytes(self.data_dir))
            try:
                free = shutil.disk_usage(self.data_dir).free
            except OSError:
                free = None
            if free is not None:
                yield GaugeMetricFamily("rabbitmq_disk_space_available_bytes",
                                        "Free bytes on the data directory's file system",
                                        value=free)
        yield CounterMetricFamily("rabbitmq_io_sync_ops",
                                  "Group commits of the message store, one fdatasync each",
                                  value=server.sync_ops)
        yield GaugeMetricFamily("rabbitmq_alarms_memory_used_watermark",
                                "1 while the memory alarm blocks publishers",
                                value=int(server.memory_alarm))
        yield GaugeMetricFamily("rabbitmq_alarms_free_disk_space_watermark",
                                "1 while the disk alarm (a failing store) blocks publishers",
                                value=int(server.disk_alarm))
        info = GaugeMetricFamily("rabbitmq_identity_info", "The node's name",
                                 labels=["rabbitmq_node", "rabbitmq_cluster"])
        info.add_metric([server.cluster_name, server.cluster_name], 1)
        yield info
        build = GaugeMetricFamily("rabbitmq_build_info", "The broker's version",
                                  labels=["product", "product_version"])
        build.add_metric(["WarrenMQ", __version__], 1)
        yield build


def registry_for(collector: BrokerCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of everything in ``registry``."""
    return generate_latest(registry)
