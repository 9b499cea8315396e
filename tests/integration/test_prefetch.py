"""Push delivery and prefetch credit (basic.qos), over the wire.

Covers: consumers are pushed messages without polling (aio-pika, pika in a thread);
basic.qos prefetch N (global=false) caps a consumer's unacked messages at exactly N and an
ack returns exactly one credit (RawClient and aiormq); global=true caps the channel across
consumers on different queues, and both limits apply at once; RabbitMQ's per_consumer_qos
(a qos call only affects consumers started after it); prefetch 0 is unlimited; ack with
multiple=true, nack and reject all return credit; round-robin between three consumers on
one queue; a consumer whose prefetch is full is skipped while the others keep receiving.

"Exactly N" is checked deterministically: the broker dispatches synchronously, so any
delivery it would make is written before the reply to a later synchronous method on the
same connection (a passive queue.declare, which also reports the ready count).
"""

from __future__ import annotations

import asyncio
import threading
import time

import aio_pika
import aiormq
import pika
from pamqp import commands

from tests.conftest import BrokerHandle
from tests.helpers import bodies, consume, declare, publish, qos, raw_client, sync


# --------------------------------------------------------------------------- push
async def test_aio_pika_consumer_is_pushed_messages(broker: BrokerHandle) -> None:
    consumer_conn = await aio_pika.connect(broker.url)
    producer_conn = await aio_pika.connect(broker.url)
    async with consumer_conn, producer_conn:
        channel = await consumer_conn.channel()
        queue = await channel.declare_queue("push")
        got: list[bytes] = []
        done = asyncio.Event()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                got.append(message.body)
                if len(got) == 20:
                    done.set()

        await queue.consume(on_message)
        pub = await producer_conn.channel(publisher_confirms=True)
        for body in bodies("p", 20):
            await pub.default_exchange.publish(aio_pika.Message(body), routing_key="push")
        await asyncio.wait_for(done.wait(), 5)
        assert got == bodies("p", 20)
    assert broker.vhost().queues["push"].message_count == 0


async def test_pika_consumer_in_thread_is_pushed_messages(broker: BrokerHandle) -> None:
    ready = threading.Event()

    def run() -> list[bytes]:
        conn = pika.BlockingConnection(pika.URLParameters(broker.url))
        try:
            ch = conn.channel()
            ch.queue_declare("pika-push")
            ch.basic_qos(prefetch_count=5)
            got: list[bytes] = []

            def on_message(chan, method, _props, body):  # type: ignore[no-untyped-def]
                got.append(body)
                chan.basic_ack(method.delivery_tag)

            ch.basic_consume("pika-push", on_message)
            ready.set()
            deadline = time.monotonic() + 5
            while len(got) < 15 and time.monotonic() < deadline:
                conn.process_data_events(time_limit=0.05)
            return got
        finally:
            conn.close()

    task = asyncio.create_task(asyncio.to_thread(run))
    assert await asyncio.to_thread(ready.wait, 5)
    for _ in range(100):
        if broker.vhost().queues["pika-push"].consumer_count == 1:
            break
        await asyncio.sleep(0.02)
    connection = await aiormq.connect(broker.url)
    channel = await connection.channel()
    for body in bodies("k", 15):
        await channel.basic_publish(body, routing_key="pika-push")
    assert await asyncio.wait_for(task, 10) == bodies("k", 15)
    await connection.close()


# --------------------------------------------------------------------------- per-consumer
async def test_prefetch_caps_unacked_and_ack_returns_one_credit(broker: BrokerHandle) -> None:
    client = await raw_client(broker, (1, 2))
    await declare(client, "pf")
    await qos(client, 3)
    await consume(client, "pf", "c1")
    publish(client, 2, "pf", bodies("m", 10))
    got, ready = await sync(client, "pf")
    assert [d.body for d in got] == bodies("m", 3)
    assert [d.tag for d in got] == [1, 2, 3]
    assert ready == 7
    queue = broker.vhost().queues["pf"]
    assert queue.unacked == 3

    client.send_method(1, commands.Basic.Ack(delivery_tag=1))
    more, ready = await sync(client, "pf")
    assert [d.body for d in more] == [b"m3"]
    assert ready == 6
    assert queue.unacked == 3
    client.close()


async def test_prefetch_with_aiormq_consumer_that_does_not_ack(broker: BrokerHandle) -> None:
    connection = await aiormq.connect(broker.url)
    channel = await connection.channel()
    await channel.queue_declare("pf-aiormq")
    await channel.basic_qos(prefetch_count=5)
    got: list[aiormq.abc.DeliveredMessage] = []

    async def on_message(message: aiormq.abc.DeliveredMessage) -> None:
        got.append(message)

    await channel.basic_consume("pf-aiormq", on_message, no_ack=False)
    pub = await connection.channel()
    for body in bodies("a", 20):
        await pub.basic_publish(body, routing_key="pf-aiormq")  # confirmed: enqueued
    for _ in range(100):
        if len(got) >= 5:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # settle: nothing beyond the prefetch may arrive
    assert [m.body for m in got] == bodies("a", 5)
    queue = broker.vhost().queues["pf-aiormq"]
    assert (queue.message_count, queue.unacked) == (15, 5)

    await channel.basic_ack(got[0].delivery_tag)  # type: ignore[arg-type]
    for _ in range(100):
        if len(got) >= 6:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)
    assert [m.body for m in got] == bodies("a", 6)
    assert (queue.message_count, queue.unacked) == (14, 5)
    await connection.close()


