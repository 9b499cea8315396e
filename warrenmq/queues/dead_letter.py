"""Dead-lettering: the records queues emit and the message the DLX receives.

A queue never publishes; it returns ``DeadLetter`` records (reason, source queue, the
message) and the virtual host routes them through the queue's dead-letter exchange. This
module builds the re-published message exactly as RabbitMQ 3.x does (rabbit_dead_letter):

- ``x-death`` is an array of tables, one per (queue, reason), newest first. A repeat of a
  (queue, reason) increments that entry's ``count`` (a long) and moves it to the front;
  its other fields keep the values of its first death. Entry fields, sorted by name as
  RabbitMQ sorts them: count, exchange, original-expiration (only when the message had a
  per-message TTL), queue, reason, routing-keys, time.
- ``x-first-death-queue/-reason/-exchange`` are set once; ``x-last-death-*`` (RabbitMQ
  3.13+) every time.
- The per-message ``expiration`` property is removed so the message does not expire
  again wherever it lands.

Cycle detection (``is_cycle``) follows RabbitMQ too: a dead-lettered message that would
enter a queue it already died in, with no ``rejected`` death in between, is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from warrenmq.message import Message
from warrenmq.protocol.fields import Long, encode_shortstr
from warrenmq.protocol.properties import get_property, rewrite_properties

REJECTED = "rejected"
EXPIRED = "expired"
MAXLEN = "maxlen"
DELIVERY_LIMIT = "delivery_limit"
REASONS = (REJECTED, EXPIRED, MAXLEN, DELIVERY_LIMIT)

_DROP_EXPIRATION = frozenset({"expiration"})


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message leaving ``queue`` for ``reason``, to be routed via the queue's DLX."""

    message: Message
    reason: str
    queue: str


def _deaths(headers: dict[str, Any] | None) -> list[dict[str, Any]]:
    value = (headers or {}).get("x-death")
    if not isinstance(value, list):
        return []
    return [entry for entry in value if isinstance(entry, dict)]


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else str(value)


def x_death_headers(
    message: Message, queue: str, reason: str, now: float
) -> dict[str, Any]:
    """The header entries to set on the dead-lettered copy of ``message``."""
    headers = message.headers()
    deaths = _deaths(headers)
    match = next(
        (d for d in deaths if _text(d.get("queue")) == queue and _text(d.get("reason")) == reason),
        None,
    )
    if match is not None:
        entry = dict(match)
        entry["count"] = int(entry.get("count") or 0) + 1
        others = [d for d in deaths if d is not match]
    else:
        entry = {
            "count": 1,
            "exchange": message.exchange,
            "queue": queue,
            "reason": reason,
            "routing-keys": [message.routing_key],
            "time": datetime.fromtimestamp(int(now), tz=UTC),
        }
        expiration = get_property(message.properties, "expiration")
        if expiration is not None:
            entry["original-expiration"] = expiration
        others = deaths
    entry["count"] = Long(entry["count"])
    out: dict[str, Any] = {"x-death": [dict(sorted(entry.items())), *others]}
    if "x-first-death-reason" not in (headers or {}):
        out["x-first-death-exchange"] = message.exchange
        out["x-first-death-queue"] = queue
        out["x-first-death-reason"] = reason
    out["x-last-death-exchange"] = message.exchange
    out["x-last-death-queue"] = queue
    out["x-last-death-reason"] = reason
    return out


def dead_letter_message(
    dead: DeadLetter, exchange: str, routing_key: str | None, now: float
) -> Message:
    """The message the dead-letter exchange receives (new headers, same body)."""
    message = dead.message
    properties = rewrite_properties(
        message.properties,
        set_headers=x_death_headers(message, dead.queue, dead.reason, now),
        drop=_DROP_EXPIRATION,
    )
    key = message.routing_key if routing_key is None else routing_key
    route = encode_shortstr(exchange) + encode_shortstr(key)
    return Message(exchange, key, route, properties, message.body)


def is_cycle(message: Message, target_queue: str) -> bool:
    """True if delivering this dead-lettered message to ``target_queue`` would loop.

    Walks x-death newest first up to the entry for ``target_queue``: a cycle unless one
    of those deaths was a rejection (a client decided, so it is not automatic looping).
    """
    for death in _deaths(message.headers()):
        if _text(death.get("reason")) == REJECTED:
            return False
        if _text(death.get("queue")) == target_queue:
            return True
    return False
