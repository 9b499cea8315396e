"""The OrderPlaced fanout demo (examples/orders/demo.py), run as a subprocess.

Covers:

- the demo on a WarrenMQ it starts itself (``warrenmq serve --config
  examples/orders/orders.yaml``, as ``make demo`` runs it) with a small N and short
  phases: exit status 0 and a last line ``placed=N inventory=N email=N analytics=N
  duplicates_skipped>=1 dead_lettered=1 replayed=1 lost=0``; the story behind those
  numbers in its output (inventory's crash and the skipped redelivery, email down with
  its queue growing and then drained, the poison order dead-lettered for the delivery
  limit and replayed after the fix) and its broker stopped with exit status 0;
- ``--url`` on a broker that has never seen orders.yaml (the in-process fixture): the
  demo declares the topology itself over AMQP, and the declared queues carry
  orders.yaml's arguments;
- the exit status is earned: when email cannot come back before ``--timeout``, orders
  are missing, ``lost`` is counted from order ids and the exit status is 1;
- ``warrenmq check-config`` accepts orders.yaml.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.conftest import BrokerHandle
from tests.mgmthttp import MANAGEMENT

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "orders" / "demo.py"
SUMMARY = re.compile(
    r"^placed=(\d+) inventory=(\d+) email=(\d+) analytics=(\d+) duplicates_skipped=(\d+) "
    r"dead_lettered=(\d+) replayed=(\d+) lost=(\d+) stream_replay_matches=(\d+) "
    r"stream_resumed_from=(-?\d+) ordering_violations=(\d+|skipped) "
    r"duplicates_dropped_by_broker=(\d+|skipped)$")
KEYS = ("placed", "inventory", "email", "analytics", "duplicates_skipped", "dead_lettered",
        "replayed", "lost", "stream_replay_matches", "stream_resumed_from",
        "ordering_violations", "duplicates_dropped_by_broker")
SHORT = ["--rate", "60", "--email-outage", "1.5", "--email-latency", "2", "--interval", "0.2"]


async def run_demo(*args: str, timeout: float = 50) -> tuple[int, list[str], str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(DEMO), *args, cwd=ROOT, env={**os.environ},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode().splitlines(), err.decode()


def summary(lines: list[str]) -> dict[str, Any]:
    match = SUMMARY.match(lines[-1])
    assert match, f"last line is not the summary: {lines[-1]!r}"
    return {key: value if value == "skipped" else int(value)
            for key, value in zip(KEYS, match.groups(), strict=True)}


def broker_running(pid: int) -> bool:
    """Whether ``pid`` is (still) a warrenmq process."""
    try:
        return b"warrenmq" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def depths_of(lines: list[str], queue: str) -> list[int]:
    """The queue's depth in each periodic line of the live view (stdout is a pipe)."""
    return [int(m.group(1)) for line in lines
            if (m := re.search(rf"\| depth .*\b{re.escape(queue)}=(\d+)", line))]


