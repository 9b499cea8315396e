"""A fast publisher and a slow consumer: broker memory stays bounded because the memory
alarm blocks the publisher (`python -m benchmarks.slow_consumer`).

Role: start a broker subprocess with ``memory_high_watermark_bytes`` (--watermark), publish
--size-byte messages as fast as the socket takes them on one connection (raw pipelined
frames, connection.blocked capability on) while one consumer acks --consume-rate msgs/s,
and sample the broker's RSS every second for --seconds. Reports RSS min/max/last, the
ready bytes the alarm is measured on (the watermark), how often the publisher was
blocked, and the messages published and consumed. Only 127.0.0.1; bounded in time.

    .venv/bin/python -m benchmarks.slow_consumer --seconds 300 --watermark 64MiB
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.fuzz import PROTOCOL_HEADER, frame, method, ss, wait_port
from warrenmq.config.units import parse_size


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def opening(queue: bytes, prefetch: int, consume: bool) -> bytes:
    capabilities = ss(b"connection.blocked") + b"t\x01"
    props = ss(b"capabilities") + b"F" + struct.pack(">I", len(capabilities)) + capabilities
    client_properties = struct.pack(">I", len(props)) + props
    data = PROTOCOL_HEADER
    data += method(0, 10, 11, client_properties + ss(b"PLAIN")
                   + struct.pack(">I", 12) + b"\x00guest\x00guest" + ss(b"en_US"))
    data += method(0, 10, 31, struct.pack(">HIH", 2047, 131072, 0))
    data += method(0, 10, 40, ss(b"/") + ss(b"") + b"\x00")
    data += method(1, 20, 10, ss(b""))
    data += method(1, 50, 10, b"\0\0" + ss(queue) + b"\x00" + struct.pack(">I", 0))
    if consume:
        data += method(1, 60, 10, struct.pack(">IHB", 0, prefetch, 0))
        data += method(1, 60, 20, b"\0\0" + ss(queue) + ss(b"") + b"\x00" + struct.pack(">I", 0))
    return data


async def consumer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, end: float,
                   interval: float, stats: dict[str, int]) -> None:
    """Ack one delivery every ``interval`` seconds until ``end``."""
    buffer = b""
    while time.monotonic() < end:
        try:
            buffer += await asyncio.wait_for(reader.read(65536), 1)
        except TimeoutError:
            continue
        pos = 0
        while len(buffer) - pos >= 7:
            kind, _, size = struct.unpack_from(">BHI", buffer, pos)
            if len(buffer) - pos < size + 8:
                break
            if kind == 1 and buffer[pos + 7: pos + 11] == b"\x00\x3c\x00\x3c":
                tag = struct.unpack_from(">Q", buffer, pos + 12 + buffer[pos + 11])[0]
                await asyncio.sleep(interval)
                writer.write(method(1, 60, 80, struct.pack(">QB", tag, 0)))
                stats["consumed"] += 1
            pos += size + 8
        buffer = buffer[pos:]


async def publisher(writer: asyncio.StreamWriter, message: bytes, end: float,
                    stats: dict[str, int]) -> None:
    """Write 16 messages at a time for as long as the socket takes them."""
    while time.monotonic() < end:
        writer.write(message * 16)
        stats["published"] += 16
        try:  # TCP back-pressure: a blocked publisher's socket is no longer read
            await asyncio.wait_for(writer.drain(), max(0.1, end - time.monotonic()))
        except TimeoutError:
            return


async def run(port: int, pid: int, args: argparse.Namespace) -> int:
    await wait_port(port)
    queue = b"bench.slow"
    pub_reader, pub_writer = await asyncio.open_connection("127.0.0.1", port)
    pub_writer.write(opening(queue, 0, False))
    con_reader, con_writer = await asyncio.open_connection("127.0.0.1", port)
    con_writer.write(opening(queue, args.prefetch, True))
    body = os.urandom(args.size)
    message = (method(1, 60, 40, b"\0\0" + ss(b"") + ss(queue) + b"\x00")
               + frame(2, 1, struct.pack(">HHQH", 60, 0, len(body), 0)) + frame(3, 1, body))
    stats = {"published": 0, "consumed": 0, "blocked": 0, "unblocked": 0}
    end = time.monotonic() + args.seconds

    async def publish() -> None:
        await publisher(pub_writer, message, end, stats)

    async def watch_publisher() -> None:
        while time.monotonic() < end:
            try:
                data = await asyncio.wait_for(pub_reader.read(65536), 1)
            except TimeoutError:
                continue
            if not data:
                return
            stats["blocked"] += data.count(b"\x00\x0a\x00\x3c")
            stats["unblocked"] += data.count(b"\x00\x0a\x00\x3d")

    async def consume() -> None:
        await consumer(con_reader, con_writer, end, 1.0 / args.consume_rate, stats)

    samples: list[float] = []

    async def sample() -> None:
        while time.monotonic() < end:
            samples.append(rss_mib(pid))
            await asyncio.sleep(1)

    await asyncio.gather(publish(), watch_publisher(), consume(), sample(),
                         return_exceptions=True)
    for writer in (pub_writer, con_writer):
        writer.close()
    print(f"{args.seconds:.0f} s, {args.size} B messages, watermark"
          f" {args.watermark}: published {stats['published']:,} (sent to the socket),"
          f" consumed {stats['consumed']:,} at ~{args.consume_rate}/s")
    print(f"publisher blocked {stats['blocked']} times, unblocked"
          f" {stats['unblocked']} times")
    if samples:
        print(f"broker RSS MiB: start {samples[0]:.1f}, max {max(samples):.1f},"
              f" last {samples[-1]:.1f} over {len(samples)} samples")
        step = max(1, len(samples) // 10)
        print("  every", step, "s:", " ".join(f"{s:.0f}" for s in samples[::step]))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.slow_consumer")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--watermark", default="64MiB")
    parser.add_argument("--consume-rate", type=int, default=200)
    parser.add_argument("--prefetch", type=int, default=10)
    args = parser.parse_args(argv)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    folder = Path(tempfile.mkdtemp(prefix="warrenmq-slow-"))
    config = folder / "slow.yaml"
    config.write_text(f"listeners: [{{host: 127.0.0.1, port: {port}}}]\n"
                      f"storage: {{data_dir: {folder / 'data'}}}\n"
                      "management: {enabled: false}\nlogging: {level: warning}\n"
                      f"memory_high_watermark_bytes: {parse_size(args.watermark)}\n")
    broker = subprocess.Popen(
        [sys.executable, "-m", "warrenmq", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=(folder / "broker.log").open("wb"))
    import uvloop

    try:
        return uvloop.run(run(port, broker.pid, args))
    finally:
        broker.terminate()
        broker.wait(30)


if __name__ == "__main__":
    sys.exit(main())
