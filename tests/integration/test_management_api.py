"""The management HTTP API over real TCP: RabbitMQ's JSON shapes and numbers after real
AMQP traffic (aio-pika, aiormq), the error answers (404/400/401/405 as JSON, never a
traceback), tag-based visibility, and the actions: delete queue/connection, get with
each ackmode, purge, declare queue/exchange, ``columns``/``sort``."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import aio_pika
import aiormq
import pytest

from tests.conftest import BrokerHandle
from tests.helpers import TIMEOUT, wait_until
from tests.mgmthttp import MANAGEMENT, Http
from warrenmq.broker.broker import Broker, User
from warrenmq.config import UserConfig, VhostConfig
from warrenmq.management.auth import HttpError, authenticate


@pytest.fixture
async def mgmt(broker_factory: Any) -> tuple[BrokerHandle, Http]:
    handle: BrokerHandle = await broker_factory(top=MANAGEMENT)
    assert handle.server.management_port
    return handle, Http(handle.server.management_port)


async def publish(url: str, queue: str, count: int, **declare: Any) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(queue, **declare)
        for i in range(count):
            await channel.default_exchange.publish(
                aio_pika.Message(f"m{i}".encode(), headers={"n": i}), routing_key=queue)


async def consume_and_hold(url: str, queue: str, count: int
                           ) -> tuple[aio_pika.abc.AbstractConnection,
                                      list[aio_pika.abc.AbstractIncomingMessage]]:
    """Consume exactly ``count`` messages (prefetch ``count``), cancel, keep them unacked."""
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=count)
    q = await channel.declare_queue(queue, passive=True)
    got: list[aio_pika.abc.AbstractIncomingMessage] = []
    done = asyncio.Event()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        got.append(message)
        if len(got) == count:
            done.set()

    tag = await q.consume(on_message)
    await asyncio.wait_for(done.wait(), TIMEOUT)
    await q.cancel(tag)
    return connection, got


async def ignore(message: Any) -> None:
    """A consumer callback that leaves the message unacked."""


def queue_item(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [q for q in items if q["name"] == name]
    assert len(found) == 1, items
    return found[0]


async def test_publish_100_consume_40_in_the_api(mgmt: tuple[BrokerHandle, Http]) -> None:
    broker, http = mgmt
    await publish(broker.url, "orders", 100)
    connection, held = await consume_and_hold(broker.url, "orders", 50)
    async with connection:
        for message in held[:40]:
            await message.ack()
        queue = broker.vhost().queues["orders"]
        await wait_until(lambda: queue.acked == 40)
        item = queue_item(await http.json("/api/queues"), "orders")
        assert item["messages_ready"] == 50
        assert item["messages_unacknowledged"] == 10
        assert item["messages"] == 60
        stats = item["message_stats"]
        assert (stats["publish"], stats["deliver_get"], stats["ack"]) == (100, 50, 40)
        assert stats["redeliver"] == 0
        channels = await http.json("/api/channels")
        assert [c["messages_unacknowledged"] for c in channels if c["consumer_count"] == 0
                and c["messages_unacknowledged"]] == [10]
    # the connection closed: its 10 unacked messages are back, ready and redelivered
    await wait_until(lambda: queue.unacked == 0)
    item = await http.json("/api/queues/%2F/orders")
    assert (item["messages_ready"], item["messages_unacknowledged"]) == (60, 0)
    assert item["message_stats"]["redeliver"] == 10
    overview = await http.json("/api/overview")
    assert overview["queue_totals"]["messages_ready"] == 60
    assert overview["message_stats"]["publish"] == 100
    assert overview["message_stats"]["ack"] == 40


QUEUE_FIELDS = {"name", "vhost", "durable", "auto_delete", "exclusive", "arguments", "node",
                "state", "policy", "consumers", "consumer_utilisation", "messages",
                "messages_ready", "messages_unacknowledged", "messages_details",
                "messages_ready_details", "messages_unacknowledged_details", "message_stats",
                "type", "head_message_timestamp"}
STATS_FIELDS = {"publish", "publish_details", "deliver_get", "deliver_get_details", "ack",
                "ack_details", "redeliver", "redeliver_details", "get", "deliver"}


async def test_json_field_names_are_rabbitmqs(mgmt: tuple[BrokerHandle, Http]) -> None:
    broker, http = mgmt
    connection = await aio_pika.connect(broker.url, client_properties={"connection_name": "t"})
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=7)
        exchange = await channel.declare_exchange("fields.x", "topic", durable=True)
        queue = await channel.declare_queue("fields.q", arguments={"x-max-length": 5})
        await queue.bind(exchange, "a.#")
        await queue.consume(ignore, consumer_tag="ctag-fields")

        q = queue_item(await http.json("/api/queues/%2F"), "fields.q")
        assert QUEUE_FIELDS <= set(q), QUEUE_FIELDS - set(q)
        assert STATS_FIELDS <= set(q["message_stats"])
        assert set(q["message_stats"]["publish_details"]) == {"rate"}
        assert q["arguments"] == {"x-max-length": 5}
        assert (q["durable"], q["exclusive"], q["auto_delete"], q["consumers"]) == (
            False, False, False, 1)

        x = await http.json("/api/exchanges/%2F/fields.x")
        assert {k: x[k] for k in ("name", "vhost", "type", "durable", "auto_delete",
                                  "internal", "arguments")} == {
            "name": "fields.x", "vhost": "/", "type": "topic", "durable": True,
            "auto_delete": False, "internal": False, "arguments": {}}
        default = await http.json("/api/exchanges/%2F/amq.default")
        assert default["name"] == "" and default["type"] == "direct"

        bindings = await http.json("/api/bindings/%2F")
        assert {"source": "fields.x", "vhost": "/", "destination": "fields.q",
                "destination_type": "queue", "routing_key": "a.#", "arguments": {},
                "properties_key": "a.%23"} in bindings
        assert any(b["source"] == "" and b["destination"] == "fields.q" for b in bindings)

        [conn] = await http.json("/api/connections")
        assert {"name", "user", "vhost", "channels", "peer_host", "peer_port", "host", "port",
                "state", "protocol", "client_properties", "connected_at", "node",
                "frame_max", "channel_max", "timeout"} <= set(conn)
        assert (conn["user"], conn["vhost"], conn["channels"], conn["state"]) == (
            "guest", "/", 1, "running")
        assert conn["client_properties"]["connection_name"] == "t"
        assert conn["name"] == f"{conn['peer_host']}:{conn['peer_port']} -> 127.0.0.1:{broker.port}"

        [ch] = await http.json("/api/channels")
        assert ch["connection_details"]["name"] == conn["name"]
        assert ch["name"] == conn["name"] + " (1)"
        assert (ch["number"], ch["consumer_count"], ch["prefetch_count"]) == (1, 1, 7)
        assert {"messages_unacknowledged", "confirm", "state", "user", "vhost"} <= set(ch)

        [consumer] = await http.json("/api/consumers")
        assert consumer["consumer_tag"] == "ctag-fields"
        assert consumer["queue"] == {"name": "fields.q", "vhost": "/"}
        assert consumer["channel_details"]["connection_name"] == conn["name"]
        assert (consumer["ack_required"], consumer["prefetch_count"]) == (True, 7)

        overview = await http.json("/api/overview")
        assert {"management_version", "rabbitmq_version", "cluster_name", "node",
                "message_stats", "queue_totals", "object_totals", "listeners",
                "exchange_types"} <= set(overview)
        assert overview["object_totals"] == {"connections": 1, "channels": 1,
                                             "exchanges": 7, "queues": 1, "consumers": 1}
        ports = {(item["protocol"], item["port"]) for item in overview["listeners"]}
        assert ("amqp", broker.port) in ports
        assert ("http", broker.server.management_port) in ports
        assert await http.json("/api/whoami") == {"name": "guest", "tags": ["administrator"]}
        [vhost] = await http.json("/api/vhosts")
        assert vhost["name"] == "/"


async def test_columns_and_sort(mgmt: tuple[BrokerHandle, Http]) -> None:
    broker, http = mgmt
    for name, count in (("b", 2), ("a", 1), ("c", 3)):
        await publish(broker.url, name, count)
    items = await http.json("/api/queues?columns=name,messages&sort=messages&sort_reverse=true")
    assert items == [{"name": "c", "messages": 3}, {"name": "b", "messages": 2},
                     {"name": "a", "messages": 1}]
    items = await http.json("/api/queues/%2F?sort=name&columns=name,message_stats.publish")
    assert items == [{"name": n, "message_stats": {"publish": c}}
                     for n, c in (("a", 1), ("b", 2), ("c", 3))]


async def test_errors_are_json_never_tracebacks(mgmt: tuple[BrokerHandle, Http]) -> None:
    broker, http = mgmt
    await publish(broker.url, "err.q", 1)
    cases = [
        (await http.get("/api/nothing-here"), 404, "Object Not Found"),
        (await http.get("/api/queues/%2F/missing"), 404, "Object Not Found"),
        (await http.get("/api/queues/no-such-vhost"), 404, "Object Not Found"),
        (await http.request("PUT", "/api/queues/%2F/new", raw="{not json"), 400, "bad_request"),
        (await http.request("POST", "/api/queues/%2F/err.q/get", raw="[1,"), 400,
         "bad_request"),
        (await http.request("POST", "/api/queues/%2F/err.q/get", raw=b'{"count": "\xff"}'),
         400, "bad_request"),
        (await http.request("POST", "/api/queues/%2F/err.q/get",
                            body={"count": 1, "ackmode": "nope"}), 400, "bad_request"),
        (await http.request("POST", "/api/queues/%2F/err.q/get",
                            body={"count": -1, "ackmode": "ack_requeue_true"}), 400,
         "bad_request"),
        (await http.request("PUT", "/api/queues/%2F/err.q",
                            body={"arguments": {"x-max-length": 3}}), 400, "bad_request"),
        (await http.request("PUT", "/api/queues/%2F/amq.reserved", body={}), 401,
         "not_authorised"),
        (await http.request("POST", "/api/overview", body={}), 405, "method_not_allowed"),
        (await http.as_user("guest", "wrong").get("/api/queues"), 401, "not_authorized"),
        (await http.as_user("nobody", "x").get("/api/queues"), 401, "not_authorized"),
        (await http.get("/api/queues", headers={"Authorization": "Bearer abc"}), 401,
         "not_authorized"),
        (await http.get("/api/queues", headers={"Authorization": "Basic !!!"}), 400,
         "bad_request"),
    ]
    for reply, status, error in cases:
        assert reply.status == status, reply
        assert reply.headers["Content-Type"].startswith("application/json"), reply
        assert reply.json["error"] == error, reply
        assert "Traceback" not in reply.text
    for reply, _status, _ in cases:
        if reply.json["error"] == "not_authorized":  # RabbitMQ 3.10.8's words
            assert reply.headers["WWW-Authenticate"] == 'Basic realm="RabbitMQ Management"'
            assert reply.json["reason"] == "Login failed"
    bare = await http.as_user(None).get("/api/overview")  # no credentials: the challenge only
    assert (bare.status, bare.text) == (401, "")
    assert bare.headers["WWW-Authenticate"] == 'Basic realm="RabbitMQ Management"'
    assert "PRECONDITION_FAILED" in cases[8][0].json["reason"]
    assert broker.vhost().queues["err.q"].message_count == 1  # nothing lost


async def test_tags_decide_what_a_user_sees(broker_factory: Any) -> None:
    users = (
        UserConfig("guest", password="guest", tags=("administrator",)),
        UserConfig("mon", password="m", tags=("monitoring",)),
        UserConfig("mgr", password="g", tags=("management",)),
        UserConfig("app", password="a"),
    )
    broker: BrokerHandle = await broker_factory(top={
        **MANAGEMENT, "users": users, "vhosts": (VhostConfig("/"), VhostConfig("other"))})
    broker.server.broker.clear_permission("mgr", "other")
    http = Http(broker.server.management_port or 0)
    await publish(broker.url, "in.default", 1)
    other = await aiormq.connect(f"amqp://guest:guest@127.0.0.1:{broker.port}/other")
    mine = await aiormq.connect(f"amqp://mgr:g@127.0.0.1:{broker.port}/")
    try:
        channel = await other.channel()
        await channel.queue_declare("in.other")
        mon, mgr, app = http.as_user("mon", "m"), http.as_user("mgr", "g"), http.as_user("app", "a")

        assert {q["name"] for q in await mon.json("/api/queues")} == {"in.default", "in.other"}
        assert {q["name"] for q in await mgr.json("/api/queues")} == {"in.default"}
        denied = await mgr.get("/api/queues/other")
        assert (denied.status, denied.json["reason"]) == (
            401, "User not authorised to access virtual host")
        reply = await app.get("/api/overview")
        assert (reply.status, reply.json["reason"]) == (401, "Not management user")
        for user in (mon, mgr):
            reply = await user.get("/api/definitions")
            assert (reply.status, reply.json["reason"]) == (401, "Not administrator user")

        assert len(await mon.json("/api/connections")) == 2
        [own] = await mgr.json("/api/connections")
        assert own["user"] == "mgr"
        guest_conn = next(c for c in await mon.json("/api/connections") if c["user"] == "guest")
        path = "/api/connections/" + guest_conn["name"].replace(" ", "%20")
        assert (await mgr.get(path)).status == 401
        assert (await mon.request("DELETE", path)).status == 401  # monitoring reads only
        assert not other.is_closed
        assert (await mgr.request("DELETE", "/api/connections/"
                                  + own["name"].replace(" ", "%20"))).status == 204
        with pytest.raises(aiormq.exceptions.ConnectionClosed):
            await asyncio.wait_for(mine.closing, TIMEOUT)
    finally:
        await other.close()
        if not mine.is_closed:
            await mine.close()


def test_loopback_only_users_are_refused_from_elsewhere() -> None:
    broker = Broker(users=[User("guest", password="guest", tags=("administrator",),
                                loopback_only=True)])
    header = "Basic " + base64.b64encode(b"guest:guest").decode()
    assert authenticate(broker, header, loopback=True).admin
    with pytest.raises(HttpError) as info:
        authenticate(broker, header, loopback=False)
    assert (info.value.status, info.value.reason) == (401, "User can only log in via localhost")


async def test_delete_queue_cancels_its_consumers(mgmt: tuple[BrokerHandle, Http]) -> None:
    broker, http = mgmt
    await publish(broker.url, "doomed", 2, durable=True)
    connection = await aiormq.connect(broker.url)
    try:
        channel = await connection.channel()
        await channel.basic_qos(prefetch_count=1)
        await channel.basic_consume("doomed", ignore)  # holds one, one stays ready
        queue = broker.vhost().queues["doomed"]
        await wait_until(lambda: queue.unacked == 1)
        refused = await http.request("DELETE", "/api/queues/%2F/doomed?if-unused=true")
        assert refused.status == 400 and "in use" in refused.json["reason"]
        refused = await http.request("DELETE", "/api/queues/%2F/doomed?if-empty=true")
        assert refused.status == 400 and "not empty" in refused.json["reason"]
        reply = await http.request("DELETE", "/api/queues/%2F/doomed")
        assert reply.status == 204
        assert "doomed" not in broker.vhost().queues
        assert (await http.get("/api/queues/%2F/doomed")).status == 404
        # the consumer got basic.cancel (consumer_cancel_notify); the channel stays open
        await wait_until(lambda: not channel.consumers)
        ok = await channel.queue_declare("after")
        assert ok.queue == "after"
        saved = broker.server._saved_definitions or {}
        assert [q["name"] for q in saved.get("queues", [])] == []  # the durable one is gone
    finally:
        await connection.close()


async def test_delete_connection_closes_it_with_320(mgmt: tuple[BrokerHandle, Http]) -> None:
    broker, http = mgmt
    connection = await aiormq.connect(broker.url)
    [item] = await http.json("/api/connections")
    reply = await http.request("DELETE", "/api/connections/" + item["name"].replace(" ", "%20"),
                               headers={"X-Reason": "maintenance"})
    assert reply.status == 204
    with pytest.raises(aiormq.exceptions.ConnectionClosed) as info:
        await asyncio.wait_for(connection.closing, TIMEOUT)
    assert info.value.args[0] == 320
    assert "maintenance" in str(info.value.args[1])
    await wait_until(lambda: not broker.server.connections)
    assert await http.json("/api/connections") == []
    missing = await http.request("DELETE", "/api/connections/nope")
    assert missing.status == 404


async def get_messages(http: Http, queue: str, **body: Any) -> list[dict[str, Any]]:
    reply = await http.request("POST", f"/api/queues/%2F/{queue}/get",
                               body={"encoding": "auto", **body})
    assert reply.status == 200, reply
    result: list[dict[str, Any]] = reply.json
    return result


async def test_get_peeks_with_requeue_and_settles_by_ackmode(
        mgmt: tuple[BrokerHandle, Http]) -> None:
    broker, http = mgmt
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue("peek.dlq")
        await channel.declare_queue("peek", arguments={
            "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "peek.dlq"})
        for i in range(4):
            await channel.default_exchange.publish(aio_pika.Message(
                f"body-{i}".encode(), headers={"i": i}, content_type="text/plain",
                delivery_mode=2), routing_key="peek")
        await channel.default_exchange.publish(aio_pika.Message(b"\xff\xfe\x00"),
                                               routing_key="peek")
    queue = broker.vhost().queues["peek"]

    first = await get_messages(http, "peek", count=2, ackmode="ack_requeue_true")
    assert [m["payload"] for m in first] == ["body-0", "body-1"]
    assert [m["message_count"] for m in first] == [4, 3]
    assert first[0]["redelivered"] is False
    assert first[0]["properties"]["headers"] == {"i": 0}
    assert first[0]["properties"]["content_type"] == "text/plain"
    assert first[0]["properties"]["delivery_mode"] == 2
    assert (first[0]["exchange"], first[0]["routing_key"], first[0]["payload_bytes"]) == (
        "", "peek", 6)
    assert first[0]["payload_encoding"] == "string"
    assert (queue.message_count, queue.unacked) == (5, 0)  # requeued, in place

    again = await get_messages(http, "peek", count="1", ackmode="reject_requeue_true",
                               truncate=4)
    assert (again[0]["payload"], again[0]["redelivered"]) == ("body", True)
    assert again[0]["payload_bytes"] == 6
    assert queue.message_count == 5

    taken = await get_messages(http, "peek", count=1, ackmode="ack_requeue_false")
    assert taken[0]["payload"] == "body-0"
    assert queue.message_count == 4 and queue.acked == 1

    rejected = await get_messages(http, "peek", count=1, ackmode="reject_requeue_false")
    assert rejected[0]["payload"] == "body-1"
    assert queue.message_count == 3
    assert broker.vhost().queues["peek.dlq"].message_count == 1  # dead-lettered

    rest = await get_messages(http, "peek", count=10, ackmode="ack_requeue_true",
                              encoding="base64")
    assert [base64.b64decode(m["payload"]) for m in rest] == [b"body-2", b"body-3",
                                                               b"\xff\xfe\x00"]
    assert {m["payload_encoding"] for m in rest} == {"base64"}
    binary = await get_messages(http, "peek", count=3, ackmode="ack_requeue_true")
    assert binary[2]["payload_encoding"] == "base64"
    assert base64.b64decode(binary[2]["payload"]) == b"\xff\xfe\x00"
    assert queue.message_count == 3 and queue.unacked == 0


async def test_purge_and_declare(mgmt: tuple[BrokerHandle, Http]) -> None:
    broker, http = mgmt
    created = await http.request("PUT", "/api/queues/%2F/made.here",
                                 body={"durable": "true", "arguments": {"x-max-length": 10}})
    assert created.status == 201
    assert (await http.request("PUT", "/api/queues/%2F/made.here",
                               body={"durable": True, "arguments": {"x-max-length": 10}})
            ).status == 204
    made = await http.request("PUT", "/api/exchanges/%2F/made.x", body={"type": "fanout"})
    assert made.status == 201
    queue = broker.vhost().queues["made.here"]
    assert queue.durable and queue.args.max_length == 10
    connection = await aiormq.connect(broker.url)
    try:
        channel = await connection.channel()
        await channel.queue_bind("made.here", "made.x")
        for i in range(5):
            await channel.basic_publish(f"{i}".encode(), exchange="made.x")
        await wait_until(lambda: queue.message_count == 5)
        reply = await http.request("DELETE", "/api/queues/%2F/made.here/contents")
        assert reply.status == 204
        assert queue.message_count == 0
        ok = await channel.queue_declare("made.here", passive=True)
        assert ok.message_count == 0
        assert (await http.request("DELETE", "/api/exchanges/%2F/made.x")).status == 204
        assert "made.x" not in broker.vhost().exchanges
    finally:
        await connection.close()


async def test_listener_stops_with_the_broker(broker_factory: Any) -> None:
    broker: BrokerHandle = await broker_factory(top=MANAGEMENT)
    port = broker.server.management_port
    assert port is not None
    assert (await Http(port).get("/api/overview")).status == 200
    await broker.server.close()
    with pytest.raises(OSError):
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT)


async def test_disabled_by_config(broker: BrokerHandle) -> None:
    assert broker.server.management_port is None  # tests/conftest turns it off
