"""Producer and consumer OS processes of the load generator (multiprocessing 'spawn' targets).

Role: the consumer process opens one connection per queue, declares the scenario topology,
consumes with basic.qos prefetch (per consumer) and multi-acks every `ack_every` messages, and
verifies every delivery (CRC, producer id, sequence in range, expected queue, no duplicates,
none missing). The producer process publishes pre-encoded batches flat out (or paced at a
fixed rate), optionally with publisher confirms in a bounded window.

Timestamps are CLOCK_MONOTONIC (`time.monotonic_ns`), which is one system-wide clock on Linux,
so send times written by the producer process and receive times read by the consumer process
are directly comparable.

Must not: loop without both a message bound and the wall-clock deadline, report a number for a
run whose verification failed, or leave a child process running after its parent's deadline.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import time
import zlib
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from pamqp import commands

from benchmarks.amqpwire import (
    BODY_HEADER,
    NO_PROPERTIES,
    PERSISTENT_PROPERTIES,
    AmqpUrl,
    MessageEncoder,
    basic_ack_frame,
    topic_matches,
)
from benchmarks.client import AmqpConnection, AmqpError
from benchmarks.measure import cpu_seconds

SETUP_TIMEOUT = 30.0
PRODUCER_ID = 7


@dataclass
class Topology:
    """Exchange, queues and bindings. Message seq uses routing_keys[seq % len(routing_keys)]."""

    exchange: str
    exchange_type: str  # "direct" (default exchange when exchange == ""), "fanout", "topic"
    queues: list[str]
    bindings: list[tuple[int, str]] = field(default_factory=list)  # (queue index, binding key)
    routing_keys: list[str] = field(default_factory=lambda: [""])
    durable: bool = False  # durable, shared queues (deleted at the end) instead of exclusive

    def expected(self) -> list[list[bool]]:
        """expected()[queue][key index]: does a message with that key reach that queue?"""
        table = [[False] * len(self.routing_keys) for _ in self.queues]
        for k, rk in enumerate(self.routing_keys):
            if self.exchange == "":
                for q, name in enumerate(self.queues):
                    table[q][k] = name == rk
                continue
            for q, key in self.bindings:
                if (
                    self.exchange_type == "fanout"
                    or (self.exchange_type == "topic" and topic_matches(key, rk))
                    or (self.exchange_type == "direct" and key == rk)
                ):
                    table[q][k] = True
        return table

    def expected_counts(self, messages: int) -> list[int]:
        nkeys = len(self.routing_keys)
        per_key = [(messages - k + nkeys - 1) // nkeys for k in range(nkeys)]  # seq % nkeys == k
        return [
            sum(c for c, hit in zip(per_key, row, strict=True) if hit) for row in self.expected()
        ]


@dataclass
class RunSpec:
    url: str
    topology: Topology
    messages: int
    body_size: int
    deadline: float  # absolute time.monotonic()
    confirm_window: int = 0  # 0: no publisher confirms
    rate: float = 0.0  # 0: flat out; else messages per second, paced per loop tick
    prefetch: int = 1000
    record_latency: bool = False
    persistent: bool = False  # publish with delivery_mode 2

    @property
    def ack_every(self) -> int:
        return max(1, self.prefetch // 2)


def run_process(pipe: Connection, role: str, spec: RunSpec) -> None:
    """Entry point of a child process: run `role` and send ('done', result) or ('error', text)."""
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a project dependency
        runner = asyncio.run
    main = _consume if role == "consumer" else _produce
    try:
        result = runner(main(pipe, spec))
        pipe.send(("done", result))
    except BaseException as exc:  # report every failure to the parent, then exit
        with contextlib.suppress(Exception):
            pipe.send(("error", f"{role}: {type(exc).__name__}: {exc}"))


class Tally:
    """Shared by all queue verifiers of one consumer process."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.unique = 0
        self.done = asyncio.Event()
        if total == 0:
            self.done.set()


