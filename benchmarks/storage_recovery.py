"""Recovery speed of the message log (`python -m benchmarks.storage_recovery`).

Role: an in-process micro-benchmark of ``warrenmq.storage`` -- unlike the rest of this
package it imports warrenmq and talks to no broker. It writes N small persistent messages
through ``MessageStore`` (commits every --batch appends, fsync policy "never" so that
generation is not the slow part), acks a fraction of them, drops the store without
closing it (as kill -9 would) and times ``MessageStore.open`` over the result. Timing lives
here, not in the test suite. Must not leave files behind (a temporary directory is used
unless --dir is given, and then only that directory's messages/ is written).
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from warrenmq.storage import MessageStore


def _generate(directory: Path, args: argparse.Namespace) -> tuple[int, int]:
    store, _ = MessageStore.open(directory, segment_size=args.segment_mib << 20, fsync="never")
    body = os.urandom(args.body)
    props = b"\x10\x00\x02"  # delivery_mode only
    queues = [f"/\x00q{i}" for i in range(args.queues)]
    ack_permille = round(args.acked * 1000)
    acked = 0
    for msg_id in range(1, args.messages + 1):
        queue = queues[msg_id % len(queues)]
        store.publish(msg_id, (queue,), "amq.direct", queue, props, body)
        if msg_id % 1000 < ack_permille:
            store.ack(queue, msg_id)
            acked += 1
        if msg_id % args.batch == 0:
            store.commit()
    store.commit()
    size = sum(p.stat().st_size for p in directory.iterdir())
    store.abandon()
    return acked, size


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--body", type=int, default=100, help="body size in bytes")
    ap.add_argument("--queues", type=int, default=4)
    ap.add_argument("--acked", type=float, default=0.0, help="fraction acked, 0..1")
    ap.add_argument("--batch", type=int, default=1000, help="appends per commit")
    ap.add_argument("--segment-mib", type=int, default=64)
    ap.add_argument("--dir", type=Path, default=None, help="parent directory to use")
    args = ap.parse_args(argv)
    parent = Path(tempfile.mkdtemp(prefix="wmq-recovery-", dir=args.dir))
    try:
        directory = parent / "messages"
        t0 = time.perf_counter()
        acked, size = _generate(directory, args)
        t1 = time.perf_counter()
        store, recovery = MessageStore.open(directory, fsync="never")
        t2 = time.perf_counter()
        gc.collect()  # the one full collection the recovered objects cost, once
        t3 = time.perf_counter()
        live = sum(len(m) for m in recovery.queues.values())
        store.abandon()
        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"generated {args.messages:,} messages ({args.body} B bodies, {acked:,} acked, "
            f"{size / 2**20:.1f} MiB in {len(recovery.segments)} segments) in {t1 - t0:.2f} s"
        )
        print(
            f"recovered {recovery.records:,} records -> {live:,} live messages in "
            f"{t2 - t1:.2f} s ({recovery.records / (t2 - t1):,.0f} records/s), then a full "
            f"gc.collect() in {t3 - t2:.2f} s; peak RSS {rss_mib:.0f} MiB"
        )
    finally:
        shutil.rmtree(parent, ignore_errors=True)


if __name__ == "__main__":
    main()
