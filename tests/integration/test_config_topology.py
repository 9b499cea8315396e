"""The config's declarations on a real broker: topology, policies, permissions, users.

Covers: exchanges, queues (friendly spellings as x-arguments), bindings and policies in
the config exist when the first client connects and route as declared (aio-pika);
durable ones are saved to the data directory; a restart with the same config is a no-op
and keeps persistent messages; a config queue or exchange that conflicts with a durable
one already in the data directory (declared by the config before, or by a client) stops
the start with the config's file:line:col and what differs -- in process (ConfigError,
nothing saved, the data-dir lock released) and as ``warrenmq serve`` (exit 2); the
config's permissions are enforced (aiormq); RabbitMQ's definitions JSON serves as a
config (its users log in with their hashed passwords); a plain password in a config file
logs a warning; ``check-config`` lists every topology problem and prints the notes of a
definitions file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import aio_pika
import aiormq
import pytest
import structlog
from pamqp import commands

from tests.helpers import TIMEOUT
from tests.rawamqp import PROTOCOL_HEADER, RawClient
from warrenmq.app import start
from warrenmq.config import ConfigError, ListenerConfig, StorageConfig, load_config
from warrenmq.server.listener import Server

REPO = Path(__file__).resolve().parents[2]
HASH = "Wahoc+CDsxYKRkqHRTVUtojppRCVVHcsdPQ/Q758k/HOsmHF"  # "pw", made by RabbitMQ 3.10

TOPOLOGY = """
exchanges:
  - {name: orders, type: fanout, durable: true}
  - {name: events, type: topic}
  - {name: orders.dlx, type: fanout}
queues:
  - name: email
    durable: true
    dead_letter_exchange: orders.dlx
    delivery_limit: 3
    message_ttl: 30s
  - {name: audit}
  - {name: dead}
  - {name: limited.one}
bindings:
  - {source: orders, destination: email}            # destination_type defaults to queue
  - {source: events, destination: audit, routing_key: "order.#"}
  - {source: orders.dlx, destination: dead}
  - {source: amq.direct, destination: limited.one, routing_key: lim}
policies:
  - {name: one, pattern: "^limited\\\\.", apply_to: queues, definition: {max-length: 1}}