async def test_per_consumer_qos_applies_only_to_later_consumers(broker: BrokerHandle) -> None:
    client = await raw_client(broker, (1, 2))
    await declare(client, "early")
    await declare(client, "late")
    await qos(client, 1)
    await consume(client, "early", "early")
    await qos(client, 4)  # RabbitMQ per_consumer_qos: "early" keeps prefetch 1
    await consume(client, "late", "late")
    publish(client, 2, "early", bodies("e", 10))
    publish(client, 2, "late", bodies("l", 10))
    got, _ = await sync(client, "early")
    by_tag = {tag: [d.body for d in got if d.method.consumer_tag == tag]
              for tag in ("early", "late")}
    assert by_tag == {"early": [b"e0"], "late": bodies("l", 4)}
    vhost = broker.vhost()
    assert vhost.queues["early"].message_count == 9
    assert vhost.queues["late"].message_count == 6
    client.close()


async def test_prefetch_zero_is_unlimited(broker: BrokerHandle) -> None:
    client = await raw_client(broker, (1, 2))
    await declare(client, "unl")
    await qos(client, 2)
    await qos(client, 0)  # the last value before basic.consume wins
    publish(client, 2, "unl", bodies("u", 50))
    await consume(client, "unl", "c")
    got, ready = await sync(client, "unl")
    assert [d.body for d in got] == bodies("u", 50)
    assert ready == 0
    assert broker.vhost().queues["unl"].unacked == 50
    client.close()


async def test_ack_multiple_returns_credit_for_all(broker: BrokerHandle) -> None:
    client = await raw_client(broker, (1, 2))
    await declare(client, "multi")
    await qos(client, 4)
    await consume(client, "multi", "c")
    publish(client, 2, "multi", bodies("m", 12))
    got, ready = await sync(client, "multi")
    assert ([d.tag for d in got], ready) == ([1, 2, 3, 4], 8)
    client.send_method(1, commands.Basic.Ack(delivery_tag=4, multiple=True))
    more, ready = await sync(client, "multi")
    assert [d.tag for d in more] == [5, 6, 7, 8]
    assert [d.body for d in more] == [b"m4", b"m5", b"m6", b"m7"]
    assert ready == 4
    queue = broker.vhost().queues["multi"]
    assert (queue.unacked, queue.acked) == (4, 4)
    client.close()


async def test_nack_and_reject_return_credit(broker: BrokerHandle) -> None:
    client = await raw_client(broker, (1, 2))
    await declare(client, "nr")
    await qos(client, 2)
    await consume(client, "nr", "c")
    publish(client, 2, "nr", bodies("m", 6))
    got, _ = await sync(client, "nr")
    assert [d.body for d in got] == [b"m0", b"m1"]

    client.send_method(1, commands.Basic.Reject(delivery_tag=1, requeue=False))
    more, _ = await sync(client, "nr")
    assert [(d.tag, d.body) for d in more] == [(3, b"m2")]

    client.send_method(1, commands.Basic.Nack(delivery_tag=2, multiple=False, requeue=False))
    more, _ = await sync(client, "nr")
    assert [(d.tag, d.body) for d in more] == [(4, b"m3")]

    # nack with requeue: the credit comes back and the message itself is redelivered first
    client.send_method(1, commands.Basic.Nack(delivery_tag=3, multiple=False, requeue=True))
    more, ready = await sync(client, "nr")
    assert [(d.tag, d.body, d.method.redelivered) for d in more] == [(5, b"m2", True)]
    assert ready == 2
    assert broker.vhost().queues["nr"].unacked == 2
    client.close()


# --------------------------------------------------------------------------- global
async def test_global_qos_limits_the_channel_across_queues(broker: BrokerHandle) -> None:
    client = await raw_client(broker, (1, 2))
    await declare(client, "g1")
    await declare(client, "g2")
    await qos(client, 3, global_=True)
    await consume(client, "g1", "c1")
    await consume(client, "g2", "c2")
    publish(client, 2, "g1", bodies("a", 2))
    publish(client, 2, "g2", bodies("b", 5))
    got, _ = await sync(client, "g1")
    assert [(d.method.consumer_tag, d.body) for d in got] == [
        ("c1", b"a0"), ("c1", b"a1"), ("c2", b"b0")]
    vhost = broker.vhost()
    assert vhost.queues["g2"].message_count == 4

    # acking c1's two messages frees two channel credits; only g2 has messages left
    client.send_method(1, commands.Basic.Ack(delivery_tag=2, multiple=True))
    more, _ = await sync(client, "g2")
    assert [(d.method.consumer_tag, d.body) for d in more] == [("c2", b"b1"), ("c2", b"b2")]
    assert vhost.queues["g2"].message_count == 2
    assert vhost.queues["g2"].unacked == 3
    client.close()


