"""Resource limits and hostile peers over real sockets: RabbitMQ's vhost and user limits
(YAML and the management API), max_message_size refused from the content header before
any body, the handshake timeout (silent and trickling peers), the bound on concurrent
handshakes, and failed-login throttling with its counters in /metrics."""

from __future__ import annotations

import asyncio
import struct
import time

import aio_pika
import pytest
from pamqp import commands

from tests.conftest import BrokerHandle
from tests.helpers import aio_pika_round_trip, raw_client
from tests.mgmthttp import MANAGEMENT, Http
from tests.rawamqp import PROTOCOL_HEADER, RawClient
from warrenmq.config import AuthConfig, UserConfig, VhostConfig


async def open_refused(broker: BrokerHandle) -> commands.Connection.Close:
    """A handshake whose connection.open is refused: the close it gets."""
    client = await RawClient.connect(broker.port)
    client.send(PROTOCOL_HEADER)
    await client.expect(commands.Connection.Start)
    client.send_method(0, commands.Connection.StartOk(
        client_properties={}, mechanism="PLAIN", response="\0guest\0guest", locale="en_US"))
    tune = await client.expect(commands.Connection.Tune)
    client.send_method(0, commands.Connection.TuneOk(channel_max=tune.channel_max,
                                                      frame_max=131072, heartbeat=0))
    client.send_method(0, commands.Connection.Open(virtual_host="/"))
    return await client.expect_connection_close()


# ----------------------------------------------------------------------------- vhost/user


async def test_vhost_max_connections_from_yaml(broker_factory) -> None:  # type: ignore[no-untyped-def]
    handle = await broker_factory(top={"vhosts": (VhostConfig("/", max_connections=2),)})
    clients = [await raw_client(handle, channels=()) for _ in range(2)]
    close = await open_refused(handle)
    assert close.reply_code == 530
    assert close.reply_text == ("NOT_ALLOWED - access to vhost '/' refused for user 'guest':"
                                " connection limit (2) is reached")
    clients.pop().close()
    await asyncio.sleep(0.2)
    (await raw_client(handle, channels=())).close()  # room again
    for client in clients:
        client.close()


async def test_user_max_channels_from_yaml(broker_factory) -> None:  # type: ignore[no-untyped-def]
    user = UserConfig("guest", password="guest", tags=("administrator",),
                      loopback_only=True, max_channels=2)
    handle = await broker_factory(top={"users": (user,)})
    client = await raw_client(handle, channels=(1, 2))
    client.send_method(3, commands.Channel.Open())
    close = await client.expect_connection_close((530, 20, 10))
    assert "maximum allowed user limit of (2)" in close.reply_text


async def test_limits_over_the_management_api(broker_factory) -> None:  # type: ignore[no-untyped-def]
    handle = await broker_factory(top=MANAGEMENT)
    http = Http(handle.server.management_port)  # type: ignore[arg-type]
    reply = await http.request("PUT", "/api/vhost-limits/%2F/max-queues", body={"value": 1})
    assert reply.status == 204, reply.text
    assert await http.json("/api/vhost-limits") == [
        {"vhost": "/", "value": {"max-queues": 1}}]
    reply = await http.request("PUT", "/api/user-limits/guest/max-connections",
                               body={"value": 1})
    assert reply.status == 204, reply.text
    assert await http.json("/api/user-limits/guest") == [
        {"user": "guest", "value": {"max-connections": 1}}]
    bad = await http.request("PUT", "/api/vhost-limits/%2F/max-bananas", body={"value": 1})
    assert bad.status == 400 and "unknown vhost limit" in bad.text
    bad = await http.request("PUT", "/api/vhost-limits/%2F/max-queues", body={"value": "x"})
    assert bad.status == 400
    missing = await http.request("PUT", "/api/vhost-limits/nope/max-queues", body={"value": 1})
    assert missing.status == 404

    connection = await aio_pika.connect(handle.url)
    async with connection:
        close = await open_refused(handle)  # the user's second connection
        assert close.reply_code == 530 and "User connection limit (1)" in close.reply_text
        channel = await connection.channel()
        await channel.declare_queue("first")
        with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed,
                           match=r"queue limit in vhost '/' \(1\) is reached"):
            await channel.declare_queue("second")
    assert (await http.request("DELETE", "/api/vhost-limits/%2F/max-queues")).status == 204
    assert await http.json("/api/vhost-limits") == []
    monitoring = http.as_user(None)
    assert (await monitoring.request("PUT", "/api/vhost-limits/%2F/max-queues",
                                     body={"value": 1})).status == 401


# ----------------------------------------------------------------------------- content


async def test_oversized_message_refused_from_its_header(broker_factory) -> None:  # type: ignore[no-untyped-def]
    """A header announcing 200 MiB is refused at once; no body byte is awaited."""
    handle = await broker_factory(max_message_size=1_000_000)
    client = await raw_client(handle)
    client.send_method(1, commands.Basic.Publish(exchange="", routing_key="q"))
    client.send(struct.pack(">BHI", 2, 1, 14) + struct.pack(">HHQH", 60, 0, 200 * 2**20, 0)
                + b"\xce")
    close = await client.expect_channel_close(1, (406, 60, 40), timeout=2)
    assert "larger than configured max size 1000000" in close.reply_text
    client.close()


