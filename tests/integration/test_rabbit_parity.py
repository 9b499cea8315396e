"""Defects a structure-aware fuzzer found, each checked against RabbitMQ 3.10.8.

Every expectation here was first sent as the same raw bytes to a RabbitMQ 3.10.8 node
(Debian's rabbitmq-server, a private node) and its answer recorded; WarrenMQ must give
the same reply code and class/method ids. Where we differ on purpose it says so:

- a heartbeat frame with a payload: 501 FRAME_ERROR (it must not swallow the next frame);
  an empty heartbeat on channel 1 is 505 in RabbitMQ 3.10.8 (not 501), and here too;
- after our own connection.close nothing but close-ok may follow: confirms for publishes
  in the same read are not sent (RabbitMQ sends none); they stay unconfirmed;
- frames on a channel after the client's channel.close, in the same read, are ignored
  (a second close gets a second close-ok; channel.open there is 504);
- the 406s RabbitMQ applies to properties (expiration, delivery_mode, CC/BCC), queue
  arguments (x-queue-type, x-max-priority) and consumer arguments (x-priority,
  x-stream-offset); a content header with weight != 0 is 505 (RabbitMQ 3.10.8's answer);
- invalid UTF-8 in table keys, message properties and a publish's routing key passes
  through; in other method short strings (names, tags) it is 501 as in RabbitMQ;
- timestamps past year 9999 in method tables are accepted; tables nest up to 256 levels
  (RabbitMQ has no limit; ours keeps recursive Python decoders safe) — over it, 502.
"""

from __future__ import annotations

import asyncio
import struct

import aio_pika
import pytest
from pamqp import commands

from tests.conftest import BrokerHandle
from tests.helpers import raw, raw_client
from tests.rawamqp import RawClient


def ss(value: str | bytes) -> bytes:
    raw_value = value.encode() if isinstance(value, str) else value
    return bytes([len(raw_value)]) + raw_value


def ls(value: str | bytes) -> bytes:
    raw_value = value.encode() if isinstance(value, str) else value
    return struct.pack(">I", len(raw_value)) + raw_value


def table(*entries: bytes) -> bytes:
    joined = b"".join(entries)
    return struct.pack(">I", len(joined)) + joined


def entry(key: str | bytes, tag: bytes, value: bytes) -> bytes:
    return ss(key) + tag + value