async def test_global_and_per_consumer_limits_apply_together(broker: BrokerHandle) -> None:
    client = await raw_client(broker, (1, 2))
    await declare(client, "b1")
    await declare(client, "b2")
    await qos(client, 2)  # per consumer
    await qos(client, 3, global_=True)  # whole channel
    await consume(client, "b1", "c1")
    await consume(client, "b2", "c2")
    publish(client, 2, "b1", bodies("x", 5))
    publish(client, 2, "b2", bodies("y", 5))
    got, _ = await sync(client, "b1")
    # c1 stops at its own limit of 2; the channel's third credit goes to c2
    assert [(d.method.consumer_tag, d.body) for d in got] == [
        ("c1", b"x0"), ("c1", b"x1"), ("c2", b"y0")]
    outstanding = {d.tag: d.method.consumer_tag for d in got}

    client.send_method(1, commands.Basic.Ack(delivery_tag=3))  # c2's
    del outstanding[3]
    more, _ = await sync(client, "b1")
    # c1 is still full (2 of 2), so the returned channel credit can only go to c2
    assert [(d.method.consumer_tag, d.body) for d in more] == [("c2", b"y1")]
    outstanding.update({d.tag: d.method.consumer_tag for d in more})

    client.send_method(1, commands.Basic.Ack(delivery_tag=2, multiple=True))  # c1's two
    del outstanding[1], outstanding[2]
    more, _ = await sync(client, "b1")
    outstanding.update({d.tag: d.method.consumer_tag for d in more})
    assert len(more) == 2
    per_consumer = [list(outstanding.values()).count(tag) for tag in ("c1", "c2")]
    assert len(outstanding) == 3
    assert max(per_consumer) <= 2
    vhost = broker.vhost()
    assert vhost.queues["b1"].unacked + vhost.queues["b2"].unacked == 3
    client.close()


# --------------------------------------------------------------------------- round-robin
async def test_round_robin_between_three_consumers(broker: BrokerHandle) -> None:
    connection = await aio_pika.connect(broker.url)
    async with connection:
        declare_ch = await connection.channel()
        await declare_ch.declare_queue("rr")
        received: dict[int, list[bytes]] = {0: [], 1: [], 2: []}
        done = asyncio.Event()
        for index in range(3):
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=10)
            queue = await channel.get_queue("rr")

            async def on_message(message: aio_pika.abc.AbstractIncomingMessage,
                                 index: int = index) -> None:
                received[index].append(message.body)  # never acked: prefetch 10 each
                if sum(len(v) for v in received.values()) == 30:
                    done.set()

            await queue.consume(on_message)
        assert broker.vhost().queues["rr"].consumer_count == 3
        pub = await connection.channel(publisher_confirms=True)
        for body in bodies("r", 30):
            await pub.default_exchange.publish(aio_pika.Message(body), routing_key="rr")
        await asyncio.wait_for(done.wait(), 5)
        expected = bodies("r", 30)
        assert received == {k: expected[k::3] for k in range(3)}
        queue_obj = broker.vhost().queues["rr"]
        assert (queue_obj.message_count, queue_obj.unacked) == (0, 30)


async def test_consumer_with_full_prefetch_is_skipped(broker: BrokerHandle) -> None:
    client = await raw_client(broker, (1, 2, 3, 4))
    await declare(client, "skip")
    await qos(client, 1, channel=1)
    await consume(client, "skip", "slow", channel=1)
    await consume(client, "skip", "fast-a", channel=2)
    await consume(client, "skip", "fast-b", channel=3)
    publish(client, 4, "skip", bodies("s", 10))
    got, ready = await sync(client, "skip")
    by_tag = {tag: [d.body for d in got if d.method.consumer_tag == tag]
              for tag in ("slow", "fast-a", "fast-b")}
    assert by_tag["slow"] == [b"s0"]
    fast = by_tag["fast-a"] + by_tag["fast-b"]
    assert sorted(fast) == sorted(bodies("s", 10)[1:])
    assert len(by_tag["fast-a"]) >= 4 and len(by_tag["fast-b"]) >= 4
    assert ready == 0

    # once the slow consumer acks, it is back in the rotation
    slow_tag = next(d.tag for d in got if d.method.consumer_tag == "slow")
    client.send_method(1, commands.Basic.Ack(delivery_tag=slow_tag))
    publish(client, 4, "skip", bodies("t", 3))
    more, _ = await sync(client, "skip")
    assert sorted(d.body for d in more) == bodies("t", 3)
    assert sum(1 for d in more if d.method.consumer_tag == "slow") == 1
    client.close()
