"""Protocol errors sent as raw bytes, and a bounded fuzz run, against a real broker.

Covers what client libraries never send:

- a wrong protocol header (AMQP 0-9 / 0-8 / 1.0 headers, HTTP, TLS hello, split across
  writes): the broker answers with its own header ``AMQP\\x00\\x00\\x09\\x01`` and closes
  the socket (AMQP 0-9-1 §4.2.2). RabbitMQ differs in two ways WarrenMQ deliberately does
  not copy: it treats ``AMQP\\x01\\x01\\x00\\x09`` (0-9) as 0-9-1, and it answers non-AMQP
  bytes with its AMQP 1.0 SASL header because it also speaks 1.0; WarrenMQ speaks 0-9-1
  only, so 0-9-1 is the one header it can offer;
- frame-level errors (bad frame-end byte, a frame above the negotiated frame_max, an
  unknown frame type): 501 FRAME_ERROR with class/method 0/0, as RabbitMQ's frame_error
  (method ``none``);
- channel errors: a method on an unopened channel, a second channel.open: 504;
- content assembly (RabbitMQ's rabbit_command_assembler): a content header or body with
  no basic.publish before it is 505 with 0/0; a method where a header or body was expected,
  a body where a header was expected and a body longer than the header declared are 505
  naming basic.publish (60/40);
- an unknown class or method id: 503 COMMAND_INVALID naming those ids. RabbitMQ has no
  answer to copy here (its generated ``lookup_method_name`` exits with
  ``unknown_method_id`` and the reader dies without sending a close); 503 is the spec's
  "invalid sequence of frames ... operation considered invalid", while 540 would claim a
  known-but-unsupported feature;
- truncated or over-long method arguments: 502 SYNTAX_ERROR naming the method (WarrenMQ's
  codec choice; RabbitMQ's generated decoder reports 501 "cannot decode");
- basic.publish immediate=true: 540 NOT_IMPLEMENTED;
- heartbeat frames on a non-zero channel and content frames on channel 0: 505.

Every case asserts the reply code, the class/method ids, that the socket is closed
afterwards, that a well-behaved aio-pika connection opened beforehand still publishes and
consumes, and that the broker still accepts new connections. The fuzz test sends 200
seeded random byte strings, truncated frames and mutated frames after a valid handshake:
each must get connection.close with a protocol-error code or leave the connection open,
never a 541 or a silent drop, and the broker keeps serving afterwards.
"""

from __future__ import annotations

import asyncio
import random
import struct
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aio_pika
import pytest
from pamqp import commands, frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from pamqp.heartbeat import Heartbeat

from tests.conftest import BrokerHandle
from tests.helpers import aio_pika_round_trip, declare, raw, raw_client, wait_connections
from tests.rawamqp import PROTOCOL_HEADER, RawClient


def raw_frame(frame_type: int, channel: int, payload: bytes, end: bytes = b"\xce") -> bytes:
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + end


def method_payload(method: commands.Frame) -> bytes:
    """The payload (class id, method id, arguments) of a method frame, via pamqp."""
    return frame.marshal(method, 1)[7:-1]


def publish(channel: int = 1, **kwargs: object) -> bytes:
    return frame.marshal(commands.Basic.Publish(exchange="", routing_key="raw-q", **kwargs),
                         channel)


def header(size: int, channel: int = 1) -> bytes:
    return frame.marshal(ContentHeader(0, size, commands.Basic.Properties()), channel)


def body(data: bytes, channel: int = 1) -> bytes:
    return frame.marshal(ContentBody(data), channel)


QOS = frame.marshal(commands.Basic.Qos(prefetch_count=1), 1)


# ----------------------------------------------------------------------------- fixtures


@dataclass
class Bystander:
    connection: aio_pika.abc.AbstractConnection
    channel: aio_pika.abc.AbstractChannel
    queue: aio_pika.abc.AbstractQueue


@pytest.fixture
async def bystander(broker: BrokerHandle) -> AsyncIterator[Bystander]:
    """A well-behaved aio-pika connection, opened before the misbehaving one."""
    connection = await aio_pika.connect(broker.url)
    channel = await connection.channel(publisher_confirms=True)
    queue = await channel.declare_queue("bystander", auto_delete=True)
    yield Bystander(connection, channel, queue)
    await connection.close()


