"""The management API's entity endpoints over real TCP, with the status codes and bodies a
RabbitMQ 3.10.8 node answers (checked by hand against a private node; the rabbitmqadmin
test drives the same calls with RabbitMQ's own client): users, vhosts, permissions,
policies, nodes, health checks, aliveness, bindings, publish and pagination. Every
change is in ``definitions.json`` of the data directory when the answer arrives, and
comes back after a restart."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from tests.conftest import BrokerHandle, make_config
from tests.mgmthttp import MANAGEMENT, Http
from warrenmq.app import start


@pytest.fixture
async def mgmt(broker_factory: Any) -> tuple[BrokerHandle, Http]:
    handle: BrokerHandle = await broker_factory(top=MANAGEMENT)
    assert handle.server.management_port
    return handle, Http(handle.server.management_port)


def closed(connection: aio_pika.abc.AbstractConnection) -> asyncio.Future[Any]:
    """Resolves with the reason when the broker closes ``connection``."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    connection.close_callbacks.add(
        lambda _c, exc=None: future.done() or future.set_result(exc))
    return future


def saved(tmp_path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((tmp_path / "data" / "definitions.json").read_text())
    return document


async def test_users_create_change_login_delete(mgmt: tuple[BrokerHandle, Http],
                                                tmp_path: Path) -> None:
    broker, http = mgmt
    reply = await http.request("PUT", "/api/users/alice",
                               body={"password": "pw", "tags": "monitoring,management"})
    assert (reply.status, reply.text) == (201, "")
    assert "alice" in {u["name"] for u in saved(tmp_path)["users"]}  # saved before the answer
    alice = await http.json("/api/users/alice")
    assert set(alice) == {"name", "password_hash", "hashing_algorithm", "tags", "limits"}
    assert alice["tags"] == ["monitoring", "management"]
    assert alice["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert (await http.as_user("alice", "pw").json("/api/whoami")) == {
        "name": "alice", "tags": ["monitoring", "management"]}
    # a changed user: 204; tags as a list; without a password it can no longer log in
    reply = await http.request("PUT", "/api/users/alice", body={"tags": ["management"]})
    assert reply.status == 204
    assert (await http.as_user("alice", "pw").get("/api/whoami")).status == 401
    reply = await http.request("PUT", "/api/users/alice",
                               body={"password": "pw2", "tags": "management"})
    assert reply.status == 204
    assert (await http.as_user("alice", "pw2").get("/api/whoami")).status == 200
    # what RabbitMQ refuses, it refuses here too
    missing = await http.request("PUT", "/api/users/bob", body={"password": "x"})
    assert (missing.status, missing.json) == (400, {"error": "bad_request",
                                                    "reason": "tags_not_present"})
    bad_hash = await http.request("PUT", "/api/users/bob",
                                  body={"password_hash": "**", "tags": ""})
    assert bad_hash.status == 400 and "base64" in bad_hash.json["reason"]
    # a user that is not an administrator may not manage users
    assert (await http.as_user("alice", "pw2").get("/api/users")).status == 401
    names = {u["name"] for u in await http.json("/api/users")}
    assert names == {"guest", "alice"}
    assert [u["name"] for u in await http.json("/api/users/without-permissions")] == ["alice"]
    # a deleted user's connections are closed
    await http.request("PUT", "/api/permissions/%2F/alice",
                       body={"configure": ".*", "write": ".*", "read": ".*"})
    connection = await aio_pika.connect(f"amqp://alice:pw2@127.0.0.1:{broker.port}/")
    gone = closed(connection)
    assert (await http.request("DELETE", "/api/users/alice")).status == 204
    assert (await http.request("DELETE", "/api/users/alice")).status == 404
    assert "alice" in str(await asyncio.wait_for(gone, 10))
    assert "alice" not in {u["name"] for u in saved(tmp_path)["users"]}
    assert (await http.get("/api/users/alice")).status == 404


async def test_password_hash_user_and_bulk_delete(mgmt: tuple[BrokerHandle, Http]) -> None:
    _, http = mgmt
    from warrenmq.config.rabbit import hash_password
    reply = await http.request("PUT", "/api/users/carol",
                               body={"password_hash": hash_password("secret"),
                                     "tags": "administrator"})
    assert reply.status == 201
    assert (await http.as_user("carol", "secret").json("/api/whoami"))["tags"] == [
        "administrator"]
    await http.request("PUT", "/api/users/dave", body={"password": "x", "tags": ""})
    unknown = await http.request("POST", "/api/users/bulk-delete",
                                 body={"users": ["dave", "nobody"]})
    assert unknown.status == 400  # nothing deleted
    assert (await http.get("/api/users/dave")).status == 200
    done = await http.request("POST", "/api/users/bulk-delete", body={"users": ["dave", "carol"]})
    assert done.status == 204
    assert {u["name"] for u in await http.json("/api/users")} == {"guest"}


async def test_vhosts_create_and_delete(mgmt: tuple[BrokerHandle, Http], tmp_path: Path) -> None:
    broker, http = mgmt
    assert (await http.request("PUT", "/api/vhosts/apps", body={})).status == 201
    assert (await http.request("PUT", "/api/vhosts/apps")).status == 204
    assert "apps" in {v["name"] for v in saved(tmp_path)["vhosts"]}
    vhost = await http.json("/api/vhosts/apps")
    assert vhost["name"] == "apps" and vhost["tracing"] is False
    assert vhost["cluster_state"] == {broker.server.cluster_name: "running"}
    # the creator gets full permissions in it, as in RabbitMQ
    assert await http.json("/api/vhosts/apps/permissions") == [
        {"user": "guest", "vhost": "apps", "configure": ".*", "write": ".*", "read": ".*"}]
    url = f"amqp://guest:guest@127.0.0.1:{broker.port}/apps"
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    await channel.declare_queue("jobs", durable=True)
    gone = closed(connection)
    assert (await http.request("DELETE", "/api/vhosts/apps")).status == 204
    reason = await asyncio.wait_for(gone, 10)
    assert "320" in str(reason) and "apps" in str(reason)
    assert "apps" not in broker.server.broker.vhosts
    assert "apps" not in {v["name"] for v in saved(tmp_path)["vhosts"]}
    assert not [q for q in saved(tmp_path)["queues"] if q["vhost"] == "apps"]
    assert (await http.get("/api/vhosts/apps")).status == 404
    assert (await http.request("DELETE", "/api/vhosts/apps")).status == 404
    assert [v["name"] for v in await http.json("/api/vhosts")] == ["/"]


async def test_permissions(mgmt: tuple[BrokerHandle, Http], tmp_path: Path) -> None:
    _, http = mgmt
    await http.request("PUT", "/api/users/erin", body={"password": "pw", "tags": "management"})
    path = "/api/permissions/%2F/erin"
    assert (await http.get(path)).status == 404
    partial = await http.request("PUT", path, body={"configure": ".*"})
    assert (partial.status, partial.json["reason"]) == (
        400, "[{key_missing,write},{key_missing,read}]")
    nobody = await http.request("PUT", "/api/permissions/%2F/nobody",
                                body={"configure": "", "write": "", "read": ""})
    assert (nobody.status, nobody.json["reason"]) == (400, "vhost_or_user_not_found")
    regex = await http.request("PUT", path, body={"configure": "(", "write": "", "read": ""})
    assert regex.status == 400
    grant = {"configure": "^erin\\.", "write": ".*", "read": ""}
    assert (await http.request("PUT", path, body=grant)).status == 201
    assert (await http.request("PUT", path, body=grant)).status == 204
    assert await http.json(path) == {"user": "erin", "vhost": "/", **grant}
    assert {"user": "erin", "vhost": "/", **grant} in saved(tmp_path)["permissions"]
    assert await http.json("/api/users/erin/permissions") == [
        {"user": "erin", "vhost": "/", **grant}]
    assert len(await http.json("/api/permissions")) == 2
    # the grant is live: erin may declare erin.* queues but not others
    erin = http.as_user("erin", "pw")
    assert (await erin.request("PUT", "/api/queues/%2F/erin.q", body={})).status == 201
    assert (await erin.request("PUT", "/api/queues/%2F/other", body={})).status == 401
    assert (await http.request("DELETE", path)).status == 204
    assert (await http.request("DELETE", path)).status == 404
    assert not [p for p in saved(tmp_path)["permissions"] if p["user"] == "erin"]


async def test_policies(mgmt: tuple[BrokerHandle, Http], tmp_path: Path) -> None:
    broker, http = mgmt
    await http.request("PUT", "/api/queues/%2F/capped", body={"durable": True})
    path = "/api/policies/%2F/cap"
    reply = await http.request("PUT", path, body={"pattern": "^capped$",
                                                  "definition": {"max-length": 5}})
    assert reply.status == 201
    policy = await http.json(path)
    assert policy == {"vhost": "/", "name": "cap", "pattern": "^capped$", "apply-to": "all",
                      "definition": {"max-length": 5}, "priority": 0}
    assert (await http.json("/api/queues/%2F/capped"))["policy"] == "cap"
    assert broker.vhost().queues["capped"].args.max_length == 5
    assert [p["name"] for p in saved(tmp_path)["policies"]] == ["cap"]
    changed = await http.request("PUT", path, body={
        "pattern": "^capped$", "definition": {"max-length": 7}, "apply-to": "queues",
        "priority": "2"})
    assert changed.status == 204
    assert broker.vhost().queues["capped"].args.max_length == 7
    assert (await http.json("/api/policies/%2F"))[0]["priority"] == 2
    unknown = await http.request("PUT", "/api/policies/%2F/p2", body={
        "pattern": "x", "definition": {"bogus": 1}})
    assert unknown.status == 400 and "bogus" in unknown.json["reason"]
    no_pattern = await http.request("PUT", "/api/policies/%2F/p3",
                                    body={"definition": {"max-length": 1}})
    assert no_pattern.json["reason"] == "[{key_missing,pattern}]"
    assert (await http.get("/api/policies/nowhere")).status == 404
    assert (await http.request("DELETE", path)).status == 204
    assert (await http.request("DELETE", path)).status == 404
    assert (await http.json("/api/queues/%2F/capped"))["policy"] is None
    assert saved(tmp_path)["policies"] == []


async def test_changes_survive_a_restart(tmp_path: Path) -> None:
    server = await start(make_config(tmp_path, MANAGEMENT))
    try:
        assert server.management_port
        http = Http(server.management_port)
        await http.request("PUT", "/api/vhosts/v", body={})
        await http.request("PUT", "/api/users/frank", body={"password": "pw", "tags": "x"})
        await http.request("PUT", "/api/permissions/v/frank",
                           body={"configure": "a", "write": "b", "read": "c"})
        await http.request("PUT", "/api/policies/v/ttl",
                           body={"pattern": ".", "definition": {"message-ttl": 1000}})
    finally:
        await server.close(grace=2)
    server = await start(make_config(tmp_path, MANAGEMENT))
    try:
        broker = server.broker
        assert broker.users["frank"].check_password("pw")
        assert broker.permissions[("frank", "v")].read == "c"
        assert ("v", "ttl") in broker.policies
    finally:
        await server.close(grace=2)


async def test_nodes_and_health_checks(mgmt: tuple[BrokerHandle, Http]) -> None:
    broker, http = mgmt
    server = broker.server
    nodes = await http.json("/api/nodes")
    assert [n["name"] for n in nodes] == [server.cluster_name]
    node = await http.json(f"/api/nodes/{server.cluster_name}")
    for key in ("uptime", "mem_used", "fd_used", "fd_total", "sockets_used", "disk_free",
                "run_queue", "processors", "mem_alarm", "disk_free_alarm", "os_pid"):
        assert key in node, key
    assert node["running"] is True and node["mem_used"] > 1_000_000
    ports = {entry["port"] for entry in node["listeners"]}
    assert ports == {broker.port, server.management_port}
    assert (await http.get("/api/nodes/rabbit@elsewhere")).status == 404
    for check in ("alarms", "local-alarms", "virtual-hosts", "node-is-quorum-critical",
                  f"port-listener/{broker.port}", "protocol-listener/amqp"):
        reply = await http.get(f"/api/health/checks/{check}")
        assert (reply.status, reply.json["status"]) == (200, "ok"), check
    missing = await http.get("/api/health/checks/port-listener/1")
    assert missing.status == 503
    assert missing.json == {"status": "failed", "reason": "No active listener", "missing": 1,
                            "ports": sorted(ports, key=[broker.port,
                                                        server.management_port].index)}
    assert await http.json("/api/healthchecks/node") == {"status": "ok"}
    server.memory_alarm = True  # as the alarm timer sets it when the watermark is passed
    try:
        alarm = await http.get("/api/health/checks/alarms")
        assert alarm.status == 503
        assert alarm.json == {"status": "failed",
                              "reason": "resource alarm(s) in effect in the cluster",
                              "alarms": [{"node": server.cluster_name, "resource": "memory"}]}
        assert (await http.json("/api/healthchecks/node"))["status"] == "failed"
    finally:
        server.memory_alarm = False
    # unauthenticated: 401 as every API call
    assert (await http.as_user(None).get("/api/health/checks/alarms")).status == 401


async def test_aliveness_test(mgmt: tuple[BrokerHandle, Http]) -> None:
    broker, http = mgmt
    for _ in range(2):
        assert await http.json("/api/aliveness-test/%2F") == {"status": "ok"}
    assert broker.vhost().queues["aliveness-test"].message_count == 0
    assert (await http.get("/api/aliveness-test/nowhere")).status == 404


async def test_bindings_and_publish(mgmt: tuple[BrokerHandle, Http], tmp_path: Path) -> None:
    broker, http = mgmt
    await http.request("PUT", "/api/queues/%2F/q1", body={"durable": True})
    await http.request("PUT", "/api/exchanges/%2F/x1", body={"type": "direct"})
    base = "/api/bindings/%2F/e/x1/q/q1"
    made = await http.request("POST", base, body={"routing_key": "k", "arguments": {}})
    assert (made.status, made.headers["Location"]) == (201, "k")
    made = await http.request("POST", base, body={"routing_key": "a/b", "arguments": {"n": 1}})
    assert made.status == 201
    assert {(b["source"], b["routing_key"]) for b in saved(tmp_path)["bindings"]} == {
        ("x1", "k"), ("x1", "a/b")}
    between = await http.json(base)
    assert [(b["routing_key"], b["arguments"]) for b in between] == [("k", {}),
                                                                    ("a/b", {"n": 1})]
    assert set(between[0]) == {"source", "vhost", "destination", "destination_type",
                               "routing_key", "arguments", "properties_key"}
    assert await http.json(f"{base}/k") == between[0]
    assert (await http.get(f"{base}/nope")).status == 404
    missing = await http.request("POST", "/api/bindings/%2F/e/x1/q/nq", body={})
    assert missing.status == 404
    queue_bindings = await http.json("/api/queues/%2F/q1/bindings")
    assert [(b["source"], b["routing_key"]) for b in queue_bindings] == [
        ("", "q1"), ("x1", "k"), ("x1", "a/b")]
    assert len(await http.json("/api/exchanges/%2F/x1/bindings/source")) == 2
    # exchange to exchange
    e2e = await http.request("POST", "/api/bindings/%2F/e/amq.direct/e/x1",
                             body={"routing_key": "k"})
    assert e2e.status == 201
    assert [b["source"] for b in await http.json(
        "/api/exchanges/%2F/x1/bindings/destination")] == ["amq.direct"]
    # publish: routed through the bindings just made, persistent ones on disk first
    def message(key: str) -> dict[str, Any]:
        return {"properties": {"delivery_mode": 2, "headers": {"h": "v"}}, "routing_key": key,
                "payload": "hi", "payload_encoding": "string"}
    for exchange, key, routed in (("x1", "k", True), ("x1", "zz", False),
                                  ("amq.direct", "k", True), ("amq.default", "q1", True)):
        reply = await http.request("POST", f"/api/exchanges/%2F/{exchange}/publish",
                                   body=message(key))
        assert (reply.status, reply.json) == (200, {"routed": routed}), exchange
    assert broker.vhost().queues["q1"].message_count == 3
    assert broker.server.committer is not None and broker.server.committer.durable > 0
    got = await http.request("POST", "/api/queues/%2F/q1/get",
                             body={"count": 1, "ackmode": "ack_requeue_true"})
    assert got.json[0]["payload"] == "hi"
    assert got.json[0]["properties"] == {"delivery_mode": 2, "headers": {"h": "v"}}
    bad = await http.request("POST", "/api/exchanges/%2F/x1/publish", body={"routing_key": "k"})
    assert (bad.status, bad.json["reason"]) == (
        400, "[{key_missing,properties},{key_missing,payload},{key_missing,payload_encoding}]")
    # delete by properties key
    assert (await http.request("DELETE", f"{base}/k")).status == 204
    assert (await http.request("DELETE", f"{base}/k")).status == 404
    key = (await http.json(base))[0]["properties_key"]
    assert (await http.request("DELETE", f"{base}/{key}")).status == 204
    assert await http.json(base) == []
    assert saved(tmp_path)["bindings"] == [
        {"vhost": "/", "source": "amq.direct", "destination": "x1",
         "destination_type": "exchange", "routing_key": "k", "arguments": {}}]


async def test_pagination(mgmt: tuple[BrokerHandle, Http]) -> None:
    _, http = mgmt
    for name in ("alpha", "Beta", "gamma", "delta", "epsilon"):
        await http.request("PUT", f"/api/queues/%2F/{name}", body={})
    page = await http.json("/api/queues?page=2&page_size=2&columns=name")
    assert page == {"filtered_count": 5, "item_count": 2, "items": [{"name": "delta"},
                                                                    {"name": "epsilon"}],
                    "page": 2, "page_count": 3, "page_size": 2, "total_count": 5}
    found = await http.json("/api/queues?page=1&name=TA&columns=name")
    assert [q["name"] for q in found["items"]] == ["Beta", "delta"]
    assert found["filtered_count"] == 2 and found["total_count"] == 5
    regex = await http.json("/api/queues?page=1&name=^(b|g)&use_regex=true&columns=name"
                            "&sort=name&sort_reverse=true")
    assert [q["name"] for q in regex["items"]] == ["gamma", "Beta"]
    empty = await http.json("/api/queues?page=1&name=zzz")
    assert (empty["items"], empty["page_count"]) == ([], 0)
    for query, error in (("page=9", "page_out_of_range"),
                         ("page=1&page_size=501", "invalid_pagination_parameters"),
                         ("page=0", "invalid_pagination_parameters"),
                         ("page=x", "bad_request")):
        reply = await http.get(f"/api/queues?{query}")
        assert (reply.status, reply.json["error"]) == (400, error), query
    # without page: the plain list RabbitMQ answers
    assert len(await http.json("/api/queues")) == 5
    exchanges = await http.json("/api/exchanges?page=1&page_size=2&name=amq\\.d&use_regex=true")
    assert [x["name"] for x in exchanges["items"]] == ["amq.direct"]


async def test_connection_and_channel_lookups(mgmt: tuple[BrokerHandle, Http]) -> None:
    broker, http = mgmt
    from urllib.parse import quote
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=3)
        conns = await http.json("/api/vhosts/%2F/connections")
        assert len(conns) == 1
        name = quote(conns[0]["name"], safe="")
        chans = await http.json(f"/api/connections/{name}/channels")
        assert [c["prefetch_count"] for c in chans] == [3]
        one = await http.json(f"/api/channels/{quote(chans[0]['name'], safe='')}")
        assert one == chans[0]
        assert await http.json("/api/vhosts/%2F/channels") == chans
        assert (await http.get("/api/channels/nope")).status == 404
        assert (await http.get("/api/vhosts/nowhere/connections")).status == 404


async def test_pagination_sorts_by_depth_and_by_rendered_fields(
        mgmt: tuple[BrokerHandle, Http]) -> None:
    broker, http = mgmt
    vhost = broker.vhost()
    for name, depth in (("a", 3), ("b", 1), ("c", 2)):
        await http.request("PUT", f"/api/queues/%2F/{name}", body={})
        for _ in range(depth):
            await http.request("POST", "/api/exchanges/%2F/amq.default/publish", body={
                "properties": {}, "routing_key": name, "payload": "x",
                "payload_encoding": "string"})
    assert [vhost.queues[n].message_count for n in "abc"] == [3, 1, 2]
    deepest = await http.json("/api/queues?page=1&page_size=2&sort=messages_ready"
                              "&sort_reverse=true&columns=name,messages_ready")
    assert deepest["items"] == [{"name": "a", "messages_ready": 3},
                                {"name": "c", "messages_ready": 2}]
    assert (deepest["page_count"], deepest["total_count"]) == (2, 3)
    # a field only the rendered object has: every queue rendered, same answer shape
    by_type = await http.json("/api/queues?page=2&page_size=2&sort=type&columns=name")
    assert by_type["items"] == [{"name": "c"}] and by_type["filtered_count"] == 3
