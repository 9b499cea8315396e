"""Message content over the wire: properties, bodies, framing and size limits.

Covers: a content header with every basic property set (and a headers table using every
field type, nested tables and arrays, decimal, timestamp, byte array, void) comes back to
a consumer, to basic.get and in basic.return with property bytes identical to what was
published; a user_id other than the authenticated user → 406; zero-length bodies (header
frame, no body frame); a body of exactly frame_max-8 (one body frame) and one byte more
(two); a 100 KiB body over frame_max 4096 is delivered as many body frames each <= 4088
that reassemble intact; a 20 MiB message through aio-pika; max_message_size (1000 passes,
1001 → 406 channel close naming basic.publish); malformed content properties → 502
connection close; a body frame larger than frame_max → 501.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct

import aio_pika
import aiormq
import pytest
from pamqp import commands, frame
from pamqp.body import ContentBody

from tests.conftest import BrokerHandle
from tests.helpers import declare, raw_client
from tests.rawamqp import RawClient

FRAME_HEAD = struct.Struct(">BHI")


# --------------------------------------------------------------------------- raw helpers
async def read_raw(client: RawClient, wait: float = 5.0) -> tuple[int, int, bytes]:
    """Next frame as (type, channel, payload), undecoded; heartbeats are skipped."""
    while True:
        if len(client.buffer) >= 7:
            kind, channel, size = FRAME_HEAD.unpack_from(client.buffer, 0)
            if len(client.buffer) >= size + 8:
                assert client.buffer[7 + size] == 0xCE
                payload = client.buffer[7 : 7 + size]
                client.buffer = client.buffer[size + 8 :]
                if kind == 8:
                    continue
                return kind, channel, payload
        data = await asyncio.wait_for(client.reader.read(1 << 20), wait)
        if not data:
            raise ConnectionError("connection closed by broker")
        client.buffer += data


def method_frame(method: object) -> bytes:
    return frame.marshal(method, 1)  # type: ignore[arg-type]


def header_frame(body_size: int, properties: bytes) -> bytes:
    payload = struct.pack(">HHQ", 60, 0, body_size) + properties
    return FRAME_HEAD.pack(2, 1, len(payload)) + payload + b"\xce"


def body_frames(body: bytes, frame_max: int) -> bytes:
    step = frame_max - 8
    return b"".join(FRAME_HEAD.pack(3, 1, len(part)) + part + b"\xce"
                    for part in (body[i : i + step] for i in range(0, len(body), step)))


def publish_raw(client: RawClient, routing_key: str, body: bytes, properties: bytes,
                frame_max: int = 131072, mandatory: bool = False) -> None:
    client.send(method_frame(commands.Basic.Publish(exchange="", routing_key=routing_key,
                                                    mandatory=mandatory))
                + header_frame(len(body), properties) + body_frames(body, frame_max))


async def read_content(client: RawClient, method_id: int
                       ) -> tuple[bytes, bytes, list[int], bytes]:
    """Read a content-bearing method (60.method_id), its header and bodies.

    Returns (method payload, header payload, body frame sizes, body).
    """
    kind, _, method = await read_raw(client)
    assert kind == 1 and method[:4] == struct.pack(">HH", 60, method_id), method[:4]
    kind, _, header = await read_raw(client)
    assert kind == 2, kind
    _class, _weight, size = struct.unpack_from(">HHQ", header, 0)
    sizes: list[int] = []
    parts: list[bytes] = []
    while sum(sizes) < size:
        kind, _, part = await read_raw(client)
        assert kind == 3, kind
        sizes.append(len(part))
        parts.append(part)
    return method, header, sizes, b"".join(parts)


# --------------------------------------------------------------------------- properties
def _short(value: str) -> bytes:
    raw = value.encode()
    return bytes([len(raw)]) + raw


def _long(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


def _table(items: list[tuple[str, bytes]]) -> bytes:
    return _long(b"".join(_short(key) + value for key, value in items))


def _array(values: list[bytes]) -> bytes:
    return _long(b"".join(values))


def every_property() -> bytes:
    """All 14 basic properties, hand-encoded; headers use every RabbitMQ field type."""
    headers = _table([
        ("bool", b"t\x01"),
        ("i8", b"b" + struct.pack(">b", -5)),
        ("u8", b"B\xff"),
        ("i16", b"s" + struct.pack(">h", -300)),
        ("u16", b"u" + struct.pack(">H", 65000)),
        ("i32", b"I" + struct.pack(">i", -70000)),
        ("u32", b"i" + struct.pack(">I", 4_000_000_000)),
        ("i64", b"l" + struct.pack(">q", -(2**40))),
        ("f32", b"f" + struct.pack(">f", 1.5)),
        ("f64", b"d" + struct.pack(">d", 2.25)),
        ("decimal", b"D\x02" + struct.pack(">i", 12345)),
        ("text", b"S" + _long("héllo wörld".encode())),
        ("bytes", b"x" + _long(b"\x00\x01\xfe\xff\xce")),
        ("when", b"T" + struct.pack(">Q", 1_700_000_000)),
        ("nothing", b"V"),
        ("nested", b"F" + _table([
            ("inner", b"S" + _long(b"v")),
            ("deeper", b"F" + _table([("n", b"I" + struct.pack(">i", 1))])),
        ])),
        ("list", b"A" + _array([
            b"I" + struct.pack(">i", 7),
            b"S" + _long(b"seven"),
            b"F" + _table([("k", b"t\x00")]),
            b"A" + _array([]),
            b"D\x00" + struct.pack(">i", -1),
        ])),
        ("empty", b"F" + _table([])),
    ])
    return struct.pack(">H", 0xFFFC) + b"".join([
        _short("application/json"),
        _short("gzip"),
        headers,
        b"\x02",  # delivery_mode
        b"\x07",  # priority
        _short("corr-1"),
        _short("amq.rabbitmq.reply-to.nowhere"),
        _short("60000"),
        _short("msg-42"),
        struct.pack(">Q", 1_700_000_001),
        _short("order.created"),
        _short("guest"),  # RabbitMQ checks user_id against the authenticated user
        _short("test-app"),
        _short("cluster-x"),
    ])


async def test_every_property_passes_through_byte_for_byte(broker: BrokerHandle) -> None:
    props = every_property()
    body = b'{"hello": "world"}'
    client = await raw_client(broker)
    await declare(client, "props")
    client.send_method(1, commands.Basic.Consume(queue="props", consumer_tag="c",
                                                 no_ack=True))
    await client.expect(commands.Basic.ConsumeOk)
    publish_raw(client, "props", body, props)
    _, header, sizes, got = await read_content(client, 60)  # basic.deliver
    assert header[:12] == struct.pack(">HHQ", 60, 0, len(body))
    assert header[12:] == props
    assert (sizes, got) == ([len(body)], body)

    # basic.get-ok and basic.return carry the same bytes
    client.send_method(1, commands.Basic.Cancel(consumer_tag="c"))
    await client.expect(commands.Basic.CancelOk)
    publish_raw(client, "props", body, props)
    client.send_method(1, commands.Basic.Get(queue="props", no_ack=True))
    _, header, _, got = await read_content(client, 71)
    assert (header[12:], got) == (props, body)
    publish_raw(client, "unroutable", body, props, mandatory=True)
    method, header, _, got = await read_content(client, 50)
    assert method[4:6] == struct.pack(">H", 312)
    assert (header[12:], got) == (props, body)
    client.close()


async def test_properties_seen_by_aio_pika(broker: BrokerHandle) -> None:
    client = await raw_client(broker)
    await declare(client, "props2")
    publish_raw(client, "props2", b"x", every_property())
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue("props2")
        message = await queue.get(no_ack=True, timeout=5)
        assert message is not None
        assert (message.content_type, message.content_encoding) == ("application/json", "gzip")
        assert (message.delivery_mode, message.priority) == (2, 7)
        assert (message.correlation_id, message.message_id) == ("corr-1", "msg-42")
        assert (message.type, message.user_id, message.app_id) == (
            "order.created", "guest", "test-app")
        headers = message.headers
        assert headers["text"] == "héllo wörld"
        assert headers["nested"]["deeper"]["n"] == 1
        assert headers["list"][0] == 7 and headers["list"][1] == "seven"
        assert str(headers["decimal"]) == "123.45"
    client.close()


async def test_user_id_must_match_the_authenticated_user(broker: BrokerHandle) -> None:
    # RabbitMQ (rabbit_channel check_user_id_header): 406 unless the user is an impersonator
    client = await raw_client(broker)
    await declare(client, "uid")
    publish_raw(client, "uid", b"ok", b"\x00\x10" + _short("guest"))
    publish_raw(client, "uid", b"forged", b"\x00\x10" + _short("bob"))
    close = await client.expect_channel_close()
    assert close.reply_code == 406
    assert close.reply_text == (
        "PRECONDITION_FAILED - user_id property set to 'bob' but authenticated user was"
        " 'guest'")
    assert (close.class_id, close.method_id) == (60, 40)
    assert broker.vhost().queues["uid"].message_count == 1
    client.close()


# --------------------------------------------------------------------------- bodies
async def test_zero_length_body_has_no_body_frame(broker: BrokerHandle) -> None:
    client = await raw_client(broker)
    await declare(client, "empty")
    client.send_method(1, commands.Basic.Consume(queue="empty", no_ack=True))
    await client.expect(commands.Basic.ConsumeOk)
    publish_raw(client, "empty", b"", b"\x00\x00")
    publish_raw(client, "empty", b"after", b"\x00\x00")
    kinds = []
    for _ in range(5):
        kind, _, payload = await read_raw(client)
        kinds.append((kind, len(payload)))
    # deliver, header(size 0), deliver, header(size 5), body(5)
    assert [k for k, _ in kinds] == [1, 2, 1, 2, 3]
    assert kinds[4] == (3, 5)
    client.close()


@pytest.mark.parametrize(("size", "frames"), [(4088, [4088]), (4089, [4088, 1])])
async def test_body_at_frame_max_boundary(broker: BrokerHandle, size: int,
                                          frames: list[int]) -> None:
    client = await raw_client(broker, frame_max=4096)
    await declare(client, "edge")
    body = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    publish_raw(client, "edge", body, b"\x00\x00", frame_max=4096)
    client.send_method(1, commands.Basic.Get(queue="edge", no_ack=True))
    _, header, sizes, got = await read_content(client, 71)
    assert struct.unpack_from(">Q", header, 4)[0] == size
    assert sizes == frames
    assert got == body
    client.close()


async def test_large_body_is_split_into_frames_of_at_most_frame_max(
        broker_factory) -> None:  # type: ignore[no-untyped-def]
    handle = await broker_factory(frame_max=4096)
    client = await raw_client(handle, frame_max=4096)
    await declare(client, "big")
    body = os.urandom(100 * 1024)
    publish_raw(client, "big", body, b"\x00\x00", frame_max=4096)
    client.send_method(1, commands.Basic.Consume(queue="big", no_ack=True))
    await client.expect(commands.Basic.ConsumeOk)
    _, _, sizes, got = await read_content(client, 60)
    assert len(sizes) == -(-len(body) // 4088) == 26
    assert all(s <= 4088 for s in sizes)
    assert got == body
    client.close()


async def test_20_mib_message_through_aio_pika(broker: BrokerHandle) -> None:
    body = os.urandom(20 * 1024 * 1024)
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue("huge")
        await channel.default_exchange.publish(aio_pika.Message(body), routing_key="huge")
        message = await queue.get(no_ack=True, timeout=10)
        assert message is not None
        assert len(message.body) == len(body)
        assert hashlib.sha256(message.body).digest() == hashlib.sha256(body).digest()


# --------------------------------------------------------------------------- limits
async def test_max_message_size(broker_factory) -> None:  # type: ignore[no-untyped-def]
    handle = await broker_factory(max_message_size=1000)
    connection = await aio_pika.connect(handle.url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue("limited")
        await channel.default_exchange.publish(aio_pika.Message(b"a" * 1000),
                                               routing_key="limited")
        message = await queue.get(no_ack=True, timeout=5)
        assert message is not None and message.body == b"a" * 1000
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
            await channel.default_exchange.publish(aio_pika.Message(b"a" * 1001),
                                                   routing_key="limited")

    client = await raw_client(handle)
    publish_raw(client, "limited", b"b" * 1001, b"\x00\x00")
    close = await client.expect_channel_close()
    assert close.reply_code == 406
    assert close.reply_text == (
        "PRECONDITION_FAILED - message size 1001 is larger than configured max size 1000")
    assert (close.class_id, close.method_id) == (60, 40)
    # the connection survives, and the limit's own size still goes through
    await client.open_channel(1)
    publish_raw(client, "limited", b"c" * 1000, b"\x00\x00")
    client.send_method(1, commands.Basic.Get(queue="limited", no_ack=True))
    _, _, _, got = await read_content(client, 71)
    assert got == b"c" * 1000
    client.close()


MALFORMED = {
    "continuation-flag": b"\x00\x01",
    "reserved-flag-bit": b"\x00\x02",
    "trailing-bytes": b"\x80\x00" + _short("text/plain") + b"\x00",
    "truncated-shortstr": b"\x80\x00\x0atext",
    "truncated-flags": b"\x80",
    "bad-table-type": b"\x20\x00" + _table([("k", b"Z\x00")]),
    "table-overruns": b"\x20\x00" + struct.pack(">I", 50) + _short("k") + b"V",
}


@pytest.mark.parametrize("properties", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_malformed_properties_close_connection_502(broker: BrokerHandle,
                                                         properties: bytes) -> None:
    client = await raw_client(broker)
    await declare(client, "bad")
    publish_raw(client, "bad", b"body", properties)
    close = await client.expect_connection_close()
    assert close.reply_code == 502
    assert close.reply_text.startswith("SYNTAX_ERROR - ")
    assert close.class_id == 60
    assert broker.vhost().queues["bad"].message_count == 0


async def test_body_frame_larger_than_frame_max_is_501(broker: BrokerHandle) -> None:
    client = await raw_client(broker, frame_max=4096)
    await declare(client, "toolarge")
    body = b"q" * 4089
    client.send(method_frame(commands.Basic.Publish(exchange="", routing_key="toolarge"))
                + header_frame(len(body), b"\x00\x00"))
    client.send(frame.marshal(ContentBody(body), 1))
    close = await client.expect_connection_close()
    assert close.reply_code == 501
    assert broker.vhost().queues["toolarge"].message_count == 0
