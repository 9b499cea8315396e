"""Connection handshake, tune negotiation, vhost access and close, over real TCP.

Covers, with aio-pika, aiormq, pika (BlockingConnection in a thread) and a raw pamqp peer:

- connection.start: protocol 0-9, server properties (product, version, the capabilities
  clients look for), mechanisms PLAIN and AMQPLAIN, locale en_US;
- login with PLAIN (every library) and AMQPLAIN (raw: the response is a field table
  without its 4-byte length prefix, keys LOGIN and PASSWORD);
- a wrong password: connection.close 403 ACCESS_REFUSED naming connection.start-ok, then
  the socket is closed (with and without the client's close-ok); the exception each
  client library raises;
- an unknown mechanism: 503 COMMAND_INVALID. (RabbitMQ raises command_invalid from
  ``auth_mechanism_to_module`` too, but in the "starting" state it then drops the socket
  after a pause without sending connection.close; WarrenMQ sends the close first, which
  the spec allows and is more helpful. The test checks WarrenMQ's close.)
- connection.tune defaults (2047 / 131072 / 60) and tune-ok validation: frame_max below
  4096 or above the server's, and channel_max above the server's, are 530 NOT_ALLOWED
  naming connection.tune-ok; frame_max 0 takes the server's value (WarrenMQ's documented
  choice; RabbitMQ's ``validate_negotiated_integer_value`` would refuse 0 with 530);
- channels beyond the negotiated channel_max: 530 NOT_ALLOWED, as RabbitMQ's
  ``create_channel`` answers ("number of channels opened (N) has reached the negotiated
  channel_max (N)"; the Java client's ChannelLimitNegotiation test expects 530);
- connection.open to an unknown vhost: 530 NOT_ALLOWED (raw and aio-pika);
- close / close-ok both ways: a client close gets close-ok and the socket closes; a
  server close (after an error) ignores everything but close / close-ok until the
  client's close-ok arrives, answers a crossing close with close-ok, and gives up after
  its close timeout if the client never answers.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import aiormq
import pika
import pika.exceptions
import pytest
from pamqp import commands, encode
from pamqp.header import ContentHeader

import warrenmq
from tests.conftest import BrokerHandle
from tests.helpers import aio_pika_round_trip, declare, raw_client, wait_connections
from tests.rawamqp import PROTOCOL_HEADER, RawClient
from warrenmq.config import VhostConfig

EXPECTED_CAPABILITIES = (
    "publisher_confirms",
    "exchange_exchange_bindings",
    "basic.nack",
    "consumer_cancel_notify",
    "connection.blocked",
    "authentication_failure_close",
    "per_consumer_qos",
)


# ----------------------------------------------------------------------------- helpers


def start_ok_frame(mechanism: str, response: bytes) -> bytes:
    """A connection.start-ok frame with raw ``response`` bytes (pamqp only takes str)."""
    args = (
        encode.field_table({"product": "rawamqp", "capabilities": {
            "authentication_failure_close": True}})
        + encode.short_string(mechanism)
        + struct.pack(">I", len(response)) + response
        + encode.short_string("en_US")
    )
    payload = struct.pack(">HH", 10, 11) + args
    return struct.pack(">BHI", 1, 0, len(payload)) + payload + b"\xce"


def plain(user: str = "guest", password: str = "guest") -> bytes:
    return f"\0{user}\0{password}".encode()


def amqplain(user: str = "guest", password: str = "guest") -> bytes:
    # AMQPLAIN's response is a field table *without* the table's 4-byte length prefix.
    return encode.field_table({"LOGIN": user, "PASSWORD": password})[4:]


async def start(broker: BrokerHandle) -> tuple[RawClient, commands.Connection.Start]:
    client = await RawClient.connect(broker.port)
    client.send(PROTOCOL_HEADER)
    return client, await client.expect(commands.Connection.Start)


async def until_tune(broker: BrokerHandle) -> tuple[RawClient, commands.Connection.Tune]:
    client, _ = await start(broker)
    client.send(start_ok_frame("PLAIN", plain()))
    return client, await client.expect(commands.Connection.Tune)


async def pika_connect_error(url: str) -> BaseException:
    """The error pika's BlockingConnection raises connecting to ``url`` (run in a thread)."""

    def run() -> BaseException:
        try:
            pika.BlockingConnection(pika.URLParameters(url)).close()
        except pika.exceptions.AMQPConnectionError as exc:
            return exc
        raise AssertionError(f"pika connected to {url}")

    return await asyncio.to_thread(run)


