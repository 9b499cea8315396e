"""Structure-aware fuzzing of a live broker (`python -m benchmarks.fuzz`).

Role: generate AMQP 0-9-1 inputs that are almost right — valid frames with one field
mutated, truncated and oversized frames, frame types that are wrong for the state, random
bytes after a valid handshake, content interleaved across channels — send each on its
own connection right after a pipelined handshake, classify the broker's answer, and
check that a well-behaved connection beside the fuzzer publishes and consumes with
nothing lost. Reports inputs/s and outcomes; exits 1 on any violation: a 541 or a close
code outside what the input's kind allows, a socket dropped without connection.close,
a traceback or ``connection_internal_error`` in the broker's log, a lost or duplicated
message on the bystander connection, or a broker that stopped answering.

The generator (``Generator``) is also what the test suite's fast slice uses
(tests/integration/test_fuzz.py), so the slice and the full run test the same inputs.

    .venv/bin/python -m benchmarks.fuzz --inputs 1000000 --concurrency 200
    (starts its own broker as a subprocess on a free port; --url to use a running one)

It must not run against anything but 127.0.0.1, and every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_MAX = 131072
#: close codes a protocol error may give (connection level) and channel-level ones
CONNECTION_CODES = frozenset({501, 502, 503, 504, 505, 530, 540})
CHANNEL_CODES = frozenset({403, 404, 405, 406})


def ss(value: bytes) -> bytes:
    return bytes([len(value)]) + value


def frame(kind: int, channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + b"\xce"


def method(channel: int, class_id: int, method_id: int, args: bytes = b"") -> bytes:
    return frame(1, channel, struct.pack(">HH", class_id, method_id) + args)


def handshake(channels: int = 2) -> bytes:
    """Protocol header to channel.open, pipelined (the broker handles them in order)."""
    data = PROTOCOL_HEADER
    data += method(0, 10, 11, struct.pack(">I", 0) + ss(b"PLAIN")
                   + struct.pack(">I", 12) + b"\x00guest\x00guest" + ss(b"en_US"))
    data += method(0, 10, 31, struct.pack(">HIH", 2047, FRAME_MAX, 0))
    data += method(0, 10, 40, ss(b"/") + ss(b"") + b"\x00")
    for number in range(1, channels + 1):
        data += method(number, 20, 10, ss(b""))
    return data


def _table(rng: random.Random) -> bytes:
    entries = b""
    for _ in range(rng.randint(0, 3)):
        key = ss(rng.choice([b"x-message-ttl", b"x-max-length", b"k", b"x-queue-type"]))
        tag = rng.choice([b"I", b"S", b"t", b"l", b"F", b"A", b"T"])
        value = {b"I": struct.pack(">i", rng.randint(-5, 10**6)),
                 b"S": struct.pack(">I", 7) + b"classic", b"t": b"\x01",
                 b"l": struct.pack(">q", rng.randint(-5, 10**9)), b"F": struct.pack(">I", 0),
                 b"A": struct.pack(">I", 0),
                 b"T": struct.pack(">Q", rng.getrandbits(64))}[tag]
        entries += key + tag + value
    return struct.pack(">I", len(entries)) + entries


def _publish(rng: random.Random, channel: int, body: bytes) -> bytes:
    flags, props = 0, b""
    if rng.random() < 0.5:
        flags |= 1 << 12
        props += bytes([rng.choice([1, 2])])
    if rng.random() < 0.3:
        flags |= 1 << 8
        props += ss(str(rng.randint(0, 10**6)).encode())
    return (method(channel, 60, 40, b"\0\0" + ss(b"") + ss(b"fuzz-q") + b"\x00")
            + frame(2, channel, struct.pack(">HHQH", 60, 0, len(body), flags) + props)
            + frame(3, channel, body))


def valid_frames(rng: random.Random) -> list[bytes]:
    """Frames a client may send on channels 1-2 of an open connection."""
    ch = rng.choice([1, 2])
    return [
        method(ch, 50, 10, b"\0\0" + ss(b"fuzz-q") + b"\x08" + _table(rng)),  # auto-delete
        method(ch, 40, 10, b"\0\0" + ss(b"fuzz-x") + ss(b"topic") + b"\x00" + _table(rng)),
        method(ch, 50, 20, b"\0\0" + ss(b"fuzz-q") + ss(b"amq.topic") + ss(b"a.#") + b"\x00"
               + _table(rng)),
        method(ch, 60, 10, struct.pack(">IHB", 0, rng.randint(0, 100), 0)),
        method(ch, 60, 20, b"\0\0" + ss(b"fuzz-q") + ss(b"") + b"\x00" + _table(rng)),
        method(ch, 60, 80, struct.pack(">QB", rng.randint(0, 3), rng.randint(0, 1))),
        method(ch, 85, 10, b"\x00"),
        method(ch, 20, 20, b"\x01"),
        _publish(rng, ch, rng.randbytes(rng.randint(0, 40))),
        frame(8, 0, b""),
    ]


@dataclass(frozen=True)
class Case:
    kind: str
    data: bytes
    #: connection.close codes this kind of input may get (None: any protocol error)
    allowed: frozenset[int] | None = None
    may_stay_open: bool = True


def _mutate(rng: random.Random) -> Case:
    data = bytearray(rng.choice(valid_frames(rng)))
    for _ in range(rng.randint(1, 3)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return Case("mutated", bytes(data))


def _field(rng: random.Random) -> Case:
    """One header field of a valid frame changed: type, channel or size."""
    data = bytearray(rng.choice(valid_frames(rng)))
    which = rng.randrange(3)
    if which == 0:
        data[0] = rng.choice([0, 4, 5, 7, 9, 255, 1, 2, 3, 8])
    elif which == 1:
        data[1:3] = struct.pack(">H", rng.choice([0, 3, 7, 2048, 65535]))
    else:
        size = struct.unpack_from(">I", data, 3)[0]
        data[3:7] = struct.pack(">I", max(0, size + rng.choice([-3, -1, 1, 2, 100])))
    return Case("field", bytes(data))


def _truncated(rng: random.Random) -> Case:
    data = rng.choice(valid_frames(rng))
    return Case("truncated", data[: rng.randint(1, len(data) - 1)], may_stay_open=True)


def _oversized(rng: random.Random) -> Case:
    size = FRAME_MAX - 8 + rng.randint(1, 10**6)
    return Case("oversized", struct.pack(">BHI", rng.choice([1, 2, 3]), 1, size)
                + rng.randbytes(16), frozenset({501}), may_stay_open=False)


def _wrong_state(rng: random.Random) -> Case:
    body = rng.randbytes(rng.randint(1, 8))
    options = [
        (frame(2, 1, struct.pack(">HHQH", 60, 0, 5, 0)), 505),  # header without publish
        (frame(3, 1, body), 505),  # body without publish
        (frame(3, 0, body), 505),  # content on channel 0
        (frame(8, 1, b""), 505),  # heartbeat on a channel
        (frame(8, 0, body), 501),  # heartbeat with a payload
        (method(9, 50, 10, b"\0\0" + ss(b"q") + b"\x00" + struct.pack(">I", 0)), 504),
        (method(1, 20, 10, ss(b"")), 504),  # second channel.open
        (method(1, 60, 40, b"\0\0" + ss(b"") + ss(b"q") + b"\x00") + method(1, 60, 10,
                                                                         b"\0" * 7), 505),
        (method(0, 10, 11, b"\0" * 4), 505),  # start-ok when open: an error either way
    ]
    data, code = rng.choice(options)
    allowed = frozenset({code, 502, 503}) if code == 505 and data[0] == 1 else frozenset({code})
    return Case("wrong_state", data, allowed, may_stay_open=False)


def _random_bytes(rng: random.Random) -> Case:
    return Case("random", rng.randbytes(rng.randint(1, 64)))


def _interleaved(rng: random.Random) -> Case:
    """Content on two channels at once (legal), then maybe a method inside content."""
    a = _frames(_publish(rng, 1, rng.randbytes(5)))
    b = _frames(_publish(rng, 2, rng.randbytes(5)))
    merged: list[bytes] = []
    while a or b:  # each channel's frames in order, the channels shuffled together
        source = a if (a and (not b or rng.random() < 0.5)) else b
        merged.append(source.pop(0))
    data = b"".join(merged)
    if rng.random() < 0.5:
        return Case("interleaved_ok", data)
    bad = _publish(rng, 1, b"xy")
    header_end = bad.index(b"\xce") + 1
    return Case("interleaved_bad", data + bad[:header_end] + method(1, 60, 10, b"\0" * 7),
                frozenset({505}), may_stay_open=False)


def _frames(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        size = struct.unpack_from(">I", data, pos + 3)[0]
        out.append(data[pos:pos + size + 8])
        pos += size + 8
    return out


KINDS: list[tuple[float, Callable[[random.Random], Case]]] = [
    (0.25, _mutate), (0.15, _field), (0.1, _truncated), (0.1, _oversized),
    (0.15, _wrong_state), (0.15, _random_bytes), (0.1, _interleaved)]


class Generator:
    """Seeded: the same seed gives the same inputs."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.weights = [w for w, _ in KINDS]
        self.makers = [m for _, m in KINDS]

    def next(self) -> Case:
        maker = self.rng.choices(self.makers, self.weights)[0]
        return maker(self.rng)


# ----------------------------------------------------------------------------- driving


@dataclass
class Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    inputs: int = 0


def _closes(buffer: bytes) -> tuple[int | None, bool]:
    """(connection.close code, connection.close-ok seen) in the frames of ``buffer``."""
    pos = 0
    while len(buffer) - pos >= 7:
        kind, _, size = struct.unpack_from(">BHI", buffer, pos)
        payload = buffer[pos + 7: pos + 7 + size]
        if len(payload) < size:
            break
        if kind == 1 and payload[:4] == b"\x00\x0a\x00\x32":
            return struct.unpack_from(">H", payload, 4)[0], False
        if kind == 1 and payload[:4] == b"\x00\x0a\x00\x33":
            return None, True
        pos += size + 8
    return None, False


async def _answer(reader: asyncio.StreamReader, case: Case, quiet: float
                  ) -> tuple[bytes, bool]:
    """Bytes the broker sent until it closed, closed the socket (eof) or went quiet."""
    buffer, eof = b"", False
    # an input that must be answered gets time for it on a loaded machine; one that
    # may leave the connection open is done after ``quiet`` seconds of silence
    deadline = time.monotonic() + (quiet if case.may_stay_open else 10.0)
    while _closes(buffer) == (None, False):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            chunk = await asyncio.wait_for(reader.read(65536), remaining)
        except TimeoutError:
            break
        except ConnectionError:
            return buffer, True
        if not chunk:
            return buffer, True
        buffer += chunk
        if case.may_stay_open:  # the quiet period counts from the last bytes seen
            deadline = time.monotonic() + quiet
    return buffer, eof


def _classify(case: Case, buffer: bytes, eof: bool, tally: Tally) -> bool:
    """Record the outcome; True when the broker sent connection.close (answer close-ok)."""
    code, close_ok = _closes(buffer)
    if code is not None:
        tally.outcomes[f"{case.kind}:{code}"] += 1
        if code == 541 or (case.allowed is not None and code not in case.allowed) or (
                case.allowed is None and code not in CONNECTION_CODES):
            tally.violations.append(f"{case.kind}: close {code} for {case.data.hex()}")
        return True
    if close_ok:
        tally.outcomes[f"{case.kind}:close-ok"] += 1  # the input made a valid close
    elif eof:
        tally.outcomes[f"{case.kind}:eof"] += 1
        tally.violations.append(f"{case.kind}: socket closed without connection.close"
                                f" for {case.data.hex()}")
    else:
        tally.outcomes[f"{case.kind}:open"] += 1
        if not case.may_stay_open:
            tally.violations.append(f"{case.kind}: no answer for {case.data.hex()}")
    return False


async def run_case(port: int, case: Case, tally: Tally, prefix: bytes,
                   quiet: float) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(prefix + case.data)
        buffer, eof = await _answer(reader, case, quiet)
        if _classify(case, buffer, eof, tally):
            writer.write(method(0, 10, 51))  # close-ok
    finally:
        tally.inputs += 1
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def fuzz(port: int, inputs: int, concurrency: int, seed: int, quiet: float,
               progress: Callable[[Tally], None] | None = None) -> Tally:
    generator = Generator(seed)
    tally = Tally()
    prefix = handshake()
    queue: asyncio.Queue[Case | None] = asyncio.Queue(maxsize=concurrency * 4)

    async def worker() -> None:
        while (case := await queue.get()) is not None:
            await run_case(port, case, tally, prefix, quiet)

    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    for index in range(inputs):
        await queue.put(generator.next())
        if progress is not None and index % 10000 == 0:
            progress(tally)
    for _ in workers:
        await queue.put(None)
    await asyncio.gather(*workers)
    return tally


