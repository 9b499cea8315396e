"""Consumer priorities (``x-priority`` in basic.consume) over real TCP, aiormq and pika.

Expected deliveries were observed on Debian's RabbitMQ 3.10.8 (a private node) with the
same aiormq calls and match exactly: messages go to the highest-priority consumers with
credit, round-robin among equals; a lower-priority consumer gets messages only while
every higher one is at its prefetch; a negative priority ranks below the default 0; a
backlog is shared the same way when consumers join. x-priority must be an integer of
any size (406 naming the argument otherwise, with RabbitMQ's prefix).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiormq
import pika
import pytest

from tests.conftest import BrokerHandle
from tests.helpers import channel_error, in_pika, rmq, wait_until


async def consumer(conn: aiormq.Connection, queue: str, tag: str, priority: int | None,
                   prefetch: int, got: dict[str, list[str]]) -> aiormq.Channel:
    ch = await conn.channel()
    await ch.basic_qos(prefetch_count=prefetch)
    got[tag] = []

    async def on_message(message: Any) -> None:
        got[tag].append(message.body.decode())

    arguments = {"x-priority": priority} if priority is not None else {}
    await ch.basic_consume(queue, on_message, consumer_tag=tag, arguments=arguments)
    return ch


async def test_highest_priority_with_credit_first_equals_round_robin(
        broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        ch0 = await conn.channel()
        await ch0.queue_declare("cp")
        got: dict[str, list[str]] = {}
        chans = {}
        for tag, priority, prefetch in (("low", None, 10), ("a", 5, 2), ("b", 5, 2),
                                        ("neg", -3, 10)):
            chans[tag] = await consumer(conn, "cp", tag, priority, prefetch, got)
        for i in range(10):
            await ch0.basic_publish(b"m%d" % i, routing_key="cp")
        await wait_until(lambda: sum(map(len, got.values())) == 10)
        # RabbitMQ 3.10.8: exactly this
        assert got == {"low": ["m4", "m5", "m6", "m7", "m8", "m9"], "a": ["m0", "m2"],
                       "b": ["m1", "m3"], "neg": []}
        # credit back to a high one: it is served before the low one again
        queue = broker.vhost().queues["cp"]
        await chans["a"].basic_ack(2, multiple=True)  # a's two deliveries (tags 1, 2)
        await wait_until(lambda: queue.unacked == 8)
        await ch0.basic_publish(b"again", routing_key="cp")
        await wait_until(lambda: "again" in got["a"])
        assert "again" not in got["low"]


async def test_backlog_is_shared_by_priority_as_consumers_join(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        ch0 = await conn.channel()
        await ch0.queue_declare("cp2")
        for i in range(8):
            await ch0.basic_publish(b"n%d" % i, routing_key="cp2")
        got: dict[str, list[str]] = {}
        await consumer(conn, "cp2", "low", 0, 3, got)
        await wait_until(lambda: len(got["low"]) == 3)
        await consumer(conn, "cp2", "high", 1, 2, got)
        await wait_until(lambda: len(got["high"]) == 2)
        await asyncio.sleep(0.1)
        # RabbitMQ 3.10.8: the same
        assert got == {"low": ["n0", "n1", "n2"], "high": ["n3", "n4"]}


@pytest.mark.parametrize("value", ["5", True, 1.5])
async def test_x_priority_must_be_an_integer(broker: BrokerHandle, value: Any) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        await ch.queue_declare("cq")
        text = await channel_error(
            ch.basic_consume("cq", lambda m: None, arguments={"x-priority": value}),
            aiormq.exceptions.ChannelPreconditionFailed)
        # RabbitMQ 3.10.8: "... for queue 'cq' in vhost '/': \"expected integer, got longstr\""
        assert text.startswith("PRECONDITION_FAILED - invalid arg 'x-priority' for queue 'cq'"
                               " in vhost '/': \"expected integer, got ")
    assert broker.vhost().queues["cq"].consumer_count == 0


async def test_pika_consumers_any_integer_size(broker: BrokerHandle) -> None:
    def run(conn: pika.BlockingConnection) -> dict[str, list[bytes]]:
        ch = conn.channel()
        ch.queue_declare("cpk")
        ch.basic_qos(prefetch_count=1)
        got: dict[str, list[bytes]] = {"big": [], "small": []}
        for tag, priority in (("small", -(2**31) - 1), ("big", 2**40)):  # RabbitMQ: OK
            ch.basic_consume("cpk", lambda c, m, p, b, tag=tag: got[tag].append(b),
                             consumer_tag=tag, arguments={"x-priority": priority})
        for i in range(3):
            ch.basic_publish("", "cpk", b"k%d" % i)
        for _ in range(50):
            conn.process_data_events(time_limit=0.02)
            if len(got["big"]) + len(got["small"]) == 2:
                break
        return got

    got = await in_pika(broker, run)
    # prefetch 1 each, nothing acked: one to the big priority, the next to the small one
    assert got == {"big": [b"k0"], "small": [b"k1"]}