# ----------------------------------------------------------------------------- handshakes


async def test_silent_and_trickling_peers_closed_at_the_handshake_timeout(
        broker_factory) -> None:  # type: ignore[no-untyped-def]
    handle = await broker_factory(handshake_timeout=1)
    started = time.monotonic()
    silent = await asyncio.open_connection("127.0.0.1", handle.port)
    trickle = await asyncio.open_connection("127.0.0.1", handle.port)

    async def dribble() -> None:
        for byte in PROTOCOL_HEADER[:7]:  # never completes the header
            trickle[1].write(bytes([byte]))
            await asyncio.sleep(0.25)

    task = asyncio.create_task(dribble())
    assert await asyncio.wait_for(silent[0].read(), 3) == b""
    assert await asyncio.wait_for(trickle[0].read(), 3) == b""
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 2.5, elapsed
    task.cancel()
    connection = await aio_pika.connect(handle.url)  # real clients are unaffected
    async with connection:
        await aio_pika_round_trip(connection, "after-timeouts", b"ok")


async def test_half_open_flood_is_bounded(broker_factory) -> None:  # type: ignore[no-untyped-def]
    handle = await broker_factory(max_handshakes=5, handshake_timeout=2, top=MANAGEMENT)
    held = [await asyncio.open_connection("127.0.0.1", handle.port) for _ in range(5)]
    await asyncio.sleep(0.1)
    reader, _ = await asyncio.open_connection("127.0.0.1", handle.port)
    assert await asyncio.wait_for(reader.read(), 2) == b""  # refused at accept
    assert handle.server.guard.refused_handshakes >= 1
    metrics = (await Http(handle.server.management_port).get("/metrics")).text  # type: ignore[arg-type]
    assert "warrenmq_handshakes_refused_total" in metrics
    for _, writer in held:
        writer.close()
    await asyncio.sleep(0.2)
    connection = await aio_pika.connect(handle.url)  # the slots are free again
    async with connection:
        await aio_pika_round_trip(connection, "after-flood", b"ok")


async def test_repeated_failed_logins_are_delayed_and_counted(
        broker_factory) -> None:  # type: ignore[no-untyped-def]
    auth = AuthConfig(failed_login_threshold=2, failed_login_delay=1)
    handle = await broker_factory(top={"auth": auth, **MANAGEMENT})

    async def failed_login() -> float:
        started = time.monotonic()
        client = await RawClient.connect(handle.port)
        client.send(PROTOCOL_HEADER)
        await client.expect(commands.Connection.Start)
        client.send_method(0, commands.Connection.StartOk(
            client_properties={}, mechanism="PLAIN", response="\0guest\0wrong",
            locale="en_US"))
        close = await client.expect_connection_close((403, 10, 11))
        assert "Login was refused" in close.reply_text
        return time.monotonic() - started

    assert await failed_login() < 0.9
    assert await failed_login() < 0.9
    assert await failed_login() >= 0.9  # the third from this address waits
    assert handle.server.guard.failed_logins == 3
    metrics = (await Http(handle.server.management_port).get("/metrics")).text  # type: ignore[arg-type]
    assert "warrenmq_auth_failed_logins_total 3.0" in metrics
    connection = await aio_pika.connect(handle.url)  # right password: no delay
    async with connection:
        pass


async def test_limits_are_definitions(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Exported as RabbitMQ does (user ``limits``, ``vhost-limits`` parameters), saved
    with the durable definitions and restored at the next start; importable."""
    from tests.conftest import make_config
    from warrenmq.app import start

    config = make_config(tmp_path, MANAGEMENT)
    server = await start(config)
    http = Http(server.management_port)  # type: ignore[arg-type]
    reply = await http.request("POST", "/api/definitions", body={"users": [
        {"name": "app", "password": "secret", "tags": [], "limits": {"max-channels": 8}}]})
    assert reply.status in (200, 201, 204), reply.text
    await http.request("PUT", "/api/vhost-limits/%2F/max-connections", body={"value": 7})
    await http.request("PUT", "/api/user-limits/app/max-channels", body={"value": 9})
    exported = await http.json("/api/definitions")
    assert {"value": {"max-connections": 7}, "vhost": "/", "component": "vhost-limits",
            "name": "limits"} in exported["parameters"]
    (app,) = [u for u in exported["users"] if u["name"] == "app"]
    assert app["limits"] == {"max-channels": 9}
    await server.close(grace=1.0)

    server = await start(config)
    try:
        assert server.broker.vhost_limits == {"/": {"max-connections": 7}}
        # a user the config declares takes its limits from the config; "app" was saved
        assert server.broker.user_limits == {"app": {"max-channels": 9}}
        http = Http(server.management_port)  # type: ignore[arg-type]
        exported["parameters"][0]["value"] = {"max-connections": 3, "max-queues": 4}
        reply = await http.request("POST", "/api/definitions", body=exported)
        assert reply.status in (200, 201, 204), reply.text
        assert server.broker.vhost_limits == {"/": {"max-connections": 3, "max-queues": 4}}
        assert server.broker.vhosts["/"].max_queues == 4
    finally:
        await server.close(grace=1.0)