# ----------------------------------------------------------------------------- start


async def test_raw_connection_start_properties(broker: BrokerHandle) -> None:
    client, start_method = await start(broker)
    try:
        assert (start_method.version_major, start_method.version_minor) == (0, 9)
        props = start_method.server_properties
        assert props["product"] == "WarrenMQ"
        assert props["version"] == warrenmq.__version__
        caps = props["capabilities"]
        for name in EXPECTED_CAPABILITIES:
            assert caps.get(name) is True, name
        assert {"PLAIN", "AMQPLAIN"} <= set(start_method.mechanisms.split())
        assert "en_US" in start_method.locales.split()
    finally:
        client.close()


async def test_aio_pika_sees_server_properties(broker: BrokerHandle) -> None:
    connection = await aio_pika.connect(broker.url)
    async with connection:
        assert connection.transport is not None
        props = connection.transport.connection.server_properties
        assert props["product"] == "WarrenMQ"
        assert props["version"] == warrenmq.__version__
        for name in EXPECTED_CAPABILITIES:
            assert props["capabilities"][name] is True, name
        await aio_pika_round_trip(connection, "conn-aio-pika", b"x")


async def test_aiormq_sees_server_properties(broker: BrokerHandle) -> None:
    connection = await aiormq.connect(broker.url)
    try:
        props = connection.server_properties
        assert props["product"] == "WarrenMQ"
        assert props["version"] == warrenmq.__version__
        for name in EXPECTED_CAPABILITIES:
            assert props["capabilities"][name] is True, name
        assert connection.basic_nack and connection.consumer_cancel_notify
        assert connection.exchange_exchange_bindings and connection.publisher_confirms
        tune = connection.connection_tune
        assert (tune.channel_max, tune.frame_max) == (2047, 131072)
    finally:
        await connection.close()


async def test_pika_sees_server_properties(broker: BrokerHandle) -> None:
    def run() -> tuple[dict, tuple[bool, ...], int]:
        conn = pika.BlockingConnection(pika.URLParameters(broker.url))
        try:
            props = dict(conn._impl.server_properties)
            flags = (conn.basic_nack_supported, conn.consumer_cancel_notify_supported,
                     conn.exchange_exchange_bindings_supported,
                     conn.publisher_confirms_supported)
            ch = conn.channel()
            result = ch.queue_declare("", exclusive=True)
            return props, flags, result.method.message_count
        finally:
            conn.close()

    props, flags, count = await asyncio.to_thread(run)
    # pika decodes long strings in server properties as bytes
    product = props["product"]
    assert (product.decode() if isinstance(product, bytes) else product) == "WarrenMQ"
    assert flags == (True, True, True, True)
    assert count == 0


# ----------------------------------------------------------------------------- login


async def test_raw_amqplain_login(broker: BrokerHandle) -> None:
    client, _ = await start(broker)
    try:
        client.send(start_ok_frame("AMQPLAIN", amqplain()))
        tune = await client.expect(commands.Connection.Tune)
        client.send_method(0, commands.Connection.TuneOk(
            channel_max=tune.channel_max, frame_max=tune.frame_max, heartbeat=0))
        client.send_method(0, commands.Connection.Open(virtual_host="/"))
        await client.expect(commands.Connection.OpenOk)
        await client.open_channel(1)
        ok = await declare(client, "amqplain-q", auto_delete=True)
        assert ok.queue == "amqplain-q"
    finally:
        client.close()


@pytest.mark.parametrize("mechanism, response", [
    ("AMQPLAIN", amqplain(password="wrong")),
    ("PLAIN", plain(password="wrong")),
    ("PLAIN", plain(user="nobody", password="guest")),
], ids=["amqplain-bad-password", "plain-bad-password", "plain-unknown-user"])
async def test_raw_bad_credentials_refused(broker: BrokerHandle, mechanism: str,
                                           response: bytes) -> None:
    client, _ = await start(broker)
    client.send(start_ok_frame(mechanism, response))
    close = await client.expect_connection_close((403, 10, 11))
    assert close.reply_text.startswith("ACCESS_REFUSED")
    assert mechanism in close.reply_text


