"""exchange.declare / delete / bind / unbind over the wire, answered as RabbitMQ answers.

Covers: declaring every exchange type; passive declares (existing -> ok, missing -> 404,
the default exchange -> 403); redeclare equivalence (type, durable, auto_delete, internal,
alternate-exchange -> 406 "inequivalent arg"; an equivalent redeclare -> ok); reserved
"amq." names (403 on creation, redeclaring the standard exchanges equivalently -> ok);
an unknown exchange type (503 COMMAND_INVALID, which closes the connection); the nowait
variants; exchange.delete (ok, if_unused with bindings -> 406, amq.* and "" -> 403, a
missing exchange -> delete-ok as modern RabbitMQ does); exchange-to-exchange bindings
(routing through a chain, unbind, binding errors), auto-delete exchanges (deleted when
their last binding as a source goes, and only then) and internal exchanges (publishing
to them -> 403, routing into them through an E2E binding works).

Clients: aio-pika, aiormq and pika (BlockingConnection in a thread), plus the raw-socket
client where the class/method ids of a close frame matter. White-box assertions use
``broker.vhost().exchanges``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aio_pika
import aiormq
import pika
import pika.exceptions
import pytest
from aiormq.exceptions import (
    ChannelAccessRefused,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
    ConnectionCommandInvalid,
)
from pamqp import commands

from tests.conftest import BrokerHandle
from tests.helpers import STANDARD_EXCHANGES, TIMEOUT, channel_error, in_pika, raw, rmq

EXCHANGE_TYPES = ("direct", "fanout", "topic", "headers")


# --------------------------------------------------------------------------- helpers
async def get_body(channel: aiormq.abc.AbstractChannel, queue: str) -> bytes | None:
    result = await asyncio.wait_for(channel.basic_get(queue, no_ack=True), TIMEOUT)
    if isinstance(result.delivery, aiormq.spec.Basic.GetEmpty):
        return None
    return result.body


# --------------------------------------------------------------------------- declare
@pytest.mark.parametrize("xtype", EXCHANGE_TYPES)
async def test_declare_each_type_aio_pika(broker: BrokerHandle, xtype: str) -> None:
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(f"x.{xtype}", xtype, durable=True)
        assert exchange.name == f"x.{xtype}"
        # get_exchange() is a passive declare.
        again = await channel.get_exchange(f"x.{xtype}", ensure=True)
        assert again.name == f"x.{xtype}"
    x = broker.vhost().exchanges[f"x.{xtype}"]
    assert (x.type_name, x.durable, x.auto_delete, x.internal) == (xtype, True, False, False)


async def test_declare_each_type_pika(broker: BrokerHandle) -> None:
    def run(conn: pika.BlockingConnection) -> list[tuple[str, str]]:
        ch = conn.channel()
        seen = []
        for xtype in EXCHANGE_TYPES:
            ok = ch.exchange_declare(f"p.{xtype}", xtype, auto_delete=True)
            passive = ch.exchange_declare(f"p.{xtype}", passive=True)
            seen.append((ok.method.NAME, passive.method.NAME))
        return seen

    assert await in_pika(broker, run) == [("Exchange.DeclareOk", "Exchange.DeclareOk")] * 4
    for xtype in EXCHANGE_TYPES:
        x = broker.vhost().exchanges[f"p.{xtype}"]
        # An auto-delete exchange that never had a binding is not deleted.
        assert (x.type_name, x.durable, x.auto_delete) == (xtype, False, True)


async def test_passive_declare_missing_is_404_aio_pika(broker: BrokerHandle) -> None:
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel()
        text = await channel_error(channel.get_exchange("nope", ensure=True),
                                   ChannelNotFoundEntity)
        assert text == "NOT_FOUND - no exchange 'nope' in vhost '/'"
        # Only the channel closed: the connection still works.
        channel2 = await connection.channel()
        await channel2.get_exchange("amq.direct", ensure=True)
    assert "nope" not in broker.vhost().exchanges


async def test_passive_declare_missing_close_frame_raw(broker: BrokerHandle) -> None:
    async with raw(broker) as client:
        client.send_method(1, commands.Exchange.Declare(exchange="nope", passive=True))
        close = await client.expect_channel_close(ids=(404, 40, 10))
        assert close.reply_text == "NOT_FOUND - no exchange 'nope' in vhost '/'"
        # The channel number can be reused, and the passive declare of an existing one is ok.
        await client.open_channel(1)
        client.send_method(1, commands.Exchange.Declare(exchange="amq.topic", passive=True))
        await client.expect(commands.Exchange.DeclareOk)


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"exchange_type": "fanout"}, "type", "received 'fanout' but current is 'direct'"),
        ({"durable": True}, "durable", "received 'true' but current is 'false'"),
        ({"auto_delete": True}, "auto_delete", "received 'true' but current is 'false'"),
        ({"internal": True}, "internal", "received 'true' but current is 'false'"),
        ({"arguments": {"alternate-exchange": "ae"}}, "alternate-exchange", ""),
    ],
)
async def test_inequivalent_redeclare_is_406(
    broker: BrokerHandle, change: dict[str, Any], field: str, fragment: str
) -> None:
    async with rmq(broker) as conn:
        ch1 = await conn.channel()
        await ch1.exchange_declare("xr", exchange_type="direct")
        ch2 = await conn.channel()
        kwargs: dict[str, Any] = {"exchange_type": "direct", **change}
        text = await channel_error(ch2.exchange_declare("xr", **kwargs),
                                   ChannelPreconditionFailed)
        assert text.startswith(
            f"PRECONDITION_FAILED - inequivalent arg '{field}' for exchange 'xr' in vhost '/'"
        ), text
        assert fragment in text
        # The first channel is untouched and the exchange unchanged.
        ok = await ch1.exchange_declare("xr", exchange_type="direct", passive=True)
        assert isinstance(ok, aiormq.spec.Exchange.DeclareOk)
    x = broker.vhost().exchanges["xr"]
    assert (x.type_name, x.durable, x.auto_delete, x.internal) == ("direct", False, False, False)
    assert "alternate-exchange" not in x.arguments


async def test_equivalent_redeclare_is_ok_pika(broker: BrokerHandle) -> None:
    def run(conn: pika.BlockingConnection) -> list[str]:
        ch = conn.channel()
        names = []
        for extra in ({"x-custom": 1}, {"x-custom": 2}, None):
            # RabbitMQ compares only alternate-exchange among the arguments; others are
            # ignored on redeclare.
            args = {"alternate-exchange": "ae", **(extra or {})}
            ok = ch.exchange_declare("xe", "topic", durable=True, arguments=args)
            names.append(ok.method.NAME)
        return names

    assert await in_pika(broker, run) == ["Exchange.DeclareOk"] * 3
    x = broker.vhost().exchanges["xe"]
    assert (x.type_name, x.durable) == ("topic", True)
    assert x.arguments["alternate-exchange"] == "ae"


async def test_reserved_amq_prefix_is_403_aio_pika(broker: BrokerHandle) -> None:
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel()
        text = await channel_error(channel.declare_exchange("amq.nope", "direct"),
                                   ChannelAccessRefused)
        assert text == (
            "ACCESS_REFUSED - exchange name 'amq.nope' contains reserved prefix 'amq.*'"
        )
        # Passive declares do not check the prefix: a missing amq.* name is just 404.
        channel2 = await connection.channel()
        text = await channel_error(channel2.get_exchange("amq.nope", ensure=True),
                                   ChannelNotFoundEntity)
        assert text == "NOT_FOUND - no exchange 'amq.nope' in vhost '/'"
    assert "amq.nope" not in broker.vhost().exchanges


async def test_redeclare_standard_exchanges_pika(broker: BrokerHandle) -> None:
    def run(conn: pika.BlockingConnection) -> tuple[list[str], int, str]:
        ch = conn.channel()
        names = [ch.exchange_declare(name, xtype, durable=True).method.NAME
                 for name, xtype in STANDARD_EXCHANGES]
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
            ch.exchange_declare("amq.direct", "direct", durable=False)
        return names, info.value.reply_code, info.value.reply_text

    names, code, text = await in_pika(broker, run)
    assert names == ["Exchange.DeclareOk"] * len(STANDARD_EXCHANGES)
    assert code == 406
    assert text.startswith(
        "PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'amq.direct'"
    ), text
    assert broker.vhost().exchanges["amq.direct"].durable is True


async def test_declare_default_exchange_is_403(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        text = await channel_error(ch.exchange_declare("", exchange_type="direct"),
                                   ChannelAccessRefused)
        assert text == "ACCESS_REFUSED - operation not permitted on the default exchange"
        # RabbitMQ (rabbit_channel, passive exchange.declare) also runs
        # check_not_default_exchange, so a passive declare of "" is refused too.
        ch = await conn.channel()
        text = await channel_error(ch.exchange_declare("", passive=True), ChannelAccessRefused)
        assert text == "ACCESS_REFUSED - operation not permitted on the default exchange"


async def test_unknown_type_closes_connection_503_aiormq(broker: BrokerHandle) -> None:
    conn = await asyncio.wait_for(aiormq.connect(broker.url), TIMEOUT)
    try:
        ch = await conn.channel()
        with pytest.raises(ConnectionCommandInvalid) as info:
            await asyncio.wait_for(ch.exchange_declare("xn", exchange_type="x-nope"), TIMEOUT)
        assert info.value.args[0] == "COMMAND_INVALID - unknown exchange type 'x-nope'"
        with contextlib.suppress(ConnectionCommandInvalid):
            await asyncio.wait_for(conn.closing, TIMEOUT)
        assert conn.is_closed
    finally:
        with contextlib.suppress(Exception):
            await conn.close()
    assert "xn" not in broker.vhost().exchanges


@pytest.mark.parametrize("name", ["xn", "amq.direct"])
async def test_unknown_type_closes_connection_503_raw(broker: BrokerHandle, name: str) -> None:
    # RabbitMQ checks the type (rabbit_exchange:check_type) before looking the exchange
    # up, so even redeclaring an existing exchange with an unknown type is a 503.
    async with raw(broker) as client:
        client.send_method(1, commands.Exchange.Declare(exchange=name, exchange_type="x-nope"))
        close = await client.expect_connection_close((503, 40, 10))
        assert close.reply_text == "COMMAND_INVALID - unknown exchange type 'x-nope'"
    exchanges = broker.vhost().exchanges
    assert ("xn" in exchanges) is False
    assert exchanges["amq.direct"].type_name == "direct"


async def test_nowait_declare_bind_unbind_delete_aiormq(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel(publisher_confirms=False)
        assert await ch.exchange_declare("xw1", exchange_type="direct", nowait=True) is None
        assert await ch.exchange_declare("xw2", exchange_type="fanout", nowait=True) is None
        # A passive declare proves that the nowait declares happened.
        ok = await ch.exchange_declare("xw1", passive=True)
        assert isinstance(ok, aiormq.spec.Exchange.DeclareOk)
        await ch.exchange_declare("xw2", passive=True)
        await ch.queue_declare("qw")
        await ch.queue_bind("qw", "xw2")
        assert await ch.exchange_bind("xw2", "xw1", "k", nowait=True) is None
        await ch.basic_publish(b"via-chain", exchange="xw1", routing_key="k")
        assert await get_body(ch, "qw") == b"via-chain"
        assert await ch.exchange_unbind("xw2", "xw1", "k", nowait=True) is None
        await ch.basic_publish(b"dropped", exchange="xw1", routing_key="k")
        assert await get_body(ch, "qw") is None
        assert await ch.exchange_delete("xw1", nowait=True) is None
        text = await channel_error(ch.exchange_declare("xw1", passive=True),
                                   ChannelNotFoundEntity)
        assert text == "NOT_FOUND - no exchange 'xw1' in vhost '/'"
    assert "xw1" not in broker.vhost().exchanges
    assert "xw2" in broker.vhost().exchanges


async def test_nowait_error_surfaces_as_channel_close_aiormq(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        # No reply is expected, so the 403 arrives on its own as a channel.close ...
        assert await ch.exchange_declare("amq.bad", exchange_type="direct", nowait=True) is None
        text = await channel_error(ch.closing, ChannelAccessRefused)
        assert text == "ACCESS_REFUSED - exchange name 'amq.bad' contains reserved prefix 'amq.*'"
        # ... and the channel is unusable afterwards, while the connection is fine.
        with pytest.raises(aiormq.exceptions.ChannelInvalidStateError):
            await ch.exchange_declare("amq.direct", passive=True)
        ch2 = await conn.channel()
        await ch2.exchange_declare("amq.direct", passive=True)
    assert "amq.bad" not in broker.vhost().exchanges


# --------------------------------------------------------------------------- delete
async def test_delete_aio_pika(broker: BrokerHandle) -> None:
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange("xd", aio_pika.ExchangeType.TOPIC)
        queue = await channel.declare_queue("qd")
        await queue.bind(exchange, "a.#")
        assert "xd" in broker.vhost().exchanges
        await exchange.delete()
        assert "xd" not in broker.vhost().exchanges
        text = await channel_error(channel.get_exchange("xd", ensure=True),
                                   ChannelNotFoundEntity)
        assert "no exchange 'xd'" in text
    # The queue survives the deletion of the exchange it was bound to.
    assert "qd" in broker.vhost().queues


async def test_delete_if_unused_aiormq(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        await ch.exchange_declare("xu", exchange_type="direct")
        await ch.queue_declare("qu")
        await ch.queue_bind("qu", "xu", "k")
        text = await channel_error(ch.exchange_delete("xu", if_unused=True),
                                   ChannelPreconditionFailed)
        assert text == "PRECONDITION_FAILED - exchange 'xu' in vhost '/' in use"
        assert "xu" in broker.vhost().exchanges
        ch = await conn.channel()
        await ch.queue_unbind("qu", "xu", "k")
        ok = await ch.exchange_delete("xu", if_unused=True)
        assert isinstance(ok, aiormq.spec.Exchange.DeleteOk)
    assert "xu" not in broker.vhost().exchanges


async def test_delete_if_unused_counts_only_source_bindings(broker: BrokerHandle) -> None:
    # RabbitMQ's if_unused looks at bindings where the exchange is the source; being the
    # destination of an exchange-to-exchange binding does not make it "in use".
    async with rmq(broker) as conn:
        ch = await conn.channel()
        await ch.exchange_declare("src", exchange_type="fanout")
        await ch.exchange_declare("dst", exchange_type="fanout")
        await ch.exchange_bind("dst", "src", "")
        text = await channel_error(ch.exchange_delete("src", if_unused=True),
                                   ChannelPreconditionFailed)
        assert "exchange 'src' in vhost '/' in use" in text
        ch = await conn.channel()
        await ch.exchange_delete("dst", if_unused=True)
    exchanges = broker.vhost().exchanges
    assert "dst" not in exchanges
    assert not exchanges["src"].has_bindings()


@pytest.mark.parametrize("name", [name for name, _ in STANDARD_EXCHANGES] + ["amq.missing"])
async def test_delete_amq_exchange_is_403(broker: BrokerHandle, name: str) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        text = await channel_error(ch.exchange_delete(name), ChannelAccessRefused)
        assert text == (
            f"ACCESS_REFUSED - deletion of system exchange '{name}' in vhost '/' not allowed"
        )
    if name != "amq.missing":
        assert name in broker.vhost().exchanges


async def test_delete_default_exchange_is_403_raw(broker: BrokerHandle) -> None:
    async with raw(broker) as client:
        client.send_method(1, commands.Exchange.Delete(exchange=""))
        close = await client.expect(commands.Channel.Close)
        assert (close.reply_code, close.class_id, close.method_id) == (403, 40, 20)
        assert close.reply_text == (
            "ACCESS_REFUSED - operation not permitted on the default exchange"
        )
    assert "" in broker.vhost().exchanges


async def test_delete_missing_exchange_is_ok(broker: BrokerHandle) -> None:
    # Modern RabbitMQ answers delete-ok for a missing exchange: rabbit_channel's
    # exchange.delete handler calls rabbit_exchange:ensure_deleted/3 and maps ``ok`` (also
    # returned when the exchange does not exist) to exchange.delete_ok; earlier 3.x
    # releases had an explicit ``{error, not_found} -> return_ok(..., delete_ok)`` branch.
    async with rmq(broker) as conn:
        ch = await conn.channel()
        ok = await asyncio.wait_for(ch.exchange_delete("never-declared"), TIMEOUT)
        assert isinstance(ok, aiormq.spec.Exchange.DeleteOk)
        # The channel is still open.
        await ch.exchange_declare("amq.fanout", passive=True)

    def run(conn: pika.BlockingConnection) -> str:
        return conn.channel().exchange_delete("never-declared-either").method.NAME

    assert await in_pika(broker, run) == "Exchange.DeleteOk"


# --------------------------------------------------------------------------- E2E bindings
async def test_exchange_chain_routes_and_unbind_stops_it_aio_pika(broker: BrokerHandle) -> None:
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        x1 = await channel.declare_exchange("x1", aio_pika.ExchangeType.DIRECT)
        x2 = await channel.declare_exchange("x2", aio_pika.ExchangeType.FANOUT)
        queue = await channel.declare_queue("q-chain")
        await queue.bind(x2)
        await x2.bind(x1, routing_key="k")  # x1 --k--> x2
        assert broker.vhost().exchanges["x1"].has_binding(broker.vhost().exchanges["x2"], "k")

        await x1.publish(aio_pika.Message(b"one"), routing_key="k")
        await x1.publish(aio_pika.Message(b"not-k"), routing_key="other")
        message = await queue.get(timeout=TIMEOUT)
        assert message.body == b"one"
        await message.ack()
        assert await queue.get(fail=False, timeout=TIMEOUT) is None

        await x2.unbind(x1, routing_key="k")
        await x1.publish(aio_pika.Message(b"two"), routing_key="k")
        assert await queue.get(fail=False, timeout=TIMEOUT) is None
    assert not broker.vhost().exchanges["x1"].has_bindings()
    assert broker.vhost().queues["q-chain"].message_count == 0


async def test_longer_chain_and_deleting_a_link_aiormq(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        await ch.exchange_declare("c1", exchange_type="topic")
        await ch.exchange_declare("c2", exchange_type="direct")
        await ch.exchange_declare("c3", exchange_type="fanout")
        await ch.queue_declare("qc")
        await ch.exchange_bind("c2", "c1", "a.*")
        await ch.exchange_bind("c3", "c2", "a.b")
        await ch.queue_bind("qc", "c3")
        await ch.basic_publish(b"abc", exchange="c1", routing_key="a.b")
        await ch.basic_publish(b"miss", exchange="c1", routing_key="a.c")
        assert await get_body(ch, "qc") == b"abc"
        assert await get_body(ch, "qc") is None
        # Deleting the middle exchange removes the bindings that lead to it.
        await ch.exchange_delete("c2")
        assert not broker.vhost().exchanges["c1"].has_bindings()
        await ch.basic_publish(b"gone", exchange="c1", routing_key="a.b")
        assert await get_body(ch, "qc") is None


@pytest.mark.parametrize(
    ("source", "destination", "exc_type", "expected"),
    [
        ("missing", "amq.fanout", ChannelNotFoundEntity,
         "NOT_FOUND - no exchange 'missing' in vhost '/'"),
        ("amq.fanout", "missing", ChannelNotFoundEntity,
         "NOT_FOUND - no exchange 'missing' in vhost '/'"),
        ("", "amq.fanout", ChannelAccessRefused,
         "ACCESS_REFUSED - operation not permitted on the default exchange"),
        ("amq.fanout", "", ChannelAccessRefused,
         "ACCESS_REFUSED - operation not permitted on the default exchange"),
    ],
)
async def test_exchange_bind_errors(
    broker: BrokerHandle, source: str, destination: str,
    exc_type: type[BaseException], expected: str,
) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        text = await channel_error(ch.exchange_bind(destination, source, "k"), exc_type)
        assert text == expected
    assert not broker.vhost().exchanges["amq.fanout"].has_bindings()


# --------------------------------------------------------------------------- auto-delete
async def test_auto_delete_exchange_goes_with_last_queue_binding(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        await ch.exchange_declare("xa", exchange_type="direct", auto_delete=True)
        await ch.queue_declare("qa")
        await ch.queue_bind("qa", "xa", "k1")
        await ch.queue_bind("qa", "xa", "k2")
        await ch.queue_unbind("qa", "xa", "k1")
        # One binding left: still there.
        await ch.exchange_declare("xa", passive=True)
        assert "xa" in broker.vhost().exchanges
        await ch.queue_unbind("qa", "xa", "k2")
        assert "xa" not in broker.vhost().exchanges
        text = await channel_error(ch.exchange_declare("xa", passive=True),
                                   ChannelNotFoundEntity)
        assert text == "NOT_FOUND - no exchange 'xa' in vhost '/'"


async def test_auto_delete_exchange_goes_when_bound_queue_is_deleted(
    broker: BrokerHandle,
) -> None:
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange("xaq", "fanout", auto_delete=True)
        queue = await channel.declare_queue("qaq")
        await queue.bind(exchange)
        assert "xaq" in broker.vhost().exchanges
        await queue.delete()
        assert "xaq" not in broker.vhost().exchanges


async def test_auto_delete_exchange_as_e2e_source_and_destination(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        await ch.exchange_declare("ad-src", exchange_type="fanout", auto_delete=True)
        await ch.exchange_declare("ad-dst", exchange_type="fanout", auto_delete=True)
        await ch.exchange_bind("ad-dst", "ad-src", "")
        await ch.exchange_unbind("ad-dst", "ad-src", "")
        exchanges = broker.vhost().exchanges
        # The source lost its last binding: deleted. The destination never was a
        # source, so it stays (RabbitMQ auto-deletes on losing source bindings only).
        assert "ad-src" not in exchanges
        assert "ad-dst" in exchanges
        await ch.exchange_declare("ad-dst", passive=True)
        text = await channel_error(ch.exchange_declare("ad-src", passive=True),
                                   ChannelNotFoundEntity)
        assert "no exchange 'ad-src'" in text


# --------------------------------------------------------------------------- internal
async def test_internal_exchange_refuses_publish_raw(broker: BrokerHandle) -> None:
    async with raw(broker) as client:
        client.send_method(1, commands.Exchange.Declare(exchange="xi-raw",
                                                        exchange_type="fanout", internal=True))
        await client.expect(commands.Exchange.DeclareOk)
        client.send_method(1, commands.Basic.Publish(exchange="xi-raw", routing_key="k"))
        client.send_content(1, b"body")
        close = await client.expect(commands.Channel.Close)
        assert (close.reply_code, close.class_id, close.method_id) == (403, 60, 40)
        assert close.reply_text == (
            "ACCESS_REFUSED - cannot publish to internal exchange 'xi-raw' in vhost '/'"
        )


async def test_internal_exchange_publish_403_but_reachable_via_e2e(broker: BrokerHandle) -> None:
    def run(conn: pika.BlockingConnection) -> tuple[int, str, bytes | None, bool]:
        ch = conn.channel()
        ch.exchange_declare("xi", "fanout", internal=True)
        ch.exchange_declare("x-front", "direct")
        ch.queue_declare("qi")
        ch.queue_bind("qi", "xi")
        ch.exchange_bind(destination="xi", source="x-front", routing_key="in")
        ch.confirm_delivery()
        ch.basic_publish("x-front", "in", b"through-e2e")
        _m, _p, body = ch.basic_get("qi", auto_ack=True)
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
            ch.basic_publish("xi", "", b"direct")
        ch2 = conn.channel()
        leftover = ch2.queue_declare("qi", passive=True).method.message_count
        return info.value.reply_code, info.value.reply_text, body, leftover == 0

    code, text, body, empty = await in_pika(broker, run)
    assert body == b"through-e2e"
    assert code == 403
    assert text == "ACCESS_REFUSED - cannot publish to internal exchange 'xi' in vhost '/'"
    assert empty
    assert broker.vhost().exchanges["xi"].internal is True
