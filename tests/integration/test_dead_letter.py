"""Dead-lettering end to end with real clients: each reason (rejected, expired, maxlen,
delivery_limit) reaches the DLQ with RabbitMQ's x-death headers; TTL expiry with no
consumer; every overflow mode under publisher confirms; retry delays; cycles; invalid
x-arguments answered with 406."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import aio_pika
import aiormq
import pytest

from tests.conftest import BrokerHandle
from tests.helpers import channel_error, rmq

DLQ_ARGS = {"x-dead-letter-exchange": "dlx"}


async def setup_dlx(channel: aio_pika.abc.AbstractChannel) -> aio_pika.abc.AbstractQueue:
    dlx = await channel.declare_exchange("dlx", aio_pika.ExchangeType.FANOUT)
    dlq = await channel.declare_queue("dlq")
    await dlq.bind(dlx)
    return dlq


async def next_message(queue: aio_pika.abc.AbstractQueue,
                       timeout: float = 5.0) -> aio_pika.abc.AbstractIncomingMessage:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = await queue.get(no_ack=True, fail=False)
        if message is not None:
            return message
        await asyncio.sleep(0.02)
    raise AssertionError(f"nothing arrived in {queue.name} within {timeout} s")


def death(message: aio_pika.abc.AbstractIncomingMessage, index: int = 0) -> dict[str, Any]:
    deaths = message.headers["x-death"]
    assert isinstance(deaths, list)
    entry = deaths[index]
    assert isinstance(entry, dict)
    return entry


async def test_rejected_message_reaches_dlq_with_x_death(broker: BrokerHandle) -> None:
    async with await aio_pika.connect(broker.url) as conn:
        channel = await conn.channel()
        dlq = await setup_dlx(channel)
        exchange = await channel.declare_exchange("orders", aio_pika.ExchangeType.DIRECT)
        work = await channel.declare_queue("work", arguments=DLQ_ARGS)
        await work.bind(exchange, "order.created")
        await exchange.publish(
            aio_pika.Message(b"order-1", message_id="m-1", headers={"keep": "me"}),
            routing_key="order.created",
        )
        message = await next_message(work)
        assert message is not None
        got = await work.get(no_ack=False, fail=False)
        assert got is None
        # reject the one we hold via a fresh get without auto-ack
        await exchange.publish(aio_pika.Message(b"order-2", message_id="m-2"),
                               routing_key="order.created")
        held = await work.get(no_ack=False)
        await held.reject(requeue=False)
        dead = await next_message(dlq)
        assert dead.body == b"order-2"
        assert dead.message_id == "m-2"
        entry = death(dead)
        assert entry["reason"] == "rejected"
        assert entry["queue"] == "work"
        assert entry["exchange"] == "orders"
        assert entry["routing-keys"] == ["order.created"]
        assert entry["count"] == 1
        assert isinstance(entry["time"], datetime)
        assert sorted(entry) == ["count", "exchange", "queue", "reason", "routing-keys", "time"]
        assert dead.headers["x-first-death-queue"] == "work"
        assert dead.headers["x-first-death-reason"] == "rejected"
        assert dead.headers["x-first-death-exchange"] == "orders"
        assert dead.headers["x-last-death-queue"] == "work"
        assert dead.headers["x-last-death-reason"] == "rejected"
        assert dead.headers["x-last-death-exchange"] == "orders"
        # the message arrives at the DLQ through the DLX with the original routing key
        assert dead.exchange == "dlx"
        assert dead.routing_key == "order.created"


async def test_ttl_expiry_without_consumers_and_original_expiration(
        broker: BrokerHandle) -> None:
    async with await aio_pika.connect(broker.url) as conn:
        channel = await conn.channel()
        dlq = await setup_dlx(channel)
        work = await channel.declare_queue(
            "ttl", arguments={**DLQ_ARGS, "x-message-ttl": 300})
        await channel.default_exchange.publish(aio_pika.Message(b"a"), routing_key="ttl")
        # per-message TTL lower than the queue's: this one dies first although second
        await channel.default_exchange.publish(
            aio_pika.Message(b"b", expiration=0.05), routing_key="ttl")
        first = await next_message(dlq, timeout=2)
        assert first.body == b"b"
        assert death(first)["reason"] == "expired"
        assert death(first)["original-expiration"] == "50"
        assert first.expiration is None  # removed so it cannot expire again in the DLQ
        second = await next_message(dlq, timeout=2)
        assert second.body == b"a"
        assert "original-expiration" not in death(second)
        assert broker.vhost().queues["ttl"].message_count == 0
        assert work.name == "ttl"


async def test_delivery_limit_poison_message(broker: BrokerHandle) -> None:
    async with await aio_pika.connect(broker.url) as conn:
        channel = await conn.channel()
        dlq = await setup_dlx(channel)
        work = await channel.declare_queue(
            "poison", arguments={**DLQ_ARGS, "x-delivery-limit": 3})
        await channel.default_exchange.publish(
            aio_pika.Message(b"boom", message_id="p-1"), routing_key="poison")
        counts = []
        for _ in range(4):  # the first delivery and three retries
            message = await work.get(no_ack=False)
            counts.append((message.redelivered, (message.headers or {}).get("x-delivery-count")))
            await message.nack(requeue=True)
        assert counts == [(False, None), (True, 1), (True, 2), (True, 3)]
        assert await work.get(no_ack=False, fail=False) is None
        dead = await next_message(dlq)
        assert dead.message_id == "p-1"
        assert death(dead)["reason"] == "delivery_limit"
        assert death(dead)["queue"] == "poison"


async def test_delivery_limit_counts_a_closed_channel(broker: BrokerHandle) -> None:
    async with await aio_pika.connect(broker.url) as conn:
        channel = await conn.channel()
        dlq = await setup_dlx(channel)
        await channel.declare_queue("crashy", arguments={**DLQ_ARGS, "x-delivery-limit": 0})
        await channel.default_exchange.publish(aio_pika.Message(b"x"), routing_key="crashy")
        other = await conn.channel()
        queue = await other.get_queue("crashy")
        assert (await queue.get(no_ack=False)).body == b"x"
        await other.close()  # the consumer "crashes" holding the message
        dead = await next_message(dlq)
        assert death(dead)["reason"] == "delivery_limit"


async def test_drop_head_maxlen(broker: BrokerHandle) -> None:
    async with await aio_pika.connect(broker.url) as conn:
        channel = await conn.channel(publisher_confirms=True)
        dlq = await setup_dlx(channel)
        await channel.declare_queue("short", arguments={**DLQ_ARGS, "x-max-length": 2})
        for body in (b"1", b"2", b"3"):
            await channel.default_exchange.publish(aio_pika.Message(body), routing_key="short")
        dead = await next_message(dlq)
        assert dead.body == b"1"
        assert death(dead)["reason"] == "maxlen"
        assert broker.vhost().queues["short"].message_count == 2


@pytest.mark.parametrize("mode", ["reject-publish", "reject-publish-dlx"])
async def test_reject_publish_nacks_the_publisher(broker: BrokerHandle, mode: str) -> None:
    async with await aio_pika.connect(broker.url) as conn:
        channel = await conn.channel(publisher_confirms=True)
        dlq = await setup_dlx(channel)
        await channel.declare_queue(
            "full", arguments={**DLQ_ARGS, "x-max-length": 1, "x-overflow": mode})
        await channel.default_exchange.publish(aio_pika.Message(b"kept"), routing_key="full")
        with pytest.raises(aio_pika.exceptions.DeliveryError):
            await channel.default_exchange.publish(aio_pika.Message(b"refused"),
                                                   routing_key="full")
        await channel.default_exchange.publish(aio_pika.Message(b"x"), routing_key="nowhere")
        queue = broker.vhost().queues["full"]
        assert queue.message_count == 1
        if mode == "reject-publish-dlx":
            dead = await next_message(dlq)
            assert dead.body == b"refused"
            assert death(dead)["reason"] == "maxlen"
        else:
            await asyncio.sleep(0.1)
            assert broker.vhost().queues["dlq"].message_count == 0


async def test_retry_delays_then_dead_letter(broker: BrokerHandle) -> None:
    async with await aio_pika.connect(broker.url) as conn:
        channel = await conn.channel()
        dlq = await setup_dlx(channel)
        work = await channel.declare_queue(
            "retry", arguments={**DLQ_ARGS, "x-retry-delays": [200, 400]})
        await channel.default_exchange.publish(aio_pika.Message(b"job"), routing_key="retry")
        message = await work.get(no_ack=False)
        await message.nack(requeue=True)
        start = time.monotonic()
        assert await work.get(no_ack=False, fail=False) is None  # invisible while waiting
        again = await next_message_unacked(work)
        first_wait = time.monotonic() - start
        assert 0.15 <= first_wait < 1.5, first_wait
        assert again.redelivered
        assert again.headers["x-delivery-count"] == 1
        await again.nack(requeue=True)
        start = time.monotonic()
        third = await next_message_unacked(work)
        second_wait = time.monotonic() - start
        assert 0.35 <= second_wait < 2.0, second_wait
        await third.nack(requeue=True)  # the delays are used up
        dead = await next_message(dlq)
        assert death(dead)["reason"] == "delivery_limit"


async def next_message_unacked(
        queue: aio_pika.abc.AbstractQueue) -> aio_pika.abc.AbstractIncomingMessage:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        message = await queue.get(no_ack=False, fail=False)
        if message is not None:
            return message
        await asyncio.sleep(0.01)
    raise AssertionError("the delayed message never came back")


async def test_classic_ttl_plus_dlx_retry_pattern(broker: BrokerHandle) -> None:
    """The RabbitMQ hand-built retry: reject into a wait queue whose TTL dead-letters the
    message back to the work queue."""
    async with await aio_pika.connect(broker.url) as conn:
        channel = await conn.channel()
        retry_x = await channel.declare_exchange("retry", aio_pika.ExchangeType.DIRECT)
        work_x = await channel.declare_exchange("work", aio_pika.ExchangeType.DIRECT)
        work = await channel.declare_queue(
            "work-q", arguments={"x-dead-letter-exchange": "retry"})
        wait = await channel.declare_queue(
            "wait-q", arguments={"x-dead-letter-exchange": "work", "x-message-ttl": 100})
        await work.bind(work_x, "job")
        await wait.bind(retry_x, "job")
        await work_x.publish(aio_pika.Message(b"task"), routing_key="job")
        first = await work.get(no_ack=False)
        await first.reject(requeue=False)
        back = await next_message(work)
        assert back.body == b"task"
        deaths = back.headers["x-death"]
        assert [(d["queue"], d["reason"]) for d in deaths] == [
            ("wait-q", "expired"), ("work-q", "rejected")]


async def test_x_death_count_grows_and_moves_to_front(broker: BrokerHandle) -> None:
    async with await aio_pika.connect(broker.url) as conn:
        channel = await conn.channel()
        retry_x = await channel.declare_exchange("retry", aio_pika.ExchangeType.DIRECT)
        work_x = await channel.declare_exchange("work", aio_pika.ExchangeType.DIRECT)
        work = await channel.declare_queue(
            "w", arguments={"x-dead-letter-exchange": "retry"})
        wait = await channel.declare_queue(
            "wt", arguments={"x-dead-letter-exchange": "work", "x-message-ttl": 20})
        await work.bind(work_x, "k")
        await wait.bind(retry_x, "k")
        await work_x.publish(aio_pika.Message(b"loop"), routing_key="k")
        for _ in range(3):
            message = await next_message_unacked(work)
            await message.reject(requeue=False)
        final = await next_message(work)
        deaths = final.headers["x-death"]
        assert [(d["queue"], d["reason"], d["count"]) for d in deaths] == [
            ("wt", "expired", 3), ("w", "rejected", 3)]
        assert final.headers["x-first-death-queue"] == "w"
        assert final.headers["x-last-death-queue"] == "wt"


async def test_dead_letter_cycle_is_dropped(broker: BrokerHandle) -> None:
    """q1 expires into q2 which expires back into q1: no rejection in between, so the
    message is dropped instead of looping forever."""
    async with await aio_pika.connect(broker.url) as conn:
        channel = await conn.channel()
        x1 = await channel.declare_exchange("x1", aio_pika.ExchangeType.FANOUT)
        x2 = await channel.declare_exchange("x2", aio_pika.ExchangeType.FANOUT)
        q1 = await channel.declare_queue(
            "q1", arguments={"x-dead-letter-exchange": "x2", "x-message-ttl": 20})
        q2 = await channel.declare_queue(
            "q2", arguments={"x-dead-letter-exchange": "x1", "x-message-ttl": 20})
        await q1.bind(x1)
        await q2.bind(x2)
        await x1.publish(aio_pika.Message(b"round"), routing_key="")
        await asyncio.sleep(0.5)
        queues = broker.vhost().queues
        assert queues["q1"].message_count == 0
        assert queues["q2"].message_count == 0
        assert queues["q1"].dead_lettered == 1
        assert queues["q2"].dead_lettered == 1


async def test_x_expires_deletes_an_unused_queue(broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        channel = await conn.channel()
        await channel.queue_declare("temp", arguments={"x-expires": 200})
        assert "temp" in broker.vhost().queues
        await asyncio.sleep(0.1)
        await channel.queue_declare("temp", arguments={"x-expires": 200})  # redeclare = use
        await asyncio.sleep(0.15)
        assert "temp" in broker.vhost().queues
        await asyncio.sleep(0.3)
        assert "temp" not in broker.vhost().queues


@pytest.mark.parametrize("arguments, fragment", [
    ({"x-message-ttl": -1}, "invalid arg 'x-message-ttl'"),
    ({"x-overflow": "drop-tail"}, "unknown overflow mode"),
    ({"x-max-length": "ten"}, "invalid arg 'x-max-length'"),
    ({"x-expires": 0}, "invalid arg 'x-expires'"),
])
async def test_invalid_arguments_are_406(broker: BrokerHandle, arguments: dict[str, Any],
                                         fragment: str) -> None:
    async with rmq(broker) as conn:
        channel = await conn.channel()
        text = await channel_error(channel.queue_declare("bad", arguments=arguments),
                                   aiormq.exceptions.ChannelPreconditionFailed)
        assert fragment in text
        assert "bad" not in broker.vhost().queues
