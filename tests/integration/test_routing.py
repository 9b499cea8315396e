"""Message routing over the wire, as RabbitMQ routes.

Covers: the default exchange (routes by queue name; binding to or unbinding from it ->
403); the standard exchanges every vhost has (amq.direct, amq.fanout, amq.topic,
amq.headers, amq.match); direct (two queues with one key each get a copy), fanout (three
queues), topic patterns with ``*`` and ``#`` (``#`` alone, ``a.#`` matching ``a``, ``*.b``
not matching ``b``, the empty key, ...); headers exchanges with x-match all / any /
all-with-x / any-with-x and headers set by aio-pika, an invalid x-match -> 406;
exchange-to-exchange cycles and messages reaching a queue by several paths (delivered
once); mandatory unroutable messages (basic.return 312 NO_ROUTE, sent BEFORE the
publisher confirm, checked frame by frame); non-mandatory unroutable messages (confirmed
and dropped); publishing to a missing exchange (404 channel close); alternate exchanges
(unroutable messages go to the AE's queues, also for an exchange inside an E2E chain; a
missing AE or an AE loop leaves the message unroutable).

Clients: aio-pika, aiormq and pika (BlockingConnection in a thread), plus the raw-socket
client to observe frame order. White-box assertions use ``broker.vhost()``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import pika
import pika.exceptions
import pytest
from aiormq.abc import AbstractChannel
from aiormq.exceptions import ChannelAccessRefused, ChannelPreconditionFailed
from pamqp import commands
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from pika.adapters.blocking_connection import BlockingChannel

from tests.conftest import BrokerHandle, make_config
from tests.helpers import STANDARD_EXCHANGES, TIMEOUT, channel_error, in_pika, raw, rmq
from warrenmq.app import start
from warrenmq.config import VhostConfig


# --------------------------------------------------------------------------- helpers
async def drain(ch: AbstractChannel, queue: str, limit: int = 20) -> list[bytes]:
    """Every ready message of ``queue`` (no-ack basic.get until get-empty)."""
    bodies = []
    for _ in range(limit):
        result = await asyncio.wait_for(ch.basic_get(queue, no_ack=True), TIMEOUT)
        if isinstance(result.delivery, aiormq.spec.Basic.GetEmpty):
            return bodies
        bodies.append(result.body)
    raise AssertionError(f"more than {limit} messages in {queue}")


def pika_drain(ch: BlockingChannel, queue: str, limit: int = 20) -> list[bytes]:
    """``drain`` for pika, in its thread (auto-ack basic.get until get-empty)."""
    bodies = []
    for _ in range(limit):
        _m, _p, body = ch.basic_get(queue, auto_ack=True)
        if body is None:
            return bodies
        bodies.append(body)
    raise AssertionError(f"more than {limit} messages in {queue}")


async def publish(ch: AbstractChannel, exchange: str, key: str, body: bytes,
                  **kwargs: Any) -> None:
    """Publish with confirms on, so the broker has routed the message when this returns."""
    confirm = await asyncio.wait_for(
        ch.basic_publish(body, exchange=exchange, routing_key=key, **kwargs), TIMEOUT
    )
    assert isinstance(confirm, aiormq.spec.Basic.Ack), confirm


def ready(broker: BrokerHandle, queue: str) -> int:
    return broker.vhost().queues[queue].message_count


# --------------------------------------------------------------------------- default
async def test_default_exchange_routes_by_queue_name_aio_pika(broker: BrokerHandle) -> None:
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        qa = await channel.declare_queue("route-a")
        qb = await channel.declare_queue("route-b")
        exchange = channel.default_exchange
        await exchange.publish(aio_pika.Message(b"to-a"), routing_key="route-a")
        await exchange.publish(aio_pika.Message(b"to-b"), routing_key="route-b")
        # Not mandatory: no queue of that name, confirmed and dropped.
        confirm = await exchange.publish(aio_pika.Message(b"nowhere"), routing_key="route-c",
                                         mandatory=False)
        assert isinstance(confirm, aiormq.spec.Basic.Ack)
        assert (ready(broker, "route-a"), ready(broker, "route-b")) == (1, 1)
        got_a = await qa.get(timeout=TIMEOUT, no_ack=True)
        got_b = await qb.get(timeout=TIMEOUT, no_ack=True)
        assert (got_a.body, got_a.routing_key, got_a.exchange) == (b"to-a", "route-a", "")
        assert got_b.body == b"to-b"
    assert "route-c" not in broker.vhost().queues


@pytest.mark.parametrize("action", ["bind", "unbind"])
async def test_binding_the_default_exchange_is_403_aiormq(
    broker: BrokerHandle, action: str
) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        await ch.queue_declare("qdef")
        op = ch.queue_bind if action == "bind" else ch.queue_unbind
        text = await channel_error(op("qdef", "", "other-key"), ChannelAccessRefused)
        assert text == "ACCESS_REFUSED - operation not permitted on the default exchange"
    assert not broker.vhost().exchanges[""].has_bindings()


async def test_binding_the_default_exchange_close_frame_raw(broker: BrokerHandle) -> None:
    async with raw(broker) as client:
        client.send_method(1, commands.Queue.Declare(queue="qdefraw"))
        await client.expect(commands.Queue.DeclareOk)
        client.send_method(1, commands.Queue.Bind(queue="qdefraw", exchange="",
                                                  routing_key="qdefraw"))
        await client.expect_channel_close(ids=(403, 50, 20))
        await client.open_channel(1)
        client.send_method(1, commands.Queue.Unbind(queue="qdefraw", exchange="",
                                                    routing_key="qdefraw"))
        close = await client.expect(commands.Channel.Close)
        assert (close.reply_code, close.class_id, close.method_id) == (403, 50, 50)
        assert close.reply_text == (
            "ACCESS_REFUSED - operation not permitted on the default exchange"
        )


async def test_every_vhost_has_the_standard_exchanges(tmp_path: Path) -> None:
    config = dataclasses.replace(
        make_config(tmp_path), vhosts=(VhostConfig("/"), VhostConfig("other"))
    )
    server = await start(config)
    try:
        handle = BrokerHandle(server, "127.0.0.1", server.ports[0])
        for vhost, path in (("/", "%2F"), ("other", "other")):
            url = f"amqp://guest:guest@127.0.0.1:{handle.port}/{path}"

            def run(conn: pika.BlockingConnection) -> list[str]:
                ch = conn.channel()
                return [ch.exchange_declare(name, passive=True).method.NAME
                        for name, _ in STANDARD_EXCHANGES]

            assert await in_pika(url, run) == ["Exchange.DeclareOk"] * len(STANDARD_EXCHANGES)
            exchanges = handle.vhost(vhost).exchanges
            for name, xtype in STANDARD_EXCHANGES:
                assert (exchanges[name].type_name, exchanges[name].durable) == (xtype, True)
            assert exchanges[""].type_name == "direct"
        # Separate vhosts have separate exchange objects.
        assert handle.vhost("/").exchanges["amq.direct"] is not (
            handle.vhost("other").exchanges["amq.direct"])
    finally:
        await server.close(grace=2.0)


# --------------------------------------------------------------------------- direct/fanout
async def test_direct_same_key_two_queues_each_get_a_copy_aiormq(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        for queue, key in (("d1", "k"), ("d2", "k"), ("d3", "other")):
            await ch.queue_declare(queue)
            await ch.queue_bind(queue, "amq.direct", key)
        await publish(ch, "amq.direct", "k", b"both")
        await publish(ch, "amq.direct", "K", b"case-sensitive")
        assert await drain(ch, "d1") == [b"both"]
        assert await drain(ch, "d2") == [b"both"]
        assert await drain(ch, "d3") == []


async def test_fanout_to_three_queues_aio_pika(broker: BrokerHandle) -> None:
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        fanout = await channel.declare_exchange("fan", aio_pika.ExchangeType.FANOUT)
        queues = []
        for i, key in enumerate(("", "ignored", "#")):
            queue = await channel.declare_queue(f"fan-{i}")
            await queue.bind(fanout, routing_key=key)
            queues.append(queue)
        await fanout.publish(aio_pika.Message(b"everyone"), routing_key="any-key")
        for queue in queues:
            message = await queue.get(timeout=TIMEOUT, no_ack=True)
            assert message.body == b"everyone"
            assert await queue.get(fail=False, timeout=TIMEOUT) is None
    assert [ready(broker, f"fan-{i}") for i in range(3)] == [0, 0, 0]


# --------------------------------------------------------------------------- topic
TOPIC_PATTERNS = {
    "P1": "#",
    "P2": "a.#",
    "P3": "*.b",
    "P4": "a.*",
    "P5": "#.c",
    "P6": "a.#.c",
    "P7": "*",
    "P8": "a.b.c",
}
TOPIC_CASES = {
    "": {"P1"},  # the empty key is zero words: "#" matches it, "*" does not
    "a": {"P1", "P2", "P7"},  # "a.#" matches "a"
    "b": {"P1", "P7"},  # "*.b" does not match "b"
    "a.b": {"P1", "P2", "P3", "P4"},
    "a.b.c": {"P1", "P2", "P5", "P6", "P8"},
    "a.c": {"P1", "P2", "P4", "P5", "P6"},
    "c": {"P1", "P5", "P7"},
    "x.a.b": {"P1"},
    "a.x.y.c": {"P1", "P2", "P5", "P6"},
}


async def test_topic_patterns_aiormq(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        await ch.exchange_declare("topics", exchange_type="topic")
        for queue, pattern in TOPIC_PATTERNS.items():
            await ch.queue_declare(queue)
            await ch.queue_bind(queue, "topics", pattern)
        for key in TOPIC_CASES:
            await publish(ch, "topics", key, key.encode() or b"<empty>")
        got: dict[str, set[str]] = {key: set() for key in TOPIC_CASES}
        for queue in TOPIC_PATTERNS:
            for body in await drain(ch, queue):
                key = "" if body == b"<empty>" else body.decode()
                got[key].add(queue)
    assert got == TOPIC_CASES


async def test_topic_via_amq_topic_pika(broker: BrokerHandle) -> None:
    def run(conn: pika.BlockingConnection) -> list[bytes]:
        ch = conn.channel()
        ch.queue_declare("stocks")
        ch.queue_bind("stocks", "amq.topic", "stock.*.nyse")
        ch.confirm_delivery()
        for key in ("stock.ibm.nyse", "stock.nyse", "stock.ibm.lse", "stock.a.b.nyse"):
            ch.basic_publish("amq.topic", key, key.encode())
        return pika_drain(ch, "stocks")

    assert await in_pika(broker, run) == [b"stock.ibm.nyse"]


# --------------------------------------------------------------------------- headers
HEADER_BINDINGS: dict[str, dict[str, Any]] = {
    "h-all": {"x-match": "all", "a": "1", "b": "2"},
    "h-any": {"x-match": "any", "a": "1", "b": "2"},
    "h-default": {"a": "1"},  # no x-match: "all"
    "h-allx": {"x-match": "all-with-x", "x-k": "v", "a": "1"},
    "h-anyx": {"x-match": "any-with-x", "x-k": "v", "b": "2"},
    "h-all-xonly": {"x-match": "all", "x-k": "v"},  # x- keys ignored: matches everything
    "h-any-xonly": {"x-match": "any", "x-k": "v"},  # x- keys ignored: matches nothing
    "h-int": {"n": 42},
}
HEADER_CASES: list[tuple[dict[str, Any] | None, set[str]]] = [
    ({"a": "1", "b": "2"}, {"h-all", "h-any", "h-default", "h-anyx", "h-all-xonly"}),
    ({"a": "1"}, {"h-any", "h-default", "h-all-xonly"}),
    ({"x-k": "v", "a": "1"}, {"h-any", "h-default", "h-allx", "h-anyx", "h-all-xonly"}),
    ({"a": "2", "b": "2"}, {"h-any", "h-anyx", "h-all-xonly"}),
    ({"x-k": "v"}, {"h-anyx", "h-all-xonly"}),
    ({"a": "1", "b": "2", "c": "3"},
     {"h-all", "h-any", "h-default", "h-anyx", "h-all-xonly"}),
    ({"n": 42}, {"h-int", "h-all-xonly"}),
    ({"n": "42"}, {"h-all-xonly"}),  # a string is not the number 42
    (None, {"h-all-xonly"}),
]


async def test_headers_exchange_x_match_modes_aio_pika(broker: BrokerHandle) -> None:
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.declare_exchange("hdrs", aio_pika.ExchangeType.HEADERS)
        queues = {}
        for name, arguments in HEADER_BINDINGS.items():
            queue = await channel.declare_queue(name)
            await queue.bind(exchange, arguments=arguments)
            queues[name] = queue
        for i, (headers, _expected) in enumerate(HEADER_CASES):
            # The routing key plays no part in headers routing.
            await exchange.publish(aio_pika.Message(str(i).encode(), headers=headers),
                                   routing_key=f"rk-{i}", mandatory=False)
        got: list[set[str]] = [set() for _ in HEADER_CASES]
        for name, queue in queues.items():
            while (message := await queue.get(fail=False, no_ack=True,
                                              timeout=TIMEOUT)) is not None:
                got[int(message.body)].add(name)
    assert got == [expected for _headers, expected in HEADER_CASES]


async def test_amq_match_is_a_headers_exchange_pika(broker: BrokerHandle) -> None:
    def run(conn: pika.BlockingConnection) -> list[bytes]:
        ch = conn.channel()
        ch.queue_declare("qmatch")
        ch.queue_bind("qmatch", "amq.match", arguments={"x-match": "any", "kind": "x"})
        ch.confirm_delivery()
        for kind in ("x", "y"):
            ch.basic_publish("amq.match", "", kind.encode(),
                             pika.BasicProperties(headers={"kind": kind}))
        return pika_drain(ch, "qmatch")

    assert await in_pika(broker, run) == [b"x"]


@pytest.mark.parametrize("target", ["queue", "exchange"])
async def test_invalid_x_match_is_406_aiormq(broker: BrokerHandle, target: str) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        await ch.queue_declare("qbad")
        await ch.exchange_declare("xbad-dst", exchange_type="fanout")
        arguments = {"x-match": "nope", "a": "1"}
        if target == "queue":
            aw = ch.queue_bind("qbad", "amq.headers", arguments=arguments)
        else:
            aw = ch.exchange_bind("xbad-dst", "amq.headers", arguments=arguments)
        text = await channel_error(aw, ChannelPreconditionFailed)
        assert text.startswith("PRECONDITION_FAILED - Invalid x-match field value"), text
        assert "nope" in text
        assert "expected all, any, all-with-x, or any-with-x" in text
    assert not broker.vhost().exchanges["amq.headers"].has_bindings()


# --------------------------------------------------------------------------- E2E & dedupe
async def test_exchange_cycle_delivers_one_copy_aiormq(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        await ch.exchange_declare("cyc1", exchange_type="fanout")
        await ch.exchange_declare("cyc2", exchange_type="fanout")
        await ch.exchange_bind("cyc2", "cyc1", "")  # cyc1 -> cyc2
        await ch.exchange_bind("cyc1", "cyc2", "")  # cyc2 -> cyc1
        await ch.queue_declare("qcyc")
        await ch.queue_bind("qcyc", "cyc1")
        await ch.queue_bind("qcyc", "cyc2")
        await publish(ch, "cyc1", "", b"from-1")
        assert ready(broker, "qcyc") == 1
        await publish(ch, "cyc2", "", b"from-2")
        assert await drain(ch, "qcyc") == [b"from-1", b"from-2"]


async def test_two_bindings_to_one_queue_deliver_once_aio_pika(broker: BrokerHandle) -> None:
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        topic = await channel.declare_exchange("two-paths", aio_pika.ExchangeType.TOPIC)
        queue = await channel.declare_queue("qtwo")
        await queue.bind(topic, "a.*")
        await queue.bind(topic, "*.b")
        await queue.bind(topic, "#")
        await topic.publish(aio_pika.Message(b"once"), routing_key="a.b")
        assert ready(broker, "qtwo") == 1
        message = await queue.get(timeout=TIMEOUT, no_ack=True)
        assert message.body == b"once"
        assert await queue.get(fail=False, timeout=TIMEOUT) is None


async def test_direct_binding_plus_e2e_path_deliver_once_aiormq(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        await ch.exchange_declare("paths-src", exchange_type="direct")
        await ch.exchange_declare("paths-mid", exchange_type="fanout")
        await ch.queue_declare("qpaths")
        await ch.queue_bind("qpaths", "paths-src", "k")
        await ch.exchange_bind("paths-mid", "paths-src", "k")
        await ch.queue_bind("qpaths", "paths-mid")
        await publish(ch, "paths-src", "k", b"one-copy")
        assert await drain(ch, "qpaths") == [b"one-copy"]


# --------------------------------------------------------------------------- unroutable
async def test_mandatory_unroutable_is_returned_pika(broker: BrokerHandle) -> None:
    def run(conn: pika.BlockingConnection) -> list[tuple[int, str, str, str, bytes]]:
        ch = conn.channel()
        ch.confirm_delivery()
        returned = []
        for exchange, key in (("amq.direct", "nobody"), ("", "no-such-queue")):
            with pytest.raises(pika.exceptions.UnroutableError) as info:
                ch.basic_publish(exchange, key, b"bounce", mandatory=True)
            for message in info.value.messages:
                m = message.method
                returned.append((m.reply_code, m.reply_text, m.exchange, m.routing_key,
                                 message.body))
        return returned

    assert await in_pika(broker, run) == [
        (312, "NO_ROUTE", "amq.direct", "nobody", b"bounce"),
        (312, "NO_ROUTE", "", "no-such-queue", b"bounce"),
    ]


async def test_mandatory_unroutable_is_returned_aio_pika(broker: BrokerHandle) -> None:
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        with pytest.raises(aio_pika.exceptions.PublishError) as info:
            await asyncio.wait_for(channel.default_exchange.publish(
                aio_pika.Message(b"back", headers={"h": "v"}), routing_key="absent",
                mandatory=True), TIMEOUT)
        delivery = info.value.message.delivery
        assert isinstance(delivery, aiormq.spec.Basic.Return)
        assert (delivery.reply_code, delivery.reply_text) == (312, "NO_ROUTE")
        assert info.value.message.body == b"back"
        assert info.value.message.header.properties.headers == {"h": "v"}
        # The channel is still usable.
        await channel.declare_queue("after-return")


async def test_return_comes_before_confirm_raw(broker: BrokerHandle) -> None:
    # RabbitMQ (rabbit_channel:deliver_to_queues): "the order here is important since
    # basic.returns must be sent before confirms".
    async with raw(broker) as client:
        client.send_method(1, commands.Confirm.Select())
        await client.expect(commands.Confirm.SelectOk)
        client.send_method(1, commands.Queue.Declare(queue="qraw"))
        await client.expect(commands.Queue.DeclareOk)

        client.send_method(1, commands.Basic.Publish(exchange="amq.direct",
                                                     routing_key="nowhere", mandatory=True))
        client.send_content(1, b"lost")
        ret = await client.expect(commands.Basic.Return)
        assert (ret.reply_code, ret.reply_text, ret.exchange, ret.routing_key) == (
            312, "NO_ROUTE", "amq.direct", "nowhere")
        header = await client.expect(ContentHeader)
        assert header.body_size == 4
        assert (await client.expect(ContentBody)).value == b"lost"
        ack = await client.expect(commands.Basic.Ack)
        assert (ack.delivery_tag, ack.multiple) == (1, False)

        # Routable and mandatory: just the confirm.
        client.send_method(1, commands.Basic.Publish(exchange="", routing_key="qraw",
                                                     mandatory=True))
        client.send_content(1, b"kept")
        ack = await client.expect(commands.Basic.Ack)
        assert ack.delivery_tag == 2

        # Not mandatory and unroutable: confirmed (ack, not nack) and dropped, no return.
        client.send_method(1, commands.Basic.Publish(exchange="amq.fanout", routing_key="x"))
        client.send_content(1, b"dropped")
        ack = await client.expect(commands.Basic.Ack)
        assert ack.delivery_tag == 3

        # A batch: every return precedes the ack that covers its publish.
        for i in range(3):
            client.send_method(1, commands.Basic.Publish(exchange="amq.topic",
                                                         routing_key=f"none.{i}",
                                                         mandatory=True))
            client.send_content(1, f"b{i}".encode())
        returned: list[str] = []
        acked = 3
        while acked < 6:
            _, frame = await client.read_frame()
            if isinstance(frame, commands.Basic.Return):
                returned.append(frame.routing_key)
            elif isinstance(frame, commands.Basic.Ack):
                acked = frame.delivery_tag
                assert len(returned) >= acked - 3, (returned, frame)
            else:
                assert isinstance(frame, ContentHeader | ContentBody), frame
        assert returned == ["none.0", "none.1", "none.2"]
    assert ready(broker, "qraw") == 1


async def test_non_mandatory_unroutable_is_confirmed_and_dropped_aiormq(
    broker: BrokerHandle,
) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        returns: list[Any] = []
        ch.on_return_callbacks.add(returns.append)
        await ch.queue_declare("bystander")
        await publish(ch, "amq.direct", "no-binding", b"gone")
        await publish(ch, "", "no-queue", b"gone-too")
        assert returns == []
        assert ready(broker, "bystander") == 0


async def test_publish_to_missing_exchange_is_404(broker: BrokerHandle) -> None:
    async with raw(broker) as client:
        client.send_method(1, commands.Basic.Publish(exchange="no-such-x", routing_key="k"))
        client.send_content(1, b"body")
        close = await client.expect(commands.Channel.Close)
        assert (close.reply_code, close.class_id, close.method_id) == (404, 60, 40)
        assert close.reply_text == "NOT_FOUND - no exchange 'no-such-x' in vhost '/'"

    def run(conn: pika.BlockingConnection) -> tuple[int, str, bool]:
        ch = conn.channel()
        ch.confirm_delivery()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
            ch.basic_publish("no-such-x", "k", b"body")
        return info.value.reply_code, info.value.reply_text, conn.is_open

    assert await in_pika(broker, run) == (
        404, "NOT_FOUND - no exchange 'no-such-x' in vhost '/'", True)
    assert "no-such-x" not in broker.vhost().exchanges


# --------------------------------------------------------------------------- alternate
async def test_alternate_exchange_gets_unroutable_messages_aio_pika(
    broker: BrokerHandle,
) -> None:
    connection = await aio_pika.connect(broker.url)
    async with connection:
        # on_return_raises: a basic.return would make publish() raise.
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        ae = await channel.declare_exchange("ae", aio_pika.ExchangeType.FANOUT)
        main = await channel.declare_exchange(
            "main", aio_pika.ExchangeType.DIRECT, arguments={"alternate-exchange": "ae"})
        q_main = await channel.declare_queue("q-main")
        q_ae = await channel.declare_queue("q-ae")
        await q_main.bind(main, "k")
        await q_ae.bind(ae)
        await main.publish(aio_pika.Message(b"routed"), routing_key="k", mandatory=True)
        await main.publish(aio_pika.Message(b"unroutable"), routing_key="zzz", mandatory=True)
        got_main = await q_main.get(timeout=TIMEOUT, no_ack=True)
        got_ae = await q_ae.get(timeout=TIMEOUT, no_ack=True)
        assert got_main.body == b"routed"
        assert (got_ae.body, got_ae.exchange, got_ae.routing_key) == (
            b"unroutable", "main", "zzz")
        assert await q_ae.get(fail=False, timeout=TIMEOUT) is None
    assert broker.vhost().exchanges["main"].arguments["alternate-exchange"] == "ae"


async def test_alternate_exchange_of_an_exchange_inside_a_chain_aiormq(
    broker: BrokerHandle,
) -> None:
    # RabbitMQ's rabbit_exchange:route1 calls process_alternate for every exchange it
    # walks: an exchange reached through an E2E binding that matches nothing hands the
    # message to its own alternate exchange.
    async with rmq(broker) as conn:
        ch = await conn.channel()
        await ch.exchange_declare("chain-ae", exchange_type="fanout")
        await ch.exchange_declare("chain-top", exchange_type="direct")
        await ch.exchange_declare("chain-mid", exchange_type="direct",
                                  arguments={"alternate-exchange": "chain-ae"})
        await ch.queue_declare("q-chain-ae")
        await ch.queue_bind("q-chain-ae", "chain-ae")
        await ch.exchange_bind("chain-mid", "chain-top", "k")
        await publish(ch, "chain-top", "k", b"via-mid-ae", mandatory=True)
        assert await drain(ch, "q-chain-ae") == [b"via-mid-ae"]


async def test_missing_or_looping_alternate_exchange_leaves_message_unroutable(
    broker: BrokerHandle,
) -> None:
    async with raw(broker) as client:
        client.send_method(1, commands.Exchange.Declare(
            exchange="ae-missing", exchange_type="direct",
            arguments={"alternate-exchange": "does-not-exist"}))
        await client.expect(commands.Exchange.DeclareOk)
        client.send_method(1, commands.Exchange.Declare(
            exchange="loop-a", exchange_type="direct", arguments={"alternate-exchange": "loop-b"}))
        await client.expect(commands.Exchange.DeclareOk)
        client.send_method(1, commands.Exchange.Declare(
            exchange="loop-b", exchange_type="direct", arguments={"alternate-exchange": "loop-a"}))
        await client.expect(commands.Exchange.DeclareOk)
        client.send_method(1, commands.Confirm.Select())
        await client.expect(commands.Confirm.SelectOk)
        for seq, exchange in enumerate(("ae-missing", "loop-a"), start=1):
            client.send_method(1, commands.Basic.Publish(exchange=exchange, routing_key="k",
                                                         mandatory=True))
            client.send_content(1, exchange.encode())
            ret = await client.expect(commands.Basic.Return)
            assert (ret.reply_code, ret.exchange) == (312, exchange)
            await client.expect(ContentHeader)
            assert (await client.expect(ContentBody)).value == exchange.encode()
            assert (await client.expect(commands.Basic.Ack)).delivery_tag == seq
