"""WarrenMQ benchmarks: command-line entry point (`python -m benchmarks.run`).

Role: parse targets and options, run each scenario against each target (interleaved per
scenario, so compared numbers are measured minutes apart), run the generator-ceiling probe,
and print / write a Markdown table. It must not start or stop brokers (see rabbitmq.sh), and
must not print a number for a run that failed verification (it prints FAILED).

README
======
Every scenario publishes through this package's own pipelining client (pre-encoded frames,
no aio-pika/pika) and verifies every delivered message: CRC, producer id, sequence, routing,
none missing, none duplicated. A run that fails verification is reported as FAILED.

Side by side, WarrenMQ on 5672 and a private RabbitMQ on 5673, from the repository root
(RabbitMQ from Debian's rabbitmq-server package; its system service stays disabled):

    benchmarks/rabbitmq.sh start 5673           # node warrenbench5673@localhost, 127.0.0.1 only
    .venv/bin/warrenmq serve & WPID=$!          # WarrenMQ on its default 5672
    .venv/bin/python -m benchmarks.run \\
        --url warrenmq=amqp://guest:guest@127.0.0.1:5672/ \\
        --url rabbitmq=amqp://guest:guest@127.0.0.1:5673/ \\
        --broker-pid warrenmq=$WPID \\
        --broker-pid rabbitmq=$(benchmarks/rabbitmq.sh pid 5673) \\
        --quiet-wait 60 --markdown /tmp/bench.md
    benchmarks/rabbitmq.sh stop 5673            # by node name; also its epmd if it started one
    kill $WPID

Defaults: 200,000 messages per throughput run, 3 repetitions (median), 120 s bound per run;
all scenarios take about 8 minutes per target on 2 cores. Scenarios (`--scenarios`, comma or
space separated; `all` and `one_to_one` are aliases):
  one_to_one_32B, one_to_one_1KiB  1 producer -> 1 queue -> 1 consumer, prefetch 1000, msgs/s
  one_to_one_confirm               the same (32 B) with publisher confirms, window 500
  persistent_confirm               the same to a durable queue, delivery_mode 2: each confirm
                                   waits for the fsync covering the message (group commit)
  fanout                           fanout exchange -> 3 queues, 3 consumers; deliveries/s
  topic                            topic exchange, 100 bindings over 4 queues; deliveries/s
  latency                          5,000 msgs/s paced for 10 s; p50 and p99 publish->deliver
  idle_connections                 1000 idle connections (+channel); broker RSS KiB/connection
and the generator ceiling (`--no-ceiling` skips it): the same publish and consume code against
benchmarks/sink.py, a fake peer that discards or fabricates traffic. A broker result close to
the ceiling measures the client, not the broker.

The ratio column is first target / second target. --broker-pid (the broker's main PID; child
processes are not counted) enables the broker CPU column and idle_connections. The "other
CPU" column is everything else the machine ran during the run: on a shared machine, rerun
when it is not ~0, or pass --quiet-wait S to wait (bounded) for an idle machine before runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass

from benchmarks.measure import Metric
from benchmarks.scenarios import ALL_SCENARIOS, Options, ceiling, run_broker_scenario
from benchmarks.scrape import MetricsScraper

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"


@dataclass
class Target:
    label: str
    url: str
    pid: int | None = None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "--url",
        action="append",
        default=[],
        metavar="[LABEL=]URL",
        help=f"AMQP URL to measure; repeatable (default: warrenmq={DEFAULT_URL})",
    )
    ap.add_argument(
        "--broker-pid",
        action="append",
        default=[],
        metavar="LABEL=PID",
        help="broker process of a target, for CPU and idle_connections memory",
    )
    ap.add_argument(
        "--scenarios",
        nargs="+",
        default=["all"],
        help="scenario names (comma or space separated); 'all', 'one_to_one'",
    )
    ap.add_argument("--repeat", type=int, default=3, help="repetitions; the median is reported")
    ap.add_argument("--messages", type=int, default=200_000, help="messages per throughput run")
    ap.add_argument("--timeout", type=float, default=120.0, help="wall-clock bound per run (s)")
    ap.add_argument("--prefetch", type=int, default=1000)
    ap.add_argument("--confirm-window", type=int, default=500)
    ap.add_argument("--latency-rate", type=float, default=5000.0)
    ap.add_argument("--latency-seconds", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        metavar="S",
        help="shared machine: before each run wait up to S s for other load to stop",
    )
    ap.add_argument("--no-ceiling", action="store_true", help="skip the generator ceiling probe")
    ap.add_argument(
        "--scrape-metrics",
        metavar="URL",
        help="GET this Prometheus URL every second during the runs (the cost of being scraped)",
    )
    ap.add_argument(
        "--scrape-interval",
        type=float,
        default=1.0,
        help="seconds between scrapes with --scrape-metrics (shorter amplifies the cost)",
    )
    ap.add_argument("--markdown", metavar="FILE", help="also write the tables to FILE")
    ap.add_argument("--json", metavar="FILE", help="also write raw per-repetition results")
    return ap.parse_args(argv)


def targets_from(args: argparse.Namespace) -> list[Target]:
    targets = []
    for i, spec in enumerate(args.url or [f"warrenmq={DEFAULT_URL}"]):
        label, sep, url = spec.partition("=")
        if not sep or "://" in label:
            label, url = f"target{i + 1}", spec
        targets.append(Target(label, url))
    by_label = {t.label: t for t in targets}
    for spec in args.broker_pid:
        label, _, pid = spec.partition("=")
        if label not in by_label or not pid.isdigit():
            raise SystemExit(f"--broker-pid {spec!r}: expected LABEL=PID with a --url label")
        by_label[label].pid = int(pid)
    return targets


def scenario_list(names: list[str]) -> list[str]:
    out: list[str] = []
    for item in (n for chunk in names for n in chunk.split(",") if n):
        if item == "all":
            out += ALL_SCENARIOS
        elif item == "one_to_one":
            out += ["one_to_one_32B", "one_to_one_1KiB"]
        elif item in ALL_SCENARIOS:
            out.append(item)
        else:
            raise SystemExit(f"unknown scenario {item!r}; known: {', '.join(ALL_SCENARIOS)}")
    return list(dict.fromkeys(out))


# --------------------------------------------------------------------------- formatting
def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("ms",):
        return f"{value:.2f}"
    if unit == "KiB/conn":
        return f"{value:.1f}"
    return f"{value:,.0f}"


def cell(m: Metric) -> str:
    if m.skipped:
        return "skipped"
    return "FAILED" if not m.ok else fmt(m.value, m.unit)


def cpu(values: list[float]) -> str:
    med = Metric.med(values)
    return "-" if med is None else f"{med:.2f}"


def comparison_table(targets: list[Target], rows: dict[str, list[Metric]]) -> list[str]:
    labels = [t.label for t in targets]
    head = ["scenario", "unit", *labels]
    if len(labels) >= 2:
        head.append(f"{labels[0]}/{labels[1]}")
    for kind in ("gen", "broker", "other"):
        head += [f"{kind} CPU s ({lb})" for lb in labels]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, metrics in rows.items():
        unit = metrics[0].unit + ("" if metrics[0].higher_is_better else " (lower is better)")
        row = [name, unit, *(cell(m) for m in metrics)]
        if len(metrics) >= 2:
            a, b = metrics[0].value, metrics[1].value
            row.append(f"{a / b:.2f}" if a is not None and b else "-")
        row += [cpu(m.gen_cpu_s) for m in metrics] + [cpu(m.broker_cpu_s) for m in metrics]
        row += [cpu(m.other_cpu_s) for m in metrics]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def ceiling_table(metrics: list[Metric]) -> list[str]:
    lines = [
        "| generator ceiling (null sink, no broker) | msgs/s | gen CPU s | wall s |",
        "|---|---|---|---|",
    ]
    for m in metrics:
        lines.append(f"| {m.name} | {cell(m)} | {cpu(m.gen_cpu_s)} | {cpu(m.wall_s)} |")
    return lines


def failures(rows: dict[str, list[Metric]], targets: list[Target]) -> list[str]:
    notes = []
    for name, metrics in rows.items():
        for t, m in zip(targets, metrics, strict=True):
            for err in dict.fromkeys(m.errors):
                notes.append(f"- {name} / {t.label}: {err}")
            if m.skipped:
                notes.append(f"- {name} / {t.label}: {m.skipped}")
    return notes


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def report(
    args: argparse.Namespace,
    targets: list[Target],
    rows: dict[str, list[Metric]],
    ceil: list[Metric],
    load_before: str,
) -> str:
    out = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')} on {platform.node()}: "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.machine()}.",
        f"Medians of {args.repeat} runs; {args.messages:,} messages per throughput run; "
        f"latency {args.latency_rate:,.0f} msgs/s for {args.latency_seconds:g} s; "
        f"idle_connections {args.connections}.",
        "CPU columns are seconds per run (median): gen = the generator's producer+consumer",
        "processes; broker = /proc/PID/stat of --broker-pid; other = every other process on the",
        "machine during the run (should be ~0: if not, the numbers were disturbed).",
        f"Load average before / after: {load_before} / {_load()}.",
        "",
        "Command: `"
        + " ".join(shlex.quote(a) for a in [sys.executable, "-m", "benchmarks.run", *sys.argv[1:]])
        + "`",
        "",
        "Targets: "
        + ", ".join(f"{t.label} = {t.url}" + (f" (pid {t.pid})" if t.pid else "") for t in targets),
        "",
        *comparison_table(targets, rows),
    ]
    if ceil:
        out += ["", *ceiling_table(ceil)]
    notes = failures(rows, targets) + [f"- {m.name}: {e}" for m in ceil for e in m.errors]
    if notes:
        out += ["", "Failures and skips:", *notes]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    targets = targets_from(args)
    names = scenario_list(args.scenarios)
    opts = Options(
        messages=args.messages,
        repeat=args.repeat,
        timeout=args.timeout,
        prefetch=args.prefetch,
        confirm_window=args.confirm_window,
        latency_rate=args.latency_rate,
        latency_seconds=args.latency_seconds,
        connections=args.connections,
        quiet_wait=args.quiet_wait,
    )
    rows: dict[str, list[Metric]] = {}
    load_before = _load()
    scraper = (MetricsScraper(args.scrape_metrics, args.scrape_interval)
               if args.scrape_metrics else None)
    if scraper is not None:
        scraper.start()
    for name in names:
        for t in targets:
            print(f"[bench] {name} on {t.label} ...", file=sys.stderr, flush=True)
            for m in run_broker_scenario(name, t.url, t.pid, opts):
                rows.setdefault(m.name, []).append(m)
                print(
                    f"[bench]   {m.name} {t.label}: {cell(m)} {m.unit} reps={m.reps} "
                    f"gen_cpu={m.gen_cpu_s} broker_cpu={m.broker_cpu_s} other_cpu={m.other_cpu_s} "
                    f"{m.errors or ''}",
                    file=sys.stderr,
                    flush=True,
                )
    scraped = scraper.stop() if scraper is not None else ""
    ceil: list[Metric] = []
    if not args.no_ceiling:
        print("[bench] generator ceiling (null sink) ...", file=sys.stderr, flush=True)
        ceil = ceiling(opts)
    text = report(args, targets, rows, ceil, load_before)
    if scraped:
        text += "\n" + scraped + "\n"
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "targets": [asdict(t) for t in targets],
                    "rows": {k: [asdict(m) for m in v] for k, v in rows.items()},
                    "ceiling": [asdict(m) for m in ceil],
                },
                f,
                indent=1,
            )
    failed = any(m.errors for ms in rows.values() for m in ms) or any(m.errors for m in ceil)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
