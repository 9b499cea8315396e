"""Stream queue benchmark over AMQP 0-9-1, against any broker URL (WarrenMQ or RabbitMQ).

    python -m benchmarks.streams --url amqp://guest:guest@127.0.0.1:5672/ \
        --messages 100000 --body 100 --consumers 3 --prefetch 1000

Three measurements on one fresh stream (``x-queue-type: stream``, deleted at the end):

1. publish with confirms: one connection pipelines pre-encoded basic.publish frames with
   at most ``--window`` unconfirmed, until every message is confirmed;
2. consume from ``first``: one consumer (``x-stream-offset: first``, prefetch
   ``--prefetch``, acks with ``multiple`` every half prefetch) reads the whole stream;
3. ``--consumers`` consumers at once, each in its own process, each reading it all.

Rates are messages per second; with ``--broker-pid`` also the broker's CPU time per
message in each phase (for RabbitMQ, the beam.smp PID: ``benchmarks/rabbitmq.sh pid``).
The client is the repo's pipelining load generator (benchmarks/client.py); its ceiling
on this machine is what ``benchmarks.run`` reports as ``ceiling``. Every phase is
bounded by ``--limit-s``. Must not import warrenmq.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

from pamqp import commands

from benchmarks.amqpwire import AmqpUrl, MessageEncoder, basic_ack_frame, publish_payload
from benchmarks.client import AmqpConnection
from benchmarks.measure import broker_cpu


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.streams", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/")
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--body", type=int, default=100, help="body bytes (default 100)")
    p.add_argument("--consumers", type=int, default=3)
    p.add_argument("--prefetch", type=int, default=1000)
    p.add_argument("--window", type=int, default=5000, help="unconfirmed publishes at most")
    p.add_argument("--limit-s", type=float, default=60.0, help="bound on each phase")
    p.add_argument("--queue", help="stream name (default: bench-stream-<pid>)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--only", choices=("publish", "consume"),
                   help="run only this phase on --queue and keep the stream (the publish"
                        " declares it; benchmarks.callgrind measures reads this way)")
    p.add_argument("--broker-pid", type=int, help="also report the broker's CPU time per"
                   " message (utime+stime from /proc): steadier than rates on a busy host")
    args = p.parse_args(argv)
    if min(args.messages, args.body, args.consumers, args.prefetch, args.window) < 1:
        p.error("sizes must be at least 1")
    return args


async def _connect(url: str, limit_s: float) -> AmqpConnection:
    conn = await AmqpConnection.open(AmqpUrl.parse(url), limit_s)
    await conn.open_channel(1)
    return conn


async def publish(args: argparse.Namespace, queue: str) -> float:
    conn = await _connect(args.url, args.limit_s)
    try:
        await conn.rpc(1, commands.Queue.Declare(queue=queue, durable=True, arguments={
            "x-queue-type": "stream"}), commands.Queue.DeclareOk)
        await conn.rpc(1, commands.Confirm.Select(), commands.Confirm.SelectOk)
        encoder = MessageEncoder(1, "", [queue], args.body, 1, conn.frame_max,
                                 payloads=[publish_payload("", queue)])
        deadline = time.monotonic() + args.limit_s
        started = time.monotonic()
        sent = 0
        batch = min(200, args.window)  # never more unconfirmed than the window
        while sent < args.messages:
            count = min(batch, args.messages - sent)
            await conn.wait_confirmed(sent + count - args.window, deadline)
            conn.write(encoder.batch(sent, count, time.monotonic_ns()))
            sent += count
            await conn.drain(deadline)
        await conn.wait_confirmed(args.messages, deadline)
        elapsed = time.monotonic() - started
        if conn.nacked:
            raise RuntimeError(f"{conn.nacked} publishes nacked")
        return float(args.messages) / elapsed
    finally:
        await conn.close()


class Counter:
    def __init__(self, conn: AmqpConnection, total: int, ack_every: int) -> None:
        self.conn = conn
        self.total = total
        self.ack_every = ack_every
        self.count = 0
        self.done = asyncio.get_running_loop().create_future()

    def on_message(self, view: memoryview, start: int, end: int, tag: int, now_ns: int
                   ) -> None:
        self.count += 1
        if self.count % self.ack_every == 0 or self.count == self.total:
            self.conn.write(basic_ack_frame(1, tag, True))
        if self.count >= self.total and not self.done.done():
            self.done.set_result(None)


async def consume(url: str, queue: str, total: int, prefetch: int, limit_s: float) -> float:
    conn = await _connect(url, limit_s)
    try:
        await conn.rpc(1, commands.Basic.Qos(prefetch_count=prefetch), commands.Basic.QosOk)
        counter = Counter(conn, total, max(1, prefetch // 2))
        conn.handler = counter
        started = time.monotonic()
        await conn.rpc(1, commands.Basic.Consume(queue=queue, consumer_tag="bench",
                                                 arguments={"x-stream-offset": "first"}),
                       commands.Basic.ConsumeOk)
        try:
            await asyncio.wait_for(counter.done, limit_s)
        except TimeoutError:
            raise RuntimeError(f"consumer got {counter.count}/{total} in {limit_s} s") from None
        return total / (time.monotonic() - started)
    finally:
        await conn.close()


def _consumer_process(pipe: Connection, url: str, queue: str, total: int, prefetch: int,
                      limit_s: float, start_at: float) -> None:
    try:
        time.sleep(max(0.0, start_at - time.time()))
        pipe.send(("ok", asyncio.run(consume(url, queue, total, prefetch, limit_s))))
    except Exception as exc:  # reported by the parent
        pipe.send(("error", f"{type(exc).__name__}: {exc}"))


def consume_many(args: argparse.Namespace, queue: str) -> tuple[float, float]:
    """(aggregate msgs/s, slowest consumer's msgs/s) with every consumer in a process."""
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 2.0
    pipes, procs = [], []
    for _ in range(args.consumers):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_consumer_process, args=(
            child, args.url, queue, args.messages, args.prefetch, args.limit_s, start_at))
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    rates = []
    try:
        for parent in pipes:
            if not parent.poll(args.limit_s + 30):
                raise RuntimeError("a consumer process did not report")
            status, value = parent.recv()
            if status != "ok":
                raise RuntimeError(value)
            rates.append(float(value))
    finally:
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
    slowest = min(rates)
    return slowest * len(rates), slowest


