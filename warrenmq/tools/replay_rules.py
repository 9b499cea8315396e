"""What a dead-letter replay does to one message, shared by ``warrenmq dlq replay`` (an
AMQP client) and the management API's replay (in-process).

- ``died_in``: the queue the message died in last (the newest ``x-death`` entry that is
  not the DLQ itself): where the default replay sends it back, through the default
  exchange, so that no other queue gets a copy.
- ``ReplayFilter``: ``from_queue`` (that queue), ``reason`` (the newest death's reason),
  ``message_id`` and ``older_than`` (seconds since the newest death entry's time).
- ``replay_headers``: the headers to publish with: ``x-delivery-count``, ``CC`` and
  ``BCC`` dropped (a replay must not fan out to the original CC list again), the
  ``x-death`` history kept, and the replay recorded in ``x-replay-count`` (1, 2, ...)
  and ``x-replayed-from`` (the DLQ).
Pure functions over decoded headers; must not import the broker or a client library.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from warrenmq.tools.deaths import deaths, text

DROPPED_HEADERS = ("x-delivery-count", "CC", "BCC")
REPLAY_COUNT = "x-replay-count"
REPLAYED_FROM = "x-replayed-from"
REASONS = ("rejected", "expired", "maxlen", "delivery_limit")
TARGETS = ("queue", "exchange")


def died_in(headers: Mapping[str, Any] | None, dlq: str) -> str | None:
    """The queue the message last died in (None without ``x-death``)."""
    for entry in deaths(headers):
        queue = text(entry.get("queue"))
        if queue and queue != dlq:
            return queue
    return None


def _death_time(headers: Mapping[str, Any] | None) -> float | None:
    entries = deaths(headers)
    if not entries:
        return None
    value = entries[0].get("time")
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, int | float):
        return float(value)
    return None


@dataclass(frozen=True, slots=True)
class ReplayFilter:
    """Which dead letters to replay; a field left None matches every message."""

    from_queue: str | None = None
    reason: str | None = None
    message_id: str | None = None
    older_than: float | None = None  # seconds

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.from_queue, self.reason, self.message_id,
                                           self.older_than))

    def matches(self, headers: Mapping[str, Any] | None, message_id: str | None, dlq: str,
                now: float | None = None) -> bool:
        if self.from_queue is not None and died_in(headers, dlq) != self.from_queue:
            return False
        if self.reason is not None:
            entries = deaths(headers)
            last = (headers or {}).get("x-last-death-reason",
                                        entries[0].get("reason") if entries else None)
            if text(last) != self.reason:
                return False
        if self.message_id is not None and message_id != self.message_id:
            return False
        if self.older_than is not None:
            died = _death_time(headers)
            now = time.time() if now is None else now
            if died is None or now - died < self.older_than:
                return False
        return True


def replay_headers(headers: Mapping[str, Any] | None, dlq: str) -> dict[str, Any]:
    """The headers a replayed message carries (see the module docstring)."""
    out = {k: v for k, v in (headers or {}).items() if k not in DROPPED_HEADERS}
    previous = out.get(REPLAY_COUNT, 0)
    out[REPLAY_COUNT] = (previous if isinstance(previous, int) else 0) + 1
    out[REPLAYED_FROM] = dlq
    return out
