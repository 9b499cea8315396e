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
    assert reply.json == {"replayed": 5, "skipped": 1, "failed": 0, "errors": [],
                          "targets": {"//orders": 5}, "routes": {"//orders": 5},
                          "warnings": [], "dry_run": False}
    orders = broker.vhost().queues["orders"]
    assert (orders.message_count, dlq.message_count, dlq.unacked) == (5, 1, 0)

    connection = await aiormq.connect(broker.url)
    try:
        channel = await connection.channel()
        got = await channel.basic_get("orders", no_ack=True)
        assert got.body == b"order-0"
        headers = got.header.properties.headers or {}
        assert headers["i"] == 0 and "x-death" in headers  # the history travels along
        assert headers["x-replay-count"] == 1
        assert headers["x-replayed-from"] == "orders.dlq"
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
                               body={"count": 10, "target": "exchange"})
    assert reply.status == 200, reply
    assert (reply.json["replayed"], reply.json["skipped"], reply.json["failed"]) == (0, 1, 3)
    assert reply.json["errors"][0] == "unroutable: exchange 'orders.x' routing key 'new'"
    dlq = broker.vhost().queues["orders.dlq"]
    assert (dlq.message_count, dlq.unacked) == (4, 0)  # all still there, none held
    missing = await http.request("POST", "/api/queues/%2F/nope/replay", body={})
    assert missing.status == 404
    for body in ({"count": "x"}, {"target": "elsewhere"}, {"older_than": "1h"},
                 {"reason": "bored"}, {"dry_run": 1}, {"routing_key": "x"}):
        bad = await http.request("POST", "/api/queues/%2F/orders.dlq/replay", body=body)
        assert bad.status == 400, (body, bad)


async def fanout_topology(url: str, *, rejected: int) -> None:
    """events (fanout) -> billing (DLX dlx) and audit; dlx (fanout) -> billing.dlq.
    ``rejected`` messages die in billing; audit keeps its copies."""
    connection = await aiormq.connect(url)
    try:
        channel = await connection.channel()
        await channel.exchange_declare("events", exchange_type="fanout")
        await channel.exchange_declare("dlx", exchange_type="fanout")
        await channel.queue_declare("billing", arguments={"x-dead-letter-exchange": "dlx"})
        await channel.queue_declare("audit")
        await channel.queue_declare("billing.dlq")
        await channel.queue_bind("billing", "events")
        await channel.queue_bind("audit", "events")
        await channel.queue_bind("billing.dlq", "dlx")
        for i in range(rejected):
            await channel.basic_publish(f"event-{i}".encode(), exchange="events",
                                        properties=aiormq.spec.Basic.Properties(
                                            message_id=f"m{i}"))
        for _ in range(rejected):
            got = await channel.basic_get("billing")
            assert got.delivery_tag is not None
            await channel.basic_reject(got.delivery_tag, requeue=False)
    finally:
        await connection.close()


async def test_replay_of_a_fanout_goes_only_to_the_queue_that_failed(
        mgmt: tuple[BrokerHandle, Http]) -> None:
    broker, http = mgmt
    await fanout_topology(broker.url, rejected=5)
    queues = broker.vhost().queues
    assert (queues["billing.dlq"].message_count, queues["audit"].message_count) == (5, 5)
    path = "/api/queues/%2F/billing.dlq/replay"

    dry = await http.request("POST", path, body={"dry_run": True})
    assert dry.status == 200, dry
    assert dry.json["dry_run"] is True and dry.json["replayed"] == 5
    assert dry.json["targets"] == {"//billing": 5} and dry.json["warnings"] == []
    assert queues["billing.dlq"].message_count == 5  # a dry run takes nothing

    rerouted = await http.request("POST", path, body={"dry_run": True, "target": "exchange"})
    assert rerouted.json["targets"] == {"//events": 5}
    assert rerouted.json["routes"] == {"//billing": 5, "//audit": 5}
    warning = rerouted.json["warnings"][0]
    assert "exchange 'events' (fanout)" in warning and "audit" in warning

    done = await http.request("POST", path, body={})
    assert done.json["replayed"] == 5 and done.json["targets"] == {"//billing": 5}
    assert (queues["billing"].message_count, queues["audit"].message_count,
            queues["billing.dlq"].message_count) == (5, 5, 0)  # audit: still 5, not 10


async def test_replay_filters(mgmt: tuple[BrokerHandle, Http]) -> None:
    broker, http = mgmt
    await fanout_topology(broker.url, rejected=4)
    queues = broker.vhost().queues
    path = "/api/queues/%2F/billing.dlq/replay"
    one = await http.request("POST", path, body={"message_id": "m2"})
    assert (one.json["replayed"], one.json["skipped"]) == (1, 3)
    assert queues["billing"].message_count == 1 and queues["billing.dlq"].message_count == 3
    for body in ({"from_queue": "audit"}, {"reason": "expired"}, {"older_than": 3600}):
        none = await http.request("POST", path, body={**body, "dry_run": True})
        assert (none.json["replayed"], none.json["skipped"]) == (0, 3), body
    matched = await http.request("POST", path, body={"from_queue": "billing",
                                                      "reason": "rejected",
                                                      "older_than": 0, "count": 2})
    assert (matched.json["replayed"], matched.json["skipped"]) == (2, 0)
    assert queues["billing"].message_count == 3 and queues["billing.dlq"].message_count == 1
