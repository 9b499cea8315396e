"""Durability across a clean restart: the broker is started in-process on a private data
directory, stopped with ``server.close()`` and started again on the same directory.

Covers: durable exchanges, queues (with their arguments) and bindings, including an
exchange-to-exchange binding, come back and still route (a dead-letter exchange argument
still dead-letters); transient ones and bindings to transient ends are gone; persistent
messages in durable queues come back in publish order, transient messages and persistent
messages in transient queues do not, acked ones do not, and messages a consumer held
unacked when the broker stopped come back with redelivered=true, messages taken with
no_ack (basic.get, consumer) do not come back; the failed-delivery
count (x-delivery-count, x-delivery-limit) survives a restart, so a message nacked twice
before it with limit 2 is dead-lettered at its next failure after it; a second broker on
the same data directory is refused: in-process with DataDirLocked, and ``warrenmq serve``
exits with status 2 and names the directory on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import aiormq
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from tests.conftest import BrokerHandle, make_config, running
from tests.helpers import TIMEOUT
from warrenmq.app import start
from warrenmq.storage import DataDirLocked

PERSISTENT = aio_pika.DeliveryMode.PERSISTENT
TRANSIENT = aio_pika.DeliveryMode.NOT_PERSISTENT
ROOT = Path(__file__).resolve().parents[2]



@contextlib.asynccontextmanager
async def channel(broker: BrokerHandle) -> AsyncIterator[AbstractChannel]:
    """An aio-pika channel with publisher confirms; the connection is closed afterwards
    (best effort: the broker may already have closed it by stopping)."""
    conn = await asyncio.wait_for(aio_pika.connect(broker.url), TIMEOUT)
    try:
        yield await conn.channel(publisher_confirms=True)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.close(), TIMEOUT)


async def publish(ch: AbstractChannel, body: bytes, routing_key: str,
                  mode: aio_pika.DeliveryMode = PERSISTENT, exchange: str = "") -> None:
    """Publish and wait for the broker's confirm (an ack)."""
    x = ch.default_exchange if not exchange else await ch.get_exchange(exchange, ensure=False)
    confirm = await asyncio.wait_for(
        x.publish(aio_pika.Message(body, delivery_mode=mode), routing_key=routing_key),
        TIMEOUT)
    assert isinstance(confirm, aiormq.spec.Basic.Ack), confirm


async def get(queue: AbstractQueue) -> AbstractIncomingMessage:
    message = await asyncio.wait_for(queue.get(no_ack=False, fail=False), TIMEOUT)
    assert message is not None, f"queue {queue.name} is empty"
    return message


async def drain(queue: AbstractQueue) -> list[AbstractIncomingMessage]:
    """basic.get (acking) until the queue is empty; bounded."""
    out = []
    for _ in range(1000):
        message = await asyncio.wait_for(queue.get(no_ack=False, fail=False), TIMEOUT)
        if message is None:
            return out
        await message.ack()
        out.append(message)
    raise AssertionError("queue did not drain")


async def exists(ch_broker: BrokerHandle, kind: str, name: str) -> bool:
    """Passive declare on a fresh channel: True if it exists, False on 404."""
    async with channel(ch_broker) as ch:
        try:
            if kind == "queue":
                await asyncio.wait_for(ch.declare_queue(name, passive=True), TIMEOUT)
            else:
                await asyncio.wait_for(ch.declare_exchange(name, passive=True), TIMEOUT)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
        return True