"""


def write_config(tmp_path: Path, body: str, name: str = "broker.yaml") -> Path:
    """A config file on 127.0.0.1:0 with a private data dir and no management listener."""
    path = tmp_path / name
    path.write_text(f"listeners: [{{port: 0}}]\nstorage: {{data_dir: {tmp_path / 'data'}}}\n"
                    f"management: {{enabled: false}}\n{body}")
    return path


async def started(path: Path) -> tuple[Server, str]:
    server = await start(load_config(path))
    return server, f"amqp://guest:guest@127.0.0.1:{server.ports[0]}/"


async def get_bodies(channel: aio_pika.abc.AbstractChannel, queue: str) -> list[bytes]:
    q = await channel.declare_queue(queue, passive=True)
    out = []
    for _ in range(100):  # bounded
        message = await q.get(fail=False, timeout=TIMEOUT)
        if message is None:
            return out
        out.append(message.body)
        await message.ack()
    raise AssertionError("more than 100 messages")


async def test_declared_topology_routes_and_is_saved(tmp_path: Path) -> None:
    path = write_config(tmp_path, TOPOLOGY)
    server, url = await started(path)
    try:
        vhost = server.broker.vhosts["/"]
        assert vhost.queues["email"].arguments == {
            "x-dead-letter-exchange": "orders.dlx", "x-message-ttl": 30000,
            "x-delivery-limit": 3}
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            orders = await channel.get_exchange("orders")  # passive: it exists
            await orders.publish(aio_pika.Message(b"o1"), routing_key="")
            events = await channel.get_exchange("events")
            await events.publish(aio_pika.Message(b"e1"), routing_key="order.created")
            await events.publish(aio_pika.Message(b"e2"), routing_key="invoice.created")
            direct = await channel.get_exchange("amq.direct")
            for body in (b"l1", b"l2"):  # the policy's max-length 1 drops the head
                await direct.publish(aio_pika.Message(body), routing_key="lim")
            assert await get_bodies(channel, "email") == [b"o1"]
            assert await get_bodies(channel, "audit") == [b"e1"]
            assert await get_bodies(channel, "limited.one") == [b"l2"]
            assert vhost.queues["limited.one"].policy == "one"
    finally:
        await server.close(grace=2)
    saved = json.loads((tmp_path / "data" / "definitions.json").read_text())
    assert {q["name"] for q in saved["queues"]} == {"email", "audit", "dead", "limited.one"}
    assert {x["name"] for x in saved["exchanges"]} == {"orders", "events", "orders.dlx"}
    assert {(b["source"], b["destination"]) for b in saved["bindings"]} == {
        ("orders", "email"), ("events", "audit"), ("orders.dlx", "dead"),
        ("amq.direct", "limited.one")}
    # the config's own users and policies are declared again at each start, not saved
    assert saved["users"] == [] and saved["policies"] == []


async def test_restart_with_the_same_config_keeps_messages(tmp_path: Path) -> None:
    path = write_config(tmp_path, TOPOLOGY)
    server, url = await started(path)
    try:
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            orders = await channel.get_exchange("orders")
            for i in range(3):
                await orders.publish(aio_pika.Message(f"p{i}".encode(), delivery_mode=2), "")
    finally:
        await server.close(grace=2)
    saved = (tmp_path / "data" / "definitions.json").read_text()
    server, url = await started(path)  # declaring again: a no-op
    try:
        assert server.broker.vhosts["/"].queues["email"].message_count == 3
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            assert await get_bodies(channel, "email") == [b"p0", b"p1", b"p2"]
    finally:
        await server.close(grace=2)
    assert json.loads((tmp_path / "data" / "definitions.json").read_text()) == json.loads(saved)


async def test_conflict_with_a_durable_entity_stops_the_start(tmp_path: Path) -> None:
    first = write_config(tmp_path, "queues:\n  - {name: email, message_ttl: 30s}\n")
    server, url = await started(first)
    try:  # a client's own durable queue and exchange
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            await channel.declare_queue("jobs", durable=True)
            await channel.declare_exchange("hub", aio_pika.ExchangeType.DIRECT, durable=True)
    finally:
        await server.close(grace=2)
    before = (tmp_path / "data" / "definitions.json").read_text()
    second = write_config(tmp_path, (
        "exchanges:\n"
        "  - {name: hub, type: fanout}\n"
        "queues:\n"
        "  - {name: email, message_ttl: 1m}\n"
        "  - {name: jobs, max_length: 5}\n"
        "  - {name: fresh}\n"), "changed.yaml")
    with pytest.raises(ConfigError) as info:
        await start(load_config(second))
    assert str(info.value).splitlines() == [
        f'{second}:5:5: exchanges[0]: exchange "hub" in vhost "/" exists with other'
        " settings: type 'fanout' here, 'direct' in the existing one",
        f'{second}:7:5: queues[0]: queue "email" in vhost "/" exists with other settings:'
        " argument x-message-ttl 60000 here, 30000 in the existing one",
        f'{second}:8:5: queues[1]: queue "jobs" in vhost "/" exists with other settings:'
        " argument x-max-length 5 here, (none) in the existing one",
    ]
    assert (tmp_path / "data" / "definitions.json").read_text() == before  # nothing applied
    server, _ = await started(first)  # the data-dir lock was released
    try:
        assert "fresh" not in server.broker.vhosts["/"].queues
    finally:
        await server.close(grace=2)


async def open_refused(port: int, user: str, password: str, vhost: str) -> str:
    """connection.open as ``user``: the broker's connection.close (code and text)."""
    client = await RawClient.connect(port)
    try:
        client.send(PROTOCOL_HEADER)
        await client.expect(commands.Connection.Start)
        client.send_method(0, commands.Connection.StartOk(
            client_properties={}, mechanism="PLAIN", response=f"\0{user}\0{password}",
            locale="en_US"))
        tune = await client.expect(commands.Connection.Tune)
        client.send_method(0, commands.Connection.TuneOk(
            channel_max=tune.channel_max, frame_max=tune.frame_max, heartbeat=0))
        client.send_method(0, commands.Connection.Open(virtual_host=vhost))
        close = await client.expect(commands.Connection.Close)
        return f"{close.reply_code} {close.reply_text}"
    finally:
        client.close()


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "warrenmq", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, check=False)


