"""Publish -> deliver throughput over plain AMQP and over TLS, for any brokers
(`python -m benchmarks.tls_throughput`).

Role: for each ``--target label=host:port[:tls]``, open a consuming connection (no-ack) and
a publishing one, both plain or both TLS (the server certificate is not verified: this
measures cost, not trust), publish --messages messages of --size bytes as fast as the
socket takes them, and time until the consumer has read them all. Reports msgs/s and
MB/s per target, so a broker's TLS cost shows beside its plain number and beside another
broker's. The client is one Python process: its ceiling is part of every number. Only
127.0.0.1; every wait is bounded.

    .venv/bin/python -m benchmarks.tls_throughput --target warrenmq=127.0.0.1:5672 \\
        --target warrenmq-tls=127.0.0.1:5671:tls --target rabbitmq-tls=127.0.0.1:5674:tls
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import struct
import sys
import time

from benchmarks.fuzz import PROTOCOL_HEADER, frame, method, ss


def opening(queue: bytes, consume: bool) -> bytes:
    data = PROTOCOL_HEADER
    data += method(0, 10, 11, struct.pack(">I", 0) + ss(b"PLAIN")
                   + struct.pack(">I", 12) + b"\x00guest\x00guest" + ss(b"en_US"))
    data += method(0, 10, 31, struct.pack(">HIH", 2047, 131072, 0))
    data += method(0, 10, 40, ss(b"/") + ss(b"") + b"\x00")
    data += method(1, 20, 10, ss(b""))
    data += method(1, 50, 10, b"\0\0" + ss(queue) + b"\x08" + struct.pack(">I", 0))
    if consume:  # no-ack consumer
        data += method(1, 60, 20, b"\0\0" + ss(queue) + ss(b"") + b"\x02" + struct.pack(">I", 0))
    return data


async def one(host: str, port: int, tls: bool, messages: int, size: int) -> float:
    context = None
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    queue = f"bench.tls.{port}".encode()
    c_reader, c_writer = await asyncio.open_connection(host, port, ssl=context)
    c_writer.write(opening(queue, True))
    buffer = b""
    while b"\x00\x3c\x00\x15" not in buffer:  # consume-ok
        buffer += await asyncio.wait_for(c_reader.read(65536), 10)
    _, p_writer = await asyncio.open_connection(host, port, ssl=context)
    p_writer.write(opening(queue, False))
    body = b"x" * size
    one_message = (method(1, 60, 40, b"\0\0" + ss(b"") + ss(queue) + b"\x00")
                   + frame(2, 1, struct.pack(">HHQH", 60, 0, size, 0)) + frame(3, 1, body))
    started = time.perf_counter()

    async def publish() -> None:
        for _ in range(messages // 100):
            p_writer.write(one_message * 100)
            await p_writer.drain()

    task = asyncio.create_task(publish())
    seen, buffer = 0, b""
    deadline = time.monotonic() + 120
    while seen < messages // 100 * 100 and time.monotonic() < deadline:
        buffer += await asyncio.wait_for(c_reader.read(1 << 20), 30)
        pos = 0
        while len(buffer) - pos >= 7:
            kind, _, length = struct.unpack_from(">BHI", buffer, pos)
            if len(buffer) - pos < length + 8:
                break
            seen += kind == 3
            pos += length + 8
        buffer = buffer[pos:]
    elapsed = time.perf_counter() - started
    await task
    for writer in (c_writer, p_writer):
        writer.close()
    if seen < messages // 100 * 100:
        raise SystemExit(f"{host}:{port}: only {seen} of {messages} delivered in time")
    return seen / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tls_throughput")
    parser.add_argument("--target", action="append", required=True,
                        help="label=host:port or label=host:port:tls")
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    import uvloop

    for target in args.target:
        label, _, address = target.partition("=")
        host, port, *rest = address.split(":")
        if host not in ("127.0.0.1", "localhost"):
            raise SystemExit("only 127.0.0.1")
        rates = sorted(uvloop.run(one(host, int(port), rest == ["tls"], args.messages,
                                      args.size)) for _ in range(args.repeat))
        median = rates[len(rates) // 2]
        print(f"{label:16} {median:>10,.0f} msgs/s  {median * args.size / 1e6:6.1f} MB/s"
              f"  (median of {args.repeat}: {', '.join(f'{r:,.0f}' for r in rates)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
