"""Streams beside RabbitMQ's, in one interleaved run: medians and paired ratios.

    .venv/bin/python -m benchmarks.streams_side_by_side [--rounds 3] [--messages 100000]
        [--brokers compiled,rabbitmq] [--consumers 3] [--prefetch 1000]

Starts each broker on its own loopback port (``benchmarks.side_by_side.Brokers``:
WarrenMQ compiled and/or pure as ``warrenmq serve`` subprocesses, RabbitMQ 3.10 as a
private node through benchmarks/rabbitmq.sh), then runs ``benchmarks.streams`` (publish
with confirms, one consumer from ``first``, several consumers at once) against each
broker in turn, ``--rounds`` times, rotating the order every round, each run a process
of its own with the broker's PID for CPU per message. Prints every round, then per
phase the median of each broker and each broker's median over RabbitMQ's (the paired
ratio: round by round, then the median of those). Stops what it started, by PID.
Loopback only; every phase is bounded by benchmarks.streams' ``--limit-s``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.side_by_side import ROOT, Brokers

PHASES = (
    ("publish_confirm_msgs_s", "publish with confirms, msgs/s"),
    ("consume_first_msgs_s", "consume from first, one consumer, msgs/s"),
    ("consumers_slowest_msgs_s", "N consumers at once, slowest, msgs/s each"),
    ("publish_broker_cpu_us_per_msg", "publish: broker CPU µs/msg (lower better)"),
    ("consume_broker_cpu_us_per_msg", "consume: broker CPU µs/msg (lower better)"),
    ("consumers_broker_cpu_us_per_delivery", "N consumers: CPU µs/delivery (lower better)"),
)


def broker_pid(brokers: Brokers, name: str) -> int:
    if name == "rabbitmq":
        out = subprocess.run(["bash", str(ROOT / "benchmarks" / "rabbitmq.sh"), "pid",
                              str(brokers.rabbit_port)], capture_output=True, text=True,
                             check=True, timeout=60)
        return int(out.stdout.strip())
    index = [n for n in brokers.urls if n != "rabbitmq"].index(name)
    return brokers.procs[index].pid


def run_once(url: str, pid: int, args: argparse.Namespace) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.streams", "--url", url, "--messages",
         str(args.messages), "--consumers", str(args.consumers), "--prefetch",
         str(args.prefetch), "--broker-pid", str(pid), "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=args.limit_s * 3 + 120)
    if proc.returncode != 0:
        raise SystemExit(f"error: benchmarks.streams failed on {url}: {proc.stderr.strip()}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.streams_side_by_side",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--brokers", default="compiled,rabbitmq")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--consumers", type=int, default=3)
    parser.add_argument("--prefetch", type=int, default=1000)
    parser.add_argument("--limit-s", type=float, default=60.0)
    args = parser.parse_args(argv)
    names = [n for n in args.brokers.split(",") if n]
    if set(names) - {"compiled", "pure", "rabbitmq"} or not names or args.rounds < 1:
        parser.error("--brokers is a list of compiled, pure, rabbitmq; --rounds >= 1")
    with tempfile.TemporaryDirectory(prefix="streams-sbs-") as tmp:
        brokers = Brokers(Path(tmp))
        try:
            for name in names:
                print(f"starting {name}", flush=True)
                if name == "rabbitmq":
                    brokers.rabbitmq()
                else:
                    brokers.warrenmq(name, pure=name == "pure")
            running = [n for n in names if n in brokers.urls]
            pids = {n: broker_pid(brokers, n) for n in running}
            results: dict[str, list[dict[str, float]]] = {n: [] for n in running}
            for round_no in range(args.rounds):
                order = running[round_no % len(running):] + running[:round_no % len(running)]
                for name in order:
                    result = run_once(brokers.urls[name], pids[name], args)
                    results[name].append(result)
                    print(f"round {round_no + 1} {name}: " + ", ".join(
                        f"{key}={result.get(key)}" for key, _ in PHASES), flush=True)
        finally:
            brokers.stop()
    print()
    header = f"{'phase':<46}" + "".join(f"{n:>12}" for n in running)
    others = [n for n in running if n != "rabbitmq"]
    if "rabbitmq" in running:
        header += "".join(f"{n + '/rmq':>14}" for n in others)
    print(header)
    for key, label in PHASES:
        line = f"{label:<46}"
        for name in running:
            line += f"{statistics.median(r[key] for r in results[name]):>12,.1f}"
        if "rabbitmq" in running:
            for name in others:
                ratios = [mine[key] / theirs[key] for mine, theirs
                          in zip(results[name], results["rabbitmq"], strict=True) if theirs[key]]
                line += f"{statistics.median(ratios):>14.2f}" if ratios else f"{'-':>14}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
