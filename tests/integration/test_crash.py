"""Crash safety of the message store.

kill -9: the broker runs as a real subprocess (``python -m warrenmq serve``) on one data
directory for several rounds. In each round a pipelining publisher with confirms sends
numbered persistent messages (body: number, CRC32, deterministic filler of varying size)
to a durable queue while a consumer acks most deliveries and holds some unacked; the
broker is SIGKILLed at a seeded random moment, restarted on the same directory, and the
queue is drained. Checked: every message whose confirm arrived is there with an intact
body (none lost), each number at most once, in publish order, nothing that was never
published; a message comes back after its ack only if that ack was not provably durable
(AMQP acks are not confirmed: an ack counts as durable here once the consumer's later
basic.qos round trip completed AND a publish sent after that round trip was confirmed,
since a confirm means the group commit covering everything before it was written).
The broker stops cleanly (exit status 0) on SIGTERM at the end.

Torn write: after a clean stop the last segment file is cut in the middle of its last
record; the broker starts, logs storage_corrupt_record naming the file and the record's
offset, recovers every earlier message in order, and keeps working (messages published
after that restart survive the next one).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import structlog
from pamqp import commands, frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader
from pamqp.heartbeat import Heartbeat

from tests.conftest import make_config
from tests.helpers import TIMEOUT
from warrenmq.app import start

SEED = int(os.environ.get("WARRENMQ_CRASH_SEED", "20261129"))
ROUNDS = 6
WINDOW = 300  # unconfirmed publishes in flight
PREFETCH = 100
ROOT = Path(__file__).resolve().parents[2]
PERSISTENT = commands.Basic.Properties(delivery_mode=2)
PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
HEAD = struct.Struct(">II")  # message number, crc32 of the rest


# --------------------------------------------------------------------------- bodies
def filler(n: int) -> bytes:
    size = 8 + (n * 7919) % 1500
    return (f"<{n}>".encode() * (size // 3 + 1))[:size]


def make_body(n: int) -> bytes:
    rest = filler(n)
    return HEAD.pack(n, zlib.crc32(struct.pack(">I", n) + rest)) + rest


def check_body(body: bytes) -> int:
    """The message number of an intact body; AssertionError otherwise."""
    assert len(body) >= HEAD.size, f"short body {body!r}"
    n, crc = HEAD.unpack_from(body)
    rest = body[HEAD.size:]
    assert zlib.crc32(struct.pack(">I", n) + rest) == crc, f"corrupt body for #{n}"
    assert rest == filler(n), f"wrong filler for #{n}"
    return n


# --------------------------------------------------------------------------- wire client
class Wire:
    """A small pipelining AMQP client over asyncio streams (pamqp codec; frames parsed
    from one bytearray, so thousands of small frames cost no quadratic copying)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buf = bytearray()
        self.pos = 0

    @classmethod
    async def open(cls, port: int) -> Wire:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), TIMEOUT)
        wire = cls(reader, writer)
        try:
            writer.write(PROTOCOL_HEADER)
            await wire.expect(commands.Connection.Start)
            wire.send(0, commands.Connection.StartOk(
                client_properties={"product": "crash-test", "capabilities": {
                    "publisher_confirms": True, "basic.nack": True}},
                mechanism="PLAIN", response="\0guest\0guest", locale="en_US"))
            tune = await wire.expect(commands.Connection.Tune)
            wire.send(0, commands.Connection.TuneOk(
                channel_max=tune.channel_max, frame_max=tune.frame_max, heartbeat=0))
            wire.send(0, commands.Connection.Open(virtual_host="/"))
            await wire.expect(commands.Connection.OpenOk)
            wire.send(1, commands.Channel.Open())
            await wire.expect(commands.Channel.OpenOk)
        except BaseException:
            wire.close()
            raise
        return wire

    def write(self, data: bytes) -> None:
        if self.writer.is_closing():  # uvloop raises RuntimeError on a closed transport
            raise ConnectionError("connection closed")
        self.writer.write(data)

    def send(self, channel: int, method: Any) -> None:
        self.write(frame.marshal(method, channel))

    def publish(self, queue: str, body: bytes) -> None:
        self.write(b"".join((
            frame.marshal(commands.Basic.Publish(exchange="", routing_key=queue), 1),
            frame.marshal(ContentHeader(0, len(body), PERSISTENT), 1),
            frame.marshal(ContentBody(body), 1),
        )))

    async def frame(self, timeout: float = TIMEOUT) -> Any:
        """The next frame's value (channel ignored: one channel per connection)."""
        while True:
            avail = len(self.buf) - self.pos
            if avail >= 7:
                (size,) = struct.unpack_from(">I", self.buf, self.pos + 3)
                if avail >= size + 8:
                    end = self.pos + size + 8
                    _, _, value = frame.unmarshal(bytes(self.buf[self.pos:end]))
                    self.pos = end
                    if self.pos > 1 << 16:
                        del self.buf[:self.pos]
                        self.pos = 0
                    return value
            data = await asyncio.wait_for(self.reader.read(1 << 16), timeout)
            if not data:
                raise ConnectionError("connection closed by the broker")
            self.buf += data

    async def expect(self, kind: type, timeout: float = TIMEOUT) -> Any:
        while True:
            value = await self.frame(timeout)
            if isinstance(value, Heartbeat):
                continue
            assert isinstance(value, kind), f"expected {kind.__name__}, got {value!r}"
            return value

    async def body(self, timeout: float = TIMEOUT) -> bytes:
        header = await self.expect(ContentHeader, timeout)
        parts = []
        got = 0
        while got < header.body_size:
            part = await self.expect(ContentBody, timeout)
            parts.append(part.value)
            got += len(part.value)
        return b"".join(parts)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