async def assert_broker_healthy(broker: BrokerHandle, bystander: Bystander) -> None:
    """The bad peer is gone; the bystander still publishes and consumes; new peers work."""
    await wait_connections(broker, 1)
    assert not bystander.connection.is_closed
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        async with message.process():
            if not got.done():
                got.set_result(message.body)

    tag = await bystander.queue.consume(on_message)
    await bystander.channel.default_exchange.publish(
        aio_pika.Message(b"still-alive"), routing_key=bystander.queue.name)
    assert await asyncio.wait_for(got, 5) == b"still-alive"
    await bystander.queue.cancel(tag)

    async with raw(broker) as fresh:
        await declare(fresh, "", exclusive=True)


# ----------------------------------------------------------------------------- headers


@pytest.mark.parametrize("chunks", [
    [b"AMQP\x01\x01\x00\x09"],
    [b"AMQP\x00\x00\x09\x00"],
    [b"AMQP\x00\x00\x08\x00"],
    [b"AMQP\x03\x01\x00\x00"],
    [b"HTTP/1.1"],
    [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"],
    [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"],
    [b"AMQP", b"\x00\x00\x09\x02"],
    [b"AM", b"XP\x00\x00\x09\x01"],
], ids=["amqp-0-9", "amqp-0-9-0", "amqp-0-8", "amqp-1-0-sasl", "http", "http-get",
        "tls-hello", "split-wrong-revision", "split-garbage"])
async def test_wrong_protocol_header(broker: BrokerHandle, bystander: Bystander,
                                     chunks: list[bytes]) -> None:
    client = await RawClient.connect(broker.port)
    for chunk in chunks:
        client.send(chunk)
        await client.writer.drain()
        await asyncio.sleep(0.01)
    reply = b""
    while len(reply) < 8:
        data = await client.read_bytes(timeout=5)
        assert data, f"socket closed after {reply!r}"
        reply += data
    assert reply == PROTOCOL_HEADER
    assert await client.closed()
    client.close()
    await assert_broker_healthy(broker, bystander)


async def test_protocol_header_split_across_writes_is_accepted(broker: BrokerHandle) -> None:
    client = await RawClient.connect(broker.port)
    try:
        for chunk in (b"AM", b"QP\x00", b"\x00\x09", b"\x01"):
            client.send(chunk)
            await client.writer.drain()
            await asyncio.sleep(0.01)
        start = await client.expect(commands.Connection.Start)
        assert (start.version_major, start.version_minor) == (0, 9)
    finally:
        client.close()


# ----------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class Case:
    send: Callable[[], bytes]
    code: int
    class_id: int
    method_id: int
    frame_max: int = 131072


CASES = {
    "bad-frame-end": Case(lambda: QOS[:-1] + b"\x00", 501, 0, 0),
    "frame-above-frame-max": Case(
        lambda: publish() + header(5000) + raw_frame(3, 1, b"x" * 5000), 501, 0, 0,
        frame_max=4096),
    "unknown-frame-type-7": Case(lambda: raw_frame(7, 1, b"abc"), 501, 0, 0),
    "unknown-frame-type-0": Case(lambda: raw_frame(0, 1, b""), 501, 0, 0),
    "method-on-unopened-channel": Case(
        lambda: frame.marshal(commands.Queue.Declare(queue="q7"), 7), 504, 50, 10),
    "second-channel-open": Case(
        lambda: frame.marshal(commands.Channel.Open(), 1), 504, 20, 10),
    "header-without-publish": Case(lambda: header(5), 505, 0, 0),
    "body-without-publish": Case(lambda: body(b"hello"), 505, 0, 0),
    "method-instead-of-header": Case(lambda: publish() + QOS, 505, 60, 40),
    "body-instead-of-header": Case(lambda: publish() + body(b"hello"), 505, 60, 40),
    "method-instead-of-body": Case(lambda: publish() + header(10) + QOS, 505, 60, 40),
    "header-instead-of-body": Case(lambda: publish() + header(10) + header(10), 505, 60, 40),
    "body-larger-than-declared": Case(
        lambda: publish() + header(5) + body(b"0123456789"), 505, 60, 40),
    "body-larger-in-second-frame": Case(
        lambda: publish() + header(6) + body(b"0123") + body(b"4567"), 505, 60, 40),
    "header-for-other-class": Case(
        lambda: publish() + raw_frame(2, 1, struct.pack(">HHQH", 50, 0, 5, 0)), 505, 60, 40),
    "heartbeat-on-channel-1": Case(lambda: raw_frame(8, 1, b""), 505, 0, 0),
    "header-on-channel-0": Case(lambda: header(5, channel=0), 505, 0, 0),
    "unknown-class": Case(lambda: raw_frame(1, 1, struct.pack(">HH", 99, 1)), 503, 99, 1),
    "unknown-method-of-basic": Case(
        lambda: raw_frame(1, 1, struct.pack(">HH", 60, 999) + b"\x00\x00"), 503, 60, 999),
    "unknown-method-on-channel-0": Case(
        lambda: raw_frame(1, 0, struct.pack(">HH", 10, 77)), 503, 10, 77),
    "method-shorter-than-ids": Case(lambda: raw_frame(1, 1, b"\x00\x32"), 502, 0, 0),
    "truncated-queue-declare": Case(
        lambda: raw_frame(1, 1, method_payload(commands.Queue.Declare(queue="trunc"))[:9]),
        502, 50, 10),
    "truncated-basic-publish": Case(
        lambda: raw_frame(1, 1, method_payload(commands.Basic.Publish(
            exchange="amq.direct", routing_key="rk"))[:10]), 502, 60, 40),
    "truncated-basic-ack": Case(
        lambda: raw_frame(1, 1, method_payload(commands.Basic.Ack(delivery_tag=1))[:8]),
        502, 60, 80),
    "trailing-bytes-after-qos": Case(
        lambda: raw_frame(1, 1, method_payload(commands.Basic.Qos(prefetch_count=1)) + b"\0"),
        502, 60, 10),
    "table-length-overruns": Case(
        lambda: raw_frame(1, 1, struct.pack(">HHH", 50, 10, 0) + b"\x01q" + b"\x00"
                          + struct.pack(">I", 1000) + b"abc"), 502, 50, 10),
    "immediate-publish": Case(lambda: publish(immediate=True), 540, 60, 40),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_protocol_error_closes_connection(broker: BrokerHandle, bystander: Bystander,
                                                name: str) -> None:
    case = CASES[name]
    client = await raw_client(broker, frame_max=case.frame_max)
    client.send(case.send())
    close = await client.expect_connection_close((case.code, case.class_id, case.method_id))
    assert close.reply_text.split(" - ")[0] in {
        "FRAME_ERROR", "SYNTAX_ERROR", "COMMAND_INVALID", "CHANNEL_ERROR",
        "UNEXPECTED_FRAME", "NOT_IMPLEMENTED"}, close.reply_text
    await assert_broker_healthy(broker, bystander)


async def test_frame_error_ignores_later_input(broker: BrokerHandle,
                                               bystander: Bystander) -> None:
    """After a framing error the broker has lost sync: valid frames after it do nothing."""
    client = await raw_client(broker)
    client.send(QOS[:-1] + b"\x00" + frame.marshal(commands.Queue.Declare(queue="late"), 1))
    close = await client.expect_connection_close(send_close_ok=False)
    assert close.reply_code == 501
    assert "late" not in broker.vhost().queues
    await assert_broker_healthy(broker, bystander)


async def test_content_split_at_frame_max_is_accepted(broker: BrokerHandle) -> None:
    """The positive twin of frame-above-frame-max: 4096-byte frames pass with frame_max 4096."""
    async with raw(broker, frame_max=4096) as client:
        await declare(client, "fm4096", auto_delete=True)
        payload = bytes(random.Random(7).randbytes(10000))
        client.send_method(1, commands.Basic.Publish(exchange="", routing_key="fm4096"))
        client.send_content(1, payload, frame_max=4096)
        client.send_method(1, commands.Basic.Get(queue="fm4096", no_ack=True))
        await client.expect(commands.Basic.GetOk)
        content = await client.expect(ContentHeader)
        assert content.body_size == 10000
        received = b""
        sizes = []
        while len(received) < 10000:
            part = await client.expect(ContentBody)
            sizes.append(len(part.value))
            received += part.value
        assert received == payload
        assert max(sizes) == 4096 - 8  # the broker splits deliveries at frame_max too


# ----------------------------------------------------------------------------- fuzz

ALLOWED_CLOSE_CODES = {501, 502, 503, 504, 505, 540, 530}  # 530: channel above channel_max

SEED_FRAMES = [
    QOS,
    frame.marshal(commands.Queue.Declare(queue="fuzz-q", auto_delete=True), 1),
    frame.marshal(commands.Exchange.Declare(exchange="fuzz-x", exchange_type="topic"), 1),
    frame.marshal(commands.Queue.Bind(queue="fuzz-q", exchange="amq.topic",
                                      routing_key="a.#", arguments={"k": 1}), 1),
    publish() + header(5) + body(b"hello"),
    frame.marshal(commands.Basic.Publish(exchange="amq.fanout", routing_key=""), 1)
    + frame.marshal(ContentHeader(0, 3, commands.Basic.Properties(
        content_type="text/plain", headers={"h": "v", "n": 3}, delivery_mode=2)), 1)
    + body(b"abc"),
    frame.marshal(commands.Basic.Consume(queue="fuzz-q", consumer_tag="fz"), 1),
    frame.marshal(commands.Basic.Ack(delivery_tag=1), 1),
    frame.marshal(commands.Channel.Flow(active=True), 1),
    frame.marshal(Heartbeat(), 0),
]


def fuzz_input(rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:  # random bytes
        return rng.randbytes(rng.randint(1, 48))
    seed = rng.choice(SEED_FRAMES)
    if kind == 1:  # a prefix of valid frames: the broker must just wait for the rest
        return seed[: rng.randint(1, len(seed) - 1)]
    if kind == 2:  # first frame's payload cut short, with a consistent size field
        size = struct.unpack_from(">I", seed, 3)[0]
        cut = rng.randint(0, max(size - 1, 0))
        return raw_frame(seed[0], struct.unpack_from(">H", seed, 1)[0], seed[7:7 + cut])
    data = bytearray(seed)  # a few bytes mutated
    for _ in range(rng.randint(1, 3)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


async def fuzz_one(broker: BrokerHandle, data: bytes) -> int | None:
    """Send ``data`` after a handshake; the close code the broker sent, or None if open."""
    async with raw(broker) as client:
        client.send(data)
        while True:
            try:
                _, value = await client.read_frame(timeout=0.25)
            except TimeoutError:
                return None  # still open, waiting for more bytes or nothing to say
            if isinstance(value, commands.Connection.Close):
                assert value.reply_code in ALLOWED_CLOSE_CODES, (data, value)
                client.send_method(0, commands.Connection.CloseOk())
                assert await client.closed(), data
                return int(value.reply_code)
            if isinstance(value, commands.Connection.CloseOk):  # fuzz made a valid close
                assert await client.closed(), data
                return 200


async def test_fuzz_never_crashes_the_broker(broker: BrokerHandle,
                                             bystander: Bystander) -> None:
    rng = random.Random(0x5EED)
    inputs = [fuzz_input(rng) for _ in range(200)]
    codes: Counter[int | None] = Counter()
    for start in range(0, len(inputs), 25):
        batch = inputs[start:start + 25]
        results = await asyncio.wait_for(
            asyncio.gather(*(fuzz_one(broker, data) for data in batch)), 30)
        codes.update(results)
    # The seed is fixed, so this is deterministic; it proves the run exercised errors.
    assert sum(n for code, n in codes.items() if code in ALLOWED_CLOSE_CODES) >= 50, codes
    assert {501, 502, 503, 504} <= set(codes), codes
    assert codes[None] >= 10, codes
    await assert_broker_healthy(broker, bystander)
    connection = await aio_pika.connect(broker.url)
    async with connection:
        await aio_pika_round_trip(connection, "after-fuzz", b"ok")
