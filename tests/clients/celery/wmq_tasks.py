"""Celery tasks for tests/integration/test_clients_celery.py, with WarrenMQ as the broker.

The broker URL and a state directory come from the environment (WMQ_BROKER, WMQ_STATE);
the state directory holds per-task markers so a retried or redelivered task can tell
which attempt it is. Results go back over AMQP (the rpc:// backend).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

app = Celery("wmq_tasks", broker=os.environ["WMQ_BROKER"], backend="rpc://")
STATE = Path(os.environ["WMQ_STATE"])
EVENTS = Exchange("events", type="topic", durable=True)
app.conf.update(
    task_queues=(Queue("celery"), Queue("orders", EVENTS, routing_key="order.#")),
    task_routes={"wmq_tasks.on_order": {"exchange": "events", "routing_key": "order.created"}},
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    result_expires=300,
)


def _attempt(name: str) -> int:
    marker = STATE / name
    attempt = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(attempt))
    return attempt


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(bind=True, max_retries=5)
def flaky(self: Any, key: str) -> int:
    """Fails twice, then succeeds: two retries through the broker."""
    attempt = _attempt(f"flaky-{key}")
    if attempt < 3:
        raise self.retry(countdown=0.2)
    return attempt


@app.task(bind=True, max_retries=1)
def hopeless(self: Any) -> None:
    """Always fails: after one retry the error is the result."""
    raise self.retry(countdown=0.1, exc=ValueError("still broken"))


@app.task(acks_late=True)
def slow(key: str) -> int:
    """Acked only when done; the first run is long enough to be killed in."""
    attempt = _attempt(f"slow-{key}")
    if attempt == 1:
        time.sleep(60)
    return attempt


@app.task
def on_order(order_id: str) -> str:
    return f"handled {order_id}"
