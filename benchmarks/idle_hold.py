"""Hold many idle consumer connections with heartbeats while one active connection
measures publish -> deliver latency (`python -m benchmarks.idle_hold`).

Role: start a broker (a subprocess with its own data dir, or --port for a running one),
raise the fd limit, open --connections raw AMQP connections that each open a channel
and consume from one shared queue, with --heartbeat negotiated (the script answers the
broker's heartbeats, one timer for all), then publish --rate msgs/s for --seconds on one
more connection and consume them on another, timing each. Reports the broker's RSS per
idle connection (RSS growth / connections), publish -> deliver p50/p99/max, and how many
idle connections the broker dropped (heartbeat misses would show there). Only 127.0.0.1.

    .venv/bin/python -m benchmarks.idle_hold --connections 10000 --heartbeat 10
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.fuzz import PROTOCOL_HEADER, frame, method, ss, wait_port

HEARTBEAT = b"\x08\x00\x00\x00\x00\x00\x00\xce"


def open_frames(heartbeat: int, queue: bytes, consume: bool) -> bytes:
    data = PROTOCOL_HEADER
    data += method(0, 10, 11, struct.pack(">I", 0) + ss(b"PLAIN")
                   + struct.pack(">I", 12) + b"\x00guest\x00guest" + ss(b"en_US"))
    data += method(0, 10, 31, struct.pack(">HIH", 2047, 131072, heartbeat))
    data += method(0, 10, 40, ss(b"/") + ss(b"") + b"\x00")
    data += method(1, 20, 10, ss(b""))
    data += method(1, 50, 10, b"\0\0" + ss(queue) + b"\x00" + struct.pack(">I", 0))
    if consume:
        data += method(1, 60, 20, b"\0\0" + ss(queue) + ss(b"") + b"\x02" + struct.pack(">I", 0))
    return data


class Idle(asyncio.Protocol):
    """An idle consumer: counts bytes (heartbeats) and whether it was closed."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.received = 0
        self.lost = False
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if not self.ready.done() and b"\x00\x3c\x00\x15" in data:  # basic.consume-ok
            self.ready.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed during setup"))


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


