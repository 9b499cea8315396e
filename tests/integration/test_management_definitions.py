"""``GET /api/definitions`` exports RabbitMQ's definitions JSON and ``POST`` imports it:
a document exported by one broker re-imports into a fresh one (its own data directory),
which then routes as the first did; an invalid document is refused with 400 and changes
nothing; only administrators may do either."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiormq

from tests.conftest import BrokerHandle, make_config
from tests.helpers import wait_until
from tests.mgmthttp import MANAGEMENT, Http
from warrenmq.app import start


def topology_of(document: dict[str, Any]) -> dict[str, Any]:
    return {key: sorted(document.get(key, []), key=repr)
            for key in ("exchanges", "queues", "bindings")}


async def test_export_reimports_into_a_fresh_broker(broker_factory: Any,
                                                    tmp_path: Path) -> None:
    first: BrokerHandle = await broker_factory(top=MANAGEMENT)
    connection = await aiormq.connect(first.url)
    try:
        channel = await connection.channel()
        await channel.exchange_declare("events", exchange_type="topic", durable=True)
        await channel.queue_declare("audit", durable=True, arguments={
            "x-max-length": 1000, "x-dead-letter-exchange": "events"})
        await channel.queue_declare("scratch")  # transient: RabbitMQ does not export it
        await channel.queue_bind("audit", "events", routing_key="user.*")
    finally:
        await connection.close()
    exported = await Http(first.server.management_port or 0).json("/api/definitions")
    assert {"vhosts", "users", "permissions", "exchanges", "queues", "bindings"} <= set(exported)
    assert [q["name"] for q in exported["queues"]] == ["audit"]
    [queue] = exported["queues"]
    assert queue["vhost"] == "/" and queue["durable"] is True
    assert queue["arguments"] == {"x-max-length": 1000, "x-dead-letter-exchange": "events"}
    assert {"source": "events", "vhost": "/", "destination": "audit",
            "destination_type": "queue", "routing_key": "user.*",
            "arguments": {}} in exported["bindings"]

    second = await start(make_config(tmp_path / "second", MANAGEMENT))
    try:
        http = Http(second.management_port or 0)
        reply = await http.request("POST", "/api/definitions", body=exported)
        assert reply.status in (200, 204), reply
        vhost = second.broker.vhosts["/"]
        assert vhost.queues["audit"].args.max_length == 1000
        assert topology_of(await http.json("/api/definitions")) == topology_of(exported)
        url = f"amqp://guest:guest@127.0.0.1:{second.ports[0]}/"
        connection = await aiormq.connect(url)
        try:
            channel = await connection.channel()
            await channel.basic_publish(b"signed up", exchange="events",
                                        routing_key="user.new")
        finally:
            await connection.close()
        await wait_until(lambda: vhost.queues["audit"].message_count == 1)
    finally:
        await second.close(grace=2.0)


async def test_import_refuses_bad_documents_and_non_admins(broker_factory: Any) -> None:
    broker: BrokerHandle = await broker_factory(top=MANAGEMENT)
    http = Http(broker.server.management_port or 0)
    before = await http.json("/api/definitions")
    for raw in ("{oops", "[1, 2]", '{"queues": "not a list"}',
                '{"queues": [{"name": "q", "vhost": "/", "durable": "maybe"}]}'):
        reply = await http.request("POST", "/api/definitions", raw=raw)
        assert reply.status == 400, (raw, reply)
        assert reply.json["error"] == "bad_request"
    assert await http.json("/api/definitions") == before
    assert "q" not in broker.vhost().queues
    no_creds = await http.as_user(None).request("POST", "/api/definitions", body={})
    assert no_creds.status == 401
