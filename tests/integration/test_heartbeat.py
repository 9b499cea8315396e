"""Heartbeats over the wire, against a broker proposing heartbeat=1 (``broker_factory``).

Covers: the broker proposes its configured heartbeat in connection.tune; a raw client that
negotiates 1 s and then stays silent is disconnected after about two intervals (the broker
gives up after two silent intervals, as RabbitMQ does), and gets heartbeat frames on
channel 0 before that; a raw client that keeps sending heartbeat frames (and nothing else)
keeps its connection well past that; a client that negotiates heartbeat=0 is never
disconnected for silence and gets no heartbeats; aio-pika with a 1 s heartbeat stays
connected while idle and still works afterwards. All waits are bounded.
"""

from __future__ import annotations

import asyncio

import aio_pika
from pamqp import commands
from pamqp.heartbeat import Heartbeat

from tests.conftest import BrokerHandle
from tests.helpers import aio_pika_round_trip, declare, raw_client, wait_connections
from tests.rawamqp import PROTOCOL_HEADER, RawClient

HEARTBEAT_FRAME = b"\x08\x00\x00\x00\x00\x00\x00\xce"


async def test_tune_proposes_configured_heartbeat(broker_factory) -> None:  # type: ignore[no-untyped-def]
    handle: BrokerHandle = await broker_factory(heartbeat=1)
    client = await RawClient.connect(handle.port)
    try:
        client.send(PROTOCOL_HEADER)
        await client.expect(commands.Connection.Start)
        client.send_method(0, commands.Connection.StartOk(
            client_properties={}, mechanism="PLAIN", response="\0guest\0guest"))
        tune = await client.expect(commands.Connection.Tune)
        assert tune.heartbeat == 1
    finally:
        client.close()


async def test_silent_client_is_disconnected(broker_factory) -> None:  # type: ignore[no-untyped-def]
    handle: BrokerHandle = await broker_factory(heartbeat=1)
    client = await raw_client(handle, heartbeat=1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    received = b""
    deadline = started + 8.0
    while True:
        remaining = deadline - loop.time()
        assert remaining > 0, "a silent client was still connected after 8 s"
        try:
            data = await asyncio.wait_for(client.reader.read(65536), remaining)
        except (ConnectionResetError, BrokenPipeError):
            break
        if not data:
            break
        received += data
    elapsed = loop.time() - started
    client.close()
    # Not dropped before one full interval, and heartbeats were offered meanwhile.
    assert elapsed >= 1.0, elapsed
    assert HEARTBEAT_FRAME in received
    assert received.replace(HEARTBEAT_FRAME, b"") == b""  # no connection.close: just dropped

    await wait_connections(handle)


async def test_heartbeating_client_stays_connected(broker_factory) -> None:  # type: ignore[no-untyped-def]
    handle: BrokerHandle = await broker_factory(heartbeat=1)
    client = await RawClient.connect(handle.port)
    try:
        await client.handshake(heartbeat=1)
        loop = asyncio.get_running_loop()
        end = loop.time() + 4.5
        while loop.time() < end:
            client.send(HEARTBEAT_FRAME)
            try:
                _, value = await client.read_frame(timeout=0.4)
            except TimeoutError:
                continue
            assert isinstance(value, Heartbeat), value
        assert len(handle.server.connections) == 1
        await client.open_channel(1)
        ok = await declare(client, "hb-alive", auto_delete=True)
        assert ok.queue == "hb-alive"
    finally:
        client.close()


async def test_broker_sends_heartbeats_to_idle_client(broker_factory) -> None:  # type: ignore[no-untyped-def]
    handle: BrokerHandle = await broker_factory(heartbeat=1)
    client = await RawClient.connect(handle.port)
    try:
        await client.handshake(heartbeat=1)
        channel, value = await client.read_frame(timeout=3)
        assert isinstance(value, Heartbeat), value
        assert channel == 0
    finally:
        client.close()


async def test_heartbeat_zero_is_never_disconnected(broker_factory) -> None:  # type: ignore[no-untyped-def]
    handle: BrokerHandle = await broker_factory(heartbeat=1)
    raw = await RawClient.connect(handle.port)
    connection = await aio_pika.connect(
        f"amqp://guest:guest@127.0.0.1:{handle.port}/?heartbeat=1")
    try:
        await raw.handshake(heartbeat=0)
        await raw.open_channel(1)
        # Silent for 3 s: three heartbeat intervals of the broker's proposal.
        try:
            data = await raw.read_bytes(timeout=3.0)
        except TimeoutError:
            data = None
        assert data is None, f"heartbeat=0 client got {data!r}"  # no EOF, no heartbeats
        ok = await declare(raw, "hb0-alive", auto_delete=True)
        assert ok.queue == "hb0-alive"
        # aio-pika negotiated 1 s too and heartbeated on its own during the same 3 s.
        assert not connection.is_closed
        await aio_pika_round_trip(connection, "hb-aio-pika", b"hb")
        assert len(handle.server.connections) == 2
    finally:
        raw.close()
        await connection.close()