async def test_serve_exits_2_on_a_conflict(tmp_path: Path) -> None:
    first = write_config(tmp_path, "queues:\n  - {name: email, durable: true}\n")
    server, _ = await started(first)
    await server.close(grace=2)
    second = write_config(tmp_path, "queues:\n  - {name: email, durable: false}\n", "b.yaml")
    result = await asyncio.to_thread(run_cli, "serve", "--config", str(second))
    assert result.returncode == 2, result.stderr
    assert (f'{second}:5:5: queues[0]: queue "email" in vhost "/" exists with other settings:'
            " durable false here, true in the existing one") in result.stderr


async def test_permissions_from_the_config_are_enforced(tmp_path: Path) -> None:
    path = write_config(tmp_path, f"""
vhosts: [{{name: /}}, {{name: prod}}]
users:
  - {{name: guest, password: guest, loopback_only: true, tags: [administrator]}}
  - {{name: alice, password_hash: "{HASH}"}}
permissions:
  - {{user: guest, configure: ".*", write: ".*", read: ".*"}}
  - {{user: alice, vhost: prod, configure: "^alice\\\\.", write: ".*", read: ".*"}}
""")
    server, _ = await started(path)
    port = server.ports[0]
    try:
        conn = await aiormq.connect(f"amqp://alice:pw@127.0.0.1:{port}/prod")
        channel = await conn.channel()
        await channel.queue_declare("alice.work")
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await channel.queue_declare("bob.work")
        await conn.close()
        refused = await open_refused(port, "alice", "pw", "/")  # no permission on "/"
        assert refused.startswith("530 NOT_ALLOWED"), refused
        refused = await open_refused(port, "guest", "guest", "prod")  # guest: "/" only
        assert refused.startswith("530 NOT_ALLOWED"), refused
    finally:
        await server.close(grace=2)


RABBIT_DEFINITIONS = {
    "rabbit_version": "3.10.8", "rabbitmq_version": "3.10.8",
    "users": [{"name": "dave", "password_hash": HASH,
               "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": [],
               "limits": {}}],
    "vhosts": [{"name": "/", "limits": [], "metadata": {"description": "Default virtual host",
                                                          "tags": []}}],
    "permissions": [{"user": "dave", "vhost": "/", "configure": ".*", "write": ".*",
                     "read": ".*"}],
    "topic_permissions": [], "parameters": [], "global_parameters": [],
    "policies": [{"vhost": "/", "name": "ttl", "pattern": "^short", "apply-to": "queues",
                  "definition": {"message-ttl": 1000}, "priority": 0}],
    "queues": [{"name": "short", "vhost": "/", "durable": True, "auto_delete": False,
                "arguments": {"x-max-length": 10}, "type": "classic"}],
    "exchanges": [{"name": "in", "vhost": "/", "type": "direct", "durable": True,
                   "auto_delete": False, "internal": False, "arguments": {}}],
    "bindings": [{"source": "in", "vhost": "/", "destination": "short",
                  "destination_type": "queue", "routing_key": "k", "arguments": {}}],
}


async def test_rabbitmq_definitions_json_serves_as_a_config(tmp_path: Path) -> None:
    path = tmp_path / "definitions.json"
    path.write_text(json.dumps(RABBIT_DEFINITIONS))
    config = dataclasses.replace(
        load_config(path), listeners=(ListenerConfig("127.0.0.1", 0),),
        storage=StorageConfig(data_dir=str(tmp_path / "data")),
        management=dataclasses.replace(load_config(path).management, enabled=False))
    server = await start(config)
    try:
        connection = await aio_pika.connect(f"amqp://dave:pw@127.0.0.1:{server.ports[0]}/")
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange("in")
            await exchange.publish(aio_pika.Message(b"x"), routing_key="k")
            assert await get_bodies(channel, "short") == [b"x"]
        queue = server.broker.vhosts["/"].queues["short"]
        assert queue.arguments == {"x-max-length": 10} and queue.policy == "ttl"
        with pytest.raises(aiormq.exceptions.ProbableAuthenticationError):
            await aiormq.connect(f"amqp://guest:guest@127.0.0.1:{server.ports[0]}/")
    finally:
        await server.close(grace=2)


