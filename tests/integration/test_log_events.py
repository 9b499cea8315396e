"""Structured log events of a running broker, read back as JSON lines.

Logging is configured as the CLI does it (``configure_logging`` with the json format, to
a StringIO here) before the broker starts; real clients (aiormq, raw frames) then drive
it. Checked, field by field: listener_started; connection_opened and connection_closed
(client product and version, user, vhost, duration, the close reason: the client's
close code and text, or "connection lost" for a dropped socket); queue_declared and
consumer_added / consumer_cancelled carrying connection_id, peer, user, vhost and
channel from the connection's contextvars (the domain code that logs them passes none
of those); channel_error (reply code, text, class/method ids and the method's name);
queue_deleted for a client's delete, auto-delete and x-expires; message_dead_lettered
aggregated (a count per queue and reason, fewer lines than dead letters);
alarm_raised / alarm_cleared for the memory alarm and, on a real full tmpfs, the disk
alarm; and that publishing 200 messages writes no line at info level.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.metadata
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiormq
import pytest
from aiormq.exceptions import ChannelNotFoundEntity
from pamqp import commands

from tests.conftest import BrokerHandle, make_config
from tests.helpers import TIMEOUT, channel_error, raw_client, small_tmpfs, wait_until
from warrenmq.app import start
from warrenmq.config import LoggingConfig
from warrenmq.logging import configure_logging, reset_logging

Event = dict[str, Any]


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(LoggingConfig(format="json", level="info"), stream)
    yield stream
    reset_logging()


def events(stream: io.StringIO, name: str | None = None, **match: object) -> list[Event]:
    found = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [e for e in found if (name is None or e["event"] == name)
            and all(e.get(k) == v for k, v in match.items())]


async def one(stream: io.StringIO, name: str, **match: object) -> Event:
    """The single event ``name`` with fields ``match``, waiting (bounded) for it."""
    await wait_until(lambda: events(stream, name, **match))
    (event,) = events(stream, name, **match)
    return event


def server_side(broker: BrokerHandle) -> Any:
    (conn,) = broker.server.connections
    return conn


async def test_a_client_session_is_logged_with_its_context(
        logs: io.StringIO, broker_factory: Any) -> None:
    broker: BrokerHandle = await broker_factory()
    started = await one(logs, "listener_started", port=broker.port)
    assert started["host"] == "127.0.0.1" and started["level"] == "info"

    conn = await asyncio.wait_for(aiormq.connect(broker.url), TIMEOUT)
    peer = server_side(broker)
    who = {"connection_id": peer.id, "peer": peer.peer, "user": "guest", "vhost": "/"}
    opened = await one(logs, "connection_opened", connection_id=peer.id)
    assert opened["client_product"] == "aiormq"
    assert opened["client_version"] == importlib.metadata.version("aiormq")
    assert {k: opened[k] for k in who} == who

    ch = await conn.channel()
    await ch.exchange_declare("ldlx", exchange_type="fanout")
    await ch.queue_declare("ldlq")
    await ch.queue_bind("ldlq", "ldlx")
    await ch.queue_declare("logq", arguments={"x-dead-letter-exchange": "ldlx",
                                              "x-max-length": 1})
    declared = await one(logs, "queue_declared", queue="logq")
    # connection_id, peer, user, vhost and channel come from the contextvars
    assert {k: declared[k] for k in who} == who
    assert declared["channel"] == ch.number
    assert declared["durable"] is False and declared["exclusive"] is False
    assert declared["arguments"] == {"x-dead-letter-exchange": "ldlx", "x-max-length": 1}

    ok = await ch.basic_consume("logq", lambda message: None)
    added = await one(logs, "consumer_added", consumer_tag=ok.consumer_tag)
    assert added["queue"] == "logq" and added["channel"] == ch.number
    assert added["connection_id"] == peer.id
    await ch.basic_cancel(ok.consumer_tag)
    cancelled = await one(logs, "consumer_cancelled", consumer_tag=ok.consumer_tag)
    assert cancelled["reason"] == "basic.cancel" and cancelled["queue"] == "logq"

    for body in (b"1", b"2", b"3"):  # max-length 1: two die with reason maxlen
        await ch.basic_publish(body, routing_key="logq")
    await wait_until(lambda: sum(e["count"] for e in events(
        logs, "message_dead_lettered", queue="logq")) == 2)
    for line in events(logs, "message_dead_lettered", queue="logq"):
        assert (line["reason"], line["exchange"], line["vhost"]) == ("maxlen", "ldlx", "/")
        assert line["level"] == "info"

    text = await channel_error(ch.queue_declare("missing", passive=True), ChannelNotFoundEntity)
    assert "no queue 'missing'" in text
    error = await one(logs, "channel_error", connection_id=peer.id)
    assert (error["reply_code"], error["class_id"], error["method_id"]) == (404, 50, 10)
    assert error["method"] == "queue.declare" and error["channel"] == ch.number
    assert error["reply_text"] == "no queue 'missing' in vhost '/'"
    assert error["level"] == "warning"

    ch = await conn.channel()
    await ch.queue_delete("logq")
    deleted = await one(logs, "queue_deleted", queue="logq")
    assert deleted["reason"] == "deleted" and deleted["messages"] == 1
    assert deleted["connection_id"] == peer.id

    await ch.queue_declare("auto", auto_delete=True)
    ok = await ch.basic_consume("auto", lambda message: None)
    await ch.basic_cancel(ok.consumer_tag)
    assert (await one(logs, "queue_deleted", queue="auto"))["reason"] == "auto_delete"

    await ch.queue_declare("short-lived", arguments={"x-expires": 50})
    expired = await one(logs, "queue_deleted", queue="short-lived")
    assert expired["reason"] == "expired"

    await conn.close()
    closed = await one(logs, "connection_closed", connection_id=peer.id)
    assert closed["reason"].startswith("200 ") and closed["closed_by"] == "client"
    assert closed["client_product"] == "aiormq"
    assert isinstance(closed["duration"], float) and closed["duration"] >= 0
    assert (closed["user"], closed["vhost"]) == ("guest", "/")


async def test_a_dropped_socket_is_connection_lost(logs: io.StringIO,
                                                    broker_factory: Any) -> None:
    broker: BrokerHandle = await broker_factory()
    client = await raw_client(broker)
    conn_id = server_side(broker).id
    client.close()
    closed = await one(logs, "connection_closed", connection_id=conn_id)
    assert closed["reason"] == "connection lost" and closed["closed_by"] == "network"
    assert closed["client_product"] == "rawamqp"


async def test_server_close_reason_is_the_code_and_text(logs: io.StringIO,
                                                        broker_factory: Any) -> None:
    broker: BrokerHandle = await broker_factory()
    client = await raw_client(broker)
    conn_id = server_side(broker).id
    client.send_method(0, commands.Channel.Open())  # channel frame on channel 0: 503/504
    await client.expect(commands.Connection.Close)
    client.send_method(0, commands.Connection.CloseOk())
    closed = await one(logs, "connection_closed", connection_id=conn_id)
    assert closed["closed_by"] == "server"
    code, _, text = closed["reason"].partition(" ")
    assert int(code) >= 500 and text
    assert (await one(logs, "connection_error", connection_id=conn_id))["reply_code"] == \
        int(code)


async def test_publishing_logs_nothing_per_message(logs: io.StringIO,
                                                   broker_factory: Any) -> None:
    broker: BrokerHandle = await broker_factory()
    conn = await asyncio.wait_for(aiormq.connect(broker.url), TIMEOUT)
    try:
        ch = await conn.channel()
        await ch.queue_declare("quiet")
        await one(logs, "queue_declared", queue="quiet")
        before = len(events(logs))
        for index in range(200):
            await ch.basic_publish(b"%d" % index, routing_key="quiet")
        queue = broker.vhost().queues["quiet"]
        await wait_until(lambda: queue.message_count == 200)
        during = [e for e in events(logs)[before:] if e["level"] != "debug"]
        assert during == []
    finally:
        await conn.close()


async def test_dead_letters_are_counted_not_logged_one_by_one(
        logs: io.StringIO, broker_factory: Any) -> None:
    broker: BrokerHandle = await broker_factory()
    client = await raw_client(broker)
    try:
        client.send_method(1, commands.Queue.Declare(queue="cap", arguments={
            "x-max-length": 1, "x-dead-letter-exchange": "amq.fanout"}))
        await client.expect(commands.Queue.DeclareOk)
        for _ in range(300):
            client.send_method(1, commands.Basic.Publish(exchange="", routing_key="cap"))
            client.send_content(1, b"x")
        lines = lambda: events(logs, "message_dead_lettered", queue="cap")  # noqa: E731
        await wait_until(lambda: sum(e["count"] for e in lines()) == 299)
        assert len(lines()) < 299
    finally:
        client.close()


async def test_memory_alarm_raised_and_cleared(logs: io.StringIO,
                                               broker_factory: Any) -> None:
    broker: BrokerHandle = await broker_factory(top={"memory_high_watermark_bytes": 20_000})
    client = await raw_client(broker)
    try:
        client.send_method(1, commands.Queue.Declare(queue="big"))
        await client.expect(commands.Queue.DeclareOk)
        for _ in range(30):
            client.send_method(1, commands.Basic.Publish(exchange="", routing_key="big"))
            client.send_content(1, b"x" * 1000)
        raised = await one(logs, "alarm_raised", alarm="memory")
        assert raised["watermark"] == 20_000 and raised["held_bytes"] >= 20_000
        assert raised["level"] == "warning"
        broker.vhost().queues["big"].purge()
        cleared = await one(logs, "alarm_cleared", alarm="memory")
        assert cleared["held_bytes"] < 20_000 and cleared["level"] == "info"
    finally:
        client.close()


async def test_disk_alarm_raised_and_cleared(logs: io.StringIO, tmp_path: Path) -> None:
    with small_tmpfs(tmp_path, "512k") as mnt:
        config = make_config(tmp_path)
        config = dataclasses.replace(config, storage=dataclasses.replace(
            config.storage, data_dir=str(mnt / "data")))
        server = await start(config)
        try:
            filler = mnt / "filler"  # leaves 64 KiB: the publishes below need ~200 KiB
            filler.write_bytes(b"\0" * max(0, _free_bytes(mnt) - 64 * 1024))
            handle = BrokerHandle(server, "127.0.0.1", server.ports[0])
            client = await raw_client(handle)
            try:
                client.send_method(1, commands.Queue.Declare(queue="disk", durable=True))
                await client.expect(commands.Queue.DeclareOk)
                persistent = commands.Basic.Properties(delivery_mode=2)
                for _ in range(100):
                    client.send_method(1, commands.Basic.Publish(exchange="",
                                                                 routing_key="disk"))
                    client.send_content(1, b"d" * 2000, persistent)
                raised = await one(logs, "alarm_raised", alarm="disk")
                assert raised["errno"] is not None and raised["level"] == "error"
                filler.unlink()
                await one(logs, "alarm_cleared", alarm="disk")
            finally:
                client.close()
        finally:
            await server.close(grace=2.0)


def _free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize
