"""The OrderPlaced fanout demo: the lesson's checkout flow, end to end, on a real broker.

    python examples/orders/demo.py [--orders N] [--url URL]      (or: make demo)

"Checkout is fast and decoupled. Each downstream service processes at its own rate. If
Email Service goes down for an hour, messages queue up and are processed when it
recovers. No orders are lost."

Without ``--url`` it starts its own WarrenMQ (``warrenmq serve --config
examples/orders/orders.yaml`` on free loopback ports, a temporary data directory) and
stops it at the end; with ``--url`` it uses that broker, RabbitMQ included, and declares
orders.yaml's topology itself. Then, with aio-pika, each service on its own connection:

- checkout publishes N OrderPlaced events to the ``orders`` fanout (persistent,
  ``message_id`` = order id, publisher confirms) at a steady rate with a burst in the
  middle, never waiting for a consumer;
- inventory takes stock in SQLite, idempotently; it crashes once after committing an
  order and before acking it, so the broker redelivers that order and the restarted
  service finds it in its database and skips it;
- email goes down for a while (its queue grows) and comes back (it drains);
- analytics aggregates totals; its first release cannot read one order's total, nacks
  it until the delivery limit (3) dead-letters it, and after the fix is deployed
  ``warrenmq dlq inspect`` and ``warrenmq dlq replay`` bring it back, and it is counted;
- checkout loses the confirms of a few orders (simulated) and publishes them again with
  the same ``message_id``: the ``orders`` exchange deduplicates on it and drops them
  (``duplicates_dropped_by_broker``, read from the management API);
- shipping: each placed order's OrderPlaced, OrderPaid and OrderShipped events, per
  customer, interleaved across customers, go through ``order-lifecycle``
  (x-consistent-hash on the customer id) to four shipment queues with single active
  consumer, each with an active worker and a standby; the active worker of one queue is
  killed mid-stream, the standby takes over, and every customer's events must still be
  handled in order (``ordering_violations``).

Against RabbitMQ (``--url``) the parts whose feature it lacks are skipped with the
reason printed (deduplication always; shipping without the consistent-hash plugin), and
their summary values read ``skipped``.

A live view shows each queue's depth over time. The last line is the summary,
``placed=... inventory=... email=... analytics=... duplicates_skipped=...
dead_lettered=... replayed=... lost=... stream_replay_matches=... stream_resumed_from=...
ordering_violations=... duplicates_dropped_by_broker=...``; the exit status is 0 only if
no order was lost and every count adds up (1 otherwise, 2 if the demo could not run).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import topology
from checkout import make_orders
from ops import OwnBroker
from scenario import Demo, Settings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="demo.py", description="The OrderPlaced fanout demo (examples/orders).")
    parser.add_argument("--orders", type=int, default=400, metavar="N",
                        help="orders checkout places (default 400)")
    parser.add_argument("--url", help="use this broker (amqp://user:pass@host:port/vhost)"
                        " instead of starting WarrenMQ; the topology is declared on it")
    parser.add_argument("--rate", type=float, default=40.0,
                        help="orders per second outside the burst (default 40)")
    parser.add_argument("--burst", type=int, metavar="N",
                        help="orders published at once in the middle (default N/5)")
    parser.add_argument("--email-outage", type=float, default=6.0, metavar="S",
                        help="seconds email is down, from the moment N/5 orders are"
                        " placed (default 6)")
    parser.add_argument("--email-latency", type=float, default=10.0, metavar="MS",
                        help="SMTP round trip per mail in ms (default 10)")
    parser.add_argument("--crash-after", type=int, metavar="K",
                        help="inventory crashes once, after committing its K-th order and"
                        " before acking it (default N/3; 0 = never)")
    parser.add_argument("--timeout", type=float, default=180.0, metavar="S",
                        help="give up waiting after this many seconds (default 180)")
    parser.add_argument("--interval", type=float, default=1.0, metavar="S",
                        help="seconds between lines when stdout is not a terminal")
    parser.add_argument("--plain", action="store_true",
                        help="periodic lines even on a terminal")
    parser.add_argument("--seed", type=int, default=1, help="for the generated orders")
    parser.add_argument("--customers", type=int, default=12, metavar="N",
                        help="shipping: the placed orders belong to N customers (default 12)")
    parser.add_argument("--republish", type=int, default=3, metavar="N",
                        help="orders checkout publishes again after a lost confirm"
                        " (default 3; 0 = none)")
    parser.add_argument("--management-url", metavar="URL",
                        help="with --url: the broker's management API"
                        " (http://user:pass@host:port), where the duplicates it dropped are"
                        " read (the demo's own broker: its own)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the working directory (inventory database, broker log)")
    args = parser.parse_args(argv)
    if args.orders < 1 or args.rate <= 0 or args.email_outage < 0 or args.timeout <= 0:
        parser.error("--orders must be >= 1; --rate, --timeout > 0; --email-outage >= 0")
    if args.customers < 1 or args.republish < 0:
        parser.error("--customers must be >= 1; --republish >= 0")
    return args


def settings(args: argparse.Namespace, run_id: str, management_url: str | None) -> Settings:
    count = args.orders
    poison = count // 8
    return Settings(
        orders=make_orders(count, run_id, args.seed, poison),
        rate=args.rate,
        burst=max(0, min(count, args.burst if args.burst is not None else count // 5)),
        email_down_after=max(1, count // 5),
        email_outage=args.email_outage,
        email_latency=args.email_latency / 1000,
        crash_after=(max(1, count // 3) if args.crash_after is None
                     else args.crash_after or None),
        timeout=args.timeout,
        poison=f"{run_id}-{poison + 1:05d}",
        customers=args.customers,
        republish=min(args.republish, max(0, count - 1)),
        seed=args.seed,
        management_url=management_url,
    )


async def main_async(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    workdir = Path(tempfile.mkdtemp(prefix="orders-demo-"))
    broker: OwnBroker | None = None
    tty = sys.stdout.isatty() and not args.plain
    try:
        document = topology.load()
        if args.url is None:
            broker = await OwnBroker.start(topology.CONFIG, workdir)
            print(f"WarrenMQ started (pid {broker.process.pid}) with "
                  f"{topology.CONFIG.name} on {broker.url}; dashboard {broker.dashboard}")
        management = (f"http://guest:guest@127.0.0.1:{broker.management_port}"
                      if broker is not None else args.management_url)
        demo = Demo(settings(args, workdir.name.rsplit("-", 1)[-1][:8], management),
                    args.url or (broker.url if broker else ""), workdir,
                    tty=tty, interval=args.interval, own=broker is not None)
        tally = await demo.run(document)
    finally:
        if broker is not None:
            status = await broker.stop()
            print(f"WarrenMQ stopped (exit status {status})")
        if args.keep:
            print(f"working directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    problems = tally.problems()
    for problem in problems:
        print(f"check failed: {problem}")
    if not problems:
        print("checks: every order placed was processed by every service; stock, revenue"
              " and units add up; the one dead letter was replayed and processed"
              + ("; every customer's events were handled in order across the takeover"
                 if tally.shipping is not None else "")
              + ("; the broker dropped every republished order" if tally.dropped_expected
                 else ""))
    print(tally.line(), flush=True)
    return 0 if not problems and tally.lost == 0 else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(main_async(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except asyncio.CancelledError:
        print("terminated", file=sys.stderr)
        return 143
    except Exception as exc:  # the demo could not run: say why, exit 2
        print(f"demo.py: {type(exc).__name__}: {exc}", file=sys.stderr)
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        return 2


if __name__ == "__main__":
    sys.exit(main())