async def test_demo_on_its_own_broker() -> None:
    status, lines, err = await run_demo("--orders", "60", *SHORT, "--timeout", "40")
    text = "\n".join(lines)
    assert status == 0, f"{text}\n{err}"
    assert summary(lines) | {"duplicates_skipped": 0} == {
        "placed": 60, "inventory": 60, "email": 60, "analytics": 60,
        "duplicates_skipped": 0, "dead_lettered": 1, "replayed": 1, "lost": 0,
        # reporting replayed order-events from first, was stopped after 30 orders
        # (offsets 0-29 acked) and its restart resumed at the tracked offset
        "stream_replay_matches": 1, "stream_resumed_from": 30,
        # shipping: the killed worker's standby took over and no customer's events ran
        # out of order; checkout's three republished orders were dropped by the broker
        "ordering_violations": 0, "duplicates_dropped_by_broker": 3}
    assert summary(lines)["duplicates_skipped"] >= 1
    assert "reporting: restarted, resumed from offset 30 (WarrenMQ's tracked offset" in text
    started = re.match(r"WarrenMQ started \(pid (\d+)\) with orders\.yaml on amqp://", lines[0])
    assert started, lines[0]
    assert "WarrenMQ stopped (exit status 0)" in lines
    assert not broker_running(int(started.group(1)))
    # inventory crashed between commit and ack; the redelivery was skipped, not re-applied
    crashed = re.search(r"inventory: crashed after committing order (\S+), before acking", text)
    assert crashed, text
    assert f"inventory: order {crashed.group(1)} redelivered; already in the database" in text
    # email was down while checkout went on: its queue grew, then drained
    assert "email: DOWN" in text and "email: back up" in text
    email = depths_of(lines, "email")
    assert max(email) > 0 and email[-1] == 0, email
    # the poison order: nacked by release 1, dead-lettered at the limit, replayed, counted
    poison = re.search(r"analytics v1: cannot read total '1,299.00' of order (\S+)", text)
    assert poison, text
    assert (f"warrenmq dlq inspect analytics.dlq: order {poison.group(1)} died in 'analytics'"
            " (delivery_limit)") in text
    assert "replayed=1 skipped=0 failed=0" in text
    assert text.index("analytics: fix deployed") < text.index("warrenmq dlq replay")
    assert depths_of(lines, "analytics.dlq")[-1] == 0
    # checkout's retry after a lost confirm: republished, dropped by the broker, and no
    # service (nor the stream's replay, stream_replay_matches=1) saw them twice
    assert re.search(r"checkout: the confirms of 3 orders were lost \(simulated\); it"
                     r" publishes \S+, \S+, \S+ again with the same message_id", text), text
    assert ("broker: 3 duplicate(s) dropped by the 'orders' exchange (x-message-deduplication"
            " on message_id), read from the management API") in text
    # shipping: 60 orders x 3 events of 12 customers, a worker killed, the standby took over
    assert ("shipping: 180 events of 12 customers (OrderPlaced, OrderPaid, OrderShipped per"
            " order, interleaved) -> order-lifecycle (x-consistent-hash") in text
    assert ("shipping: worker shipments.0/a KILLED after handling an event it never acked;"
            " the broker hands its queue to the standby") in text
    handled = re.search(r"shipping: 180/180 events handled, standby shipments\.0/b handled"
                        r" (\d+) after the takeover, (\d+) redelivery skipped, 0 ordering"
                        r" violation\(s\); customers per queue: \{(.*)\}", text)
    assert handled, text
    assert int(handled.group(1)) > 0 and int(handled.group(2)) >= 1
    per_queue = [int(n) for n in re.findall(r": (\d+)", handled.group(3))]
    assert sum(per_queue) == 12 and len(per_queue) == 4, per_queue
    assert "every customer's events were handled in order across the takeover" in text
    assert "the broker dropped every republished order" in text


async def test_demo_with_url_declares_the_topology(broker_factory: Any) -> None:
    broker: BrokerHandle = await broker_factory(top=MANAGEMENT)
    vhost = broker.vhost()
    assert "orders" not in vhost.exchanges
    management = f"http://guest:guest@127.0.0.1:{broker.server.management_port}"
    status, lines, err = await run_demo("--orders", "30", *SHORT, "--timeout", "40",
                                        "--url", broker.url, "--management-url", management)
    assert status == 0, "\n".join(lines) + err
    assert summary(lines) == {**summary(lines), "placed": 30, "inventory": 30, "email": 30,
                              "analytics": 30, "dead_lettered": 1, "replayed": 1, "lost": 0,
                              "stream_replay_matches": 1, "stream_resumed_from": 15,
                              "ordering_violations": 0, "duplicates_dropped_by_broker": 3}
    assert vhost.exchanges["order-lifecycle"].type_name == "x-consistent-hash"
    assert vhost.queues["shipments.0"].arguments == {"x-single-active-consumer": True}
    assert vhost.exchanges["orders"].arguments["x-message-deduplication"] is True
    assert vhost.queues["order-events"].tracked_offsets() == {"reporting": 29}
    assert any("] topology: declared from orders.yaml (" in line for line in lines)
    assert vhost.exchanges["orders"].type_name == "fanout"
    arguments = vhost.queues["email"].arguments
    assert arguments["x-delivery-limit"] == 3
    assert arguments["x-dead-letter-exchange"] == "orders.dlx"
    assert arguments["x-dead-letter-routing-key"] == "email"
    assert arguments["x-queue-type"] == "quorum"
    assert all(vhost.queues[q].durable for q in ("inventory", "email", "analytics",
                                                 "inventory.dlq"))