async def bystander(url: str, stop: asyncio.Event) -> tuple[int, int, int]:
    """Publish with confirms and consume on one aio-pika connection until ``stop``;
    returns (published, consumed, duplicates)."""
    import aio_pika

    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue("fuzz-bystander", auto_delete=True)
        seen: set[int] = set()
        duplicates = 0
        got_all = asyncio.Event()
        published = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal duplicates
            number = int(message.body)
            duplicates += number in seen
            seen.add(number)
            await message.ack()
            if stop.is_set() and len(seen) >= published:
                got_all.set()

        await queue.consume(on_message)
        while not stop.is_set():
            await channel.default_exchange.publish(aio_pika.Message(str(published).encode()),
                                                   routing_key="fuzz-bystander")
            published += 1
            await asyncio.sleep(0.005)
        if len(seen) < published:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(got_all.wait(), 10)
        return published, len(seen), duplicates


# ----------------------------------------------------------------------------- command line


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_port(port: int, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise SystemExit(f"fuzz: the broker did not listen on 127.0.0.1:{port} in {seconds}s")


@dataclass
class Run:
    tally: Tally
    elapsed: float
    bystander: tuple[int, int, int]


async def drive(port: int, args: argparse.Namespace) -> Run:
    await wait_port(port)
    stop = asyncio.Event()
    side = asyncio.create_task(bystander(f"amqp://guest:guest@127.0.0.1:{port}/", stop))
    started = time.monotonic()

    def progress(tally: Tally) -> None:
        if tally.inputs:
            rate = tally.inputs / (time.monotonic() - started)
            print(f"fuzz: {tally.inputs:,} inputs, {rate:,.0f}/s,"
                  f" {len(tally.violations)} violations", file=sys.stderr, flush=True)

    tally = await fuzz(port, args.inputs, args.concurrency, args.seed, args.quiet, progress)
    elapsed = time.monotonic() - started
    stop.set()
    return Run(tally, elapsed, await asyncio.wait_for(side, 30))


def start_broker(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    folder = Path(tempfile.mkdtemp(prefix="warrenmq-fuzz-"))
    config = folder / "fuzz.yaml"
    config.write_text(f"listeners: [{{host: 127.0.0.1, port: {port}}}]\n"
                      f"storage: {{data_dir: {folder / 'data'}}}\n"
                      "management: {enabled: false}\nlogging: {format: json}\n")
    with open(log_path, "wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "warrenmq", "serve", "--config", str(config)],
            stdout=log_file, stderr=subprocess.STDOUT)


def report(run: Run, args: argparse.Namespace, log_text: str, log_path: Path) -> int:
    tally = run.tally
    published, consumed, duplicates = run.bystander
    problems = list(tally.violations)
    for marker in ("Traceback", "connection_internal_error", "541 INTERNAL_ERROR"):
        if marker in log_text:
            problems.append(f"broker log contains {marker!r} ({log_path})")
    if consumed != published or duplicates:
        problems.append(f"bystander: published {published}, consumed {consumed},"
                        f" duplicates {duplicates}")
    print(f"inputs {tally.inputs:,} in {run.elapsed:.1f} s:"
          f" {tally.inputs / run.elapsed:,.0f} inputs/s (concurrency {args.concurrency},"
          f" seed {args.seed})")
    for key, count in sorted(tally.outcomes.items()):
        print(f"  {key:28} {count:>10,}")
    print(f"bystander: published {published:,}, consumed {consumed:,},"
          f" duplicates {duplicates}")
    for problem in problems[:20]:
        print(f"VIOLATION {problem}")
    print("result:", "FAILED" if problems else "ok")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fuzz",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--seed", type=int, default=int.from_bytes(os.urandom(4), "big"))
    parser.add_argument("--quiet", type=float, default=0.3,
                        help="seconds of silence after which an input counts as 'open'")
    parser.add_argument("--port", type=int, help="fuzz a broker already on 127.0.0.1:PORT")
    parser.add_argument("--log", help="where the started broker's log goes")
    args = parser.parse_args(argv)
    import uvloop

    log_path = Path(args.log or tempfile.mkdtemp(prefix="warrenmq-fuzz-log-")) / "broker.log" \
        if not args.log else Path(args.log)
    port, broker = args.port, None
    if port is None:
        port = _free_port()
        broker = start_broker(port, log_path)
    try:
        run = uvloop.run(drive(port, args))
    except KeyboardInterrupt:
        return 130
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait(30)
    log_text = log_path.read_text(errors="replace") if broker is not None else ""
    return report(run, args, log_text, log_path)


if __name__ == "__main__":
    sys.exit(main())