async def latency(port: int, rate: int, seconds: float) -> list[float]:
    """Publish timestamped messages at ``rate``; the consumer's receive time minus the
    publish time, in ms."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(open_frames(0, b"bench.latency", True))
    buffer, samples = b"", list[float]()
    period = 1.0 / rate
    count = int(rate * seconds)
    sent = 0
    start = time.perf_counter()

    async def publisher() -> None:
        nonlocal sent
        while sent < count:
            due = start + sent * period
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            body = struct.pack(">d", time.perf_counter())
            writer.write(method(1, 60, 40, b"\0\0" + ss(b"") + ss(b"bench.latency") + b"\x00")
                         + frame(2, 1, struct.pack(">HHQH", 60, 0, len(body), 0))
                         + frame(3, 1, body))
            sent += 1

    while b"\x00\x3c\x00\x15" not in buffer:  # basic.consume-ok: then start publishing
        buffer += await asyncio.wait_for(reader.read(65536), 10)
    buffer = b""
    start = time.perf_counter()
    task = asyncio.create_task(publisher())
    deadline = time.monotonic() + seconds + 10
    while len(samples) < count and time.monotonic() < deadline:
        chunk = await asyncio.wait_for(reader.read(65536), 10)
        now = time.perf_counter()
        buffer += chunk
        pos = 0
        while len(buffer) - pos >= 7:
            kind, _, size = struct.unpack_from(">BHI", buffer, pos)
            if len(buffer) - pos < size + 8:
                break
            if kind == 3 and size == 8:
                samples.append((now - struct.unpack_from(">d", buffer, pos + 7)[0]) * 1000)
            pos += size + 8
        buffer = buffer[pos:]
    await task
    writer.close()
    return samples


async def hold(port: int, pid: int | None, args: argparse.Namespace) -> int:
    await wait_port(port)
    await asyncio.sleep(1)  # the broker's RSS after start-up settles
    loop = asyncio.get_running_loop()
    base = rss_kib(pid) if pid else 0
    idle: list[Idle] = []
    gate = asyncio.Semaphore(200)
    started = time.monotonic()

    async def one() -> None:
        async with gate:
            _, proto = await loop.create_connection(Idle, "127.0.0.1", port)
            assert proto.transport is not None
            proto.transport.write(open_frames(args.heartbeat, b"bench.idle", True))
            idle.append(proto)
            await asyncio.wait_for(proto.ready, 60)

    results = await asyncio.gather(*(one() for _ in range(args.connections)),
                                   return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    print(f"opened {len(idle) - len(failed):,} idle consumer connections in"
          f" {time.monotonic() - started:.1f} s ({len(failed)} failed)", flush=True)

    async def beat() -> None:
        """The clients' heartbeats, spread over each half interval in 50 slices as
        independent clients' would be (not 10,000 writes in one burst)."""
        slices = 50
        while True:
            for index in range(slices):
                await asyncio.sleep(max(args.heartbeat / 2, 0.5) / slices)
                for proto in idle[index::slices]:
                    if proto.transport is not None and not proto.lost:
                        proto.transport.write(HEARTBEAT)

    beating = asyncio.create_task(beat()) if args.heartbeat else None
    # The load generator is not what is measured: its own cyclic GC walking 10,000
    # connections' objects would show up as latency, so it is frozen out of the way.
    gc.collect()
    gc.freeze()
    gc.disable()
    await asyncio.sleep(3)
    held = rss_kib(pid) if pid else 0
    received_before = sum(p.received for p in idle)
    samples = await latency(port, args.rate, args.seconds)
    received_after = sum(p.received for p in idle)
    dropped = sum(p.lost for p in idle)
    if beating is not None:
        beating.cancel()
    for proto in idle:
        if proto.transport is not None:
            proto.transport.close()
    samples.sort()
    expected = int(args.rate * args.seconds)
    if pid:
        per = (held - base) / max(1, len(idle))
        print(f"broker RSS {base:,} KiB -> {held:,} KiB: {per:.1f} KiB per idle"
              " connection (connection + channel + consumer)")
    print(f"idle connections dropped by the broker during the run: {dropped}")
    print(f"heartbeat bytes the idle connections received meanwhile:"
          f" {received_after - received_before:,}")
    if samples:
        p50 = statistics.median(samples)
        p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
        print(f"publish -> deliver over {len(samples):,}/{expected:,} messages at"
              f" {args.rate}/s: p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {samples[-1]:.2f} ms")
    return 0 if samples and len(samples) == expected and not dropped and not failed else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.idle_hold")
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--heartbeat", type=int, default=10, help="seconds; 0 = off")
    parser.add_argument("--rate", type=int, default=200, help="latency probe msgs/s")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--port", type=int, help="a broker already on 127.0.0.1:PORT")
    parser.add_argument("--pid", type=int, help="its PID, for RSS")
    args = parser.parse_args(argv)
    want = args.connections * 2 + 512
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, want), hard))
    broker = None
    port, pid = args.port, args.pid
    if port is None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        folder = Path(tempfile.mkdtemp(prefix="warrenmq-idle-"))
        config = folder / "idle.yaml"
        config.write_text(f"listeners: [{{host: 127.0.0.1, port: {port}}}]\n"
                          f"storage: {{data_dir: {folder / 'data'}}}\n"
                          "management: {enabled: false}\nlogging: {level: warning}\n"
                          f"limits: {{max_handshakes: {args.connections + 100}}}\n")
        broker = subprocess.Popen(
            [sys.executable, "-m", "warrenmq", "serve", "--config", str(config)],
            stdout=subprocess.DEVNULL, stderr=(folder / "broker.log").open("wb"))
        pid = broker.pid
    import uvloop

    try:
        return uvloop.run(hold(port, pid, args))
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait(30)


if __name__ == "__main__":
    sys.exit(main())
