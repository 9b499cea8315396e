"""The memory alarm: publishers are blocked (connection.blocked, socket no longer read)
while ready message bytes are over the watermark; consumers keep being served; when the
queues drain, publishers get connection.unblocked and their messages flow again."""

from __future__ import annotations

import asyncio

import aio_pika
from pamqp import commands

from tests.helpers import declare, raw_client, wait_until

WATERMARK = 100_000
BODY = b"x" * 1000


async def test_publisher_blocked_then_unblocked(broker_factory) -> None:  # type: ignore[no-untyped-def]
    broker = await broker_factory(top={"memory_high_watermark_bytes": WATERMARK})
    queues = broker.vhost().queues
    publisher = await raw_client(broker)
    await declare(publisher, "big")

    def publish(count: int) -> None:
        for _ in range(count):
            publisher.send_method(1, commands.Basic.Publish(exchange="", routing_key="big"))
            publisher.send_content(1, BODY)

    publish(150)  # 150 KB ready: over the watermark
    await wait_until(lambda: broker.server.alarm)
    publish(5)  # the next publish after the alarm blocks the connection
    blocked = await publisher.expect(commands.Connection.Blocked)
    assert blocked.reason == "low on memory"
    await asyncio.sleep(0.3)
    stalled_at = queues["big"].message_count
    publish(50)  # not read by the broker while blocked
    await asyncio.sleep(0.3)
    assert queues["big"].message_count == stalled_at

    # A consumer on another connection is still served and drains the queue.
    consumer_conn = await aio_pika.connect(broker.url)
    async with consumer_conn:
        channel = await consumer_conn.channel()
        queue = await channel.get_queue("big")
        received = 0
        total = 150 + 5 + 50
        # One subscription for everything: a second one would race the first's cancel
        # (with no_ack, messages pushed to the cancelled consumer are gone).
        async with queue.iterator(no_ack=True) as it:
            async for message in it:
                assert message.body == BODY
                received += 1
                if received == stalled_at:
                    unblocked = await publisher.expect(commands.Connection.Unblocked)
                    assert isinstance(unblocked, commands.Connection.Unblocked)
                if received == total:
                    # the 50 held back by TCP back-pressure arrived: nothing lost
                    break
        assert received == total
    assert not broker.server.alarm
    publisher.close()


async def test_consumer_only_connection_is_not_blocked(broker_factory) -> None:  # type: ignore[no-untyped-def]
    """The publisher fills the queue past the watermark (and may itself be blocked, if
    the alarm is raised before its last publishes are read); a connection that only
    consumes is never blocked and is served."""
    broker = await broker_factory(top={"memory_high_watermark_bytes": WATERMARK})
    publisher = await raw_client(broker)
    await declare(publisher, "q")
    for _ in range(150):
        publisher.send_method(1, commands.Basic.Publish(exchange="", routing_key="q"))
        publisher.send_content(1, BODY)
    await wait_until(lambda: broker.server.alarm)
    held = broker.vhost().queues["q"].message_count
    assert held >= 100  # over the watermark
    conn = await aio_pika.connect(broker.url)
    async with conn:
        channel = await conn.channel(publisher_confirms=False)
        queue = await channel.get_queue("q")
        message = await queue.get(no_ack=True)
        assert message.body == BODY
        assert broker.vhost().queues["q"].message_count == held - 1
        consumers = [c for c in broker.server.connections
                     if c.client_properties.get("product") != "rawamqp"]
        assert len(consumers) == 1
        assert not consumers[0].blocked
    publisher.close()