async def test_raw_bad_password_socket_closed_without_close_ok(broker: BrokerHandle) -> None:
    """A client that never answers the 403 close is disconnected anyway (close timeout)."""
    client, _ = await start(broker)
    client.send(start_ok_frame("PLAIN", plain(password="wrong")))
    await client.expect_connection_close((403, 10, 11), send_close_ok=False)
    await wait_connections(broker)


async def test_raw_unknown_mechanism(broker: BrokerHandle) -> None:
    client, _ = await start(broker)
    client.send(start_ok_frame("CRAM-MD5", b"guest 0123456789abcdef"))
    close = await client.expect_connection_close((503, 10, 11))
    assert "CRAM-MD5" in close.reply_text


@pytest.mark.parametrize("connect", [aio_pika.connect, aiormq.connect],
                         ids=["aio_pika", "aiormq"])
async def test_async_client_bad_password(broker: BrokerHandle,
                                         connect: Callable[[str], Awaitable[Any]]) -> None:
    url = f"amqp://guest:wrong@127.0.0.1:{broker.port}/"
    with pytest.raises(aiormq.exceptions.ProbableAuthenticationError) as info:
        await asyncio.wait_for(connect(url), 10)
    assert "ACCESS_REFUSED" in str(info.value.args)
    await wait_connections(broker)


async def test_pika_bad_password(broker: BrokerHandle) -> None:
    url = f"amqp://guest:wrong@127.0.0.1:{broker.port}/?connection_attempts=1"
    exc = await pika_connect_error(url)
    assert isinstance(exc, pika.exceptions.ProbableAuthenticationError), repr(exc)
    assert "ACCESS_REFUSED" in str(exc)


# ----------------------------------------------------------------------------- tune


async def test_tune_defaults(broker: BrokerHandle) -> None:
    client, tune = await until_tune(broker)
    client.close()
    assert (tune.channel_max, tune.frame_max, tune.heartbeat) == (2047, 131072, 60)


@pytest.mark.parametrize("channel_max, frame_max, fragment", [
    (2047, 4095, "frame_max"),
    (2047, 1024, "frame_max"),
    (2047, 131073, "frame_max"),
    (2047, 1 << 20, "frame_max"),
    (2048, 131072, "channel_max"),
    (65535, 131072, "channel_max"),
], ids=["frame-max-4095", "frame-max-1024", "frame-max-above", "frame-max-1MiB",
        "channel-max-2048", "channel-max-65535"])
async def test_tune_ok_out_of_range_is_530(broker: BrokerHandle, channel_max: int,
                                          frame_max: int, fragment: str) -> None:
    client, _ = await until_tune(broker)
    client.send_method(0, commands.Connection.TuneOk(
        channel_max=channel_max, frame_max=frame_max, heartbeat=0))
    close = await client.expect_connection_close((530, 10, 31))
    assert close.reply_text.startswith("NOT_ALLOWED")
    assert fragment in close.reply_text


async def test_tune_ok_frame_max_4096_is_accepted(broker: BrokerHandle) -> None:
    client, _ = await until_tune(broker)
    try:
        client.send_method(0, commands.Connection.TuneOk(
            channel_max=2047, frame_max=4096, heartbeat=0))
        client.send_method(0, commands.Connection.Open(virtual_host="/"))
        await client.expect(commands.Connection.OpenOk)
        await client.open_channel(1)
    finally:
        client.close()


async def test_tune_ok_frame_max_zero_uses_servers_value(broker: BrokerHandle) -> None:
    """frame_max 0 in tune-ok means "no client limit": the server's 131072 applies."""
    client, tune = await until_tune(broker)
    client.send_method(0, commands.Connection.TuneOk(
        channel_max=tune.channel_max, frame_max=0, heartbeat=0))
    client.send_method(0, commands.Connection.Open(virtual_host="/"))
    await client.expect(commands.Connection.OpenOk)
    await client.open_channel(1)
    await declare(client, "fm0", auto_delete=True)
    # A body frame of exactly 131072 bytes in all is accepted ...
    body = bytes(range(256)) * 512
    body = body[: 131072 - 8]
    client.send_method(1, commands.Basic.Publish(exchange="", routing_key="fm0"))
    client.send_content(1, body, frame_max=131072)
    client.send_method(1, commands.Basic.Get(queue="fm0", no_ack=True))
    await client.expect(commands.Basic.GetOk)
    header = await client.expect(ContentHeader)
    assert header.body_size == len(body)
    got = b""
    while len(got) < len(body):
        _, frame_value = await client.read_frame()
        assert len(frame_value.value) <= 131072 - 8
        got += frame_value.value
    assert got == body
    # ... and one byte more is a frame error.
    client.send(struct.pack(">BHI", 3, 1, 131072 - 7) + b"\0" * (131072 - 7) + b"\xce")
    await client.expect_connection_close((501, 0, 0))


