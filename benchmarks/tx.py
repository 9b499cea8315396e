"""The cost of AMQP transactions: publish N messages, tx.commit every B (`python -m benchmarks.tx`).

Role: measure any broker through an `amqp://` URL, so RabbitMQ runs beside WarrenMQ (start a
private node with benchmarks/rabbitmq.sh). For each batch size B it declares a queue, runs
tx.select, then repeats "B pre-encoded basic.publish frames, tx.commit, wait for commit-ok"
until N messages are committed or the time bound passes, and reports messages/s, commits/s
and the commit round trip (p50, p99: from the tx.commit write to its commit-ok). With
`--persistent` (the default) messages are delivery_mode 2 to a durable queue, so every
commit-ok waits for an fsync. The queue is purged before and deleted after each run; every
commit is checked by reading the queue's depth at the end (queue.declare passive).

    benchmarks/rabbitmq.sh start 5673
    .venv/bin/python -m benchmarks.tx --url amqp://guest:guest@127.0.0.1:5673/ \\
        --messages 2000 --batches 1,100
    benchmarks/rabbitmq.sh stop 5673

Must not: start or stop brokers, or run unbounded (every run stops at --max-seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import dataclass

from pamqp import commands

from benchmarks.amqpwire import (
    NO_PROPERTIES,
    PERSISTENT_PROPERTIES,
    AmqpUrl,
    content_prefix,
    publish_payload,
)
from benchmarks.client import AmqpConnection, AmqpError

QUEUE = "bench.tx"


@dataclass
class Result:
    batch: int
    messages: int
    seconds: float
    commit_s: list[float]

    def row(self) -> str:
        rate = self.messages / self.seconds if self.seconds else 0.0
        commits = len(self.commit_s)
        p50 = statistics.median(self.commit_s) * 1000 if commits else 0.0
        p99 = sorted(self.commit_s)[int(commits * 0.99) - 1 if commits > 1 else 0] * 1000 \
            if commits else 0.0
        return (f"| {self.batch} | {self.messages} | {rate:,.0f} | {commits / self.seconds:,.0f}"
                f" | {p50:.2f} | {p99:.2f} |")


async def run_batch(url: AmqpUrl, batch: int, messages: int, size: int, persistent: bool,
                    max_seconds: float) -> Result:
    conn = await AmqpConnection.open(url, 10.0)
    try:
        conn.send(1, commands.Channel.Open())
        await conn.expect(1, commands.Channel.OpenOk)
        conn.send(1, commands.Queue.Declare(queue=QUEUE, durable=persistent))
        await conn.expect(1, commands.Queue.DeclareOk)
        conn.send(1, commands.Queue.Purge(queue=QUEUE))
        await conn.expect(1, commands.Queue.PurgeOk)
        conn.send(1, commands.Tx.Select())
        await conn.expect(1, commands.Tx.SelectOk)
        properties = PERSISTENT_PROPERTIES if persistent else NO_PROPERTIES
        one = content_prefix(1, publish_payload("", QUEUE), size, properties) \
            + b"x" * size + b"\xce"
        frames = one * batch
        commit = commands.Tx.Commit()
        commit_s: list[float] = []
        sent = 0
        start = time.monotonic()
        deadline = start + max_seconds
        while sent < messages and time.monotonic() < deadline:
            conn.write(frames)
            t0 = time.monotonic()
            conn.send(1, commit)
            await asyncio.wait_for(conn.expect(1, commands.Tx.CommitOk),
                                   max(deadline - t0, 0.1))
            commit_s.append(time.monotonic() - t0)
            sent += batch
        seconds = time.monotonic() - start
        conn.send(1, commands.Queue.Declare(queue=QUEUE, durable=persistent, passive=True))
        ok = await conn.expect(1, commands.Queue.DeclareOk)
        if ok.message_count != sent:
            raise AmqpError(f"queue holds {ok.message_count} messages, {sent} were committed")
        conn.send(1, commands.Queue.Delete(queue=QUEUE))
        await conn.expect(1, commands.Queue.DeleteOk)
        return Result(batch, sent, seconds, commit_s)
    finally:
        await conn.close()


async def main_async(args: argparse.Namespace) -> int:
    url = AmqpUrl.parse(args.url)
    batches = [int(b) for b in args.batches.split(",") if b]
    print(f"# {args.url}: {args.messages} messages of {args.size} B,"
          f" {'persistent to a durable queue' if args.persistent else 'transient'}")
    print("| commit every | messages | msgs/s | commits/s | commit p50 ms | commit p99 ms |")
    print("|---|---|---|---|---|---|")
    for batch in batches:
        try:
            result = await run_batch(url, batch, args.messages, args.size, args.persistent,
                                     args.max_seconds)
        except (AmqpError, OSError, TimeoutError) as exc:
            print(f"| {batch} | FAILED: {exc} | | | | |")
            return 1
        print(result.row(), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tx", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument("--messages", type=int, default=2000,
                        help="messages per batch size (default 2000)")
    parser.add_argument("--batches", default="1,100",
                        help="publishes per commit, comma separated (default 1,100)")
    parser.add_argument("--size", type=int, default=32, help="body bytes (default 32)")
    parser.add_argument("--persistent", action=argparse.BooleanOptionalAction, default=True,
                        help="delivery_mode 2 to a durable queue (default on)")
    parser.add_argument("--max-seconds", type=float, default=30.0,
                        help="time bound per batch size (default 30)")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.size < 0 or args.max_seconds <= 0:
        parser.error("--messages must be >= 1, --size >= 0, --max-seconds > 0")
    try:
        return asyncio.run(main_async(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
