"""Helpers shared by the test modules, defined once.

- raw-socket sessions and operations built on ``tests.rawamqp.RawClient`` (frame-level
  reads such as content bodies, deliveries and close frames are RawClient methods);
- wrappers around the client libraries (aiormq, pika in a thread, aio-pika);
- bounded waits on the in-process broker;
- fixtures of the exchange unit tests (binding destinations, a headers callback).

Every wait is bounded, so a broken broker fails a test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import aio_pika
import aiormq
import pika
import pytest
from pamqp import commands

from tests.conftest import BrokerHandle
from tests.rawamqp import Delivery, RawClient

TIMEOUT = 5.0  # bound on every single wait for the broker
SETTLE = 0.1  # extra grace before a round trip that checks nothing more arrives
STANDARD_EXCHANGES = (
    ("amq.direct", "direct"),
    ("amq.fanout", "fanout"),
    ("amq.topic", "topic"),
    ("amq.headers", "headers"),
    ("amq.match", "headers"),
)
T = TypeVar("T")


# --------------------------------------------------------------------------- raw client
async def raw_client(broker: BrokerHandle, channels: tuple[int, ...] = (1,),
                     **handshake: Any) -> RawClient:
    """A RawClient connected to ``broker``, past the handshake (``handshake`` are
    RawClient.handshake's keyword arguments), with ``channels`` open."""
    client = await RawClient.connect(broker.port)
    try:
        await client.handshake(**handshake)
        for number in channels:
            await client.open_channel(number)
    except BaseException:
        client.close()
        raise
    return client


@contextlib.asynccontextmanager
async def raw(broker: BrokerHandle, channels: tuple[int, ...] = (1,),
              **handshake: Any) -> AsyncIterator[RawClient]:
    """``raw_client`` as a context manager that closes the socket afterwards."""
    client = await raw_client(broker, channels, **handshake)
    try:
        yield client
    finally:
        client.close()


async def declare(client: RawClient, queue: str, channel: int = 1,
                  **flags: Any) -> commands.Queue.DeclareOk:
    """queue.declare ``queue`` (``flags``: auto_delete, exclusive, ...) and await declare-ok."""
    client.send_method(channel, commands.Queue.Declare(queue=queue, **flags))
    return await client.expect(commands.Queue.DeclareOk)


def publish(client: RawClient, channel: int, queue: str, bodies: list[bytes]) -> None:
    """Publish each of ``bodies`` to ``queue`` through the default exchange (no waiting)."""
    for body in bodies:
        client.send_method(channel, commands.Basic.Publish(exchange="", routing_key=queue))
        client.send_content(channel, body)


async def qos(client: RawClient, count: int, global_: bool = False, channel: int = 1) -> None:
    client.send_method(channel, commands.Basic.Qos(prefetch_count=count, global_=global_))
    await client.expect(commands.Basic.QosOk)


async def consume(client: RawClient, queue: str, tag: str, channel: int = 1,
                  no_ack: bool = False) -> None:
    client.send_method(channel, commands.Basic.Consume(queue=queue, consumer_tag=tag,
                                                       no_ack=no_ack))
    ok = await client.expect(commands.Basic.ConsumeOk)
    assert ok.consumer_tag == tag


async def sync(client: RawClient, queue: str, channel: int = 1
               ) -> tuple[list[Delivery], int]:
    """Round trip on ``channel``; returns deliveries seen meanwhile and the ready count.

    The broker dispatches synchronously, so any delivery it would make is written before
    the reply to this later synchronous method (a passive queue.declare of ``queue``).
    """
    await asyncio.sleep(SETTLE)
    client.send_method(channel, commands.Queue.Declare(queue=queue, passive=True))
    deliveries, ok = await client.collect_until(commands.Queue.DeclareOk)
    return deliveries, int(ok.message_count)


def bodies(prefix: str, n: int, start: int = 0) -> list[bytes]:
    """``n`` numbered bodies: prefix+start, prefix+(start+1), ..."""
    return [f"{prefix}{i}".encode() for i in range(start, start + n)]


# --------------------------------------------------------------------------- client libraries
@contextlib.asynccontextmanager
async def rmq(broker: BrokerHandle) -> AsyncIterator[aiormq.Connection]:
    """An aiormq connection to ``broker``, closed (best effort) afterwards."""
    conn = await asyncio.wait_for(aiormq.connect(broker.url), TIMEOUT)
    try:
        yield conn
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.close(), TIMEOUT)


async def channel_error(aw: Awaitable[Any], exc_type: type[BaseException]) -> str:
    """Await ``aw``, expecting the broker to close the channel; returns the reply text."""
    with pytest.raises(exc_type) as info:
        await asyncio.wait_for(aw, TIMEOUT)
    return str(info.value.args[0])


async def in_pika(broker: BrokerHandle | str,
                  fn: Callable[[pika.BlockingConnection], T]) -> T:
    """Run blocking pika code in a thread (the broker lives on this test's loop).

    ``broker`` is a broker handle or an AMQP URL (for another vhost, say).
    """
    url = broker if isinstance(broker, str) else broker.url

    def run() -> T:
        conn = pika.BlockingConnection(pika.URLParameters(url))
        try:
            return fn(conn)
        finally:
            if conn.is_open:
                conn.close()

    return await asyncio.wait_for(asyncio.to_thread(run), 15)


async def aio_pika_round_trip(connection: aio_pika.abc.AbstractConnection, queue: str,
                              body: bytes) -> None:
    """Proof that ``connection`` works: on a new channel (publisher confirms on), declare
    the auto-delete ``queue``, publish ``body`` to it, get it back and ack it."""
    channel = await connection.channel()
    declared = await channel.declare_queue(queue, auto_delete=True)
    await channel.default_exchange.publish(aio_pika.Message(body), routing_key=declared.name)
    message = await declared.get(timeout=TIMEOUT)
    assert message is not None and message.body == body
    await message.ack()


# --------------------------------------------------------------------------- waits
async def wait_connections(broker: BrokerHandle, count: int = 0) -> None:
    """Bounded wait (5 s) until the broker holds exactly ``count`` connections."""
    for _ in range(500):
        if len(broker.server.connections) == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {count} connections, open: {broker.server.connections}")


async def wait_until(predicate: Callable[[], object], timeout: float = TIMEOUT) -> None:
    """Poll ``predicate`` until it is true; TimeoutError after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


# --------------------------------------------------------------------------- exchange units
Q1 = ("queue", "q1")
Q2 = ("queue", "q2")
X2 = ("exchange", "x2")


def no_headers() -> Mapping[str, Any] | None:
    raise AssertionError("only the headers exchange may decode headers")


@contextlib.contextmanager
def small_tmpfs(tmp_path: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` (e.g. "256k") mounted under ``tmp_path``, for disk-full
    tests; skips the test with the reason when mounting is not permitted."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
            capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot run mount: {exc}")
    if proc.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30, check=False)
