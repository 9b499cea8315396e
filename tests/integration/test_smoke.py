"""The smallest end-to-end checks with each client library; details live in other modules."""

from __future__ import annotations

import asyncio

import aio_pika
import aiormq
import pika

from tests.conftest import BrokerHandle


async def test_aio_pika_publish_consume_ack(broker: BrokerHandle) -> None:
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue("smoke")
        for i in range(10):
            await channel.default_exchange.publish(
                aio_pika.Message(f"m{i}".encode(), headers={"n": i}), routing_key="smoke"
            )
        got = []
        async with queue.iterator() as it:
            async for message in it:
                async with message.process():
                    got.append((message.body, message.headers["n"]))
                if len(got) == 10:
                    break
        assert got == [(f"m{i}".encode(), i) for i in range(10)]
    assert broker.vhost().queues["smoke"].unacked == 0


async def test_aiormq_get_and_ack(broker: BrokerHandle) -> None:
    connection = await aiormq.connect(broker.url)
    channel = await connection.channel()
    await channel.queue_declare("smoke2")
    await channel.basic_publish(b"hello", routing_key="smoke2")
    result = await channel.basic_get("smoke2")
    assert result.body == b"hello"
    await channel.basic_ack(result.delivery.delivery_tag)
    empty = await channel.basic_get("smoke2")
    assert isinstance(empty.delivery, aiormq.spec.Basic.GetEmpty)
    await connection.close()


async def test_pika_blocking_in_thread(broker: BrokerHandle) -> None:
    def run() -> list[bytes]:
        conn = pika.BlockingConnection(pika.URLParameters(broker.url))
        ch = conn.channel()
        ch.queue_declare("smoke3")
        ch.confirm_delivery()
        for i in range(3):
            ch.basic_publish("", "smoke3", f"p{i}".encode())
        bodies = []
        for _ in range(3):
            _method, _props, body = ch.basic_get("smoke3", auto_ack=True)
            bodies.append(body)
        conn.close()
        return bodies

    assert await asyncio.to_thread(run) == [b"p0", b"p1", b"p2"]