async def _open_with_channel_max(broker: BrokerHandle, channel_max: int) -> RawClient:
    client, _ = await until_tune(broker)
    client.send_method(0, commands.Connection.TuneOk(
        channel_max=channel_max, frame_max=131072, heartbeat=0))
    client.send_method(0, commands.Connection.Open(virtual_host="/"))
    await client.expect(commands.Connection.OpenOk)
    return client


async def test_channels_beyond_negotiated_channel_max_are_530(broker: BrokerHandle) -> None:
    # RabbitMQ 3.10.8 (observed, and tests/differential/test_diff_protocol.py): channel_max
    # counts open channels; the refusal is a 530 without method ids.
    client = await _open_with_channel_max(broker, 5)
    for number in range(1, 6):
        await client.open_channel(number)
    client.send_method(6, commands.Channel.Open())
    close = await client.expect_connection_close((530, 0, 0))
    assert close.reply_text == ("NOT_ALLOWED - number of channels opened (5) has reached"
                                " the negotiated channel_max (5)")


async def test_channel_numbers_above_channel_max_open(broker: BrokerHandle) -> None:
    client = await _open_with_channel_max(broker, 2)
    await client.open_channel(65535)
    client.send_method(65535, commands.Channel.Close(200, "", 0, 0))
    await client.expect(commands.Channel.CloseOk)
    await client.open_channel(11)
    await client.open_channel(12)  # two open again: 11 and 12
    client.send_method(13, commands.Channel.Open())
    await client.expect_connection_close((530, 0, 0))


async def test_channel_max_zero_uses_servers_value(broker: BrokerHandle) -> None:
    client = await _open_with_channel_max(broker, 0)
    for number in range(1, 2048):
        client.send_method(number, commands.Channel.Open())
    for _ in range(1, 2048):
        await client.expect(commands.Channel.OpenOk)
    client.send_method(2048, commands.Channel.Open())
    close = await client.expect_connection_close((530, 0, 0))
    assert "(2047)" in close.reply_text


async def test_channel_max_limit_from_config(broker_factory) -> None:  # type: ignore[no-untyped-def]
    handle = await broker_factory(channel_max=3)
    client, tune = await until_tune(handle)
    assert tune.channel_max == 3
    client.send_method(0, commands.Connection.TuneOk(channel_max=3, frame_max=131072,
                                                     heartbeat=0))
    client.send_method(0, commands.Connection.Open(virtual_host="/"))
    await client.expect(commands.Connection.OpenOk)
    for number in (1, 2, 3):
        await client.open_channel(number)
    client.send_method(4, commands.Channel.Open())
    await client.expect_connection_close((530, 0, 0))


# ----------------------------------------------------------------------------- open


async def test_raw_open_unknown_vhost_is_530(broker: BrokerHandle) -> None:
    client, tune = await until_tune(broker)
    client.send_method(0, commands.Connection.TuneOk(
        channel_max=tune.channel_max, frame_max=tune.frame_max, heartbeat=0))
    client.send_method(0, commands.Connection.Open(virtual_host="/nope"))
    close = await client.expect_connection_close((530, 10, 40))
    assert close.reply_text.startswith("NOT_ALLOWED")
    assert "/nope" in close.reply_text


async def test_aio_pika_unknown_vhost(broker: BrokerHandle) -> None:
    # aiormq checks "is this open-ok?" before "is this a close?", so the 530 close
    # surfaces as InvalidFrameError naming Connection.Close (the raw test checks the code).
    url = f"amqp://guest:guest@127.0.0.1:{broker.port}/%2Fnope"
    with pytest.raises(aiormq.exceptions.InvalidFrameError, match=r"Connection\.Close"):
        await asyncio.wait_for(aio_pika.connect(url), 10)
    await wait_connections(broker)


async def test_pika_unknown_vhost(broker: BrokerHandle) -> None:
    url = f"amqp://guest:guest@127.0.0.1:{broker.port}/%2Fnope?connection_attempts=1"
    exc = await pika_connect_error(url)
    assert isinstance(exc, pika.exceptions.ProbableAccessDeniedError), repr(exc)
    assert "(530) 'NOT_ALLOWED - vhost /nope not found'" in str(exc)
    await wait_connections(broker)