async def test_a_plain_password_in_a_config_file_logs_a_warning(tmp_path: Path) -> None:
    path = write_config(tmp_path, "users:\n  - {name: dev, password: secret}\n")
    with structlog.testing.capture_logs() as logs:
        server = await start(load_config(path))
        await server.close(grace=2)
    warnings = [e for e in logs if e["event"] == "plain_password_in_config"]
    assert len(warnings) == 1 and warnings[0]["users"] == ["dev"]
    assert warnings[0]["log_level"] == "warning"
    assert "development only" in warnings[0]["hint"]
    with structlog.testing.capture_logs() as logs:  # the embedded default's guest: quiet
        server = await start(dataclasses.replace(
            load_config(write_config(tmp_path, "", "empty.yaml")), source=None))
        await server.close(grace=2)
    assert not [e for e in logs if e["event"] == "plain_password_in_config"]


async def test_check_config_lists_every_topology_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "queues:\n"
        "  - {name: a}\n"
        "  - {name: b}\n"
        "  - name: c\n"
        "    max_length: ten\n"
        "permissions:\n"
        "  - {user: ghost, configure: '.*', write: '.*', read: '.*'}\n"
        "policies:\n"
        "  - {name: p, pattern: '(', definition: {max-length: 1}}\n")
    result = await asyncio.to_thread(run_cli, "check-config", str(bad))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f'{bad}:5:17: queues[2].max_length: expected an integer >= 0, got "ten"',
        f'{bad}:7:12: permissions[0].user: no user named "ghost" in users',
        f"{bad}:9:24: policies[0].pattern: not a valid regular expression: missing ),"
        " unterminated subpattern at position 0",
    ]
    good = tmp_path / "defs.json"
    good.write_text(json.dumps({**RABBIT_DEFINITIONS, "topic_permissions": [
        {"user": "dave", "vhost": "/", "exchange": "amq.topic", "write": ".*", "read": ".*"}]}))
    result = await asyncio.to_thread(run_cli, "check-config", str(good))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{good}: ok\n"
    assert "topic_permissions" not in result.stderr  # imported now, nothing to note
    bad_topic = tmp_path / "bad-topic.json"
    bad_topic.write_text(json.dumps({**RABBIT_DEFINITIONS, "topic_permissions": [
        {"user": "dave", "vhost": "/", "exchange": "amq.topic", "write": "(", "read": 3}]}))
    result = await asyncio.to_thread(run_cli, "check-config", str(bad_topic))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{bad_topic}: topic_permissions[0].read: expected a string, got 3"]


async def test_priority_and_single_active_consumer_keys(tmp_path: Path) -> None:
    """``max_priority`` and ``single_active_consumer`` stand for x-max-priority and
    x-single-active-consumer; bad values and a policy trying to set them (RabbitMQ
    refuses both as policy settings) are reported with file:line:col and key path."""
    path = write_config(tmp_path, "queues:\n"
                                  "  - {name: ranked, max_priority: 10}\n"
                                  "  - {name: solo, single_active_consumer: true}\n")
    server, url = await started(path)
    try:
        vhost = server.broker.vhosts["/"]
        assert vhost.queues["ranked"].arguments == {"x-max-priority": 10}
        assert vhost.queues["solo"].arguments == {"x-single-active-consumer": True}
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            for priority in (1, 9):
                await channel.default_exchange.publish(
                    aio_pika.Message(b"p%d" % priority, priority=priority),
                    routing_key="ranked")
            assert await get_bodies(channel, "ranked") == [b"p9", b"p1"]
    finally:
        await server.close(grace=2)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "queues:\n"
        "  - {name: a, max_priority: 300}\n"
        "  - {name: b, single_active_consumer: 'yes'}\n"
        "  - {name: c, arguments: {x-max-priority: -1}}\n"
        "policies:\n"
        "  - {name: p, pattern: '.*', definition: {max-priority: 5}}\n")
    result = await asyncio.to_thread(run_cli, "check-config", str(bad))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{bad}:2:29: queues[0].max_priority: expected an integer between 0 and 255,"
        " got 300 (an integer)",
        f'{bad}:3:39: queues[1].single_active_consumer: expected a boolean (true or false),'
        ' got "yes"',
        f"{bad}:4:43: queues[2].arguments.x-max-priority: expected an integer between 0"
        " and 255, got -1",
        f"{bad}:6:57: policies[0].definition.max-priority: 'max-priority' is not a policy"
        " key (RabbitMQ's, or WarrenMQ's retry-delays)",
    ]
