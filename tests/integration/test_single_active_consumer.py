"""Single active consumer (``x-single-active-consumer``) over real TCP: aiormq, pika and
the management API.

Behaviour observed on Debian's RabbitMQ 3.10.8 (a private node) with the same calls: the
argument must be a boolean (406 naming it otherwise); an exclusive basic.consume is 403
"in exclusive use"; the first consumer is active and later ones wait, even with a higher
x-priority; when the active one leaves, the waiting consumer with the highest x-priority
(then the earliest) takes over; basic.cancel requeues nothing (the cancelled consumer
still holds and may ack its messages); a channel or connection close requeues them and
the successor gets them first, redelivered; the management API names the active consumer
(``single_active_consumer_tag``, consumers' ``active`` and ``activity_status``).

One difference on purpose: when the cancelled consumer was at its prefetch limit,
RabbitMQ 3.10.8 marks the successor active but never delivers to it (observed: it stays
idle with messages ready, even after the old consumer acks); WarrenMQ serves it at once.
The argument is kept with a durable queue across a restart.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiormq
import pika
import pytest

from tests.conftest import BrokerHandle, running
from tests.helpers import channel_error, in_pika, rmq, wait_until
from tests.mgmthttp import MANAGEMENT, Http

SAC = {"x-single-active-consumer": True}


class Consumers:
    """aiormq consumers on their own channels, recording (body, redelivered)."""

    def __init__(self, conn: aiormq.Connection, queue: str) -> None:
        self.conn = conn
        self.queue = queue
        self.got: dict[str, list[tuple[str, bool]]] = {}
        self.channels: dict[str, aiormq.Channel] = {}

    async def add(self, tag: str, prefetch: int, priority: int | None = None,
                  conn: aiormq.Connection | None = None) -> aiormq.Channel:
        ch = await (conn or self.conn).channel()
        await ch.basic_qos(prefetch_count=prefetch)
        self.got[tag] = []

        async def on_message(message: Any) -> None:
            self.got[tag].append((message.body.decode(), message.delivery.redelivered))

        arguments = {"x-priority": priority} if priority is not None else {}
        await ch.basic_consume(self.queue, on_message, consumer_tag=tag, arguments=arguments)
        self.channels[tag] = ch
        return ch

    def count(self) -> int:
        return sum(map(len, self.got.values()))


async def fill(ch: aiormq.Channel, queue: str, n: int, prefix: str = "m") -> None:
    for i in range(n):
        await ch.basic_publish(f"{prefix}{i}".encode(), routing_key=queue)


@pytest.mark.parametrize(("value", "kind"), [(1, "int 1"), ("true", "str 'true'"),
                                             (0, "int 0")])
async def test_argument_must_be_a_boolean(broker: BrokerHandle, value: Any, kind: str) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        await ch.queue_declare("yes", arguments={"x-single-active-consumer": True})
        await ch.queue_declare("no", arguments={"x-single-active-consumer": False})
        text = await channel_error(
            ch.queue_declare("bad", arguments={"x-single-active-consumer": value}),
            aiormq.exceptions.ChannelPreconditionFailed)
        # RabbitMQ 3.10.8: same prefix, then {unacceptable_type,signedint} / longstr
        assert text == ("PRECONDITION_FAILED - invalid arg 'x-single-active-consumer' for"
                        f" queue 'bad' in vhost '/': expected a boolean, got {kind}")


async def test_exclusive_consume_is_refused(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        await ch.queue_declare("sx", arguments=SAC)
        text = await channel_error(ch.basic_consume("sx", lambda m: None, exclusive=True),
                                   aiormq.exceptions.ChannelAccessRefused)
        # RabbitMQ 3.10.8: exactly this, with or without other consumers
        assert text == "ACCESS_REFUSED - queue 'sx' in vhost '/' in exclusive use"
        ch = await conn.channel()
        await ch.basic_consume("sx", lambda m: None)
        ch2 = await conn.channel()
        text = await channel_error(ch2.basic_consume("sx", lambda m: None, exclusive=True),
                                   aiormq.exceptions.ChannelAccessRefused)
        assert text == "ACCESS_REFUSED - queue 'sx' in vhost '/' in exclusive use"


async def test_cancel_at_the_prefetch_limit_successor_is_served(
        broker_factory: Any) -> None:
    broker: BrokerHandle = await broker_factory(top=MANAGEMENT)
    http = Http(broker.server.management_port)
    async with rmq(broker) as conn:
        ch0 = await conn.channel()
        await ch0.queue_declare("sacq", arguments=SAC)
        await fill(ch0, "sacq", 6)
        c = Consumers(conn, "sacq")
        await c.add("A", 2)
        await c.add("B", 2)
        await c.add("C", 2, priority=5)  # joins later: waits, whatever its priority
        await wait_until(lambda: c.count() == 2)
        assert c.got == {"A": [("m0", False), ("m1", False)], "B": [], "C": []}
        queue = (await http.json("/api/queues/%2F/sacq"))
        assert queue["single_active_consumer_tag"] == "A" and queue["consumers"] == 3
        status = {x["consumer_tag"]: (x["active"], x["activity_status"])
                  for x in await http.json("/api/consumers")}
        assert status == {"A": (True, "single_active"), "B": (False, "waiting"),
                          "C": (False, "waiting")}
        await c.channels["A"].basic_cancel("A")
        # RabbitMQ 3.10.8 makes C active but delivers nothing to it; WarrenMQ serves it
        await wait_until(lambda: len(c.got["C"]) == 2)
        assert c.got["C"] == [("m2", False), ("m3", False)]
        assert (await http.json("/api/queues/%2F/sacq"))["single_active_consumer_tag"] == "C"
        q = broker.vhost().queues["sacq"]
        assert q.unacked == 4 and q.message_count == 2  # cancel requeued nothing
        await c.channels["A"].basic_ack(2, multiple=True)  # A may still ack its messages
        await wait_until(lambda: q.unacked == 2)
        assert c.got["A"] == [("m0", False), ("m1", False)] and c.got["B"] == []


async def test_channel_close_requeues_and_the_successor_gets_them_first(
        broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        ch0 = await conn.channel()
        await ch0.queue_declare("sc", arguments=SAC)
        await fill(ch0, "sc", 6)
        c = Consumers(conn, "sc")
        await c.add("C", 2)
        await c.add("D", 10)
        await wait_until(lambda: c.count() == 2)
        await c.channels["C"].close()  # no basic.cancel first: the close requeues
        await wait_until(lambda: len(c.got["D"]) == 6)
        # RabbitMQ 3.10.8: exactly this
        assert c.got["D"] == [("m0", True), ("m1", True), ("m2", False), ("m3", False),
                              ("m4", False), ("m5", False)]


async def test_connection_close_requeues_to_the_highest_priority_waiter(
        broker: BrokerHandle) -> None:
    async with rmq(broker) as conn, rmq(broker) as doomed:
        ch0 = await conn.channel()
        await ch0.queue_declare("sconn", arguments=SAC)
        await fill(ch0, "sconn", 4)
        c = Consumers(conn, "sconn")
        await c.add("first", 3, conn=doomed)
        await c.add("low", 10, priority=-1)
        await c.add("high", 10, priority=2)
        await c.add("high-later", 10, priority=2)
        await wait_until(lambda: c.count() == 3)
        await doomed.close()
        await wait_until(lambda: len(c.got["high"]) == 4)
        # RabbitMQ 3.10.8: exactly this
        assert c.got["high"] == [("m0", True), ("m1", True), ("m2", True), ("m3", False)]
        assert c.got["low"] == c.got["high-later"] == []


async def test_pika_consumers_only_one_receives(broker: BrokerHandle) -> None:
    def run(conn: pika.BlockingConnection) -> dict[str, list[bytes]]:
        ch = conn.channel()
        ch.queue_declare("sp", arguments=SAC)
        got: dict[str, list[bytes]] = {"one": [], "two": []}
        for tag in ("one", "two"):
            ch.basic_consume("sp", lambda c, m, p, b, tag=tag: got[tag].append(b),
                             consumer_tag=tag, auto_ack=True)
        for i in range(5):
            ch.basic_publish("", "sp", b"s%d" % i)
        for _ in range(100):
            conn.process_data_events(time_limit=0.02)
            if len(got["one"]) == 5:
                break
        ch.basic_cancel("one")
        ch.basic_publish("", "sp", b"after")
        for _ in range(100):
            conn.process_data_events(time_limit=0.02)
            if got["two"]:
                break
        return got

    got = await in_pika(broker, run)
    assert got == {"one": [b"s0", b"s1", b"s2", b"s3", b"s4"], "two": [b"after"]}



async def test_kept_with_a_durable_queue_across_a_restart(tmp_path: Path) -> None:
    async with running(tmp_path) as broker, rmq(broker) as conn:
        ch = await conn.channel()
        await ch.queue_declare("sd", durable=True, arguments=SAC)
    async with running(tmp_path) as broker, rmq(broker) as conn:
        queue = broker.vhost().queues["sd"]
        assert queue.arguments == SAC and queue.args.single_active_consumer
        ch0 = await conn.channel()
        c = Consumers(conn, "sd")
        await c.add("a", 0)
        await c.add("b", 0)
        await fill(ch0, "sd", 3)
        await wait_until(lambda: c.count() == 3)
        await asyncio.sleep(0.05)
        assert [b for b, _ in c.got["a"]] == ["m0", "m1", "m2"] and c.got["b"] == []
        assert queue.single_active_consumer_tag == "a"