def frame(kind: int, channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + b"\xce"


def method(channel: int, class_id: int, method_id: int, args: bytes = b"") -> bytes:
    return frame(1, channel, struct.pack(">HH", class_id, method_id) + args)


def declare(name: str | bytes, args: bytes = b"\0\0\0\0", channel: int = 1,
            durable: bool = False) -> bytes:
    return method(channel, 50, 10, b"\0\0" + ss(name) + bytes([2 * durable]) + args)


def consume(queue: str, args: bytes = b"\0\0\0\0", tag: str | bytes = "") -> bytes:
    return method(1, 60, 20, b"\0\0" + ss(queue) + ss(tag) + b"\x02" + args)


def publish(routing_key: str | bytes, flags: int = 0, props: bytes = b"", weight: int = 0,
            body: bytes = b"abc", exchange: str | bytes = "") -> bytes:
    return (method(1, 60, 40, b"\0\0" + ss(exchange) + ss(routing_key) + b"\x00")
            + frame(2, 1, struct.pack(">HHQH", 60, weight, len(body), flags) + props)
            + frame(3, 1, body))


def get(queue: str) -> bytes:
    return method(1, 60, 70, b"\0\0" + ss(queue) + b"\x01")


CHANNEL_CLOSE = method(1, 20, 40, struct.pack(">H", 200) + ss("bye") + b"\0\0\0\0")
EXPIRATION, DELIVERY_MODE, HEADERS, MESSAGE_ID = 1 << 8, 1 << 12, 1 << 13, 1 << 7


def nested(depth: int) -> bytes:
    value = table()
    for _ in range(depth):
        value = table(entry("n", b"F", value))
    return value


async def next_reply(client: RawClient) -> object:
    """The next frame that is not a heartbeat."""
    while True:
        _, value = await client.read_frame()
        if value.__class__.__name__ != "Heartbeat":
            return value


# ----------------------------------------------------------------------------- framing


async def test_heartbeat_with_payload_is_a_frame_error(broker: BrokerHandle) -> None:
    """`08 0000 0000000d` + 13 bytes: before, the channel.open after it vanished."""
    client = await raw_client(broker, channels=())
    client.send(frame(8, 0, b"\x01" * 13) + method(2, 20, 10, ss("")))
    close = await client.expect_connection_close((501, 0, 0))
    assert "heartbeat" in close.reply_text


async def test_heartbeat_with_payload_on_channel_1_is_a_frame_error(
        broker: BrokerHandle) -> None:
    client = await raw_client(broker, channels=())
    client.send(frame(8, 1, b"\x00"))
    await client.expect_connection_close((501, 0, 0))


async def test_content_header_with_weight_is_unexpected(broker: BrokerHandle) -> None:
    client = await raw_client(broker)
    client.send(publish("q", weight=1))
    await client.expect_connection_close((505, 60, 40))


# ----------------------------------------------------------------------------- closing


async def test_no_confirms_after_our_connection_close(broker: BrokerHandle) -> None:
    """Confirm mode on three channels; publishes, then a method inside content (505)
    in the same write: the connection.close must be the last frame before close-ok."""
    client = await raw_client(broker, channels=(1, 2, 3))
    for number in (1, 2, 3):
        client.send_method(number, commands.Confirm.Select())
        await client.expect(commands.Confirm.SelectOk)
    data = b""
    for number in (1, 2, 3):
        data += (method(number, 60, 40, b"\0\0" + ss("amq.fanout") + ss("") + b"\x00")
                 + frame(2, number, struct.pack(">HHQH", 60, 0, 1, 0)) + frame(3, number, b"x"))
    data += method(3, 60, 40, b"\0\0" + ss("") + ss("x") + b"\x00") + method(3, 60, 10,
                                                                            b"\0" * 7)
    client.send(data)
    seen = []
    while True:
        value = await next_reply(client)
        seen.append(type(value).__name__)
        if isinstance(value, commands.Connection.Close):
            assert value.reply_code == 505
            break
    client.send_method(0, commands.Connection.CloseOk())
    with pytest.raises((ConnectionError, TimeoutError)):
        extra = await next_reply(client)
        seen.append(type(extra).__name__)
    assert "Ack" not in seen, seen  # routed and confirmed nowhere: a publisher republishes
    client.close()


async def test_frames_after_client_channel_close_are_ignored(broker: BrokerHandle) -> None:
    async with raw(broker) as client:
        client.send(CHANNEL_CLOSE + declare("after-close") + CHANNEL_CLOSE
                    + publish("x") + method(1, 20, 41))
        assert isinstance(await next_reply(client), commands.Channel.CloseOk)
        assert isinstance(await next_reply(client), commands.Channel.CloseOk)
        client.send_method(2, commands.Channel.Open())  # the connection is fine
        assert isinstance(await next_reply(client), commands.Channel.OpenOk)
        assert "after-close" not in broker.vhost().queues
        client.send_method(1, commands.Channel.Open())  # channel 1 may be reopened later
        assert isinstance(await next_reply(client), commands.Channel.OpenOk)


async def test_reopen_in_the_same_read_as_close_is_504(broker: BrokerHandle) -> None:
    client = await raw_client(broker)
    client.send(CHANNEL_CLOSE + method(1, 20, 10, ss("")))
    assert isinstance(await next_reply(client), commands.Channel.CloseOk)
    await client.expect_connection_close((504, 20, 10))


# ----------------------------------------------------------------------------- 406s

PROPERTY_CASES = {
    "expiration-abc": (EXPIRATION, ss("abc"), "invalid expiration 'abc': no_integer"),
    "expiration-negative": (EXPIRATION, ss("-1"), "{value_negative,-1}"),
    "expiration-20-digits": (EXPIRATION, ss("1" * 20), "value_too_large"),
    "expiration-over-ten-years": (EXPIRATION, ss("315360000001"), "value_too_large"),
    "expiration-empty": (EXPIRATION, ss(""), "no_integer"),
    "expiration-fraction": (EXPIRATION, ss("1.5"), "leftover_string"),
    "delivery-mode-3": (DELIVERY_MODE, b"\x03", "{delivery_mode_unknown,3}"),
    "delivery-mode-0": (DELIVERY_MODE, b"\x00", "{delivery_mode_unknown,0}"),
    "cc-string": (HEADERS, table(entry("CC", b"S", ls("x"))), '"CC",longstr'),
    "bcc-int": (HEADERS, table(entry("BCC", b"I", struct.pack(">i", 5))), '"BCC"'),
}


@pytest.mark.parametrize("name", list(PROPERTY_CASES))
async def test_publish_properties_refused_with_406(broker: BrokerHandle, name: str) -> None:
    flags, props, text = PROPERTY_CASES[name]
    async with raw(broker) as client:
        client.send(declare("props-q") + publish("props-q", flags, props))
        await client.expect(commands.Queue.DeclareOk)
        close = await client.expect_channel_close(1, (406, 60, 40))
        assert text in close.reply_text
        assert broker.vhost().queues["props-q"].message_count == 0


ACCEPTED_PROPERTIES = {
    "expiration-plus": (EXPIRATION, ss("+5000")),
    "expiration-ten-years": (EXPIRATION, ss("315360000000")),
    "delivery-mode-2": (DELIVERY_MODE, b"\x02"),
    "cc-array": (HEADERS, table(entry("CC", b"A", struct.pack(">I", 0)))),
    "message-id-not-utf8": (MESSAGE_ID, ss(b"\xff\xfe")),
    "header-key-not-utf8": (HEADERS, table(entry(b"\xff", b"S", ls("v")))),
    "header-timestamp-year-10000": (HEADERS, table(entry("t", b"T",
                                                         struct.pack(">Q", 253402300800)))),
    "headers-nested-200": (HEADERS, nested(200)),
    "headers-nested-256": (HEADERS, nested(256)),
}


async def raw_frames(client: RawClient, count: int) -> list[tuple[int, bytes]]:
    """The next ``count`` frames as (type, payload), read as bytes (pamqp would refuse
    what we pass through, e.g. property short strings that are not UTF-8)."""
    frames: list[tuple[int, bytes]] = []
    while len(frames) < count:
        if len(client.buffer) >= 7:
            kind, _, size = struct.unpack_from(">BHI", client.buffer, 0)
            if len(client.buffer) >= size + 8:
                if kind != 8:
                    frames.append((kind, client.buffer[7:7 + size]))
                client.buffer = client.buffer[size + 8:]
                continue
        data = await client.read_bytes()
        assert data, "connection closed"
        client.buffer += data
    return frames


@pytest.mark.parametrize("name", list(ACCEPTED_PROPERTIES))
async def test_publish_properties_passed_through(broker: BrokerHandle, name: str) -> None:
    """Accepted, and delivered with the publisher's property bytes unchanged."""
    flags, props = ACCEPTED_PROPERTIES[name]
    async with raw(broker) as client:
        client.send(declare("pass-q") + publish("pass-q", flags, props) + get("pass-q"))
        (_, declare_ok), (_, get_ok), (kind, header) = await raw_frames(client, 3)
        assert declare_ok[:4] == struct.pack(">HH", 50, 11)
        assert get_ok[:4] == struct.pack(">HH", 60, 71), get_ok
        assert kind == 2
        assert header[12:] == struct.pack(">H", flags) + props


async def test_headers_nested_past_the_limit_are_502(broker: BrokerHandle) -> None:
    client = await raw_client(broker)
    client.send(declare("deep-q") + publish("deep-q", HEADERS, nested(257)))
    await client.expect(commands.Queue.DeclareOk)
    close = await client.expect_connection_close((502, 60, 40))
    assert "256" in close.reply_text


QUEUE_ARGUMENT_CASES = {
    "queue-type-foo": (entry("x-queue-type", b"S", ls("foo")), "unsupported queue type"),
    "queue-type-int": (entry("x-queue-type", b"I", struct.pack(">i", 1)), "expected a string"),
    "max-priority-256": (entry("x-max-priority", b"I", struct.pack(">i", 256)), "at most 255"),
    "max-priority-negative": (entry("x-max-priority", b"I", struct.pack(">i", -1)), "negative"),
    "max-priority-string": (entry("x-max-priority", b"S", ls("10")), "integer"),
    "dead-letter-exchange-int": (entry("x-dead-letter-exchange", b"I", struct.pack(">i", 1)),
                                 "expected a string"),
}


@pytest.mark.parametrize("name", list(QUEUE_ARGUMENT_CASES))
async def test_queue_arguments_refused_with_406(broker: BrokerHandle, name: str) -> None:
    argument, text = QUEUE_ARGUMENT_CASES[name]
    async with raw(broker) as client:
        client.send(declare(f"args-{name}", table(argument)))
        close = await client.expect_channel_close(1, (406, 50, 10))
        assert text in close.reply_text
        assert f"args-{name}" not in broker.vhost().queues


ACCEPTED_QUEUE_ARGUMENTS = {
    "queue-type-classic": entry("x-queue-type", b"S", ls("classic")),
    "max-priority-255": entry("x-max-priority", b"I", struct.pack(">i", 255)),
    "key-not-utf8": entry(b"x-\xff", b"S", ls("v")),
    "timestamp-year-10000": entry("x-t", b"T", struct.pack(">Q", 253402300800)),
    "timestamp-max": entry("x-t", b"T", struct.pack(">Q", 2**64 - 1)),
    "nested-200": entry("x-n", b"F", nested(199)),
}


@pytest.mark.parametrize("name", list(ACCEPTED_QUEUE_ARGUMENTS))
async def test_queue_arguments_accepted(broker: BrokerHandle, name: str) -> None:
    async with raw(broker) as client:
        client.send(declare(f"ok-{name}", table(ACCEPTED_QUEUE_ARGUMENTS[name])))
        await client.expect(commands.Queue.DeclareOk)
        # redeclaring with the same bytes is equivalent (the values round-trip)
        client.send(declare(f"ok-{name}", table(ACCEPTED_QUEUE_ARGUMENTS[name])))
        await client.expect(commands.Queue.DeclareOk)


CONSUMER_ARGUMENT_CASES = {
    "priority-string": entry("x-priority", b"S", ls("abc")),
    "priority-double": entry("x-priority", b"d", struct.pack(">d", 1.0)),
    "priority-bool": entry("x-priority", b"t", b"\x01"),
    "stream-offset-on-classic": entry("x-stream-offset", b"I", struct.pack(">i", 0)),
}


@pytest.mark.parametrize("name", list(CONSUMER_ARGUMENT_CASES))
async def test_consumer_arguments_refused_with_406(broker: BrokerHandle, name: str) -> None:
    async with raw(broker) as client:
        client.send(declare("cons-q") + consume("cons-q", table(CONSUMER_ARGUMENT_CASES[name])))
        await client.expect(commands.Queue.DeclareOk)
        await client.expect_channel_close(1, (406, 60, 20))
        assert broker.vhost().queues["cons-q"].consumer_count == 0


async def test_consumer_priority_integer_accepted(broker: BrokerHandle) -> None:
    async with raw(broker) as client:
        client.send(declare("cons-ok") + consume(
            "cons-ok", table(entry("x-priority", b"s", struct.pack(">h", 1)))))
        await client.expect(commands.Queue.DeclareOk)
        await client.expect(commands.Basic.ConsumeOk)


# ----------------------------------------------------------------------------- UTF-8

NAME_CASES = {
    "queue-name": (declare(b"q\xff"), (50, 10)),
    "consumer-tag": (consume("amq.rabbitmq.x", tag=b"t\xff"), (60, 20)),
    "exchange-declare": (method(1, 40, 10, b"\0\0" + ss(b"e\xff") + ss("direct") + b"\0"
                                + table()), (40, 10)),
    "channel-close-text": (method(1, 20, 40, struct.pack(">H", 200) + ss(b"\xff")
                                  + b"\0\0\0\0"), (20, 40)),
}


@pytest.mark.parametrize("name", list(NAME_CASES))
async def test_names_not_utf8_are_501_as_rabbitmq(broker: BrokerHandle, name: str) -> None:
    data, ids = NAME_CASES[name]
    client = await raw_client(broker)
    client.send(data)
    close = await client.expect_connection_close((501, *ids))
    assert "Malformed UTF-8 in shortstr" in close.reply_text


async def test_publish_routing_key_not_utf8_routes_and_persists(
        broker: BrokerHandle) -> None:
    """RabbitMQ routes a publish whatever its routing key's bytes; so do we, into the
    message store too, and the delivery carries the same bytes."""
    key = b"k\xff"
    async with raw(broker) as client:
        client.send(declare("utf8-q", durable=True) + method(
            1, 50, 20, b"\0\0" + ss("utf8-q") + ss("amq.topic") + ss("#") + b"\0" + table()))
        client.send(publish(key, DELIVERY_MODE, b"\x02", exchange="amq.topic") + get("utf8-q"))
        _, _, (_, get_ok), _, _ = await raw_frames(client, 5)
        assert get_ok[:4] == struct.pack(">HH", 60, 71)
        assert get_ok.endswith(ss("amq.topic") + ss(key) + struct.pack(">I", 0))
        client.send(publish(b"q", exchange=b"x\xff"))  # an unknown exchange: 404
        (_, close), = await raw_frames(client, 1)
        assert close[:6] == struct.pack(">HHH", 20, 40, 404)


async def test_bystander_unharmed(broker: BrokerHandle) -> None:
    """A well-behaved client beside all of the above keeps working."""
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("bystander-parity", auto_delete=True)
        for name in PROPERTY_CASES:
            flags, props, _ = PROPERTY_CASES[name]
            client = await raw_client(broker)
            client.send(publish("bystander-parity", flags, props))
            await client.expect_channel_close(1)
            client.close()
        await channel.default_exchange.publish(aio_pika.Message(b"fine"), "bystander-parity")
        message = await asyncio.wait_for(queue.get(), 5)
        assert message.body == b"fine"