# --------------------------------------------------------------------------- topology
async def test_durable_topology_survives_and_transient_is_gone(tmp_path: Path) -> None:
    async with running(tmp_path) as broker, channel(broker) as ch:
        src = await ch.declare_exchange("src", aio_pika.ExchangeType.DIRECT, durable=True)
        fan = await ch.declare_exchange("fan", aio_pika.ExchangeType.FANOUT, durable=True)
        dlx = await ch.declare_exchange("dlx", aio_pika.ExchangeType.FANOUT, durable=True)
        tx = await ch.declare_exchange("tx", aio_pika.ExchangeType.DIRECT, durable=False)
        await fan.bind(src, routing_key="e2e")  # exchange-to-exchange: src -> fan
        work = await ch.declare_queue("work", durable=True, arguments={
            "x-dead-letter-exchange": "dlx", "x-max-length": 100, "x-message-ttl": 60_000})
        dead = await ch.declare_queue("dead", durable=True)
        fanned = await ch.declare_queue("fanned", durable=True)
        temp = await ch.declare_queue("temp", durable=False)
        await work.bind(src, routing_key="work")
        await dead.bind(dlx)
        await fanned.bind(fan)
        await temp.bind(src, routing_key="temp")  # durable exchange, transient queue
        await work.bind(tx, routing_key="t")  # transient exchange, durable queue

    async with running(tmp_path) as broker:
        for name in ("src", "fan", "dlx"):
            assert await exists(broker, "exchange", name), name
        assert not await exists(broker, "exchange", "tx")
        for name in ("work", "dead", "fanned"):
            assert await exists(broker, "queue", name), name
        assert not await exists(broker, "queue", "temp")
        vhost = broker.vhost()
        assert vhost.exchanges["src"].type_name == "direct"
        assert vhost.exchanges["fan"].type_name == "fanout"
        assert vhost.queues["work"].durable
        assert dict(vhost.queues["work"].arguments) == {
            "x-dead-letter-exchange": "dlx", "x-max-length": 100, "x-message-ttl": 60_000}

        async with channel(broker) as ch:
            # Redeclaring with the same arguments is equivalent; different ones are not.
            await ch.declare_queue("work", durable=True, arguments={
                "x-dead-letter-exchange": "dlx", "x-max-length": 100, "x-message-ttl": 60_000})
        async with channel(broker) as ch:
            with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
                await asyncio.wait_for(ch.declare_queue("work", durable=True), TIMEOUT)

        async with channel(broker) as ch:
            # Bindings route: src -work-> work; src -e2e-> fan -> fanned.
            await publish(ch, b"to-work", "work", exchange="src")
            await publish(ch, b"via-e2e", "e2e", exchange="src")
            # The binding to the transient queue is gone: unroutable, returned (mandatory).
            returned = await asyncio.wait_for((await ch.get_exchange("src", ensure=False)).publish(
                aio_pika.Message(b"to-temp", delivery_mode=PERSISTENT), routing_key="temp",
                mandatory=True), TIMEOUT)
            assert isinstance(returned.delivery, aiormq.spec.Basic.Return), returned
            assert returned.delivery.reply_code == 312
            work = await ch.get_queue("work")
            message = await get(work)
            assert message.body == b"to-work"
            # The dead-letter exchange argument survived: a rejected message goes to dlx.
            await message.reject(requeue=False)
            fanned = await ch.get_queue("fanned")
            assert [m.body for m in await drain(fanned)] == [b"via-e2e"]
            dead = await ch.get_queue("dead")
            dead_letters = await drain(dead)
            assert [m.body for m in dead_letters] == [b"to-work"]
            assert dead_letters[0].headers["x-death"][0]["reason"] == "rejected"
            assert await drain(work) == []


