"""Dead-letter queues through the management API: which queues count as DLQs, and the
replay endpoint behind the dashboard's button (``warrenmq dlq replay`` in-process):
messages go back to their origin exchange and routing key, skipped and failed ones stay,
and nothing is lost across a restart."""

from __future__ import annotations

from typing import Any

import aiormq
import pytest

from tests.conftest import BrokerHandle
from tests.helpers import wait_until
from tests.mgmthttp import MANAGEMENT, Http


async def topology(url: str, *, rejected: int) -> None:
    """orders.x -(new)-> orders -(DLX dlx)-> orders.dlq; ``rejected`` messages dead."""
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        await channel.exchange_declare("orders.x", exchange_type="direct", durable=True)
        await channel.exchange_declare("dlx", exchange_type="fanout", durable=True)
        await channel.queue_declare("orders", durable=True, arguments={
            "x-dead-letter-exchange": "dlx"})
        await channel.queue_declare("orders.dlq", durable=True)
        await channel.queue_bind("orders", "orders.x", routing_key="new")
        await channel.queue_bind("orders.dlq", "dlx")
        for i in range(rejected):
            await channel.basic_publish(
                f"order-{i}".encode(), exchange="orders.x", routing_key="new",
                properties=aiormq.spec.Basic.Properties(delivery_mode=2, headers={"i": i}))
        for _ in range(rejected):
            got = await channel.basic_get("orders")
            assert got.delivery_tag is not None
            await channel.basic_reject(got.delivery_tag, requeue=False)
        # one message that never died: replay must leave it alone
        await channel.basic_publish(b"stray", routing_key="orders.dlq")
    finally:
        await connection.close()


@pytest.fixture
async def mgmt(broker_factory: Any) -> tuple[BrokerHandle, Http]:
    handle: BrokerHandle = await broker_factory(top=MANAGEMENT)
    return handle, Http(handle.server.management_port or 0)


async def test_dead_letter_queues_are_found(mgmt: tuple[BrokerHandle, Http]) -> None:
    broker, http = mgmt
    await topology(broker.url, rejected=3)
    connection = await aiormq.connect(broker.url)
    try:
        channel = await connection.channel()
        await channel.queue_declare("by.key")
        await channel.queue_declare("jobs", arguments={
            "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "by.key"})
        await channel.queue_declare("named-dlq")
        await channel.queue_declare("plain")
    finally:
        await connection.close()
    found = {d["name"]: d for d in await http.json("/api/warrenmq/dead-letter-queues")}
    assert set(found) == {"orders.dlq", "by.key", "named-dlq"}
    assert found["orders.dlq"] == {"vhost": "/", "name": "orders.dlq", "sources": ["orders"],
                                   "messages": 4, "messages_ready": 4}
    assert found["by.key"]["sources"] == ["jobs"]
    assert found["named-dlq"]["sources"] == []


async def test_replay_moves_messages_back_and_survives_a_restart(
        broker_factory: Any) -> None:
    broker: BrokerHandle = await broker_factory(top=MANAGEMENT)
    http = Http(broker.server.management_port or 0)
    await topology(broker.url, rejected=5)
    dlq = broker.vhost().queues["orders.dlq"]
    assert dlq.message_count == 6
    reply = await http.request("POST", "/api/queues/%2F/orders.dlq/replay", body={})
    assert reply.status == 200, reply
    assert reply.json == {"replayed": 5, "skipped": 1, "failed": 0, "errors": []}
    orders = broker.vhost().queues["orders"]
    assert (orders.message_count, dlq.message_count, dlq.unacked) == (5, 1, 0)

    connection = await aiormq.connect(broker.url)
    try:
        channel = await connection.channel()
        got = await channel.basic_get("orders", no_ack=True)
        assert got.body == b"order-0"
        headers = got.header.properties.headers or {}
        assert headers["i"] == 0 and "x-death" in headers  # the history travels along
        assert got.header.properties.delivery_mode == 2
        stray = await channel.basic_get("orders.dlq", no_ack=True)
        assert stray.body == b"stray"
        await channel.basic_publish(b"stray", routing_key="orders.dlq")  # put it back
    finally:
        await connection.close()
    await wait_until(lambda: dlq.message_count == 1)

    await broker.server.close()
    again: BrokerHandle = await broker_factory(top=MANAGEMENT)
    restored = again.vhost().queues
    assert restored["orders"].message_count == 4  # persistent and replayed: kept
    assert restored["orders.dlq"].message_count == 0  # the stray was transient


async def test_failed_replays_leave_messages_in_the_dlq(mgmt: tuple[BrokerHandle, Http]) -> None:
    broker, http = mgmt
    await topology(broker.url, rejected=3)
    connection = await aiormq.connect(broker.url)
    try:
        channel = await connection.channel()
        await channel.queue_unbind("orders", "orders.x", routing_key="new")  # nowhere to go now
    finally:
        await connection.close()
    reply = await http.request("POST", "/api/queues/%2F/orders.dlq/replay",
                               body={"count": 10})
    assert reply.status == 200, reply
    assert (reply.json["replayed"], reply.json["skipped"], reply.json["failed"]) == (0, 1, 3)
    assert reply.json["errors"][0] == "unroutable: exchange 'orders.x' routing key 'new'"
    dlq = broker.vhost().queues["orders.dlq"]
    assert (dlq.message_count, dlq.unacked) == (4, 0)  # all still there, none held
    missing = await http.request("POST", "/api/queues/%2F/nope/replay", body={})
    assert missing.status == 404
    bad = await http.request("POST", "/api/queues/%2F/orders.dlq/replay", body={"count": "x"})
    assert bad.status == 400