async def test_demo_fails_when_orders_are_not_processed() -> None:
    # email stays down past the deadline: the orders it never sent are lost, exit 1
    status, lines, _ = await run_demo("--orders", "20", "--rate", "100", "--email-outage",
                                      "30", "--timeout", "6", "--interval", "0.5")
    result = summary(lines)
    assert status == 1
    assert result["placed"] == 20 and result["inventory"] == 20
    assert result["email"] < 20
    assert result["lost"] >= 20 - result["email"] > 0
    assert any(line.startswith("check failed: email never processed") for line in lines)


def test_orders_yaml_passes_check_config() -> None:
    config = ROOT / "examples" / "orders" / "orders.yaml"
    done = subprocess.run([sys.executable, "-m", "warrenmq", "check-config", str(config)],
                          capture_output=True, text=True, timeout=30, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(": ok")


def test_the_ordering_check_has_teeth() -> None:
    """The ledger the shipment workers write: an event handled before its predecessor is
    a violation (and fails the run), a redelivery of one handled already is skipped."""
    sys.path.insert(0, str(DEMO.parent))
    try:
        from shipping import Ledger, ShippingResult, lifecycle
        from tally import Tally
    finally:
        sys.path.remove(str(DEMO.parent))
    events = lifecycle([f"o{n}" for n in range(30)], 4, seed=7)
    assert len(events) == 90 and len({e.customer for e in events}) == 4
    for customer in {e.customer for e in events}:  # interleaved, each in its own order
        mine = [e.seq for e in events if e.customer == customer]
        assert mine == list(range(1, len(mine) + 1))
    assert [e.customer for e in events[:12]] != sorted(e.customer for e in events[:12])
    ledger = Ledger(expected=3)
    ledger.handle("w/a", "q", "c1", 1, "o1:OrderPlaced")
    ledger.handle("w/a", "q", "c1", 1, "o1:OrderPlaced")  # redelivered after a crash
    ledger.handle("w/b", "q", "c1", 3, "o1:OrderShipped")  # 2 was skipped: a violation
    ledger.handle("w/b", "q", "c1", 2, "o1:OrderPaid")     # and 2 after 3: another
    assert ledger.redelivered_skipped == 1 and len(ledger.violations) == 2
    assert ledger.complete.is_set()
    result = ShippingResult(events=3, published=3, handled=3, violations=ledger.violations,
                            killed="w/a", standby_took_over=True)
    tally = Tally(orders=[], placed=[], publish_failures=[], inventory=set(), email=set(),
                  analytics=set(), duplicates_skipped=0, dead={}, replay={}, depths={},
                  stock_taken={}, units_counted=Counter(), revenue_counted=Decimal(0),
                  poison=None, crash_injected=False, report_orders={},
                  report_units=Counter(), report_duplicates=0, resumed_from=0,
                  shipping=result, shipping_expected=True, republished=3, dropped=2,
                  dropped_expected=True)
    assert "ordering_violations=2 duplicates_dropped_by_broker=2" in tally.line()
    problems = tally.problems()
    assert any(p.startswith("ordering violation: c1: event 3") for p in problems)
    assert "checkout republished 3 orders; the broker dropped 2 duplicates" in problems
    skipped = Tally(**{**tally.__dict__, "shipping": None, "shipping_expected": False,
                       "dropped": None, "dropped_expected": False})
    assert "ordering_violations=skipped duplicates_dropped_by_broker=skipped" in skipped.line()
    assert not [p for p in skipped.problems() if "ordering" in p or "dropped" in p]
