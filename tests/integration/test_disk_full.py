"""The broker on a full disk: its data directory on a REAL 1 MiB tmpfs (mounted for the
test, unmounted afterwards; skipped with the reason when mounting is not permitted).

A raw client (which advertises the connection.blocked capability) publishes persistent
messages with confirms until the store's commit fails with ENOSPC. Checked: the publisher
gets basic.nack (not a connection or channel error), the disk alarm blocks it
(connection.blocked, reason "low on disk" as RabbitMQ), the broker keeps running and a
consumer on another connection keeps being served and acking; after space is freed (a
file the test put there is deleted) the retried commit succeeds, the publisher gets
connection.unblocked, its held-back publishes are confirmed and new ones too; after a
restart every confirmed message is there, intact and in order, and the acks made during
the alarm are durable. A durable queue declared while the disk is full is declared (the
save fails, is retried and lands once space is freed) and exists after the restart.
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from pamqp import commands
from pamqp.heartbeat import Heartbeat

from tests.conftest import BrokerHandle, make_config
from tests.helpers import TIMEOUT, small_tmpfs
from tests.rawamqp import RawClient
from warrenmq.app import start
from warrenmq.server.committer import RETRY_AFTER_ERROR

BODY_SIZE = 2000
FILLER_SIZE = 400 * 1024
PERSISTENT = commands.Basic.Properties(delivery_mode=2)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path, "1m") as mnt:
        yield mnt


def body(n: int) -> bytes:
    rest = (f"[{n}]".encode() * BODY_SIZE)[:BODY_SIZE - 8]
    return struct.pack(">II", n, zlib.crc32(rest)) + rest


def number(data: bytes) -> int:
    n, crc = struct.unpack_from(">II", data)
    assert len(data) == BODY_SIZE and zlib.crc32(data[8:]) == crc, f"corrupt body #{n}"
    assert data == body(n)
    return n


class Publisher:
    """A raw publisher with confirms: tracks which numbers were acked or nacked."""

    def __init__(self, client: RawClient, queue: str) -> None:
        self.client = client
        self.queue = queue
        self.sent = 0
        self.unsettled: list[int] = []
        self.acked: list[int] = []
        self.nacked: list[int] = []
        self.blocked: list[str] = []
        self.unblocked = 0

    def publish(self, count: int) -> None:
        for _ in range(count):
            self.sent += 1
            self.client.send_method(1, commands.Basic.Publish(exchange="",
                                                              routing_key=self.queue))
            self.client.send_content(1, body(self.sent), PERSISTENT)
            self.unsettled.append(self.sent)

    async def read(self, timeout: float = TIMEOUT) -> object:
        """Read one frame and account for it; returns it."""
        _, value = await self.client.read_frame(timeout)
        if isinstance(value, commands.Basic.Ack | commands.Basic.Nack):
            tag = value.delivery_tag
            done = [n for n in self.unsettled if n <= tag] if value.multiple else [tag]
            assert done and all(n in self.unsettled for n in done), (value, self.unsettled)
            self.unsettled = [n for n in self.unsettled if n not in done]
            (self.acked if isinstance(value, commands.Basic.Ack) else self.nacked).extend(done)
        elif isinstance(value, commands.Connection.Blocked):
            self.blocked.append(value.reason)
        elif isinstance(value, commands.Connection.Unblocked):
            self.unblocked += 1
        elif not isinstance(value, Heartbeat):
            raise AssertionError(f"unexpected frame {value!r}")
        return value

    async def settle(self) -> None:
        while self.unsettled:
            await self.read()


async def connect(broker: BrokerHandle) -> RawClient:
    client = await RawClient.connect(broker.port)
    await client.handshake()  # advertises connection.blocked
    await client.open_channel(1)
    return client


async def declare(client: RawClient, queue: str) -> int:
    client.send_method(1, commands.Queue.Declare(queue=queue, durable=True))
    return int((await client.expect(commands.Queue.DeclareOk)).message_count)


async def get_all(client: RawClient, queue: str) -> list[bytes]:
    out = []
    for _ in range(2000):
        client.send_method(1, commands.Basic.Get(queue=queue, no_ack=True))
        _, value = await client.read_frame()
        if isinstance(value, commands.Basic.GetEmpty):
            return out
        assert isinstance(value, commands.Basic.GetOk), value
        out.append(await client.read_body())
    raise AssertionError("queue did not drain")


async def test_disk_full_nacks_blocks_and_recovers(small_fs: Path) -> None:
    filler = small_fs / "filler"
    filler.write_bytes(b"\0" * FILLER_SIZE)  # deleted later to free space
    config = make_config(small_fs)
    server = await start(config)
    broker = BrokerHandle(server, "127.0.0.1", server.ports[0])
    clients: list[RawClient] = []
    try:
        client = await connect(broker)
        clients.append(client)
        await declare(client, "full")
        await declare(client, "side")
        client.send_method(1, commands.Confirm.Select())
        await client.expect(commands.Confirm.SelectOk)

        side = Publisher(client, "side")
        side.publish(10)
        await side.settle()
        assert side.acked == list(range(1, 11)) and not side.nacked

        # Fill the disk: batches of 10 persistent messages, each settled, until a nack.
        pub = Publisher(client, "full")
        pub.sent = side.sent  # one channel: the sequence numbers continue
        for _ in range(100):  # 1 MiB / 20 KB per batch: the disk is full long before
            pub.publish(10)
            await pub.settle()
            if pub.nacked:
                break
        assert pub.nacked, "the disk never filled up"
        assert pub.acked, "nothing was confirmed before the disk filled up"
        assert broker.server.alarm
        confirmed_before = list(pub.acked)

        # The next publishes block the connection (RabbitMQ's disk alarm reason).
        pub.publish(5)
        for _ in range(50):
            if pub.blocked:
                break
            await pub.read()
        assert pub.blocked == ["low on disk"]
        assert not pub.unblocked

        # The broker is alive: another connection consumes from "side" and acks.
        consumer = await connect(broker)
        clients.append(consumer)
        consumer.send_method(1, commands.Basic.Qos(prefetch_count=10))
        await consumer.expect(commands.Basic.QosOk)
        consumer.send_method(1, commands.Basic.Consume(queue="side", consumer_tag="c"))
        await consumer.expect(commands.Basic.ConsumeOk)
        received = []
        for _ in range(10):
            deliver = await consumer.expect(commands.Basic.Deliver)
            received.append((deliver.delivery_tag, number(await consumer.read_body())))
        assert [n for _, n in received] == list(range(1, 11))
        consumer.send_method(1, commands.Basic.Ack(delivery_tag=received[5][0], multiple=True))
        consumer.send_method(1, commands.Basic.Qos(prefetch_count=10))
        await consumer.expect(commands.Basic.QosOk)
        assert sum(c.blocked for c in broker.server.connections) == 1  # the publisher only

        # A declare while the disk is full still succeeds (RabbitMQ's disk alarm blocks
        # publishers, not declares); the definition is saved once space is freed.
        consumer.send_method(1, commands.Queue.Declare(queue="late", durable=True))
        await consumer.expect(commands.Queue.DeclareOk)
        assert broker.server.definitions_unsaved  # the save hit ENOSPC; the connection lives

        # Free space: the retried commit succeeds, the alarm clears.
        filler.unlink()
        async with asyncio.timeout(RETRY_AFTER_ERROR * 5 + TIMEOUT):
            while not pub.unblocked:
                await pub.read()
        assert not broker.server.alarm
        async with asyncio.timeout(TIMEOUT):  # the tick retries the definitions save
            while broker.server.definitions_unsaved:
                await asyncio.sleep(0.05)
        await pub.settle()  # the 5 held back by the block are now read and settled
        more = pub.sent
        pub.publish(5)
        await pub.settle()
        assert set(range(more + 1, more + 6)) <= set(pub.acked)
        confirmed = sorted(pub.acked)
        assert set(confirmed_before) <= set(confirmed)
        assert not set(pub.acked) & set(pub.nacked)
        print(f"disk full: {len(confirmed_before)} confirmed before the first nack, "
              f"{len(pub.nacked)} nacked, {len(confirmed)} confirmed in all")
    finally:
        for c in clients:
            c.close()
        await server.close(grace=2.0)

    # Nothing confirmed is lost; the acks made during the alarm are durable.
    server = await start(config)
    try:
        broker = BrokerHandle(server, "127.0.0.1", server.ports[0])
        client = await connect(broker)
        clients = [client]
        numbers = [number(b) for b in await get_all(client, "full")]
        assert numbers == sorted(set(numbers)), "duplicates or out of order"
        missing = set(confirmed) - set(numbers)
        assert not missing, f"confirmed messages lost: {sorted(missing)}"
        assert set(numbers) <= set(range(11, pub.sent + 1))
        assert [number(b) for b in await get_all(client, "side")] == list(range(7, 11))
        client.send_method(1, commands.Queue.Declare(queue="late", durable=True, passive=True))
        assert (await client.expect(commands.Queue.DeclareOk)).message_count == 0
    finally:
        for c in clients:
            c.close()
        await server.close(grace=2.0)