async def test_channel_frame_before_open_is_unexpected(broker: BrokerHandle) -> None:
    """A channel frame before connection.open is 505 UNEXPECTED_FRAME, as RabbitMQ's
    ``handle_frame`` answers any non-zero-channel frame outside the running state."""
    client, tune = await until_tune(broker)
    client.send_method(0, commands.Connection.TuneOk(
        channel_max=tune.channel_max, frame_max=tune.frame_max, heartbeat=0))
    client.send_method(1, commands.Channel.Open())
    await client.expect_connection_close((505, 0, 0))


# ----------------------------------------------------------------------------- close


async def test_client_close_gets_close_ok(broker: BrokerHandle) -> None:
    client = await raw_client(broker)
    declared = await declare(client, "", exclusive=True)
    assert declared.queue in broker.vhost().queues
    client.send_method(0, commands.Connection.Close(
        reply_code=200, reply_text="bye", class_id=0, method_id=0))
    await client.expect(commands.Connection.CloseOk)
    assert await client.closed()
    client.close()
    await wait_connections(broker)
    assert declared.queue not in broker.vhost().queues


async def test_server_close_waits_for_close_ok(broker: BrokerHandle) -> None:
    client = await raw_client(broker)
    client.send_method(1, commands.Channel.Open())  # second open: connection error
    close = await client.expect(commands.Connection.Close)
    assert (close.reply_code, close.class_id, close.method_id) == (504, 20, 10)
    # While closing, the server ignores everything but close / close-ok ...
    client.send_method(2, commands.Channel.Open())
    client.send_method(1, commands.Queue.Declare(queue="ignored"))
    with pytest.raises(TimeoutError):
        await client.read_frame(timeout=0.3)
    assert "ignored" not in broker.vhost().queues
    assert not client.reader.at_eof()
    # ... and closes the socket once the client's close-ok arrives.
    client.send_method(0, commands.Connection.CloseOk())
    assert await client.closed(timeout=5)
    client.close()


async def test_crossing_close_is_answered(broker: BrokerHandle) -> None:
    client = await RawClient.connect(broker.port)
    await client.handshake()
    client.send_method(0, commands.Connection.Open(virtual_host="/"))  # open again: 503
    close = await client.expect(commands.Connection.Close)
    assert (close.reply_code, close.class_id, close.method_id) == (503, 10, 40)
    client.send_method(0, commands.Connection.Close(
        reply_code=200, reply_text="crossing", class_id=0, method_id=0))
    await client.expect(commands.Connection.CloseOk)
    assert await client.closed()
    client.close()


async def test_server_close_times_out_without_close_ok(broker: BrokerHandle) -> None:
    client = await raw_client(broker)
    client.send_method(1, commands.Channel.Open())
    await client.expect_connection_close((504, 20, 10), send_close_ok=False)
    await wait_connections(broker)


async def test_aio_pika_close_round_trip(broker: BrokerHandle) -> None:
    connection = await aio_pika.connect(broker.url)
    channel = await connection.channel()
    await channel.declare_queue("", exclusive=True)
    assert len(broker.server.connections) == 1
    await asyncio.wait_for(connection.close(), 5)
    assert connection.is_closed
    await wait_connections(broker)


async def test_aiormq_close_round_trip(broker: BrokerHandle) -> None:
    connection = await aiormq.connect(broker.url)
    await connection.channel()
    await asyncio.wait_for(connection.close(), 5)
    assert connection.is_closed
    await wait_connections(broker)


async def test_open_without_a_vhost_uses_the_configured_default(broker_factory) -> None:  # type: ignore[no-untyped-def]
    """config default_vhost: a connection.open naming no vhost lands there."""
    handle = await broker_factory(top={
        "vhosts": (VhostConfig("/"), VhostConfig("other")), "default_vhost": "other"})
    client = await RawClient.connect(handle.port)
    await client.handshake(vhost="")
    await client.open_channel(1)
    client.send_method(1, commands.Queue.Declare(queue="in-default"))
    await client.expect(commands.Queue.DeclareOk)
    assert "in-default" in handle.vhost("other").queues
    assert "in-default" not in handle.vhost("/").queues
    client.close()