# --------------------------------------------------------------------------- broker process
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BrokerProcess:
    """``python -m warrenmq serve`` on 127.0.0.1, output to a log file; always killed by
    PID in ``kill``."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def spawn(self) -> subprocess.Popen[bytes]:
        self.port = free_port()
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "warrenmq", "serve", "--host", "127.0.0.1",
                 "--port", str(self.port), "--data-dir", str(self.data_dir),
                 "--management-port", "0"],
                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)

    async def start(self) -> None:
        """Spawn and wait (bounded) until it accepts connections."""
        self.proc = self.spawn()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"broker exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return
        raise AssertionError(f"broker did not accept connections in 20 s:\n{self.tail()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-3000:]
        return ""


# --------------------------------------------------------------------------- workload
@dataclass
class Round:
    queue: str
    sent: int = 0  # numbers 1..sent were written to the publisher's socket
    confirmed: set[int] = field(default_factory=set)
    nacked: set[int] = field(default_factory=set)
    max_confirmed: int = 0
    delivered: set[int] = field(default_factory=set)
    acks_sent: set[int] = field(default_factory=set)
    # (publisher's `sent` when the round trip after these acks completed, the acks)
    round_trips: list[tuple[int, list[int]]] = field(default_factory=list)

    def durable_acks(self) -> set[int]:
        """Acks provably written: a publish sent after their round trip was confirmed."""
        out: set[int] = set()
        for mark, numbers in self.round_trips:
            if self.max_confirmed > mark:
                out.update(numbers)
        return out


async def publisher(port: int, state: Round) -> None:
    wire = await Wire.open(port)
    try:
        wire.send(1, commands.Confirm.Select())
        await wire.expect(commands.Confirm.SelectOk)
        unsettled: collections.deque[int] = collections.deque()
        room = asyncio.Event()
        room.set()

        async def read_confirms() -> None:
            while True:
                value = await wire.frame(30)
                if isinstance(value, commands.Basic.Ack | commands.Basic.Nack):
                    tag = value.delivery_tag
                    if value.multiple:
                        done = []
                        while unsettled and unsettled[0] <= tag:
                            done.append(unsettled.popleft())
                    else:
                        unsettled.remove(tag)
                        done = [tag]
                    if isinstance(value, commands.Basic.Ack):
                        state.confirmed.update(done)
                        state.max_confirmed = max(state.max_confirmed, tag)
                    else:
                        state.nacked.update(done)
                    room.set()

        reader = asyncio.create_task(read_confirms())
        try:
            while not reader.done():
                while len(unsettled) < WINDOW:
                    n = state.sent + 1
                    wire.publish(state.queue, make_body(n))
                    unsettled.append(n)
                    state.sent = n  # written (to the transport) before `sent` says so
                room.clear()
                await wire.writer.drain()
                waiter = asyncio.ensure_future(room.wait())
                await asyncio.wait([reader, waiter], return_when=asyncio.FIRST_COMPLETED,
                                   timeout=30)
                waiter.cancel()
            reader.result()  # why it stopped (the broker died: ConnectionError)
        finally:
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
    finally:
        wire.close()


async def consumer(port: int, state: Round, publisher_state: Round, rng: random.Random) -> None:
    wire = await Wire.open(port)
    try:
        wire.send(1, commands.Basic.Qos(prefetch_count=PREFETCH))
        await wire.expect(commands.Basic.QosOk)
        wire.send(1, commands.Basic.Consume(queue=state.queue, consumer_tag="c"))
        await wire.expect(commands.Basic.ConsumeOk)
        held: collections.deque[tuple[int, int]] = collections.deque()
        batch: list[int] = []
        in_flight: collections.deque[list[int]] = collections.deque()

        def ack(tag: int, n: int) -> None:
            wire.send(1, commands.Basic.Ack(delivery_tag=tag))
            state.acks_sent.add(n)
            batch.append(n)

        while True:
            value = await wire.frame(30)
            if isinstance(value, commands.Basic.Deliver):
                n = check_body(await wire.body())
                state.delivered.add(n)
                if rng.random() < 0.8:
                    ack(value.delivery_tag, n)
                else:
                    held.append((value.delivery_tag, n))  # unacked for now
                    if len(held) > 40:
                        ack(*held.popleft())
                if len(batch) >= 25:
                    wire.send(1, commands.Basic.Qos(prefetch_count=PREFETCH))  # round trip
                    in_flight.append(batch)
                    batch = []
            elif isinstance(value, commands.Basic.QosOk):
                state.round_trips.append((publisher_state.sent, in_flight.popleft()))
    finally:
        wire.close()


async def drain(port: int, queue: str) -> list[tuple[int, bool]]:
    """Every message of ``queue`` as (number, redelivered), then ack all and delete it."""
    wire = await Wire.open(port)
    try:
        wire.send(1, commands.Queue.Declare(queue=queue, durable=True, passive=True))
        count = (await wire.expect(commands.Queue.DeclareOk)).message_count
        wire.send(1, commands.Basic.Consume(queue=queue, consumer_tag="drain"))
        await wire.expect(commands.Basic.ConsumeOk)
        out = []
        last = 0
        for _ in range(count):
            deliver = await wire.expect(commands.Basic.Deliver)
            out.append((check_body(await wire.body()), bool(deliver.redelivered)))
            last = deliver.delivery_tag
        if last:
            wire.send(1, commands.Basic.Ack(delivery_tag=last, multiple=True))
        wire.send(1, commands.Queue.Delete(queue=queue))
        deleted = await wire.expect(commands.Queue.DeleteOk)
        assert deleted.message_count == 0  # nothing more arrived: count was exact
        return out
    finally:
        wire.close()


async def declare(port: int, queue: str) -> None:
    wire = await Wire.open(port)
    try:
        wire.send(1, commands.Queue.Declare(queue=queue, durable=True))
        await wire.expect(commands.Queue.DeclareOk)
    finally:
        wire.close()


async def run_round(broker: BrokerProcess, index: int, rng: random.Random) -> Round:
    state = Round(f"crash.r{index}")
    await declare(broker.port, state.queue)
    tasks = [asyncio.create_task(publisher(broker.port, state)),
             asyncio.create_task(consumer(broker.port, state, state, rng))]
    await asyncio.sleep(rng.uniform(0.2, 1.0))
    for task in tasks:
        assert not task.done(), f"round {index}: a client stopped early: {task}"
    broker.kill()
    done, pending = await asyncio.wait(tasks, timeout=10)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        exc = task.exception()
        # The clients end because the broker died; anything else is a test failure.
        assert exc is None or isinstance(exc, ConnectionError | TimeoutError), repr(exc)
    return state


async def test_kill_9_loses_no_confirmed_message(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    broker = BrokerProcess(tmp_path / "data", tmp_path / "broker.log")
    totals = collections.Counter()
    try:
        async with asyncio.timeout(50):
            await broker.start()
            for index in range(ROUNDS):
                state = await run_round(broker, index, rng)
                await broker.start()
                recovered = await drain(broker.port, state.queue)
                where = f"round {index} (seed {SEED})"
                numbers = [n for n, _ in recovered]
                assert len(numbers) == len(set(numbers)), f"{where}: duplicates in the queue"
                assert numbers == sorted(numbers), f"{where}: not in publish order"
                assert set(numbers) <= set(range(1, state.sent + 1)), where
                assert not state.nacked, f"{where}: unexpected nacks {sorted(state.nacked)[:5]}"
                lost = state.confirmed - set(numbers) - state.acks_sent
                assert not lost, f"{where}: confirmed messages lost: {sorted(lost)[:10]}"
                back = set(numbers) & state.durable_acks()
                assert not back, f"{where}: durably acked messages came back: {sorted(back)}"
                totals["confirmed"] += len(state.confirmed)
                totals["recovered"] += len(numbers)
                totals["acked"] += len(state.acks_sent)
                totals["durable_acks"] += len(state.durable_acks())
                totals["unconfirmed_recovered"] += len(set(numbers) - state.confirmed)
                totals["redelivered"] += sum(r for _, r in recovered)
        # The test must have exercised something in every respect it checks.
        assert totals["confirmed"] > 500, totals
        assert totals["recovered"] > 100, totals
        assert totals["durable_acks"] > 100, totals
        assert totals["redelivered"] > 0, totals
        print("crash rounds:", dict(totals))
        broker.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        assert await asyncio.to_thread(broker.proc.wait, 10) == 0  # type: ignore[union-attr]
    except BaseException:
        print(broker.tail())
        raise
    finally:
        broker.kill()


# --------------------------------------------------------------------------- torn write
def record_starts(data: bytes) -> list[int]:
    """Offsets of the records in a segment: 13-byte header (magic, type, u32 length,
    crc), then the payload."""
    starts, pos = [], 0
    while pos < len(data):
        assert data[pos:pos + 4] == b"WMQr", f"no record at {pos}"
        starts.append(pos)
        (length,) = struct.unpack_from(">I", data, pos + 5)
        pos += 13 + length
    assert pos == len(data)
    return starts


async def publish_confirmed(url: str, queue: str, bodies: list[bytes]) -> None:
    conn = await aio_pika.connect(url)
    async with conn:
        ch = await conn.channel(publisher_confirms=True)
        await ch.declare_queue(queue, durable=True)
        for body in bodies:
            confirm = await ch.default_exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=queue)
            assert isinstance(confirm, aiormq.spec.Basic.Ack)


async def get_all(url: str, queue: str) -> list[bytes]:
    conn = await aio_pika.connect(url)
    async with conn:
        ch = await conn.channel()
        q = await ch.get_queue(queue)
        out = []
        for _ in range(1000):
            message = await q.get(no_ack=True, fail=False)
            if message is None:
                return out
            out.append(message.body)
    raise AssertionError("queue did not drain")


async def test_torn_tail_is_skipped_with_a_warning(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    bodies = [f"m{i}".encode() * 20 for i in range(20)]
    server = await start(config)
    try:
        await publish_confirmed(f"amqp://guest:guest@127.0.0.1:{server.ports[0]}/", "torn",
                                bodies)
    finally:
        await server.close(grace=2.0)

    segments = sorted((tmp_path / "data" / "messages").glob("*.seg"))
    assert segments, "no segment written"
    last = segments[-1]
    data = last.read_bytes()
    starts = record_starts(data)
    cut = len(data) - 7  # the middle of the last record (the last publish)
    os.truncate(last, cut)

    with structlog.testing.capture_logs() as logs:
        server = await start(config)
    try:
        corrupt = [e for e in logs if e["event"] == "storage_corrupt_record"]
        assert len(corrupt) == 1, logs
        assert corrupt[0]["log_level"] == "warning"
        assert corrupt[0]["file"] == str(last)
        assert corrupt[0]["offset"] == starts[-1]
        url = f"amqp://guest:guest@127.0.0.1:{server.ports[0]}/"
        assert await get_all(url, "torn") == bodies[:-1]
        await publish_confirmed(url, "torn", [b"after-1", b"after-2"])
    finally:
        await server.close(grace=2.0)

    # Records written after the damaged tail (in a new segment) survive the next restart.
    server = await start(config)
    try:
        url = f"amqp://guest:guest@127.0.0.1:{server.ports[0]}/"
        assert await get_all(url, "torn") == [b"after-1", b"after-2"]
    finally:
        await server.close(grace=2.0)
