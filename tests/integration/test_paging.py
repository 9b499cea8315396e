"""A durable queue holding more persistent bodies than its memory budget keeps only the
budget in RAM; the rest stay in the message store and are read back when delivered —
also right after a restart, when large bodies are recovered as locations only."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import aio_pika

from warrenmq.app import start
from warrenmq.config import BrokerConfig, ListenerConfig, ManagementConfig, StorageConfig

BODY_SIZE = 10_000
COUNT = 300
LIMIT = 200_000  # bytes of bodies the queue may keep in memory


def config(tmp_path: Path) -> BrokerConfig:
    return BrokerConfig(
        listeners=(ListenerConfig(port=0),),
        storage=StorageConfig(data_dir=str(tmp_path / "data"), queue_memory_limit=LIMIT),
        management=ManagementConfig(enabled=False),
    )


def body(i: int) -> bytes:
    seed = hashlib.sha256(str(i).encode()).digest()
    return (seed * (BODY_SIZE // len(seed) + 1))[:BODY_SIZE]


async def test_bodies_past_the_budget_stay_on_disk(tmp_path: Path) -> None:
    server = await start(config(tmp_path))
    url = f"amqp://guest:guest@127.0.0.1:{server.ports[0]}/"
    try:
        async with await aio_pika.connect(url) as conn:
            channel = await conn.channel(publisher_confirms=True)
            queue = await channel.declare_queue("big", durable=True)
            for i in range(COUNT):
                await channel.default_exchange.publish(
                    aio_pika.Message(body(i), delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                     message_id=str(i)),
                    routing_key="big")
            held = server.broker.vhosts["/"].queues["big"]
            assert held.message_count == COUNT
            assert held.ready_bytes == COUNT * BODY_SIZE
            assert held.resident_bytes <= LIMIT  # 3 MB queued, at most 200 kB in memory
            got = []
            async with queue.iterator() as it:
                async for message in it:
                    async with message.process():
                        got.append((message.message_id, message.body == body(int(str(
                            message.message_id)))))
                    if len(got) == COUNT:
                        break
            assert got == [(str(i), True) for i in range(COUNT)]
    finally:
        await server.close(grace=2)


async def test_recovered_large_bodies_are_read_back_on_delivery(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    server = await start(cfg)
    url = f"amqp://guest:guest@127.0.0.1:{server.ports[0]}/"
    big = b"B" * 200_000  # above the store's keep-in-memory size for recovery
    try:
        async with await aio_pika.connect(url) as conn:
            channel = await conn.channel(publisher_confirms=True)
            await channel.declare_queue("recovered", durable=True)
            for i in range(3):
                await channel.default_exchange.publish(
                    aio_pika.Message(big + bytes([i]),
                                     delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key="recovered")
    finally:
        await server.close(grace=2)
    server = await start(dataclasses.replace(cfg))
    url = f"amqp://guest:guest@127.0.0.1:{server.ports[0]}/"
    try:
        queue_state = server.broker.vhosts["/"].queues["recovered"]
        assert queue_state.message_count == 3
        assert queue_state.resident_bytes == 0  # nothing of them read at startup
        async with await aio_pika.connect(url) as conn:
            channel = await conn.channel()
            queue = await channel.get_queue("recovered")
            bodies = [(await queue.get(no_ack=True)).body for _ in range(3)]
        assert bodies == [big + bytes([i]) for i in range(3)]
    finally:
        await server.close(grace=2)