class QueueVerifier:
    """DeliveryHandler for one queue: verifies, counts, samples latency, multi-acks."""

    def __init__(
        self,
        conn: AmqpConnection,
        spec: RunSpec,
        expected_row: list[bool],
        tally: Tally,
        latencies: array.array[int] | None,
    ) -> None:
        self.conn = conn
        self.size = spec.body_size
        self.messages = spec.messages
        self.row = expected_row
        self.nkeys = len(expected_row)
        self.seen = bytearray(spec.messages)
        self.tally = tally
        self.latencies = latencies
        self.ack_every = spec.ack_every
        self.unique = self.duplicates = self.corrupt = self.misrouted = 0
        self.since_ack = 0
        self.last_tag = 0
        self.first_ns = 0
        self.last_ns = 0

    def on_message(self, view: memoryview, start: int, end: int, tag: int, now_ns: int) -> None:
        if end - start != self.size:
            self.corrupt += 1
        else:
            crc, pid, seq, ts = BODY_HEADER.unpack_from(view, start)
            if (
                pid != PRODUCER_ID
                or seq >= self.messages
                or zlib.crc32(view[start + 4 : end]) != crc
            ):
                self.corrupt += 1
            elif not self.row[seq % self.nkeys]:
                self.misrouted += 1
            elif self.seen[seq]:
                self.duplicates += 1
            else:
                self.seen[seq] = 1
                self.unique += 1
                tally = self.tally
                tally.unique += 1
                if tally.unique >= tally.total:
                    tally.done.set()
                if self.latencies is not None:
                    self.latencies.append(now_ns - ts)
        if not self.first_ns:
            self.first_ns = now_ns
        self.last_ns = now_ns
        self.last_tag = tag
        self.since_ack += 1
        if self.since_ack >= self.ack_every:
            self.flush_ack()

    def flush_ack(self) -> None:
        if self.since_ack and not self.conn.closed:
            self.conn.write(basic_ack_frame(1, self.last_tag, True))
        self.since_ack = 0


async def _declare(conn: AmqpConnection, topo: Topology, q: int, prefetch: int) -> None:
    await conn.open_channel(1)
    if q == 0 and topo.exchange:
        await conn.rpc(
            1,
            commands.Exchange.Declare(exchange=topo.exchange, exchange_type=topo.exchange_type),
            commands.Exchange.DeclareOk,
        )
    name = topo.queues[q]
    await conn.rpc(
        1,
        commands.Queue.Declare(queue=name, durable=topo.durable, exclusive=not topo.durable),
        commands.Queue.DeclareOk,
    )
    for bq, key in topo.bindings:
        if bq == q:
            await conn.rpc(
                1,
                commands.Queue.Bind(queue=name, exchange=topo.exchange, routing_key=key),
                commands.Queue.BindOk,
            )
    await conn.rpc(1, commands.Basic.Qos(prefetch_count=prefetch), commands.Basic.QosOk)


async def _consume(pipe: Connection, spec: RunSpec) -> dict[str, Any]:
    cpu0 = cpu_seconds()
    url = AmqpUrl.parse(spec.url)
    topo = spec.topology
    expected_rows = topo.expected()
    counts = topo.expected_counts(spec.messages)
    tally = Tally(sum(counts))
    latencies: array.array[int] | None = array.array("q") if spec.record_latency else None
    conns: list[AmqpConnection] = []
    verifiers: list[QueueVerifier] = []
    errors: list[str] = []
    try:
        for q in range(len(topo.queues)):
            conn = await AmqpConnection.open(url, SETUP_TIMEOUT)
            conns.append(conn)
            await _declare(conn, topo, q, spec.prefetch)
            verifier = QueueVerifier(conn, spec, expected_rows[q], tally, latencies)
            conn.handler = verifier
            verifiers.append(verifier)
            await conn.rpc(
                1,
                commands.Basic.Consume(queue=topo.queues[q], consumer_tag=f"c{q}"),
                commands.Basic.ConsumeOk,
            )
        pipe.send(("ready", None))
        while not tally.done.is_set():
            remaining = spec.deadline - time.monotonic()
            if remaining <= 0:
                errors.append(f"timeout: {tally.unique}/{tally.total} deliveries received")
                break
            if pipe.poll():  # the orchestrator says stop: the producer failed
                errors.append(f"stopped: {tally.unique}/{tally.total} deliveries received")
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tally.done.wait(), min(0.2, remaining))
        t_done = max((v.last_ns for v in verifiers), default=0)
        await asyncio.sleep(0.25)  # late duplicates or misroutes still count as failures
        errors.extend(c.error for c in conns if c.error)
        for v in verifiers:
            v.flush_ack()
        if topo.durable:  # not exclusive: delete them, or they outlive the run on disk
            for c, name in zip(conns, topo.queues, strict=False):
                if not c.closed:
                    with contextlib.suppress(AmqpError, TimeoutError):
                        await c.rpc(
                            1, commands.Queue.Delete(queue=name), commands.Queue.DeleteOk, 5
                        )
        if topo.exchange and conns and not conns[0].closed:
            with contextlib.suppress(AmqpError, TimeoutError):
                await conns[0].rpc(
                    1,
                    commands.Exchange.Delete(exchange=topo.exchange),
                    commands.Exchange.DeleteOk,
                    limit_s=5,
                )
    finally:
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
    per_queue = [
        {
            "queue": topo.queues[i],
            "expected": counts[i],
            "unique": v.unique,
            "missing": counts[i] - v.unique,
            "duplicates": v.duplicates,
            "corrupt": v.corrupt,
            "misrouted": v.misrouted,
        }
        for i, v in enumerate(verifiers)
    ]
    return {
        "per_queue": per_queue,
        "first_ns": min((v.first_ns for v in verifiers if v.first_ns), default=0),
        "last_ns": t_done,
        "latency": _percentiles(latencies),
        "cpu_s": cpu_seconds() - cpu0,
        "errors": errors,
    }


