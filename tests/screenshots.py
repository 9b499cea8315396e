"""``make screenshots``: the dashboard's tabs as PNGs in docs/dashboard/, for the README.

Starts a WarrenMQ broker in-process (port 0, a temporary data directory), gives it a
small workload with real clients (orders flowing through a direct exchange to a consumed
queue, a dead-letter queue with rejected messages, a backlog queue), lets the broker's
history gather ``--seconds`` of samples, then drives Debian's headless Chromium to each
tab at 1280 px wide and the queue page at phone width (390 px). Everything is bounded in
time and count; the browser and broker are stopped at the end.

    .venv/bin/python -m tests.screenshots [--out docs/dashboard] [--seconds 40]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import aio_pika

from tests.browser import CHROMIUM, Page, browser
from tests.conftest import make_config
from tests.integration.test_management_replay import topology
from tests.mgmthttp import MANAGEMENT
from warrenmq.app import start

SHOTS = [  # (file, hash, width, height, mobile)
    ("overview.png", "overview", 1280, 900, False),
    ("queues.png", "queues", 1280, 700, False),
    ("queue.png", "queue/%2F/orders", 1280, 900, False),
    ("connections.png", "connections", 1280, 500, False),
    ("channels.png", "channels", 1280, 500, False),
    ("exchanges.png", "exchanges", 1280, 600, False),
    ("dead-letters.png", "dlq", 1280, 500, False),
    ("admin.png", "admin", 1280, 900, False),
    ("phone-queue.png", "queue/%2F/orders", 390, 800, True),
]


async def workload(url: str, stop: asyncio.Event) -> None:
    """Publish 20-80 msg/s into 'orders', which a consumer acks, until ``stop`` (bounded:
    at most 10 minutes)."""
    await topology(url, rejected=5)
    connection = await aio_pika.connect(url, client_properties={"connection_name": "checkout"})
    consumer = await aio_pika.connect(url, client_properties={"connection_name": "billing"})
    async with connection, consumer:
        channel = await connection.channel(publisher_confirms=True)
        backlog = await channel.declare_queue("reports.backlog", durable=True)
        exchange = await channel.get_exchange("orders.x")
        cchannel = await consumer.channel()
        await cchannel.set_qos(prefetch_count=20)
        orders = await cchannel.declare_queue("orders", passive=True)
        await orders.consume(lambda m: m.ack())
        loop = asyncio.get_running_loop()
        end = loop.time() + 600
        n = 0
        while loop.time() < end and not stop.is_set():
            burst = 10 + (n // 10) % 30
            for _ in range(burst):
                await exchange.publish(aio_pika.Message(b'{"order": %d}' % n,
                                                        delivery_mode=2), routing_key="new")
                n += 1
            await channel.default_exchange.publish(aio_pika.Message(b"report"),
                                                   routing_key=backlog.name)
            await asyncio.sleep(0.5)


async def shoot(page: Page, port: int, out: Path) -> None:
    await page.send("Page.navigate", url=f"http://127.0.0.1:{port}/#overview")
    await page.wait_for("document.readyState === 'complete'", True)
    await page.evaluate("""(() => { document.getElementById('username').value = 'guest';
        document.getElementById('password').value = 'guest';
        document.querySelector('#login button').click(); })()""")
    await page.wait_for("!document.getElementById('app').hidden", True)
    for name, tab, width, height, mobile in SHOTS:
        await page.resize(width, height, mobile=mobile)
        await page.evaluate(f"location.hash = '#{tab}'")
        await asyncio.sleep(2.5)  # one refresh of the view
        await page.screenshot(out / name, width, height, mobile=mobile)
        print(f"wrote {out / name}", file=sys.stderr)


async def main(out: Path, seconds: float) -> int:
    if CHROMIUM is None:
        print("chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 1
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="warrenmq-shots-") as tmp:
        server = await start(make_config(Path(tmp), MANAGEMENT))
        try:
            url = f"amqp://guest:guest@127.0.0.1:{server.ports[0]}/"
            print(f"running {seconds:.0f} s of traffic for the charts...", file=sys.stderr)
            stop = asyncio.Event()
            traffic = asyncio.create_task(workload(url, stop))
            await asyncio.sleep(seconds)
            assert server.management_port
            try:
                async with browser(Path(tmp)) as page:
                    await shoot(page, server.management_port, out)
            finally:
                stop.set()
                await traffic
        finally:
            await server.close(grace=2)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/dashboard"))
    parser.add_argument("--seconds", type=float, default=40.0,
                        help="traffic before the screenshots (history for the charts)")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.out, max(10.0, args.seconds))))