# --------------------------------------------------------------------------- messages
async def test_persistent_messages_survive_in_order(tmp_path: Path) -> None:
    async with running(tmp_path) as broker:
        async with channel(broker) as ch:
            await ch.declare_queue("q", durable=True)
            await ch.declare_queue("tq", durable=False)
            for i in range(12):
                await publish(ch, f"p{i}".encode(), "q")
                if i % 3 == 0:
                    await publish(ch, f"t{i}".encode(), "q", TRANSIENT)
                await publish(ch, f"tq{i}".encode(), "tq")  # persistent, transient queue
            q = await ch.get_queue("q")
            # Ack p0, t0, p1 (t0 is transient: its ack must not disturb anything).
            for expected in (b"p0", b"t0", b"p1"):
                message = await get(q)
                assert message.body == expected
                await message.ack()
            # A round trip after the acks: they are processed before the broker stops.
            await ch.declare_queue("q", passive=True)

        # A consumer holds three deliveries unacked while the broker stops under it (the
        # shutdown closes its connection with 320).
        consumer_conn = await aio_pika.connect(broker.url)
        cch = await consumer_conn.channel()
        await cch.set_qos(prefetch_count=3)
        cq = await cch.get_queue("q")
        held: list[AbstractIncomingMessage] = []
        got = asyncio.Event()

        async def hold(message: AbstractIncomingMessage) -> None:
            held.append(message)  # never acked
            if len(held) == 3:
                got.set()

        await cq.consume(hold)
        await asyncio.wait_for(got.wait(), TIMEOUT)
        assert [m.body for m in held] == [b"p2", b"p3", b"t3"]
        assert not any(m.redelivered for m in held)
        assert broker.vhost().queues["q"].message_count == 16 - 3 - 3  # ready ones
    with contextlib.suppress(Exception):
        await asyncio.wait_for(consumer_conn.close(), TIMEOUT)

    async with running(tmp_path) as broker:
        assert not await exists(broker, "queue", "tq")
        async with channel(broker) as ch:
            q = await ch.get_queue("q")
            messages = await drain(q)
        bodies = [m.body for m in messages]
        # p0 and p1 were acked; t0/t3/t6/t9 were transient; p2, p3 come back redelivered.
        assert bodies == [f"p{i}".encode() for i in range(2, 12)]
        assert [m.redelivered for m in messages] == [True, True] + [False] * 8
        assert all(m.delivery_mode == PERSISTENT for m in messages)

    # Drained and acked before the last stop: nothing comes back.
    async with running(tmp_path) as broker:
        assert broker.vhost().queues["q"].message_count == 0


async def test_fanout_copy_acked_in_one_queue_stays_in_the_other(tmp_path: Path) -> None:
    """One persistent message routed to two durable queues and a transient one: acking
    it in one queue removes only that copy."""
    async with running(tmp_path) as broker, channel(broker) as ch:
        fan = await ch.declare_exchange("fan", aio_pika.ExchangeType.FANOUT, durable=True)
        for name, durable in (("f1", True), ("f2", True), ("f3", False)):
            q = await ch.declare_queue(name, durable=durable)
            await q.bind(fan)
        await publish(ch, b"shared-1", "", exchange="fan")
        await publish(ch, b"shared-2", "", exchange="fan")
        f1 = await ch.get_queue("f1")
        message = await get(f1)
        assert message.body == b"shared-1"
        await message.ack()
        await ch.declare_queue("f1", passive=True)
    async with running(tmp_path) as broker, channel(broker) as ch:
        assert [m.body for m in await drain(await ch.get_queue("f1"))] == [b"shared-2"]
        assert [m.body for m in await drain(await ch.get_queue("f2"))] == [
            b"shared-1", b"shared-2"]
        assert "f3" not in broker.vhost().queues


async def test_properties_and_large_bodies_survive(tmp_path: Path) -> None:
    big = os.urandom(300_000)  # above the store's keep-in-memory threshold: read from disk
    async with running(tmp_path) as broker, channel(broker) as ch:
        await ch.declare_queue("props", durable=True)
        message = aio_pika.Message(
            big, delivery_mode=PERSISTENT, content_type="application/octet-stream",
            headers={"k": "v", "n": 7}, correlation_id="c-1", message_id="m-1", priority=3)
        confirm = await ch.default_exchange.publish(message, routing_key="props")
        assert isinstance(confirm, aiormq.spec.Basic.Ack)
        await publish(ch, b"small", "props")
    async with running(tmp_path) as broker, channel(broker) as ch:
        q = await ch.get_queue("props")
        first, second = await drain(q)
        assert first.body == big
        assert first.content_type == "application/octet-stream"
        assert first.headers == {"k": "v", "n": 7}
        assert (first.correlation_id, first.message_id, first.priority) == ("c-1", "m-1", 3)
        assert first.exchange == "" and first.routing_key == "props"
        assert second.body == b"small"


