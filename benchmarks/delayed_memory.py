"""Memory and release cost of held delayed messages (`python -m benchmarks.delayed_memory`).

Role: an in-process micro-benchmark of ``broker/delays.py`` and the ``DelayHeap`` -- like
``storage_recovery`` it imports warrenmq and talks to no broker (a Python client could
not publish a million messages in the time allowed). It publishes N messages with random
``x-delay`` values through ``VirtualHost.publish`` into an x-delayed-message exchange (the
same hold path a connection takes, minus the socket), reports the RSS they added per
message beyond the body, then moves the clock past every due time and releases them all
in the broker's batches into a bound queue, reporting the longest batch (how long the
event loop would be kept from its connections) and the total. The cyclic GC runs with
the policy ``warrenmq serve`` sets (``app.tune_gc``). ``--durable`` holds them
in a durable exchange with a message store in a temporary directory (fsync "never").
Prints one line per figure; leaves no files behind.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from warrenmq.app import tune_gc
from warrenmq.broker import delays
from warrenmq.broker.vhost import VirtualHost
from warrenmq.clock import FakeClock
from warrenmq.exchange.delayed import STORE_PREFIX, DelayedExchange
from warrenmq.message import Message
from warrenmq.protocol.fields import encode_shortstr
from warrenmq.protocol.properties import encode_properties
from warrenmq.storage import MessageStore

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    """Resident set size now (not the peak), in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


RECOVERED: list[list[Any]] = []


def restart(tmp: Path, expected: int) -> MessageStore:
    """Reopen the store (recovery of every record) and keep the held messages' list."""
    started = time.perf_counter()
    store, recovery = MessageStore.open(tmp / "messages", fsync="never")
    held = [m for key, m in recovery.queues.items() if STORE_PREFIX in key]
    assert len(held) == 1 and len(held[0]) == expected, [len(m) for m in held]
    print(f"store recovery: {time.perf_counter() - started:.2f} s")
    RECOVERED.append(held[0])
    return store


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--body", type=int, default=100, help="body size in bytes")
    ap.add_argument("--max-delay", type=int, default=3_600_000, help="ms (delays 1..this)")
    ap.add_argument("--durable", action="store_true", help="a durable exchange with a store")
    ap.add_argument("--no-release", action="store_true", help="measure holding only")
    ap.add_argument("--restart", action="store_true",
                    help="with --durable: drop the store as kill -9 would, reopen it and"
                    " restore the held messages (what a broker start does), timed")
    args = ap.parse_args(argv)

    clock = FakeClock()
    vhost = VirtualHost("/", clock)
    tmp = Path(tempfile.mkdtemp(prefix="delayed-bench-"))
    store = None
    try:
        if args.durable:
            store, _ = MessageStore.open(tmp / "messages", fsync="never")
            vhost.attach_store(store, iter(range(1, 1 << 62)), 1 << 40)
        exchange = vhost.declare_exchange("later", "x-delayed-message", durable=args.durable,
                                          arguments={"x-delayed-type": "direct"})
        assert type(exchange) is DelayedExchange
        vhost.declare_queue("q", owner=None, durable=args.durable)
        vhost.bind_queue("q", "later", "k", {}, None)
        rng = random.Random(13)
        # a few thousand distinct property sets, as many publishers' would be
        props = [encode_properties({"headers": {"x-delay": rng.randint(1, args.max_delay)},
                                    "delivery_mode": 2})
                 for _ in range(4096)]
        route = encode_shortstr("later") + encode_shortstr("k")
        body = os.urandom(args.body)
        gc.collect()
        tune_gc()  # the collector's policy of a serving broker (warrenmq serve)
        before = rss()
        started = time.perf_counter()
        for n in range(args.messages):
            # a new body object per message, as each publish brings its own
            message = Message("later", "k", route, props[n & 4095], bytes(bytearray(body)))
            vhost.publish(exchange, message)
            if store is not None and n % 10_000 == 9_999:
                store.commit(compact=False)
        held_seconds = time.perf_counter() - started
        if store is not None:
            store.commit(compact=False)
        gc.collect()
        added = rss() - before
        n = args.messages
        print(f"messages={n} body={args.body} durable={args.durable}")
        print(f"hold: {held_seconds:.2f} s, {held_seconds / n * 1e6:.2f} us/message")
        print(f"rss added: {added / 1e6:.1f} MB, {added / n:.1f} B/message,"
              f" {added / n - args.body:.1f} B/message beyond the body")
        print(f"held={len(exchange.held)} body_bytes={exchange.held.body_bytes}")
        if args.restart and store is not None:
            store.abandon()
            store = restart(tmp, args.messages)
            vhost = VirtualHost("/", clock)
            vhost.attach_store(store, iter(range(1 << 61, 1 << 62)), 1 << 40)
            exchange = vhost.declare_exchange("later", "x-delayed-message", durable=True,
                                              arguments={"x-delayed-type": "direct"})
            assert type(exchange) is DelayedExchange
            vhost.declare_queue("q", owner=None, durable=True)
            vhost.bind_queue("q", "later", "k", {}, None)
            started = time.perf_counter()
            restored = delays.restore(vhost, exchange, RECOVERED.pop(), store.read_body)
            print(f"restore into the heap: {time.perf_counter() - started:.2f} s,"
                  f" {restored} messages")
        if args.no_release:
            return
        clock.advance(args.max_delay / 1000 + 1)
        now_ms = int(clock.time() * 1000)
        longest = 0.0
        total = time.perf_counter()
        batches = 0
        while vhost.delayed:
            t = time.perf_counter()
            delays.release(vhost, now_ms)
            longest = max(longest, time.perf_counter() - t)
            batches += 1
        total = time.perf_counter() - total
        queue = vhost.queues["q"]
        print(f"release: {total:.2f} s in {batches} batches of {delays.RELEASE_BATCH},"
              f" longest batch {longest * 1000:.1f} ms; queue holds {queue.message_count}")
    finally:
        if store is not None:
            store.abandon()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
