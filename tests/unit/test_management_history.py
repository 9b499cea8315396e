"""The broker-kept chart history: samples as RabbitMQ's API gives them (newest first,
epoch ms), the 10-minute bound, per-queue tracking with a bounded number of queues, and
deleted queues forgotten."""

from __future__ import annotations

from typing import Any

from warrenmq.broker.broker import Broker
from warrenmq.management import history as history_module
from warrenmq.management.history import SAMPLES, History
from warrenmq.message import Message
from warrenmq.protocol.fields import encode_shortstr


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def publish(broker: Broker, queue: str, count: int) -> None:
    vhost = broker.vhosts["/"]
    for _ in range(count):
        route = encode_shortstr("") + encode_shortstr(queue)
        vhost.publish(vhost.exchanges[""], Message("", queue, route, b"\x00\x00", b"x"))


def make() -> tuple[Broker, History, Clock]:
    broker = Broker()
    clock = Clock()
    syncs = iter(range(0, 10_000, 3))
    return broker, History(broker, lambda: next(syncs), clock), clock


def test_samples_newest_first_with_rates() -> None:
    broker, history, clock = make()
    queue = broker.vhosts["/"].declare_queue("q", owner=None)
    for n in (0, 10, 25):
        publish(broker, "q", n)
        history.record()
        clock.now += 5
    item: dict[str, Any] = {"message_stats": {}}
    history.decorate_queue(item, queue, {"lengths_age": "600", "lengths_incr": "5",
                                         "msg_rates_age": "600", "msg_rates_incr": "5"})
    ready = item["messages_ready_details"]
    assert [s["sample"] for s in ready["samples"]] == [35, 10, 0]
    assert [s["timestamp"] for s in ready["samples"]] == [1_000_010_000, 1_000_005_000,
                                                          1_000_000_000]
    assert ready["rate"] == 5.0  # 25 more in 5 s
    assert item["messages_details"]["samples"][0]["sample"] == 35
    publish_details = item["message_stats"]["publish_details"]
    assert [s["sample"] for s in publish_details["samples"]] == [35, 10, 0]
    assert publish_details["avg_rate"] == 3.5
    overview: dict[str, Any] = {"queue_totals": {}, "message_stats": {}}
    history.decorate_overview(overview, {"lengths_age": "60"})
    assert overview["queue_totals"]["messages_ready_details"]["samples"][0]["sample"] == 35
    assert "publish_details" not in overview["message_stats"]  # not asked for
    assert history.rate("sync_ops") == 3 / 5


def test_ten_minutes_at_most_and_incr_thins() -> None:
    broker, history, clock = make()
    queue = broker.vhosts["/"].declare_queue("q", owner=None)
    for _ in range(SAMPLES + 30):
        publish(broker, "q", 1)
        history.record()
        clock.now += 5
    item: dict[str, Any] = {"message_stats": {}}
    history.decorate_queue(item, queue, {"lengths_age": "6000"})
    samples = item["messages_ready_details"]["samples"]
    assert len(samples) == SAMPLES
    assert samples[0]["sample"] == SAMPLES + 30 and samples[-1]["sample"] == 31
    history.decorate_queue(item, queue, {"lengths_age": "60", "lengths_incr": "30"})
    assert [s["sample"] for s in item["messages_ready_details"]["samples"]] == [150, 144, 138]


def test_bounded_queue_tracking(monkeypatch: Any) -> None:
    monkeypatch.setattr(history_module, "MAX_QUEUES", 3)
    broker, history, _ = make()
    vhost = broker.vhosts["/"]
    queues = [vhost.declare_queue(f"q{i}", owner=None) for i in range(5)]
    history.record()
    assert len(history.queues) == 3
    history.decorate_queue({"message_stats": {}}, queues[4], {"lengths_age": "60"})
    assert ("/", "q4") in history.queues and len(history.queues) == 3
    vhost.delete_queue("q4", owner=None)
    history.record()
    assert ("/", "q4") not in history.queues