async def test_delivery_count_survives_restart(tmp_path: Path) -> None:
    args = {"x-delivery-limit": 2, "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "lim.dlq"}
    async with running(tmp_path) as broker, channel(broker) as ch:
        await ch.declare_queue("lim.dlq", durable=True)
        lim = await ch.declare_queue("lim", durable=True, arguments=args)
        await publish(ch, b"fragile", "lim")
        for failures in (0, 1):
            message = await get(lim)
            assert message.body == b"fragile"
            assert (message.headers or {}).get("x-delivery-count", 0) == failures
            await message.nack(requeue=True)
        await ch.declare_queue("lim", passive=True)  # the nacks are processed

    async with running(tmp_path) as broker, channel(broker) as ch:
        lim = await ch.get_queue("lim")
        message = await get(lim)
        assert message.body == b"fragile"
        assert message.redelivered
        assert message.headers["x-delivery-count"] == 2
        await message.nack(requeue=True)  # the third failure: over the limit of 2
        dlq = await ch.get_queue("lim.dlq")
        dead = await drain(dlq)
        assert [m.body for m in dead] == [b"fragile"]
        assert dead[0].headers["x-death"][0]["reason"] == "delivery_limit"
        assert await drain(lim) == []

    # The dead letter itself is persistent in a durable queue: acked above, so gone.
    async with running(tmp_path) as broker:
        vhost = broker.vhost()
        assert vhost.queues["lim"].message_count == 0
        assert vhost.queues["lim.dlq"].message_count == 0


async def test_dead_letters_are_durable(tmp_path: Path) -> None:
    """A persistent message dead-lettered into a durable queue survives a restart there."""
    async with running(tmp_path) as broker, channel(broker) as ch:
        await ch.declare_queue("dl.target", durable=True)
        src = await ch.declare_queue("dl.src", durable=True, arguments={
            "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dl.target"})
        await publish(ch, b"doomed", "dl.src")
        await publish(ch, b"kept", "dl.src")
        message = await get(src)
        await message.reject(requeue=False)
        await ch.declare_queue("dl.src", passive=True)
    async with running(tmp_path) as broker, channel(broker) as ch:
        target = await drain(await ch.get_queue("dl.target"))
        assert [m.body for m in target] == [b"doomed"]
        assert target[0].headers["x-death"][0]["reason"] == "rejected"
        assert [m.body for m in await drain(await ch.get_queue("dl.src"))] == [b"kept"]


async def test_ttl_runs_on_while_the_broker_is_down(tmp_path: Path) -> None:
    """A TTL counts from the publish, as in RabbitMQ: a message whose time ran out while
    the broker was stopped is dead-lettered at once after the restart, while one with
    time left stays (it would live a whole new TTL if the clock restarted)."""
    ttl_ms = 1500
    async with running(tmp_path) as broker, channel(broker) as ch:
        await ch.declare_queue("ttl.dlq", durable=True)
        await ch.declare_queue("ttl.src", durable=True, arguments={
            "x-message-ttl": ttl_ms, "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": "ttl.dlq"})
        await ch.declare_queue("ttl.long", durable=True, arguments={"x-message-ttl": 600_000})
        await publish(ch, b"short", "ttl.src")
        await publish(ch, b"long", "ttl.long")
    await asyncio.sleep(ttl_ms / 1000 + 0.3)  # the TTL runs out while nothing runs
    async with running(tmp_path) as broker, channel(broker) as ch:
        vhost = broker.vhost()
        async with asyncio.timeout(ttl_ms / 1000 / 2):  # well before a restarted TTL
            while vhost.queues["ttl.dlq"].message_count < 1:
                await asyncio.sleep(0.02)
        assert vhost.queues["ttl.src"].message_count == 0
        dead = await drain(await ch.get_queue("ttl.dlq"))
        assert [m.body for m in dead] == [b"short"]
        assert dead[0].headers["x-death"][0]["reason"] == "expired"
        assert [m.body for m in await drain(await ch.get_queue("ttl.long"))] == [b"long"]


async def test_deleted_queue_messages_do_not_come_back(tmp_path: Path) -> None:
    async with running(tmp_path) as broker, channel(broker) as ch:
        q = await ch.declare_queue("gone", durable=True)
        await publish(ch, b"m1", "gone")
        await q.delete(if_unused=False, if_empty=False)
        q = await ch.declare_queue("gone", durable=True)  # same name, new queue
        await publish(ch, b"m2", "gone")
    async with running(tmp_path) as broker, channel(broker) as ch:
        assert [m.body for m in await drain(await ch.get_queue("gone"))] == [b"m2"]


async def test_purged_messages_do_not_come_back(tmp_path: Path) -> None:
    async with running(tmp_path) as broker, channel(broker) as ch:
        q = await ch.declare_queue("purged", durable=True)
        for i in range(3):
            await publish(ch, f"old{i}".encode(), "purged")
        result = await q.purge()
        assert result.message_count == 3
        await publish(ch, b"new", "purged")
    async with running(tmp_path) as broker, channel(broker) as ch:
        assert [m.body for m in await drain(await ch.get_queue("purged"))] == [b"new"]


async def test_auto_acked_messages_do_not_come_back(tmp_path: Path) -> None:
    """basic.get with no_ack and a no_ack consumer settle on delivery: the store too."""
    async with running(tmp_path) as broker, channel(broker) as ch:
        q = await ch.declare_queue("auto", durable=True)
        for i in range(6):
            await publish(ch, f"a{i}".encode(), "auto")
        got = await asyncio.wait_for(q.get(no_ack=True), TIMEOUT)
        assert got.body == b"a0"
        received: list[bytes] = []
        done = asyncio.Event()

        async def on_message(message: AbstractIncomingMessage) -> None:
            received.append(message.body)
            if len(received) == 5:
                done.set()

        tag = await q.consume(on_message, no_ack=True)
        await asyncio.wait_for(done.wait(), TIMEOUT)
        await q.cancel(tag)
        assert received == [f"a{i}".encode() for i in range(1, 6)]
        await publish(ch, b"a6", "auto")  # proof the queue itself is still stored
    async with running(tmp_path) as broker, channel(broker) as ch:
        assert [m.body for m in await drain(await ch.get_queue("auto"))] == [b"a6"]


# --------------------------------------------------------------------------- lock
async def test_second_broker_on_same_data_dir_is_refused(tmp_path: Path) -> None:
    async with running(tmp_path) as broker:
        data_dir = tmp_path / "data"
        with pytest.raises(DataDirLocked) as info:
            await start(make_config(tmp_path))
        assert str(data_dir) in str(info.value)
        assert str(os.getpid()) in str(info.value)

        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "warrenmq", "serve", "--host", "127.0.0.1", "--port", "0",
            "--management-port", "0", "--data-dir", str(data_dir),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
        try:
            _, stderr = await asyncio.wait_for(proc.communicate(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        text = stderr.decode()
        assert proc.returncode == 2, text
        assert f"data directory {data_dir} is in use by another WarrenMQ" in text
        assert f"pid {os.getpid()}" in text
        # The running broker was not disturbed.
        async with channel(broker) as ch:
            await ch.declare_queue("still-here", durable=True)
    # Once stopped, the directory can be used again.
    async with running(tmp_path) as broker:
        assert "still-here" in broker.vhost().queues
