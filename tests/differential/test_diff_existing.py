"""Existing behaviours, compared with RabbitMQ 3.10.8: confirms, returns, TTL with
dead-lettering and x-death, max-length overflow, a few channel errors."""

from __future__ import annotations

import asyncio

import aio_pika
from pamqp import commands

from tests.differential.conftest import Diff
from tests.differential.harness import Target, Transcript, reply_of


async def confirms_and_returns(t: Target, seen: Transcript) -> None:
    client = await t.raw()
    client.send_method(1, commands.Confirm.Select())
    await seen.frames("select", client, until=commands.Confirm.SelectOk)
    q = t.n("cr")
    client.send_method(1, commands.Queue.Declare(queue=q, arguments={
        "x-max-length": 1, "x-overflow": "reject-publish"}))
    await seen.frames("declare", client, until=commands.Queue.DeclareOk)
    for key, mandatory in ((q, True), ("nowhere", True), (q, False), ("nowhere", False)):
        client.send_method(1, commands.Basic.Publish(routing_key=key, mandatory=mandatory))
        client.send_content(1, b"x", commands.Basic.Properties(
            content_type="text/plain", headers={"k": 1}, delivery_mode=2))
    await seen.frames("publishes", client, confirms=True, quiet=0.5)
    client.send_method(1, commands.Basic.Publish(exchange="missing", routing_key="k"))
    client.send_content(1, b"y")
    await seen.frames("missing exchange", client, until=commands.Channel.Close)
    client.close()


async def test_confirms_returns_overflow(diff: Diff) -> None:
    await diff(confirms_and_returns)


async def ttl_dead_letter(t: Target, seen: Transcript) -> None:
    connection = await aio_pika.connect(t.url())
    try:
        channel = await connection.channel()
        dlx = await channel.declare_exchange(t.n("dlx"), aio_pika.ExchangeType.FANOUT)
        dead = await channel.declare_queue(t.n("dead"))
        await dead.bind(dlx)
        source = await channel.declare_queue(t.n("ttl"), arguments={
            "x-message-ttl": 50, "x-dead-letter-exchange": dlx.name})
        await channel.default_exchange.publish(aio_pika.Message(
            b"m", headers={"h": "v"}, message_id="id1", priority=3), routing_key=source.name)
        message = None
        for _ in range(40):  # bounded: 4 s
            message = await dead.get(fail=False, no_ack=True)
            if message is not None:
                break
            await asyncio.sleep(0.1)
        assert message is not None
        seen.see("properties", {"message_id": message.message_id, "priority": message.priority,
                                "expiration": message.expiration})
        headers = dict(message.headers)
        last = {k: headers.pop(k) for k in list(headers) if k.startswith("x-last-death-")}
        seen.see("headers", headers)
        seen.see("x-last-death-*", last, differs="WarrenMQ also writes RabbitMQ 3.13's"
                 " x-last-death-* headers, on purpose (its DLQ tools read them)")
        seen.see("routing", (message.exchange, message.routing_key, message.redelivered))
        seen.see("passive missing", await reply_of(
            channel.declare_queue(t.n("nope"), passive=True)))
    finally:
        await connection.close()


async def test_ttl_dead_letter_x_death(diff: Diff) -> None:
    await diff(ttl_dead_letter)


async def dead_letter_reasons(t: Target, seen: Transcript) -> None:
    connection = await aio_pika.connect(t.url())
    try:
        channel = await connection.channel()
        dlx = await channel.declare_exchange(t.n("dlx2"), aio_pika.ExchangeType.TOPIC)
        dead = await channel.declare_queue(t.n("dead2"))
        await dead.bind(dlx, "#")
        source = await channel.declare_queue(t.n("src2"), arguments={
            "x-max-length": 1, "x-dead-letter-exchange": dlx.name,
            "x-dead-letter-routing-key": "moved"})
        for n in range(2):
            await channel.default_exchange.publish(aio_pika.Message(
                f"m{n}".encode(), expiration=60, headers={"n": n}), routing_key=source.name)
        got = await source.get(no_ack=False)
        await got.reject(requeue=False)
        await channel.default_exchange.publish(aio_pika.Message(b"ttl", expiration=1),
                                               routing_key=source.name)
        bodies = []
        for _ in range(60):  # bounded: 6 s
            message = await dead.get(fail=False, no_ack=True)
            if message is None:
                if len(bodies) == 3:
                    break
                await asyncio.sleep(0.1)
                continue
            headers = dict(message.headers)
            last = {k: headers.pop(k) for k in list(headers) if k.startswith("x-last-death-")}
            seen.see(f"dead {message.body!r}", (message.routing_key, message.expiration,
                                                headers))
            seen.see(f"dead {message.body!r} x-last-death-*", last,
                     differs="WarrenMQ also writes RabbitMQ 3.13's x-last-death-* headers")
            bodies.append(message.body)
        seen.see("order", bodies)
    finally:
        await connection.close()


async def test_dead_letter_reasons_maxlen_rejected_expired(diff: Diff) -> None:
    await diff(dead_letter_reasons)