def _percentiles(samples: array.array[int] | None) -> dict[str, float] | None:
    if not samples:
        return None
    ordered = sorted(samples)
    n = len(ordered)

    def pick(p: float) -> float:
        return ordered[min(n - 1, int(p * n))] / 1e6

    return {
        "count": n,
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
        "p999_ms": pick(0.999),
        "max_ms": ordered[-1] / 1e6,
    }


async def _produce(pipe: Connection, spec: RunSpec) -> dict[str, Any]:
    cpu0 = cpu_seconds()
    topo = spec.topology
    conn = await AmqpConnection.open(AmqpUrl.parse(spec.url), SETUP_TIMEOUT)
    errors: list[str] = []
    progress = [0]  # messages written so far, kept by the publish loop
    t0 = t_written = t_closed = 0
    try:
        await conn.open_channel(1)
        if spec.confirm_window:
            await conn.rpc(1, commands.Confirm.Select(), commands.Confirm.SelectOk)
        encoder = MessageEncoder(
            1,
            topo.exchange,
            topo.routing_keys,
            spec.body_size,
            PRODUCER_ID,
            conn.frame_max,
            properties=PERSISTENT_PROPERTIES if spec.persistent else NO_PROPERTIES,
        )
        pipe.send(("ready", None))
        if not pipe.poll(max(0.0, spec.deadline - time.monotonic())):
            raise TimeoutError("no 'go' from the orchestrator")
        pipe.recv()
        t0 = time.monotonic_ns()
        try:
            publish = _publish_paced if spec.rate > 0 else _publish_flat_out
            await publish(conn, encoder, spec, progress)
            t_written = time.monotonic_ns()
            if spec.confirm_window:
                await conn.wait_confirmed(progress[0], spec.deadline)
        except (AmqpError, TimeoutError) as exc:
            errors.append(f"producer: {exc}")
    finally:
        await conn.close(limit_s=max(1.0, spec.deadline - time.monotonic()))
        t_closed = time.monotonic_ns()
    seq = progress[0]
    if seq < spec.messages:
        errors.append(f"producer published only {seq}/{spec.messages}")
    if conn.nacked:
        errors.append(f"broker nacked {conn.nacked} publishes")
    return {
        "published": seq,
        "t0_ns": t0,
        "written_ns": t_written,
        "closed_ns": t_closed,
        "confirmed": conn.confirmed,
        "nacked": conn.nacked,
        "cpu_s": cpu_seconds() - cpu0,
        "errors": errors,
    }


async def _publish_flat_out(
    conn: AmqpConnection, encoder: MessageEncoder, spec: RunSpec, progress: list[int]
) -> None:
    batch = max(1, min(1000, int(65536 // encoder.mean_len)))
    window = spec.confirm_window
    if window:
        batch = max(1, min(batch, window // 4))
    seq, n = 0, spec.messages
    while seq < n:
        if time.monotonic() > spec.deadline:
            raise TimeoutError(f"deadline reached after publishing {seq}/{n}")
        count = min(batch, n - seq)
        if window and seq + count - conn.confirmed > window:
            await conn.wait_confirmed(seq + count - window, spec.deadline)
        conn.write(encoder.batch(seq, count, time.monotonic_ns()))
        seq += count
        progress[0] = seq
        await conn.drain(spec.deadline)
        await asyncio.sleep(0)  # let confirms and server frames in even if never paused


async def _publish_paced(
    conn: AmqpConnection, encoder: MessageEncoder, spec: RunSpec, progress: list[int]
) -> None:
    seq, n = 0, spec.messages
    t0 = time.monotonic_ns()
    per_ns = spec.rate / 1e9
    while seq < n:
        if time.monotonic() > spec.deadline:
            raise TimeoutError(f"deadline reached after publishing {seq}/{n}")
        now = time.monotonic_ns()
        due = min(n, int((now - t0) * per_ns) + 1)
        if due > seq:
            if spec.confirm_window:
                await conn.wait_confirmed(due - spec.confirm_window, spec.deadline)
            conn.write(encoder.batch(seq, due - seq, time.monotonic_ns()))
            seq = progress[0] = due
            await conn.drain(spec.deadline)
        await asyncio.sleep(0.001)  # libuv timers have 1 ms resolution; less would spin
