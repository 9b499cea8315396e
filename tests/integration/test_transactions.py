"""Transactions with real clients (pika, aio-pika, aiormq, py-amqp/kombu): publishes reach
queues at tx.commit, acks are held, rollback and close discard, commit-ok waits for the
fsync, the management API shows the uncommitted counts. RabbitMQ 3.10.8's frames for the
same steps are compared in tests/differential/test_diff_transactions.py."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import pika
import pytest
from kombu import Connection as KombuConnection
from kombu import Producer
from pamqp import commands

from tests.conftest import BrokerHandle
from tests.mgmthttp import MANAGEMENT, Http
from tests.rawamqp import RawClient

REPO = Path(__file__).resolve().parents[2]


def depth(broker: BrokerHandle, queue: str) -> int:
    return int(broker.vhost().queues[queue].message_count)


async def test_pika_publishes_reach_the_queue_at_commit(broker: BrokerHandle) -> None:
    returned: list[bytes] = []

    def run() -> list[int]:
        seen: list[int] = []
        conn = pika.BlockingConnection(pika.URLParameters(broker.url))
        try:
            ch = conn.channel()
            ch.queue_declare("pq", durable=True)
            ch.add_on_return_callback(lambda _c, _m, _p, body: returned.append(body))
            ch.tx_select()
            for i in range(3):
                ch.basic_publish("", "pq", f"m{i}".encode(),
                                 pika.BasicProperties(delivery_mode=2))
            ch.basic_publish("", "nowhere", b"lost", mandatory=True)
            seen.append(depth(broker, "pq"))
            ch.tx_commit()
            seen.append(depth(broker, "pq"))
            ch.basic_publish("", "pq", b"rolled back")
            ch.tx_rollback()
            ch.tx_commit()
            seen.append(depth(broker, "pq"))
            conn.process_data_events(0)
        finally:
            conn.close()
        return seen

    assert await asyncio.to_thread(run) == [0, 3, 3]
    assert returned == [b"lost"]


async def test_commit_ok_waits_for_the_fsync(broker: BrokerHandle) -> None:
    committer = broker.server.committer
    assert committer is not None
    client = await RawClient.connect(broker.port)
    await client.handshake()
    await client.open_channel(1)
    client.send_method(1, commands.Queue.Declare(queue="durable", durable=True))
    await client.expect(commands.Queue.DeclareOk)
    client.send_method(1, commands.Tx.Select())
    await client.expect(commands.Tx.SelectOk)
    await asyncio.sleep(0.05)
    durable = committer.durable  # nothing waits for an fsync now
    for _ in range(5):
        client.send_method(1, commands.Basic.Publish(routing_key="durable"))
        client.send_content(1, b"x" * 100, commands.Basic.Properties(delivery_mode=2))
    client.send_method(1, commands.Tx.Commit())
    await client.expect(commands.Tx.CommitOk)
    # by the time commit-ok arrived, a commit covering the five records (a ticket each)
    # had been fsynced; sent before that, the worker's fsync would still be running
    assert committer.durable >= durable + 5
    assert depth(broker, "durable") == 5
    client.close()


async def test_aio_pika_transaction_context(broker: BrokerHandle) -> None:
    connection = await aio_pika.connect(broker.url)
    async with connection:
        channel = await connection.channel(publisher_confirms=False)
        queue = await channel.declare_queue("apq")
        async with channel.transaction():
            await channel.default_exchange.publish(aio_pika.Message(b"a"), "apq")
            assert depth(broker, "apq") == 0
        assert depth(broker, "apq") == 1
        with pytest.raises(RuntimeError):
            async with channel.transaction():
                await channel.default_exchange.publish(aio_pika.Message(b"b"), "apq")
                raise RuntimeError("abort")  # the context manager rolls back
        assert depth(broker, "apq") == 1
        message = await queue.get(no_ack=True)
        assert message.body == b"a"


async def test_aiormq_acks_held_rollback_and_close(broker: BrokerHandle) -> None:
    connection = await aiormq.connect(broker.url)
    try:
        setup = await connection.channel()
        await setup.queue_declare("acks")
        for i in range(3):
            await setup.basic_publish(f"m{i}".encode(), routing_key="acks")
        channel = await connection.channel(publisher_confirms=False)
        await channel.tx_select()
        got: list[aiormq.abc.DeliveredMessage] = []
        for _ in range(3):
            message = await channel.basic_get("acks")
            got.append(message)
        queue = broker.vhost().queues["acks"]
        await channel.basic_ack(got[0].delivery_tag)
        await channel.basic_reject(got[1].delivery_tag, requeue=True)
        await asyncio.sleep(0.05)
        assert (queue.message_count, queue.unacked) == (0, 3)  # all still unacked
        await channel.tx_rollback()
        await channel.basic_ack(got[0].delivery_tag)  # unacked again: may be acked again
        await channel.tx_commit()
        assert (queue.message_count, queue.unacked) == (0, 2)
        await channel.basic_ack(got[1].delivery_tag)
        await channel.close()  # uncommitted ack discarded: both requeued
        await asyncio.sleep(0.05)
        assert (queue.message_count, queue.unacked) == (2, 0)
    finally:
        await connection.close()


async def test_kombu_py_amqp_transaction(broker: BrokerHandle) -> None:
    def run() -> tuple[int, int]:
        with KombuConnection(f"amqp://guest:guest@127.0.0.1:{broker.port}//") as conn:
            channel = conn.default_channel
            channel.queue_declare("kq", durable=True)
            channel.tx_select()
            producer = Producer(channel)
            producer.publish({"n": 1}, routing_key="kq", serializer="json")
            before = depth(broker, "kq")
            channel.tx_commit()
            return before, depth(broker, "kq")

    assert await asyncio.to_thread(run) == (0, 1)


async def test_management_shows_uncommitted_counts(broker_factory: Any) -> None:
    handle: BrokerHandle = await broker_factory(top=MANAGEMENT)
    http = Http(handle.server.management_port)
    connection = await aiormq.connect(handle.url)
    try:
        channel = await connection.channel(publisher_confirms=False)
        await channel.queue_declare("m")
        await channel.basic_publish(b"1", routing_key="m")
        got = await channel.basic_get("m")
        await channel.tx_select()
        await channel.basic_publish(b"2", routing_key="m")
        await channel.basic_publish(b"3", routing_key="m")
        await channel.basic_ack(got.delivery_tag)
        await asyncio.sleep(0.05)
        [item] = await http.json("/api/channels")
        assert (item["transactional"], item["messages_uncommitted"],
                item["acks_uncommitted"], item["confirm"]) == (True, 2, 1, False)
        await channel.tx_commit()
        [item] = await http.json("/api/channels")
        assert (item["messages_uncommitted"], item["acks_uncommitted"]) == (0, 0)
    finally:
        await connection.close()


async def test_tx_benchmark_script_runs_small(broker: BrokerHandle) -> None:
    """benchmarks/tx.py as a user runs it (a process), with a tiny size."""
    repo = REPO

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "benchmarks.tx", "--url", broker.url, "--messages", "20",
             "--batches", "1,10"], cwd=repo, capture_output=True, text=True, timeout=60,
            check=False)

    done = await asyncio.to_thread(run)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| 1")]
    assert [row.split("|")[1:3] for row in rows] == [[" 1 ", " 20 "], [" 10 ", " 20 "]]
    bad = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "benchmarks.tx", "--messages", "0"], cwd=repo,
        capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "--messages must be >= 1" in bad.stderr
    assert "bench.tx" not in broker.vhost().queues  # deleted after each run
