"""Deduplication set from the outside (docs/deduplication.md): the YAML config (friendly
keys and raw x-arguments; ``check-config`` run as a process reports bad values with
file:line:col), policies (set over the management API, live on and off, on queues and
exchanges), definitions export/import over the management API, and what the
management API and /metrics show (the ``deduplication`` object, the Prometheus
counters).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiormq
import pytest
from pamqp import commands

from tests.conftest import make_config
from tests.helpers import TIMEOUT
from tests.mgmthttp import MANAGEMENT, Http
from tests.process import run_cli
from warrenmq.app import start
from warrenmq.config import load_config

pytestmark = pytest.mark.asyncio


def keyed(key: str) -> commands.Basic.Properties:
    return commands.Basic.Properties(headers={"x-deduplication-header": key})


async def send(url: str, exchange: str, routing_key: str, keys: list[str]) -> None:
    conn = await aiormq.connect(url)
    try:
        ch = await conn.channel(publisher_confirms=True)
        for key in keys:
            confirm = await asyncio.wait_for(
                ch.basic_publish(key.encode(), exchange=exchange, routing_key=routing_key,
                                 properties=keyed(key)), TIMEOUT)
            assert isinstance(confirm, commands.Basic.Ack)
    finally:
        await conn.close()


async def depth(url: str, queue: str) -> int:
    conn = await aiormq.connect(url)
    try:
        ch = await conn.channel()
        return int((await ch.queue_declare(queue, passive=True)).message_count)
    finally:
        await conn.close()


async def test_yaml_friendly_keys_and_raw_arguments(tmp_path: Path) -> None:
    path = tmp_path / "broker.yaml"
    path.write_text(
        f"listeners: [{{port: 0}}]\nstorage: {{data_dir: {tmp_path / 'data'}}}\n"
        "management: {enabled: false}\n"
        "exchanges:\n"
        "  - {name: checkout, type: fanout, message_deduplication: true, cache_size: 500,\n"
        "     deduplication_key: message_id}\n"
        "queues:\n"
        "  - {name: orders, message_deduplication: true, cache_ttl: 60s,\n"
        "     deduplication_header: order-id}\n"
        "  - {name: raw, arguments: {x-message-deduplication: true, x-cache-size: 3}}\n"
        "bindings:\n"
        "  - {source: checkout, destination: raw}\n")
    server = await start(load_config(path))
    url = f"amqp://guest:guest@127.0.0.1:{server.ports[0]}/"
    try:
        vhost = server.broker.vhosts["/"]
        assert vhost.queues["orders"].arguments == {
            "x-message-deduplication": True, "x-cache-ttl": 60000,
            "x-deduplication-header": "order-id"}
        assert vhost.exchanges["checkout"].arguments == {
            "x-message-deduplication": True, "x-cache-size": 500,
            "x-deduplication-key": "message_id"}
        settings = vhost.queues["raw"].dedup.settings
        assert (settings.cache_size, settings.cache_ttl) == (3, None)
        await send(url, "checkout", "", ["a", "a", "b"])
        assert await depth(url, "raw") == 2
    finally:
        await server.close(grace=2)


async def test_check_config_reports_bad_dedup_values(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "queues:\n"
        "  - {name: a, message_deduplication: 'yes'}\n"
        "  - {name: b, cache_size: 0}\n"
        "  - {name: c, arguments: {x-deduplication-key: body}}\n"
        "exchanges:\n"
        "  - {name: x, cache_ttl: -5}\n"
        "policies:\n"
        "  - {name: p, pattern: '.*', definition: {cache-size: ten}}\n")
    result = await asyncio.to_thread(run_cli, "check-config", str(bad))
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert all(line.startswith(f"{bad}:") for line in lines) and len(lines) == 5, lines
    assert any("exchanges[0].cache_ttl: expected a duration" in x for x in lines)
    assert any("queues[0].message_deduplication: expected a boolean" in x for x in lines)
    assert any("queues[1].cache_size: expected an integer" in x for x in lines)
    assert any("queues[2].arguments.x-deduplication-key: expected one of \"header\","
               ' "message_id", got "body"' in x for x in lines)
    assert any("policies[0].definition.cache-size: expected an integer" in x for x in lines)
    assert "Traceback" not in result.stderr


async def test_policy_turns_dedup_on_and_off_live(tmp_path: Path) -> None:
    server = await start(make_config(tmp_path, MANAGEMENT))
    url = f"amqp://guest:guest@127.0.0.1:{server.ports[0]}/"
    http = Http(server.management_port)
    try:
        conn = await aiormq.connect(url)
        ch = await conn.channel()
        await ch.queue_declare("pol.q")
        await ch.exchange_declare("pol.x", exchange_type="fanout")
        await ch.queue_declare("behind")
        await ch.queue_bind("behind", "pol.x")
        await conn.close()
        reply = await http.request("PUT", "/api/policies/%2F/dedup", body={
            "pattern": "^pol\\.", "apply-to": "all",
            "definition": {"message-deduplication": True, "cache-size": 100}})
        assert reply.status in (201, 204), reply.text
        await send(url, "", "pol.q", ["k", "k"])
        await send(url, "pol.x", "", ["k", "k", "j"])
        assert await depth(url, "pol.q") == 1 and await depth(url, "behind") == 2
        queue = await http.json("/api/queues/%2F/pol.q")
        assert queue["deduplication"] == {"cache_size": 100, "cache_ttl": None,
                                          "header": "x-deduplication-header",
                                          "key": "header", "entries": 1, "duplicates": 1,
                                          "durable": False}
        exchange = await http.json("/api/exchanges/%2F/pol.x")
        assert exchange["deduplication"]["duplicates"] == 1
        assert exchange["deduplication"]["entries"] == 2
        bad = await http.request("PUT", "/api/policies/%2F/worse", body={
            "pattern": "x", "definition": {"cache-ttl": "soon"}})
        assert bad.status == 400 and "cache-ttl" in bad.text
        assert (await http.request("DELETE", "/api/policies/%2F/dedup")).status == 204
        await send(url, "", "pol.q", ["k"])
        assert await depth(url, "pol.q") == 2  # dedup off: no cache any more
        assert "deduplication" not in await http.json("/api/queues/%2F/pol.q")
    finally:
        await server.close(grace=2)


async def test_metrics_count_duplicates(tmp_path: Path) -> None:
    server = await start(make_config(tmp_path, MANAGEMENT))
    url = f"amqp://guest:guest@127.0.0.1:{server.ports[0]}/"
    try:
        conn = await aiormq.connect(url)
        ch = await conn.channel()
        await ch.queue_declare("mq", arguments={"x-message-deduplication": True})
        await ch.exchange_declare("mx", exchange_type="fanout",
                                  arguments={"x-message-deduplication": True})
        await conn.close()
        await send(url, "", "mq", ["a", "a", "a", "b"])
        await send(url, "mx", "", ["a", "a"])
        text = (await Http(server.management_port).get("/metrics")).text
        assert 'rabbitmq_queue_messages_deduplicated_total{queue="mq",vhost="/"} 2.0' in text
        assert 'rabbitmq_queue_deduplication_cache_entries{queue="mq",vhost="/"} 2.0' in text
        assert ('rabbitmq_exchange_messages_deduplicated_total{exchange="mx",vhost="/"} 1.0'
                in text)
    finally:
        await server.close(grace=2)


async def test_definitions_export_and_import_keep_dedup(tmp_path: Path) -> None:
    first = await start(make_config(tmp_path / "one", MANAGEMENT))
    try:
        url = f"amqp://guest:guest@127.0.0.1:{first.ports[0]}/"
        conn = await aiormq.connect(url)
        ch = await conn.channel()
        args: dict[str, Any] = {"x-message-deduplication": True, "x-cache-size": 7,
                                "x-deduplication-key": "message_id"}
        await ch.queue_declare("dq", durable=True, arguments=args)
        await ch.exchange_declare("dx", exchange_type="direct", durable=True,
                                  arguments={"x-message-deduplication": True})
        await conn.close()
        http = Http(first.management_port)
        reply = await http.request("PUT", "/api/policies/%2F/p", body={
            "pattern": "^zz", "definition": {"message-deduplication": True,
                                             "cache-ttl": 1000}})
        assert reply.status in (201, 204), reply.text
        rabbit = await http.json("/api/definitions")
        exported = await http.json("/api/definitions?format=warrenmq")
    finally:
        await first.close(grace=2)
    # RabbitMQ's format: the x-arguments go as they are (RabbitMQ keeps unknown ones),
    # the policy keys RabbitMQ would refuse are left out, as retry-delays is
    assert next(q for q in rabbit["queues"] if q["name"] == "dq")["arguments"] == args
    assert [p for p in rabbit["policies"] if p["name"] == "p"] == []
    queue = next(q for q in exported["queues"] if q["name"] == "dq")
    assert queue["arguments"] == args
    assert next(p for p in exported["policies"] if p["name"] == "p")["definition"] == {
        "message-deduplication": True, "cache-ttl": 1000}
    second = await start(make_config(tmp_path / "two", MANAGEMENT))
    try:
        reply = await Http(second.management_port).request("POST", "/api/definitions",
                                                           body=exported)
        assert reply.status in (200, 201, 204), reply.text
        vhost = second.broker.vhosts["/"]
        assert vhost.queues["dq"].dedup.settings.cache_size == 7
        assert vhost.dedup is not None
        assert vhost.dedup.exchange_cache(vhost.exchanges["dx"]) is not None
        assert vhost.policies["p"].definition == {"message-deduplication": True,
                                                  "cache-ttl": 1000}
        url = f"amqp://guest:guest@127.0.0.1:{second.ports[0]}/"
        await send(url, "", "dq", ["a", "a"])
        assert await depth(url, "dq") == 1
    finally:
        await second.close(grace=2)
