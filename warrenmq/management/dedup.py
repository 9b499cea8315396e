"""Deduplication in the management API and on /metrics (docs/deduplication.md).

A queue or exchange that deduplicates carries a ``deduplication`` object in its API
JSON (its settings, the entries in its cache and the duplicates it dropped); /metrics
has a counter of dropped duplicates and a gauge of cache entries per queue and per
exchange. Read-only: reads ``Queue.dedup`` and ``VirtualHost.dedup`` on request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from warrenmq.broker.vhost import VirtualHost
from warrenmq.exchange import Exchange
from warrenmq.management.edge import ServerView
from warrenmq.queues.queue import Queue


def queue_fields(queue: Queue) -> dict[str, Any]:
    cache = queue.dedup
    return {} if cache is None else {"deduplication": cache.info()}


def exchange_fields(vhost: VirtualHost, exchange: Exchange) -> dict[str, Any]:
    dedup = vhost.dedup
    cache = dedup.exchange_cache(exchange) if dedup is not None else None
    return {} if cache is None else {"deduplication": cache.info()}


def metrics(server: ServerView) -> Iterator[Metric]:
    """Per entity that deduplicates: duplicates dropped (counter), cache entries."""
    queue_dropped = CounterMetricFamily(
        "rabbitmq_queue_messages_deduplicated",
        "Messages a deduplicating queue dropped as duplicates", labels=["vhost", "queue"])
    queue_entries = GaugeMetricFamily(
        "rabbitmq_queue_deduplication_cache_entries",
        "Keys in a queue's deduplication cache", labels=["vhost", "queue"])
    exchange_dropped = CounterMetricFamily(
        "rabbitmq_exchange_messages_deduplicated",
        "Messages a deduplicating exchange dropped before routing",
        labels=["vhost", "exchange"])
    exchange_entries = GaugeMetricFamily(
        "rabbitmq_exchange_deduplication_cache_entries",
        "Keys in an exchange's deduplication cache", labels=["vhost", "exchange"])
    for vhost in server.broker.vhosts.values():
        if vhost.dedup is None:
            continue
        for queue in list(vhost.queues.values()):
            cache = queue.dedup
            if cache is not None:
                queue_dropped.add_metric([vhost.name, queue.name], cache.duplicates)
                queue_entries.add_metric([vhost.name, queue.name], len(cache.entries))
        for exchange in list(vhost.exchanges.values()):
            xcache = vhost.dedup.exchange_cache(exchange)
            if xcache is not None:
                exchange_dropped.add_metric([vhost.name, exchange.name], xcache.duplicates)
                exchange_entries.add_metric([vhost.name, exchange.name], len(xcache.entries))
    yield from (queue_dropped, queue_entries, exchange_dropped, exchange_entries)
