"""Priority queues (x-max-priority) over real TCP with pika, aiormq, aio-pika and kombu.

Expected values marked "RabbitMQ 3.10.8" were observed on Debian's rabbitmq-server
3.10.8 (a private node) with the same client calls; where WarrenMQ differs on purpose the
test says so. Covers: declare-time validation (0..255; 256, negative, non-integer → 406
naming the argument; redeclare with another value → 406); x-max-priority 0 is one level,
a plain FIFO (as RabbitMQ 3.10.8; not "clamped to 1", which would order p1+ before p0);
delivery order (higher first, FIFO within a level, no priority = 0, above the maximum =
the maximum, the property passed on unchanged); requeue back to the original place in
its level; max-length drop-head drops the oldest LOWEST-priority message (RabbitMQ drops
its head, the highest: a documented difference) and dead-letters it as maxlen with its
priority; reject-publish as RabbitMQ; per-message TTL and x-delivery-limit with
dead-lettering; the prefetch interplay (a consumer with credit is handed messages as
they arrive, so only a backlog is ordered); persistence and recovery across a restart;
kombu's ``max_priority`` queue option and ``priority`` publish option.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import pika
import pytest
from kombu import Connection, Producer
from kombu import Queue as KombuQueue

from tests.conftest import BrokerHandle, running
from tests.helpers import TIMEOUT, channel_error, in_pika, rmq


def publish_all(ch: Any, queue: str, priorities: list[int | None], prefix: str = "m") -> None:
    for i, p in enumerate(priorities):
        ch.basic_publish("", queue, f"{prefix}{i}-p{p}".encode(),
                         pika.BasicProperties(priority=p))


def get_all(ch: Any, queue: str, *, with_priority: bool = False) -> list[Any]:
    out: list[Any] = []
    for _ in range(200):  # bounded
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            return out
        out.append((body.decode(), props.priority) if with_priority else body.decode())
    raise AssertionError("queue did not drain")


# --------------------------------------------------------------------------- declare
@pytest.mark.parametrize("value", [0, 1, 10, 255])
async def test_max_priority_in_range_is_accepted(broker: BrokerHandle, value: int) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        await ch.queue_declare(f"ok{value}", arguments={"x-max-priority": value})
        # redeclare with the same value is fine, with another one is not (RabbitMQ's text)
        await ch.queue_declare(f"ok{value}", arguments={"x-max-priority": value})
        text = await channel_error(
            ch.queue_declare(f"ok{value}", arguments={"x-max-priority": (value + 1) % 256}),
            aiormq.exceptions.ChannelPreconditionFailed)
        assert text == (f"PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue"
                        f" 'ok{value}' in vhost '/': received '{(value + 1) % 256}' but"
                        f" current is '{value}'")


@pytest.mark.parametrize(("value", "problem"), [
    (256, "value must be at most 255, got 256"),  # RabbitMQ: {max_value_exceeded,256}
    (100000, "value must be at most 255, got 100000"),
    (-1, "value must not be negative, got -1"),  # RabbitMQ: {value_negative,-1}
    ("5", "expected an integer, got str '5'"),  # RabbitMQ: "expected integer, got longstr"
    (True, "expected an integer, got bool True"),
    (2.5, "expected an integer, got float 2.5"),
])
async def test_max_priority_out_of_range_is_406_naming_the_argument(
        broker: BrokerHandle, value: Any, problem: str) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        text = await channel_error(ch.queue_declare("bad", arguments={"x-max-priority": value}),
                                   aiormq.exceptions.ChannelPreconditionFailed)
        # RabbitMQ 3.10.8's prefix, then what is wrong in words
        assert text == ("PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue 'bad'"
                        f" in vhost '/': {problem}")
    assert "bad" not in broker.vhost().queues


# --------------------------------------------------------------------------- order
async def test_higher_first_fifo_within_a_level(broker: BrokerHandle) -> None:
    def run(conn: pika.BlockingConnection) -> list[Any]:
        ch = conn.channel()
        ch.queue_declare("po", arguments={"x-max-priority": 5})
        publish_all(ch, "po", [None, 1, 5, 9, 0, 3, 5, None, 1])
        return get_all(ch, "po", with_priority=True)

    got = await in_pika(broker, run)
    # RabbitMQ 3.10.8: the same order; 9 counts as 5 but is delivered as 9
    assert got == [("m2-p5", 5), ("m3-p9", 9), ("m6-p5", 5), ("m5-p3", 3), ("m1-p1", 1),
                   ("m8-p1", 1), ("m0-pNone", None), ("m4-p0", 0), ("m7-pNone", None)]


async def test_max_priority_zero_is_one_level_and_no_argument_is_fifo(
        broker: BrokerHandle) -> None:
    def run(conn: pika.BlockingConnection) -> dict[str, list[Any]]:
        ch = conn.channel()
        out = {}
        for name, args in (("zero", {"x-max-priority": 0}), ("one", {"x-max-priority": 1}),
                           ("plain", {})):
            ch.queue_declare(name, arguments=args)
            publish_all(ch, name, [0, 1, 5, None, 2])
            out[name] = get_all(ch, name)
        return out

    got = await in_pika(broker, run)
    # RabbitMQ 3.10.8: exactly these three orders
    assert got["zero"] == got["plain"] == ["m0-p0", "m1-p1", "m2-p5", "m3-pNone", "m4-p2"]
    assert got["one"] == ["m1-p1", "m2-p5", "m4-p2", "m0-p0", "m3-pNone"]


async def test_requeue_returns_to_its_place_in_its_level(broker: BrokerHandle) -> None:
    def run(conn: pika.BlockingConnection) -> tuple[list[bytes], list[Any]]:
        ch = conn.channel()
        ch.queue_declare("pr", arguments={"x-max-priority": 5})
        publish_all(ch, "pr", [1, 1, 2, 2, 0], prefix="r")
        taken = [ch.basic_get("pr") for _ in range(3)]
        ch.basic_nack(taken[0][0].delivery_tag, requeue=True)
        ch.basic_nack(taken[2][0].delivery_tag, requeue=True)
        rest = []
        for _ in range(10):
            method, _props, body = ch.basic_get("pr", auto_ack=True)
            if method is None:
                break
            rest.append((body.decode(), method.redelivered))
        ch.basic_ack(taken[1][0].delivery_tag)
        return [t[2] for t in taken], rest

    taken, rest = await in_pika(broker, run)
    assert taken == [b"r2-p2", b"r3-p2", b"r0-p1"]
    # RabbitMQ 3.10.8: the same
    assert rest == [("r2-p2", True), ("r0-p1", True), ("r1-p1", False), ("r4-p0", False)]


# --------------------------------------------------------------------------- limits
async def test_max_length_drops_the_lowest_priority_not_the_head(broker: BrokerHandle) -> None:
    def run(conn: pika.BlockingConnection) -> tuple[list[str], list[Any]]:
        ch = conn.channel()
        ch.exchange_declare("pdlx", "fanout")
        ch.queue_declare("pdead", arguments={"x-max-priority": 5})
        ch.queue_bind("pdead", "pdlx")
        ch.queue_declare("pml", arguments={"x-max-priority": 5, "x-max-length": 3,
                                           "x-dead-letter-exchange": "pdlx"})
        publish_all(ch, "pml", [5, 1, 3, 0, 2], prefix="d")
        kept = get_all(ch, "pml")
        dead = []
        for _ in range(10):
            method, props, body = ch.basic_get("pdead", auto_ack=True)
            if method is None:
                break
            dead.append((body.decode(), props.priority, props.headers["x-death"][0]["reason"]))
        return kept, dead

    kept, dead = await in_pika(broker, run)
    # WarrenMQ's choice: the least important overflow first, oldest of them first.
    # RabbitMQ 3.10.8 drops its head instead and keeps ['d4-p2', 'd1-p1', 'd3-p0'].
    assert kept == ["d0-p5", "d2-p3", "d4-p2"]
    assert dead == [("d1-p1", 1, "maxlen"), ("d3-p0", 0, "maxlen")]


async def test_reject_publish_refuses_whatever_the_priority(broker: BrokerHandle) -> None:
    def run(conn: pika.BlockingConnection) -> list[str]:
        ch = conn.channel()
        ch.queue_declare("prj", arguments={"x-max-priority": 5, "x-max-length": 3,
                                           "x-overflow": "reject-publish"})
        publish_all(ch, "prj", [5, 1, 3, 0, 2], prefix="d")
        return get_all(ch, "prj")

    # RabbitMQ 3.10.8: the same
    assert await in_pika(broker, run) == ["d0-p5", "d2-p3", "d1-p1"]


async def test_ttl_and_delivery_limit_dead_letter_with_their_priority(
        broker: BrokerHandle) -> None:
    async with rmq(broker) as conn:
        ch = await conn.channel()
        await ch.exchange_declare("tdlx", exchange_type="fanout")
        await ch.queue_declare("tdead", arguments={"x-max-priority": 9})
        await ch.queue_bind("tdead", "tdlx")
        await ch.queue_declare("tq", arguments={
            "x-max-priority": 9, "x-dead-letter-exchange": "tdlx", "x-delivery-limit": 1})
        props = aiormq.spec.Basic.Properties
        await ch.basic_publish(b"short", routing_key="tq",
                               properties=props(priority=9, expiration="50"))
        await ch.basic_publish(b"low", routing_key="tq", properties=props(priority=1))
        await ch.basic_publish(b"high", routing_key="tq", properties=props(priority=7))
        await asyncio.sleep(0.3)  # "short" expires in the middle of the queue
        first = await ch.basic_get("tq")
        assert first.body == b"high"
        for _ in range(2):  # the second failed delivery passes x-delivery-limit 1
            await ch.basic_nack(first.delivery.delivery_tag, requeue=True)
            first = await ch.basic_get("tq")
            if first.body != b"high":
                break
        assert first.body == b"low"
        await ch.basic_ack(first.delivery.delivery_tag)
        dead = []
        for _ in range(2):
            got = await ch.basic_get("tdead", no_ack=True)
            headers = got.header.properties.headers or {}
            dead.append((got.body, got.header.properties.priority,
                         headers["x-death"][0]["reason"]))
        # both carried their priority to the DLX queue, higher first there too
        assert dead == [(b"short", 9, "expired"), (b"high", 7, "delivery_limit")]


# --------------------------------------------------------------------------- consumers
async def test_prefetch_interplay_only_a_backlog_is_ordered(broker: BrokerHandle) -> None:
    """A consumer with credit is handed each message as it arrives, so priorities only
    order what waits: with prefetch 1 the backlog behind the first delivery comes out
    highest first (RabbitMQ's documented advice: a low prefetch)."""
    connection = await aio_pika.connect(broker.url)
    async with connection:
        ch = await connection.channel()
        await ch.set_qos(prefetch_count=1)
        queue = await ch.declare_queue("pf", arguments={"x-max-priority": 10})
        got: list[bytes] = []
        done = asyncio.Event()
        release = asyncio.Event()  # cleared: the consumer holds its message unacked
        release.set()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            got.append(message.body)
            await release.wait()
            await message.ack()
            if len(got) == 6:
                done.set()

        pub = await connection.channel(publisher_confirms=True)
        await queue.consume(on_message)
        # one at a time with the consumer idle: each is delivered at once, in publish order
        for i, priority in enumerate((1, 5, 9)):
            await pub.default_exchange.publish(
                aio_pika.Message(b"idle%d" % i, priority=priority), routing_key="pf")
            async with asyncio.timeout(TIMEOUT):
                while len(got) <= i:
                    await asyncio.sleep(0.01)
        # a burst while the consumer is busy: the first goes out at once, the rest wait
        # and leave by priority
        release.clear()
        for i, priority in enumerate((1, 2, 9)):
            await pub.default_exchange.publish(
                aio_pika.Message(b"burst%d" % i, priority=priority), routing_key="pf")
        release.set()
        await asyncio.wait_for(done.wait(), TIMEOUT)
    assert got[:3] == [b"idle0", b"idle1", b"idle2"]
    assert got[3] == b"burst0"
    assert got[4:] == [b"burst2", b"burst1"]


async def test_kombu_priority_queue(broker: BrokerHandle) -> None:
    url = f"amqp://guest:guest@127.0.0.1:{broker.port}//"

    def run() -> list[int]:
        queue = KombuQueue("kprio", routing_key="kprio", max_priority=10)
        got: list[int] = []
        with Connection(url) as conn:
            with conn.channel() as channel:
                producer = Producer(channel)
                for n, priority in enumerate([0, 3, 10, 7, 3, 12]):
                    producer.publish({"n": n}, routing_key="kprio", declare=[queue],
                                     priority=priority, serializer="json")
                bound = queue(channel)
                for _ in range(10):
                    message = bound.get()
                    if message is None:
                        break
                    got.append(message.payload["n"])
                    message.ack()
        return got

    got = await asyncio.wait_for(asyncio.to_thread(run), 30)
    # 10 and 12 (counts as 10) first, then 7, 3, 3, 0; RabbitMQ 3.10.8: the same
    assert got == [2, 5, 3, 1, 4, 0]
    assert broker.vhost().queues["kprio"].arguments == {"x-max-priority": 10}


# --------------------------------------------------------------------------- durability

async def test_priorities_survive_a_restart(tmp_path: Path) -> None:
    persistent = aio_pika.DeliveryMode.PERSISTENT
    async with running(tmp_path) as broker:
        connection = await aio_pika.connect(broker.url)
        async with connection:
            ch = await connection.channel(publisher_confirms=True)
            await ch.declare_queue("dp", durable=True, arguments={"x-max-priority": 4})
            for i, priority in enumerate([0, 4, 2, 4, 1]):
                await ch.default_exchange.publish(
                    aio_pika.Message(b"p%d" % i, priority=priority, delivery_mode=persistent),
                    routing_key="dp")
            held = await ch.declare_queue("dp", passive=True)
            unacked = await held.get(no_ack=False)  # p1 stays unacked over the restart
            assert unacked.body == b"p1"
    async with running(tmp_path) as broker:
        queue = broker.vhost().queues["dp"]
        assert queue.arguments == {"x-max-priority": 4}
        connection = await aio_pika.connect(broker.url)
        async with connection:
            ch = await connection.channel()
            # the queue kept its argument: redeclaring with another one is refused
            with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
                await ch.declare_queue("dp", durable=True, arguments={"x-max-priority": 5})
            ch = await connection.channel()
            q = await ch.declare_queue("dp", passive=True)
            got = []
            for _ in range(10):
                message = await q.get(fail=False, no_ack=True)
                if message is None:
                    break
                got.append((message.body, message.redelivered, message.priority))
    assert got == [(b"p1", True, 4), (b"p3", False, 4), (b"p2", False, 2),
                   (b"p4", False, 1), (b"p0", False, 0)]
