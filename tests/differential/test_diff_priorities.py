"""Priority queues, consumer priorities and single active consumer, compared with
RabbitMQ 3.10.8. Declared differences: the words after RabbitMQ's reply-text prefix
(RabbitMQ prints Erlang terms such as ``{max_value_exceeded,256}``; WarrenMQ says it in
words: the code and the prefix naming the argument are compared), max-length on a
priority queue (WarrenMQ drops the lowest priority first), and the single-active-consumer
successor of a consumer cancelled at its prefetch limit (WarrenMQ serves it)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiormq
from pamqp import commands

from tests.differential.conftest import Diff
from tests.differential.harness import Target, Transcript, reply_of

WORDS = "RabbitMQ prints an Erlang term after the prefix, WarrenMQ says it in words"


def prefix(reply: Any) -> Any:
    """(code, the reply text up to its last ': ') of a (code, text) reply."""
    if isinstance(reply, tuple) and len(reply) == 2 and isinstance(reply[1], str):
        return (reply[0], reply[1].rsplit(": ", 1)[0])
    return reply


async def argument_errors(t: Target, seen: Transcript) -> None:
    conn = await aiormq.connect(t.url())
    try:
        cases: list[tuple[str, dict[str, Any]]] = [
            ("max-priority 256", {"x-max-priority": 256}),
            ("max-priority -1", {"x-max-priority": -1}),
            ("max-priority '5'", {"x-max-priority": "5"}),
            ("max-priority true", {"x-max-priority": True}),
            ("max-priority 255", {"x-max-priority": 255}),
            ("sac 1", {"x-single-active-consumer": 1}),
            ("sac 'true'", {"x-single-active-consumer": "true"}),
            ("sac true", {"x-single-active-consumer": True}),
        ]
        for label, arguments in cases:
            ch = await conn.channel()
            reply = await reply_of(ch.queue_declare(t.n("args"), arguments=arguments))
            if isinstance(reply, tuple):
                seen.see(label, prefix(reply))
                seen.see(label + " text", reply, differs=WORDS)
            else:
                seen.see(label, "declare-ok")
                await ch.queue_delete(t.n("args"))
        ch = await conn.channel()
        await ch.queue_declare(t.n("cq"))
        for value in ("5", True, 2**40, -7):
            reply = await reply_of(ch.basic_consume(t.n("cq"), lambda m: None,
                                                    arguments={"x-priority": value}))
            if isinstance(reply, tuple):
                seen.see(f"x-priority {value!r}", prefix(reply))
                seen.see(f"x-priority {value!r} text", reply, differs=WORDS)
                ch = await conn.channel()
            else:
                seen.see(f"x-priority {value!r}", "consume-ok")
        await ch.queue_delete(t.n("cq"))
    finally:
        await conn.close()


async def test_argument_validation(diff: Diff) -> None:
    await diff(argument_errors)


async def drain(client: Any, queue: str) -> list[Any]:
    """basic.get with no_ack until empty: (body, priority property, redelivered)."""
    out = []
    for _ in range(50):
        client.send_method(1, commands.Basic.Get(queue=queue, no_ack=True))
        _, frame = await client.read_frame(timeout=5.0)
        if isinstance(frame, commands.Basic.GetEmpty):
            return out
        _, header = await client.read_frame(timeout=5.0)
        _, body = await client.read_frame(timeout=5.0)
        out.append((bytes(body.value), header.properties.priority, frame.redelivered))
    raise AssertionError("queue did not drain")


def publish(client: Any, queue: str, priorities: list[int | None], tag: str) -> None:
    for i, priority in enumerate(priorities):
        client.send_method(1, commands.Basic.Publish(routing_key=queue))
        client.send_content(1, f"{tag}{i}".encode(),
                            commands.Basic.Properties(priority=priority))


async def priority_order(t: Target, seen: Transcript) -> None:
    client = await t.raw()
    try:
        for label, arguments in (("max 5", {"x-max-priority": 5}),
                                 ("max 1", {"x-max-priority": 1}),
                                 ("max 0", {"x-max-priority": 0})):
            q = t.n(label.replace(" ", ""))
            client.send_method(1, commands.Queue.Declare(queue=q, arguments=arguments))
            await client.expect(commands.Queue.DeclareOk)
            publish(client, q, [None, 1, 5, 9, 0, 3, 5, None, 1], "m")
            seen.see(label, await drain(client, q))
        # requeue: back to its place in its level
        q = t.n("requeue")
        client.send_method(1, commands.Queue.Declare(queue=q, arguments={"x-max-priority": 5}))
        await client.expect(commands.Queue.DeclareOk)
        publish(client, q, [1, 1, 2, 2, 0], "r")
        tags = []
        for _ in range(3):
            client.send_method(1, commands.Basic.Get(queue=q))
            got = await client.expect(commands.Basic.GetOk)
            await client.read_frame(timeout=5.0)
            await client.read_frame(timeout=5.0)
            tags.append(got.delivery_tag)
        client.send_method(1, commands.Basic.Nack(delivery_tag=tags[0], requeue=True))
        client.send_method(1, commands.Basic.Nack(delivery_tag=tags[2], requeue=True))
        client.send_method(1, commands.Basic.Ack(delivery_tag=tags[1]))
        seen.see("after requeue", await drain(client, q))
        # overflow
        for mode in ("reject-publish", "drop-head"):
            q = t.n(mode)
            client.send_method(1, commands.Queue.Declare(queue=q, arguments={
                "x-max-priority": 5, "x-max-length": 3, "x-overflow": mode}))
            await client.expect(commands.Queue.DeclareOk)
            publish(client, q, [5, 1, 3, 0, 2], "d")
            differs = None if mode == "reject-publish" else (
                "RabbitMQ drops its head (the highest priority); WarrenMQ drops the oldest"
                " of the lowest priority")
            seen.see(mode, await drain(client, q), differs=differs)
    finally:
        client.close()


async def test_priority_order_requeue_overflow(diff: Diff) -> None:
    await diff(priority_order)


class Recorder:
    def __init__(self) -> None:
        self.got: dict[str, list[tuple[str, bool]]] = {}

    async def consume(self, conn: aiormq.Connection, queue: str, tag: str, prefetch: int,
                      priority: int | None = None) -> aiormq.Channel:
        ch = await conn.channel()
        await ch.basic_qos(prefetch_count=prefetch)
        self.got[tag] = []

        async def on_message(message: Any) -> None:
            self.got[tag].append((message.body.decode(), message.delivery.redelivered))

        arguments = {"x-priority": priority} if priority is not None else {}
        await ch.basic_consume(queue, on_message, consumer_tag=tag, arguments=arguments)
        return ch

    async def until(self, count: int) -> None:
        for _ in range(100):  # bounded: 5 s
            if sum(map(len, self.got.values())) >= count:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # and nothing more arrives


async def consumer_priorities(t: Target, seen: Transcript) -> None:
    conn = await aiormq.connect(t.url())
    try:
        ch0 = await conn.channel()
        q = t.n("cp")
        await ch0.queue_declare(q)
        r = Recorder()
        for tag, priority, prefetch in (("low", None, 10), ("a", 5, 2), ("b", 5, 2),
                                        ("neg", -3, 10)):
            await r.consume(conn, q, tag, prefetch, priority)
        for i in range(10):
            await ch0.basic_publish(b"m%d" % i, routing_key=q)
        await r.until(10)
        seen.see("deliveries", r.got)
        backlog = t.n("cp2")
        await ch0.queue_declare(backlog)
        for i in range(8):
            await ch0.basic_publish(b"n%d" % i, routing_key=backlog)
        r2 = Recorder()
        await r2.consume(conn, backlog, "low", 3, 0)
        await r2.until(3)
        await r2.consume(conn, backlog, "high", 2, 1)
        await r2.until(5)
        seen.see("backlog", r2.got)
        await ch0.queue_delete(q)
        await ch0.queue_delete(backlog)
    finally:
        await conn.close()


async def test_consumer_priorities(diff: Diff) -> None:
    await diff(consumer_priorities)


async def single_active_consumer(t: Target, seen: Transcript) -> None:
    conn = await aiormq.connect(t.url())
    doomed = await aiormq.connect(t.url())
    try:
        ch0 = await conn.channel()
        sac = {"x-single-active-consumer": True}
        q = t.n("sac")
        await ch0.queue_declare(q, arguments=sac)
        ch = await conn.channel()
        seen.see("exclusive consume", await reply_of(
            ch.basic_consume(q, lambda m: None, exclusive=True)))
        # a connection close requeues; the highest-priority waiter gets them first
        for i in range(4):
            await ch0.basic_publish(b"m%d" % i, routing_key=q)
        r = Recorder()
        await r.consume(doomed, q, "first", 3)
        await r.consume(conn, q, "low", 10, -1)
        await r.consume(conn, q, "high", 10, 2)
        await r.consume(conn, q, "high-later", 10, 2)
        await r.until(3)
        seen.see("before close", r.got)
        await doomed.close()
        await r.until(7)
        seen.see("after connection close", r.got)
        # cancel below the prefetch limit: nothing requeued, the successor gets new ones
        q2 = t.n("sac2")
        await ch0.queue_declare(q2, arguments=sac)
        for i in range(3):
            await ch0.basic_publish(b"n%d" % i, routing_key=q2)
        r2 = Recorder()
        cha = await r2.consume(conn, q2, "A", 10)
        await r2.consume(conn, q2, "B", 10)
        await r2.until(3)
        await cha.basic_cancel("A")
        for i in range(3, 5):
            await ch0.basic_publish(b"n%d" % i, routing_key=q2)
        await r2.until(5)
        seen.see("after cancel below the limit", r2.got)
        # cancel at the prefetch limit
        q3 = t.n("sac3")
        await ch0.queue_declare(q3, arguments=sac)
        for i in range(6):
            await ch0.basic_publish(b"k%d" % i, routing_key=q3)
        r3 = Recorder()
        chc = await r3.consume(conn, q3, "C", 2)
        await r3.consume(conn, q3, "D", 2)
        await r3.until(2)
        await chc.basic_cancel("C")
        await r3.until(4)
        seen.see("after cancel at the limit", r3.got,
                 differs="RabbitMQ 3.10.8 makes D active but never delivers to it;"
                         " WarrenMQ serves it (issue 12 asks for better)")
        for name in (q, q2, q3):
            await ch0.queue_delete(name)
    finally:
        if not doomed.is_closed:
            await doomed.close()
        await conn.close()


async def test_single_active_consumer(diff: Diff) -> None:
    await diff(single_active_consumer)
