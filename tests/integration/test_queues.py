"""queue.declare / bind / unbind / purge / delete over the wire, answered as RabbitMQ answers.

Covers: server-named queues ("" -> "amq.gen-..."); the message and consumer counts of
declare-ok; passive declares (missing -> 404); redeclare equivalence (durable, auto_delete
and the x-arguments RabbitMQ knows -> 406 "inequivalent arg"; a different exclusive flag ->
405 as RabbitMQ's strict exclusivity check answers; unknown x-arguments ignored); reserved
"amq." names (403); exclusive queues (every operation from another connection -> 405, the
queue goes when its connection closes); auto-delete queues (deleted when the last consumer
goes, not before the first one came); queue.bind/unbind/purge/get/delete with the empty
queue name meaning "the queue last declared on this channel"; purge-ok and delete-ok
counts; delete if_unused / if_empty -> 406; deleting a queue with consumers cancels them
with basic.cancel while their channels stay open; deleting a missing queue -> delete-ok 0.

Clients: aio-pika, aiormq and pika (BlockingConnection in a thread), plus the raw-socket
client for the empty-name shortcut and frame-level details. White-box assertions use
``broker.vhost().queues`` and ``.exchanges``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import aiormq
import pika
import pika.exceptions
import pytest
from aiormq.abc import AbstractChannel, DeliveredMessage
from aiormq.exceptions import (
    ChannelAccessRefused,
    ChannelLockedResource,
    ChannelNotFoundEntity,
    ChannelPreconditionFailed,
)
from pamqp import commands
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from tests.conftest import BrokerHandle
from tests.helpers import TIMEOUT, channel_error, in_pika, raw, rmq

LOCKED = "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{}' in vhost '/'"


# --------------------------------------------------------------------------- helpers
async def publish_confirmed(ch: AbstractChannel, queue: str, bodies: list[bytes]) -> None:
    for body in bodies:
        confirm = await asyncio.wait_for(ch.basic_publish(body, routing_key=queue), TIMEOUT)
        assert isinstance(confirm, aiormq.spec.Basic.Ack)


class Collector:
    """A consumer callback that records deliveries and lets the test wait for them."""

    def __init__(self) -> None:
        self.messages: list[DeliveredMessage] = []
        self._event = asyncio.Event()

    async def __call__(self, message: DeliveredMessage) -> None:
        self.messages.append(message)
        self._event.set()

    async def wait_for(self, count: int) -> None:
        async def loop() -> None:
            while len(self.messages) < count:
                self._event.clear()
                await self._event.wait()

        await asyncio.wait_for(loop(), TIMEOUT)


# --------------------------------------------------------------------------- declare
async def test_server_named_queue_aiormq(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        first = await ch.queue_declare("")
        second = await ch.queue_declare("")
    assert first.queue.startswith("amq.gen-")
    assert second.queue.startswith("amq.gen-")
    assert first.queue != second.queue
    assert (first.message_count, first.consumer_count) == (0, 0)
    queues = broker.vhost().queues
    assert first.queue in queues
    assert second.queue in queues


async def test_server_named_queue_aio_pika(broker: BrokerHandle) -> None:
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        assert queue.name.startswith("amq.gen-")
        await channel.default_exchange.publish(aio_pika.Message(b"x"), routing_key=queue.name)
        message = await queue.get(timeout=TIMEOUT)
        assert message.body == b"x"
        await message.ack()
        assert broker.vhost().queues[queue.name].exclusive
    # Exclusive: gone with its connection.
    assert queue.name not in broker.vhost().queues


async def test_declare_ok_counts(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        declared = await ch.queue_declare("qcount")
        assert (declared.message_count, declared.consumer_count) == (0, 0)
        await publish_confirmed(ch, "qcount", [b"1", b"2", b"3"])
        again = await ch.queue_declare("qcount")
        assert (again.message_count, again.consumer_count) == (3, 0)

        # A consumer with prefetch 1 holds one message unacked: two stay ready.
        ch2 = await conn.channel()
        await ch2.basic_qos(prefetch_count=1)
        collector = Collector()
        await ch2.basic_consume("qcount", collector)
        await collector.wait_for(1)
        assert collector.messages[0].body == b"1"
        counted = await ch.queue_declare("qcount")
        assert (counted.message_count, counted.consumer_count) == (2, 1)

        def passive(conn: pika.BlockingConnection) -> tuple[int, int]:
            ok = conn.channel().queue_declare("qcount", passive=True)
            return ok.method.message_count, ok.method.consumer_count

        assert await in_pika(broker, passive) == (2, 1)
        queue = broker.vhost().queues["qcount"]
        assert (queue.message_count, queue.consumer_count) == (2, 1)


async def test_passive_declare_missing_is_404_pika(broker: BrokerHandle) -> None:
    def run(conn: pika.BlockingConnection) -> tuple[int, str]:
        ch = conn.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
            ch.queue_declare("nope", passive=True)
        # The connection survives a channel error.
        conn.channel().queue_declare("exists-now")
        return info.value.reply_code, info.value.reply_text

    assert await in_pika(broker, run) == (404, "NOT_FOUND - no queue 'nope' in vhost '/'")
    assert "nope" not in broker.vhost().queues
    assert "exists-now" in broker.vhost().queues


async def test_passive_declare_missing_close_frame_raw(broker: BrokerHandle) -> None:
    async with raw(broker) as client:
        client.send_method(1, commands.Queue.Declare(queue="nope", passive=True))
        close = await client.expect(commands.Channel.Close)
        assert (close.reply_code, close.class_id, close.method_id) == (404, 50, 10)
        assert close.reply_text == "NOT_FOUND - no queue 'nope' in vhost '/'"


@pytest.mark.parametrize(
    ("base", "change", "field", "fragment"),
    [
        ({}, {"durable": True}, "durable", "received 'true' but current is 'false'"),
        ({}, {"auto_delete": True}, "auto_delete", "received 'true' but current is 'false'"),
        ({"arguments": {"x-message-ttl": 1000}}, {"arguments": {"x-message-ttl": 2000}},
         "x-message-ttl", "received '2000' but current is '1000'"),
        ({"arguments": {"x-message-ttl": 1000}}, {"arguments": {}}, "x-message-ttl", ""),
        ({}, {"arguments": {"x-max-length": 5}}, "x-max-length", ""),
        ({"arguments": {"x-dead-letter-exchange": "dlx"}},
         {"arguments": {"x-dead-letter-exchange": "other"}}, "x-dead-letter-exchange",
         "received 'other' but current is 'dlx'"),
    ],
)
async def test_inequivalent_redeclare_is_406(
    broker: BrokerHandle, base: dict[str, Any], change: dict[str, Any], field: str,
    fragment: str,
) -> None:
    async with rmq(broker) as conn:
        ch1 = await conn.channel()
        await ch1.queue_declare("qeq", **base)
        ch2 = await conn.channel()
        text = await channel_error(ch2.queue_declare("qeq", **{**base, **change}),
                                   ChannelPreconditionFailed)
        assert text.startswith(
            f"PRECONDITION_FAILED - inequivalent arg '{field}' for queue 'qeq' in vhost '/'"
        ), text
        assert fragment in text
        ok = await ch1.queue_declare("qeq", **base)
        assert ok.queue == "qeq"
    queue = broker.vhost().queues["qeq"]
    assert (queue.durable, queue.auto_delete) == (False, False)
    assert queue.arguments == base.get("arguments", {})


@pytest.mark.parametrize("first_exclusive", [False, True])
async def test_redeclare_with_other_exclusive_flag_is_405(
    broker: BrokerHandle, first_exclusive: bool
) -> None:
    # RabbitMQ's rabbit_amqqueue:assert_equivalence starts with
    # check_exclusive_access(Q, Owner, strict): a mismatching exclusive flag is
    # RESOURCE_LOCKED, even on the connection that declared the queue.
    async with rmq(broker) as conn:
        ch1 = await conn.channel()
        await ch1.queue_declare("qex", exclusive=first_exclusive)
        ch2 = await conn.channel()
        text = await channel_error(
            ch2.queue_declare("qex", exclusive=not first_exclusive), ChannelLockedResource
        )
        assert text.startswith(LOCKED.format("qex")), text
        assert "the exclusive property value does not match" in text
        await ch1.queue_declare("qex", exclusive=first_exclusive)
        assert broker.vhost().queues["qex"].exclusive is first_exclusive


async def test_unknown_x_arguments_are_ignored_on_redeclare_pika(broker: BrokerHandle) -> None:
    def run(conn: pika.BlockingConnection) -> list[str]:
        ch = conn.channel()
        names = []
        for args in ({"x-custom": "a", "x-message-ttl": 500},
                     {"x-custom": "b", "x-message-ttl": 500},
                     {"x-message-ttl": 500, "x-other": 1}):
            names.append(ch.queue_declare("qargs", arguments=args).method.NAME)
        return names

    assert await in_pika(broker, run) == ["Queue.DeclareOk"] * 3
    assert broker.vhost().queues["qargs"].arguments["x-message-ttl"] == 500


async def test_reserved_amq_prefix_is_403_aio_pika(broker: BrokerHandle) -> None:
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel()
        text = await channel_error(channel.declare_queue("amq.foo"), ChannelAccessRefused)
        assert text == "ACCESS_REFUSED - queue name 'amq.foo' contains reserved prefix 'amq.*'"
        # A passive declare does not check the prefix: a missing amq.* queue is a 404.
        channel = await connection.channel()
        text = await channel_error(channel.declare_queue("amq.foo", passive=True),
                                   ChannelNotFoundEntity)
        assert text == "NOT_FOUND - no queue 'amq.foo' in vhost '/'"
    assert "amq.foo" not in broker.vhost().queues


async def test_nowait_declare_then_passive_aiormq(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        assert await ch.queue_declare("qnw", durable=True, nowait=True) is None
        ok = await ch.queue_declare("qnw", passive=True)
        assert (ok.queue, ok.message_count, ok.consumer_count) == ("qnw", 0, 0)
    assert broker.vhost().queues["qnw"].durable is True


# --------------------------------------------------------------------------- exclusive
def _exclusive_ops() -> dict[str, Callable[[AbstractChannel], Awaitable[Any]]]:
    async def noop(_: DeliveredMessage) -> None:
        return None

    return {
        "declare-exclusive": lambda ch: ch.queue_declare("qexcl", exclusive=True),
        "declare-shared": lambda ch: ch.queue_declare("qexcl"),
        "declare-passive": lambda ch: ch.queue_declare("qexcl", passive=True),
        "consume": lambda ch: ch.basic_consume("qexcl", noop),
        "bind": lambda ch: ch.queue_bind("qexcl", "amq.topic", "t"),
        "unbind": lambda ch: ch.queue_unbind("qexcl", "amq.direct", "k"),
        "get": lambda ch: ch.basic_get("qexcl"),
        "purge": lambda ch: ch.queue_purge("qexcl"),
        "delete": lambda ch: ch.queue_delete("qexcl"),
    }


@pytest.mark.parametrize("op", list(_exclusive_ops()))
async def test_exclusive_queue_is_locked_for_other_connections(
    broker: BrokerHandle, op: str
) -> None:
    async with rmq(broker) as owner, rmq(broker) as other:
        och = await owner.channel()
        await och.queue_declare("qexcl", exclusive=True)
        await och.queue_bind("qexcl", "amq.direct", "k")
        await och.basic_publish(b"kept", routing_key="qexcl")
        ch = await other.channel()
        text = await channel_error(_exclusive_ops()[op](ch), ChannelLockedResource)
        assert text.startswith(LOCKED.format("qexcl")), text
        # Nothing changed, and the owner still has full use of its queue.
        queue = broker.vhost().queues["qexcl"]
        assert queue.message_count == 1
        assert queue.consumer_count == 0
        assert broker.vhost().exchanges["amq.direct"].has_binding(queue, "k")
        assert not broker.vhost().exchanges["amq.topic"].has_bindings()
        got = await och.basic_get("qexcl", no_ack=True)
        assert got.body == b"kept"


async def test_exclusive_queue_goes_with_its_connection(broker: BrokerHandle) -> None:
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("qgone", exclusive=True)
        await queue.bind("amq.fanout")
        async def ignore(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            return None

        await queue.consume(ignore)
        assert "qgone" in broker.vhost().queues
    assert "qgone" not in broker.vhost().queues
    assert not broker.vhost().exchanges["amq.fanout"].has_bindings()

    def run(conn: pika.BlockingConnection) -> tuple[int, str]:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
            conn.channel().queue_declare("qgone", passive=True)
        # Any connection may now declare a queue by that name.
        conn.channel().queue_declare("qgone", exclusive=True)
        return info.value.reply_code, info.value.reply_text

    assert await in_pika(broker, run) == (404, "NOT_FOUND - no queue 'qgone' in vhost '/'")
    # ... and that exclusive queue went away with the pika connection in turn.
    assert "qgone" not in broker.vhost().queues


# --------------------------------------------------------------------------- auto-delete
async def test_auto_delete_queue_goes_with_its_last_consumer(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        await ch.queue_declare("qad", auto_delete=True)
        await ch.queue_bind("qad", "amq.direct", "ad")
        # Never had a consumer: publishing, getting and redeclaring leave it alone.
        await ch.basic_publish(b"m", routing_key="qad")
        await ch.basic_get("qad", no_ack=True)
        await ch.queue_declare("qad", auto_delete=True)
        assert "qad" in broker.vhost().queues

        c1 = await ch.basic_consume("qad", Collector())
        c2 = await ch.basic_consume("qad", Collector())
        await ch.basic_cancel(c1.consumer_tag)
        ok = await ch.queue_declare("qad", passive=True)
        assert ok.consumer_count == 1
        await ch.basic_cancel(c2.consumer_tag)
        assert "qad" not in broker.vhost().queues
        assert not broker.vhost().exchanges["amq.direct"].has_bindings()
        text = await channel_error(ch.queue_declare("qad", passive=True), ChannelNotFoundEntity)
        assert text == "NOT_FOUND - no queue 'qad' in vhost '/'"


async def test_auto_delete_queue_goes_when_consumer_channel_closes_pika(
    broker: BrokerHandle,
) -> None:
    def run(conn: pika.BlockingConnection) -> tuple[bool, bool, int]:
        ch = conn.channel()
        ch.queue_declare("qadp", auto_delete=True)
        consumer_ch = conn.channel()
        consumer_ch.basic_consume("qadp", lambda *args: None)
        before = ch.queue_declare("qadp", passive=True).method.consumer_count
        consumer_ch.close()
        probe = conn.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
            probe.queue_declare("qadp", passive=True)
        return before == 1, ch.is_open, info.value.reply_code

    assert await in_pika(broker, run) == (True, True, 404)
    assert "qadp" not in broker.vhost().queues


# --------------------------------------------------------------------------- bind/unbind
async def test_empty_queue_name_means_last_declared_raw(broker: BrokerHandle) -> None:
    async with raw(broker) as client:
        client.send_method(1, commands.Queue.Declare(queue="qs"))
        declared = await client.expect(commands.Queue.DeclareOk)
        assert declared.queue == "qs"
        queue = broker.vhost().queues["qs"]
        direct = broker.vhost().exchanges["amq.direct"]
        topic = broker.vhost().exchanges["amq.topic"]

        # Empty queue and empty key: both mean the last declared queue's name.
        client.send_method(1, commands.Queue.Bind(queue="", exchange="amq.direct"))
        await client.expect(commands.Queue.BindOk)
        assert direct.has_binding(queue, "qs")
        # Empty queue with a key: the key is kept.
        client.send_method(1, commands.Queue.Bind(queue="", exchange="amq.topic",
                                                  routing_key="t.#"))
        await client.expect(commands.Queue.BindOk)
        assert topic.has_binding(queue, "t.#")

        for exchange, key in (("amq.direct", "qs"), ("amq.topic", "t.x")):
            client.send_method(1, commands.Basic.Publish(exchange=exchange, routing_key=key))
            client.send_content(1, key.encode())
        client.send_method(1, commands.Basic.Get(queue="", no_ack=True))
        got = await client.expect(commands.Basic.GetOk)
        assert (got.exchange, got.routing_key, got.message_count) == ("amq.direct", "qs", 1)
        await client.expect(ContentHeader)
        assert (await client.expect(ContentBody)).value == b"qs"

        client.send_method(1, commands.Queue.Unbind(queue="", exchange="amq.direct"))
        await client.expect(commands.Queue.UnbindOk)
        assert not direct.has_bindings()
        assert topic.has_binding(queue, "t.#")

        client.send_method(1, commands.Queue.Purge(queue=""))
        assert (await client.expect(commands.Queue.PurgeOk)).message_count == 1
        client.send_method(1, commands.Queue.Delete(queue=""))
        assert (await client.expect(commands.Queue.DeleteOk)).message_count == 0
    assert "qs" not in broker.vhost().queues
    assert not broker.vhost().exchanges["amq.topic"].has_bindings()


async def test_empty_queue_name_without_declare_is_404_raw(broker: BrokerHandle) -> None:
    async with raw(broker) as client:
        # Declared on channel 1: the shortcut is per channel, so channel 2 has none.
        client.send_method(1, commands.Queue.Declare(queue="qother"))
        await client.expect(commands.Queue.DeclareOk)
        await client.open_channel(2)
        client.send_method(2, commands.Queue.Bind(queue="", exchange="amq.direct"))
        channel, close = await client.read_frame()
        assert channel == 2
        assert isinstance(close, commands.Channel.Close)
        assert (close.reply_code, close.class_id, close.method_id) == (404, 50, 20)
        assert close.reply_text == "NOT_FOUND - no previously declared queue"
    assert not broker.vhost().exchanges["amq.direct"].has_bindings()


async def test_server_named_queue_shortcut_aiormq(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        declared = await ch.queue_declare("", exclusive=True)
        await ch.queue_bind("", "amq.fanout")
        queue = broker.vhost().queues[declared.queue]
        assert broker.vhost().exchanges["amq.fanout"].has_binding(queue, declared.queue)
        await ch.basic_publish(b"fan", exchange="amq.fanout", routing_key="whatever")
        got = await ch.basic_get("", no_ack=True)
        assert got.body == b"fan"
        await ch.queue_unbind("", "amq.fanout")
        assert not broker.vhost().exchanges["amq.fanout"].has_bindings()


async def test_bind_to_missing_things_is_404_aiormq(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        await ch.queue_declare("qb")
        text = await channel_error(ch.queue_bind("qb", "no-such-x", "k"), ChannelNotFoundEntity)
        assert text == "NOT_FOUND - no exchange 'no-such-x' in vhost '/'"
        ch = await conn.channel()
        text = await channel_error(ch.queue_bind("no-such-q", "amq.direct", "k"),
                                   ChannelNotFoundEntity)
        assert text == "NOT_FOUND - no queue 'no-such-q' in vhost '/'"
    assert not broker.vhost().exchanges["amq.direct"].has_bindings()


# --------------------------------------------------------------------------- purge/delete
async def test_purge_returns_ready_count_aiormq(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        await ch.queue_declare("qp")
        await publish_confirmed(ch, "qp", [b"a", b"b", b"c", b"d"])
        getter = await conn.channel()
        held = await getter.basic_get("qp")  # unacked: purge leaves it alone
        assert held.body == b"a"
        purged = await ch.queue_purge("qp")
        assert isinstance(purged, aiormq.spec.Queue.PurgeOk)
        assert purged.message_count == 3
        assert broker.vhost().queues["qp"].message_count == 0
        assert (await ch.queue_purge("qp")).message_count == 0
        # Closing the getter's channel returns the unacked message to the queue.
        await getter.close()
        ok = await ch.queue_declare("qp", passive=True)
        assert ok.message_count == 1
        again = await ch.basic_get("qp", no_ack=True)
        assert (again.body, again.delivery.redelivered) == (b"a", True)


async def test_delete_returns_message_count_pika(broker: BrokerHandle) -> None:
    def run(conn: pika.BlockingConnection) -> tuple[int, int]:
        ch = conn.channel()
        ch.queue_declare("qdel")
        ch.queue_bind("qdel", "amq.topic", "d.*")
        ch.confirm_delivery()
        for i in range(2):
            ch.basic_publish("", "qdel", f"m{i}".encode())
        deleted = ch.queue_delete("qdel").method.message_count
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
            ch.queue_declare("qdel", passive=True)
        return deleted, info.value.reply_code

    assert await in_pika(broker, run) == (2, 404)
    assert "qdel" not in broker.vhost().queues
    assert not broker.vhost().exchanges["amq.topic"].has_bindings()


async def test_delete_if_unused_and_if_empty_are_406_aiormq(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        await ch.queue_declare("qcond")
        consumer_ch = await conn.channel()
        collector = Collector()
        await consumer_ch.basic_consume("qcond", collector, no_ack=True)
        text = await channel_error(ch.queue_delete("qcond", if_unused=True),
                                   ChannelPreconditionFailed)
        assert text == "PRECONDITION_FAILED - queue 'qcond' in vhost '/' in use"
        # The queue and its consumer carry on.
        ch = await conn.channel()
        await ch.basic_publish(b"still-here", routing_key="qcond")
        await collector.wait_for(1)
        assert collector.messages[0].body == b"still-here"

        await ch.queue_declare("qfull")
        await publish_confirmed(ch, "qfull", [b"x"])
        text = await channel_error(ch.queue_delete("qfull", if_empty=True),
                                   ChannelPreconditionFailed)
        assert text == "PRECONDITION_FAILED - queue 'qfull' in vhost '/' not empty"
        ch = await conn.channel()
        assert (await ch.queue_declare("qfull", passive=True)).message_count == 1
        # Both conditions satisfied: deleted.
        await ch.basic_get("qfull", no_ack=True)
        ok = await ch.queue_delete("qfull", if_unused=True, if_empty=True)
        assert ok.message_count == 0
    assert "qfull" not in broker.vhost().queues
    assert "qcond" in broker.vhost().queues


async def test_delete_with_consumers_sends_basic_cancel_aiormq(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn, rmq(broker) as other:
        ch = await conn.channel()
        await ch.queue_declare("qcancel")
        consumer_ch = await other.channel()
        cancels: list[aiormq.spec.Basic.Cancel] = []
        cancelled = asyncio.Event()

        async def on_cancel(frame: aiormq.spec.Basic.Cancel) -> None:
            cancels.append(frame)
            cancelled.set()

        consumer_ch.on_consumer_cancel_callbacks.add(on_cancel)
        await consumer_ch.basic_consume("qcancel", Collector(), consumer_tag="ctag-del")
        ok = await ch.queue_delete("qcancel")
        assert ok.message_count == 0
        await asyncio.wait_for(cancelled.wait(), TIMEOUT)
        assert [frame.consumer_tag for frame in cancels] == ["ctag-del"]
        # The consumer's channel stays open and usable.
        assert not consumer_ch.is_closed
        declared = await consumer_ch.queue_declare("qafter")
        assert declared.queue == "qafter"
    assert "qcancel" not in broker.vhost().queues


async def test_delete_with_consumer_basic_cancel_frame_raw(broker: BrokerHandle) -> None:
    async with raw(broker) as client:
        client.send_method(1, commands.Queue.Declare(queue="qrc"))
        await client.expect(commands.Queue.DeclareOk)
        client.send_method(1, commands.Basic.Consume(queue="qrc", consumer_tag="raw-ctag"))
        assert (await client.expect(commands.Basic.ConsumeOk)).consumer_tag == "raw-ctag"

        async with rmq(broker) as conn:
            ch = await conn.channel()
            await ch.queue_delete("qrc")

        cancel = await client.expect(commands.Basic.Cancel)
        assert cancel.consumer_tag == "raw-ctag"
        assert cancel.nowait is True
        # Channel 1 is still open: a new declare on it works.
        client.send_method(1, commands.Queue.Declare(queue="qrc2"))
        assert (await client.expect(commands.Queue.DeclareOk)).queue == "qrc2"


async def test_delete_missing_queue_is_ok_with_zero(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        ok = await ch.queue_delete("never-declared")
        assert isinstance(ok, aiormq.spec.Queue.DeleteOk)
        assert ok.message_count == 0
        assert not ch.is_closed

    def run(conn: pika.BlockingConnection) -> int:
        return conn.channel().queue_delete("never-declared-either").method.message_count

    assert await in_pika(broker, run) == 0
