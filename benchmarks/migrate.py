"""How long ``warrenmq migrate`` takes: fill a WarrenMQ, migrate into a private RabbitMQ.

    python -m benchmarks.migrate [--messages N] [--queues Q] [--size BYTES]
                                 [--nodes 1|3] [--queue-type quorum|classic]

Starts WarrenMQ (``warrenmq serve`` on free loopback ports, a temporary data directory)
and a RabbitMQ of ``--nodes`` nodes (``benchmarks/rabbitcluster.py``: Debian's
rabbitmq-server, its own names, ports, folders and epmd), fills ``--queues`` durable
queues with ``--messages`` persistent messages in all through a pipelined raw client
with publisher confirms, runs ``warrenmq migrate`` as a process and reports its wall
time and the rate (below a million messages, also the time a million would take at
that rate: a linear extrapolation, said as such). Tears everything down by PID. A
million messages take about 1.5 minutes to migrate on an idle 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.rabbitcluster import RabbitCluster, free_port
from warrenmq.protocol.methods import method_class
from warrenmq.tools.wire import Client, Url

PERSISTENT = b"\x10\x00\x02"  # delivery-mode 2 only


async def fill(url: str, queues: list[str], count: int, size: int) -> float:
    """Publish ``count`` messages round-robin over ``queues``; returns msgs/s."""
    client = await Client.connect(Url.parse(url), 10)
    confirmed = 0
    done = asyncio.Event()
    target = 0

    def on_confirm(tag: int, multiple: bool, ack: bool) -> None:
        nonlocal confirmed
        assert ack, "WarrenMQ nacked a publish while filling"
        confirmed = tag if multiple else confirmed + 1
        if confirmed >= target:
            done.set()
    client.on_confirm = on_confirm
    for name in queues:
        await client.call(method_class("QueueDeclare")(0, name, False, True, False, False,
                                                       False, {}))
    await client.call(method_class("ConfirmSelect")(False))
    body = b"m" * size
    started = time.monotonic()
    sent = 0
    while sent < count:
        batch = min(2000, count - sent)
        for i in range(batch):
            client.publish(queues[(sent + i) % len(queues)], PERSISTENT, body)
        sent += batch
        target = sent
        done.clear()
        await client.drain()
        await asyncio.wait_for(done.wait(), 60)
    rate = count / (time.monotonic() - started)
    await client.close()
    return rate


async def main_async(args: argparse.Namespace, workdir: Path) -> int:
    port, management = free_port(), free_port()
    source = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "warrenmq", "serve", "--host", "127.0.0.1", "--port",
        str(port), "--management-port", str(management), "--data-dir", str(workdir / "data"),
        stdout=subprocess.DEVNULL, stderr=(workdir / "warrenmq.log").open("wb"))
    cluster = RabbitCluster(workdir / "rabbit", args.nodes)
    try:
        started = time.monotonic()
        await asyncio.to_thread(cluster.start)
        print(f"RabbitMQ: {args.nodes} node(s) up in {time.monotonic() - started:.0f} s")
        url = f"amqp://guest:guest@127.0.0.1:{port}/"
        queues = [f"bench.{i}" for i in range(args.queues)]
        rate = await fill(url, queues, args.messages, args.size)
        print(f"filled WarrenMQ: {args.messages} x {args.size} B persistent messages in"
              f" {len(queues)} queue(s), {rate:,.0f} msg/s")
        node = cluster.nodes[0]
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "warrenmq", "migrate", "--from", url,
            "--from-api", f"http://127.0.0.1:{management}", "--to", node.url,
            "--to-api", node.api, "--queue-type", args.queue_type,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await proc.communicate()
        seconds = time.monotonic() - started
        if proc.returncode != 0:
            print(out.decode() + err.decode(), file=sys.stderr)
            return 1
        moved_rate = args.messages / seconds
        print(f"warrenmq migrate: {args.messages} messages into {args.nodes} node(s)"
              f" ({args.queue_type} queues) in {seconds:.1f} s: {moved_rate:,.0f} msg/s"
              " (whole command: definitions, passes, final check)")
        if args.messages < 1_000_000:
            print(f"a million messages at this rate: ~{1_000_000 / moved_rate / 60:.1f} min"
                  " (linear extrapolation from this run, not a measurement of a million)")
        return 0
    finally:
        await asyncio.to_thread(cluster.stop)
        if source.returncode is None:
            source.terminate()
            await source.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.migrate",
                                     description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--queues", type=int, default=4)
    parser.add_argument("--size", type=int, default=200, help="body bytes (default 200)")
    parser.add_argument("--nodes", type=int, choices=(1, 3), default=3)
    parser.add_argument("--queue-type", choices=("quorum", "classic"), default="quorum")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="wmq-migrate-bench-"))
    try:
        return asyncio.run(main_async(args, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
