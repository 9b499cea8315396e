"""Protocol behaviours real clients depend on (issue 12, item 5), with the clients that
depend on them: py-amqp (kombu's transport) deleting a queue it consumes from on the same
channel, aio-pika tearing down bindings after their queue, and a client that sends
connection.close twice (Go's amqp091 does, from two goroutines). The byte-level
comparison with RabbitMQ 3.10.8 is tests/differential/test_diff_protocol.py."""

from __future__ import annotations

import asyncio

import aio_pika
import amqp
from pamqp import commands

from tests.conftest import BrokerHandle
from tests.rawamqp import RawClient


async def test_py_amqp_deletes_the_queue_it_consumes_from(broker: BrokerHandle) -> None:
    cancelled: list[str] = []

    def run() -> int:
        with amqp.Connection(f"127.0.0.1:{broker.port}", userid="guest",
                             password="guest") as conn:
            channel = conn.channel()
            channel.queue_declare("kq")
            channel.basic_consume("kq", consumer_tag="k1", callback=lambda m: None,
                                  on_cancel=cancelled.append)
            count = channel.queue_delete("kq")  # raised ConsumerCancelled before
            conn.drain_events(timeout=1)  # the basic.cancel that follows delete-ok
            return int(count)

    assert await asyncio.to_thread(run) == 0
    assert cancelled == ["k1"]
    assert "kq" not in broker.vhost().queues


async def test_aio_pika_unbinds_after_deleting_the_queue(broker: BrokerHandle) -> None:
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange("rpc", aio_pika.ExchangeType.DIRECT)
        queue = await channel.declare_queue("replies")
        await queue.bind(exchange, "r")
        await queue.delete()
        await queue.unbind(exchange, "r")  # unbind-ok, channel still open
        await exchange.delete()
        await queue.unbind(exchange, "r")
        assert not channel.is_closed
        await channel.declare_queue("still-open")


async def test_second_connection_close_is_answered_and_socket_left_to_client(
        broker: BrokerHandle) -> None:
    client = await RawClient.connect(broker.port)
    await client.handshake()
    client.send_method(0, commands.Connection.Close(200, "a", 0, 0))
    client.send_method(0, commands.Connection.Close(200, "b", 0, 0))
    await client.expect(commands.Connection.CloseOk)
    await client.expect(commands.Connection.CloseOk)
    # nothing more, and no close from the broker: the client closes without a reset
    try:
        extra = await asyncio.wait_for(client.reader.read(1), 0.5)
    except TimeoutError:
        extra = None
    assert extra is None, extra
    client.writer.write_eof()
    assert await client.closed()
    client.close()