async def delete(url: str, queue: str) -> None:
    conn = await _connect(url, 10)
    try:
        await conn.rpc(1, commands.Queue.Delete(queue=queue), commands.Queue.DeleteOk)
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    queue = args.queue or f"bench-stream-{os.getpid()}"
    result: dict[str, Any] = {"url_port": AmqpUrl.parse(args.url).port,
                              "messages": args.messages, "body": args.body,
                              "consumers": args.consumers, "prefetch": args.prefetch}
    cpu = broker_cpu(args.broker_pid)

    def spent(key: str, deliveries: int) -> None:
        """Broker CPU µs per message for the phase just run (with --broker-pid)."""
        nonlocal cpu
        if args.broker_pid is not None:
            now = broker_cpu(args.broker_pid)
            result[key] = round((now - cpu) * 1e6 / deliveries, 1)
            cpu = now

    if args.only is not None:
        if args.queue is None:
            print("benchmarks.streams: --only needs --queue", file=sys.stderr)
            return 2
        try:
            if args.only == "publish":
                rate = asyncio.run(publish(args, queue))
            else:
                rate = asyncio.run(consume(args.url, queue, args.messages, args.prefetch,
                                           args.limit_s))
        except (RuntimeError, OSError, TimeoutError) as exc:
            print(f"benchmarks.streams: {exc}", file=sys.stderr)
            return 1
        print(json.dumps({"ok": True, "phase": args.only, "msgs_s": round(rate)}))
        return 0
    try:
        result["publish_confirm_msgs_s"] = round(asyncio.run(publish(args, queue)))
        spent("publish_broker_cpu_us_per_msg", args.messages)
        result["consume_first_msgs_s"] = round(asyncio.run(consume(
            args.url, queue, args.messages, args.prefetch, args.limit_s)))
        spent("consume_broker_cpu_us_per_msg", args.messages)
        total, slowest = consume_many(args, queue)
        result["consumers_total_msgs_s"] = round(total)
        result["consumers_slowest_msgs_s"] = round(slowest)
        spent("consumers_broker_cpu_us_per_delivery", args.messages * args.consumers)
    except (RuntimeError, OSError, TimeoutError) as exc:
        print(f"benchmarks.streams: {exc}", file=sys.stderr)
        return 1
    finally:
        try:
            asyncio.run(delete(args.url, queue))
        except Exception as exc:  # the result stands; say the stream was left behind
            print(f"benchmarks.streams: could not delete {queue}: {exc}", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:<28}{value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
