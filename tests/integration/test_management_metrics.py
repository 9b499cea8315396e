"""Prometheus ``/metrics`` on the management listener after real AMQP traffic: the
per-queue families (depth, counters, consumers, oldest-message age, consumer
utilisation) and the broker ones (connections, channels, global counters that survive
a queue's deletion, RSS, data-dir bytes, alarms), parsed with prometheus_client's own
parser. No authentication, as rabbitmq_prometheus."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aio_pika
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import BrokerHandle
from tests.helpers import wait_until
from tests.integration.test_management_api import consume_and_hold, ignore, publish
from tests.mgmthttp import MANAGEMENT, Http

QUEUE = {"vhost": "/", "queue": "metered"}


@pytest.fixture
async def mgmt(broker_factory: Any) -> tuple[BrokerHandle, Http]:
    handle: BrokerHandle = await broker_factory(top=MANAGEMENT)
    return handle, Http(handle.server.management_port or 0, user=None)


async def scrape(http: Http) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = await http.get("/metrics")
    assert reply.status == 200, reply
    assert reply.headers["Content-Type"].startswith("text/plain; version=")
    out = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          labels: dict[str, str] | None = None) -> float | None:
    return samples.get((name, tuple(sorted((labels or {}).items()))))


async def test_publish_100_consume_40(mgmt: tuple[BrokerHandle, Http]) -> None:
    broker, http = mgmt
    await publish(broker.url, "metered", 100)
    connection, held = await consume_and_hold(broker.url, "metered", 40)
    async with connection:
        for message in held:
            await message.ack()
        queue = broker.vhost().queues["metered"]
        await wait_until(lambda: queue.acked == 40)
        samples = await scrape(http)
        expected = {
            "rabbitmq_queue_messages_ready": 60,
            "rabbitmq_queue_messages_unacked": 0,
            "rabbitmq_queue_messages": 60,
            "rabbitmq_queue_consumers": 0,
            "rabbitmq_queue_messages_published_total": 100,
            "rabbitmq_queue_messages_delivered_total": 40,
            "rabbitmq_queue_messages_acked_total": 40,
            "rabbitmq_queue_messages_redelivered_total": 0,
            "rabbitmq_queue_messages_dead_lettered_total": 0,
        }
        assert {name: value(samples, name, QUEUE) for name in expected} == expected
        assert value(samples, "rabbitmq_queue_messages_ready_bytes", QUEUE) == sum(
            len(f"m{i}") for i in range(40, 100))
        assert value(samples, "rabbitmq_connections") == 1
        assert value(samples, "rabbitmq_channels") == 1
        assert value(samples, "rabbitmq_queues") == 1
        assert value(samples, "rabbitmq_global_messages_received_total") == 100
        assert value(samples, "rabbitmq_global_messages_delivered_total") == 40
        assert value(samples, "rabbitmq_global_messages_acknowledged_total") == 40
        rss = value(samples, "rabbitmq_process_resident_memory_bytes")
        assert rss is not None and rss > 10_000_000  # a Python process with aiohttp loaded
        assert value(samples, "rabbitmq_alarms_memory_used_watermark") == 0
        assert value(samples, "rabbitmq_alarms_free_disk_space_watermark") == 0
        assert value(samples, "rabbitmq_identity_info", {
            "rabbitmq_node": broker.server.cluster_name,
            "rabbitmq_cluster": broker.server.cluster_name}) == 1


async def test_oldest_ready_message_age(mgmt: tuple[BrokerHandle, Http]) -> None:
    broker, http = mgmt
    await publish(broker.url, "aging", 0)
    labels = {"vhost": "/", "queue": "aging"}
    samples = await scrape(http)
    assert value(samples, "rabbitmq_queue_head_message_age_seconds", labels) == 0
    assert value(samples, "rabbitmq_queue_head_message_timestamp", labels) is None
    before = time.time()
    await publish(broker.url, "aging", 3)
    after = time.time()
    samples = await scrape(http)
    stamp = value(samples, "rabbitmq_queue_head_message_timestamp", labels)
    # the enqueue time is the timer tick's clock: 20 ms steps, so allow a second's slack
    assert stamp is not None and before - 1.0 <= stamp <= after + 1.0
    age = value(samples, "rabbitmq_queue_head_message_age_seconds", labels)
    assert age is not None and 0 <= age <= time.time() - before + 1.0
    # the age keeps growing while the message waits (bounded wait, not a timing claim)
    async def older() -> bool:
        later = await scrape(http)
        grown = value(later, "rabbitmq_queue_head_message_age_seconds", labels)
        return grown is not None and grown > (age or 0)
    for _ in range(50):
        if await older():
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the head message's age did not grow")
    item = await Http(broker.server.management_port or 0).json("/api/queues/%2F/aging")
    assert item["head_message_timestamp"] == int(stamp)


async def test_consumer_utilisation(mgmt: tuple[BrokerHandle, Http]) -> None:
    broker, http = mgmt
    await publish(broker.url, "stuck", 5)
    await publish(broker.url, "keeping.up", 0)
    connection = await aio_pika.connect(broker.url)
    async with connection:
        slow = await connection.channel()
        await slow.set_qos(prefetch_count=1)  # takes one and never acks it
        await (await slow.declare_queue("stuck", passive=True)).consume(ignore)
        fast = await connection.channel()
        await (await fast.declare_queue("keeping.up", passive=True)).consume(
            ignore, no_ack=True)
        stuck = {"vhost": "/", "queue": "stuck"}
        keeping = {"vhost": "/", "queue": "keeping.up"}

        shares: dict[str, float | None] = {}

        async def settled() -> bool:
            samples = await scrape(http)
            shares["stuck"] = value(samples, "rabbitmq_queue_consumer_utilisation", stuck)
            shares["keeping"] = value(samples, "rabbitmq_queue_consumer_utilisation", keeping)
            return shares["stuck"] is not None and shares["stuck"] < 0.5
        for _ in range(100):
            if await settled():
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"utilisation of a stuck consumer stayed high: {shares}")
        assert shares["keeping"] == 1.0  # never had a message it could not take
    samples = await scrape(http)  # consumers gone: RabbitMQ reports no utilisation then
    assert value(samples, "rabbitmq_queue_consumer_utilisation", stuck) is None


async def test_broker_totals_survive_queue_deletion(mgmt: tuple[BrokerHandle, Http]) -> None:
    broker, http = mgmt
    await publish(broker.url, "short.lived", 3)
    admin = Http(broker.server.management_port or 0)
    got = await admin.request("POST", "/api/queues/%2F/short.lived/get",
                              body={"count": 2, "ackmode": "ack_requeue_false"})
    assert got.status == 200
    assert (await admin.request("DELETE", "/api/queues/%2F/short.lived")).status == 204
    samples = await scrape(http)
    assert value(samples, "rabbitmq_queue_messages_ready", {"vhost": "/",
                                                            "queue": "short.lived"}) is None
    assert value(samples, "rabbitmq_global_messages_received_total") == 3
    assert value(samples, "rabbitmq_global_messages_delivered_total") == 2
    assert value(samples, "rabbitmq_global_messages_acknowledged_total") == 2
    assert value(samples, "rabbitmq_queues") == 0


async def test_disk_bytes_and_memory_alarm(broker_factory: Any) -> None:
    broker: BrokerHandle = await broker_factory(top={**MANAGEMENT,
                                                     "memory_high_watermark_bytes": 10_000})
    http = Http(broker.server.management_port or 0, user=None)
    samples = await scrape(http)
    empty = value(samples, "rabbitmq_data_dir_bytes")
    assert empty is not None
    assert value(samples, "rabbitmq_io_sync_ops_total") == 0
    free = value(samples, "rabbitmq_disk_space_available_bytes")
    assert free is not None and free > 0
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue("heavy", durable=True)
        await channel.default_exchange.publish(
            aio_pika.Message(b"x" * 20_000, delivery_mode=2), routing_key="heavy")
        await wait_until(lambda: broker.server.memory_alarm)
        samples = await scrape(http)
        assert value(samples, "rabbitmq_alarms_memory_used_watermark") == 1
        assert value(samples, "rabbitmq_queue_messages_ready_bytes_total") == 20_000
        grown = value(samples, "rabbitmq_data_dir_bytes")
        assert grown is not None and grown >= empty + 20_000  # the persistent body is on disk
        syncs = value(samples, "rabbitmq_io_sync_ops_total")
        assert syncs is not None and syncs >= 1  # the group commit that wrote it
        # the publisher's socket is no longer read while the alarm is on: purge over HTTP
        admin = Http(broker.server.management_port or 0)
        assert (await admin.request("DELETE", "/api/queues/%2F/heavy/contents")).status == 204
        await wait_until(lambda: not broker.server.memory_alarm)
    samples = await scrape(http)
    assert value(samples, "rabbitmq_alarms_memory_used_watermark") == 0


async def test_stream_only_commits_count_as_syncs(mgmt: tuple[BrokerHandle, Http]) -> None:
    """A commit that wrote only stream records still cost an fdatasync: counted."""
    _broker, http = mgmt
    before = value(await scrape(http), "rabbitmq_io_sync_ops_total")
    assert before == 0
    connection = await aio_pika.connect(_broker.url)
    async with connection:
        channel = await connection.channel()  # publisher confirms on: waits for the sync
        await channel.declare_queue("log", durable=True,
                                    arguments={"x-queue-type": "stream"})
        for n in range(3):
            await channel.default_exchange.publish(aio_pika.Message(b"%d" % n),
                                                   routing_key="log")
    after = value(await scrape(http), "rabbitmq_io_sync_ops_total")
    assert after is not None and after >= 3  # each confirmed publish waited for its own
