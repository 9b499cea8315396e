"""Topic permissions with real clients: from the YAML config, refusing publishes (write,
routing key) and binds (read, binding key) with RabbitMQ's wording, and managed through
the HTTP API live, saved with the definitions. RabbitMQ 3.10.8's answers to the same
frames are compared in tests/differential/test_diff_topic_permissions.py."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import pika
import pytest

from tests.conftest import make_config
from tests.mgmthttp import Http
from warrenmq.app import start
from warrenmq.config import ManagementConfig, load_config_text

YAML = """
vhosts: [{name: /}, {name: dev}]
users:
  - {name: guest, password: guest, tags: [administrator], loopback_only: true}
  - {name: app, password: pw}
topic_permissions:
  - {user: app, exchange: amq.topic, write: "^{username}\\\\.", read: "^(pub|{vhost})\\\\."}
  - {user: app, vhost: dev, exchange: amq.topic, write: "^{vhost}\\\\.", read: ".*"}
"""


def config(tmp_path: Path, management: bool = False) -> Any:
    loaded = load_config_text(YAML, "broker.yaml")
    base = make_config(tmp_path)
    return dataclasses.replace(
        loaded, listeners=base.listeners, storage=base.storage,
        management=ManagementConfig(port=0) if management else base.management)


async def test_yaml_topic_permissions_refuse_publish_and_bind(tmp_path: Path) -> None:
    server = await start(config(tmp_path))
    port = server.ports[0]
    try:
        def publish(key: str, vhost: str = "/") -> Any:
            params = pika.ConnectionParameters("127.0.0.1", port, vhost,
                                               pika.PlainCredentials("app", "pw"))
            conn = pika.BlockingConnection(params)
            try:
                ch = conn.channel()
                ch.basic_publish("amq.topic", key, b"x")
                ch.queue_declare("", exclusive=True)  # a round trip: a refusal lands first
                return "ok"
            except pika.exceptions.ChannelClosedByBroker as exc:
                return (exc.reply_code, exc.reply_text)
            finally:
                if conn.is_open:
                    conn.close()

        assert await asyncio.to_thread(publish, "app.orders") == "ok"
        assert await asyncio.to_thread(publish, "other.orders") == (
            403, "ACCESS_REFUSED - access to topic 'other.orders' in exchange 'amq.topic'"
                 " in vhost '/' refused for user 'app'")
        assert await asyncio.to_thread(publish, "dev.x", "dev") == "ok"  # {vhost} expanded
        assert (await asyncio.to_thread(publish, "app.x", "dev"))[0] == 403

        connection = await aio_pika.connect(f"amqp://app:pw@127.0.0.1:{port}/")
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue("", exclusive=True)
            await queue.bind("amq.topic", "pub.#")
            await queue.bind("amq.topic", "/.x")  # {vhost} is "/"
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused) as refused:
                await queue.bind("amq.topic", "private.#")
            assert "access to topic 'private.#' in exchange 'amq.topic'" in str(refused.value)
            channel = await connection.channel()
            await channel.default_exchange.publish(aio_pika.Message(b"d"), "anything")
            await channel.declare_queue("", exclusive=True)  # default exchange: unchecked
    finally:
        await server.close(grace=2.0)


async def test_management_api_sets_topic_permissions_live_and_saves_them(
        tmp_path: Path) -> None:
    server = await start(config(tmp_path, management=True))
    try:
        assert server.management_port
        http = Http(server.management_port)
        listed = await http.json("/api/topic-permissions")
        assert {(t["user"], t["vhost"], t["exchange"]) for t in listed} == {
            ("app", "/", "amq.topic"), ("app", "dev", "amq.topic")}
        assert (await http.get("/api/topic-permissions/%2F/app")).json == [
            {"user": "app", "vhost": "/", "exchange": "amq.topic",
             "write": "^{username}\\.", "read": "^(pub|{vhost})\\."}]
        assert (await http.get("/api/topic-permissions/%2F/guest")).status == 404
        assert (await http.get("/api/topic-permissions/nope/app")).status == 404
        assert (await http.as_user("app", "pw").get("/api/topic-permissions")).status == 401

        connection = await aiormq.connect(f"amqp://app:pw@127.0.0.1:{server.ports[0]}/")
        channel = await connection.channel()
        await channel.basic_publish(b"1", exchange="amq.topic", routing_key="app.a")
        put = await http.request("PUT", "/api/topic-permissions/%2F/app",
                                 body={"exchange": "amq.topic", "write": "^b\\.", "read": ""})
        assert put.status == 204  # replaced (201 when new)
        bad = await http.request("PUT", "/api/topic-permissions/%2F/app",
                                 body={"exchange": "amq.topic", "write": "(", "read": ""})
        assert bad.status == 400 and "invalid regular expression" in bad.json["reason"]
        await channel.basic_publish(b"2", exchange="amq.topic", routing_key="b.a")
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await channel.basic_publish(b"3", exchange="amq.topic", routing_key="app.a")
            await channel.queue_declare("", exclusive=True)
        put = await http.request("PUT", "/api/topic-permissions/%2F/guest",
                                 body={"exchange": "x.topic", "write": ".*", "read": ".*"})
        assert put.status == 201
        assert [t["exchange"] for t in await http.json("/api/users/guest/topic-permissions")] \
            == ["x.topic"]
        assert len(await http.json("/api/vhosts/dev/topic-permissions")) == 1
        await connection.close()
        delete = await http.request("DELETE", "/api/topic-permissions/dev/app")
        assert delete.status == 204
        assert (await http.request("DELETE", "/api/topic-permissions/dev/app")).status == 404
    finally:
        await server.close(grace=2.0)
    # the API's record for guest was saved in the data directory; the config's own
    # records come back from the config
    server = await start(config(tmp_path))
    try:
        saved = server.broker.topic_permissions
        assert [t.exchange for t in saved[("guest", "/")]] == ["x.topic"]
        assert [t.write for t in saved[("app", "/")]] == ["^{username}\\."]
    finally:
        await server.close(grace=2.0)


async def test_reload_adds_changes_and_removes_topic_permissions(tmp_path: Path) -> None:
    from warrenmq.declarations import reload

    old = config(tmp_path)
    server = await start(old)
    try:
        new = dataclasses.replace(old, topic_permissions=(
            dataclasses.replace(old.topic_permissions[0], write="^v2\\."),))
        report = reload(server, old, new)
        assert report["removed"] == [
            'topic permission of user "app" for exchange "amq.topic" in vhost "dev"']
        assert report["changed"] == [
            'topic permission of user "app" for exchange "amq.topic" in vhost "/"']
        assert {key: [t.write for t in records]
                for key, records in server.broker.topic_permissions.items()} == {
            ("app", "/"): ["^v2\\."]}
        grant = server.broker.grant("app", "/")
        grant.topics.check("write", "amq.topic", "topic", "v2.x")  # live: no exception
    finally:
        await server.close(grace=2.0)
