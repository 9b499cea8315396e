"""Dead-lettering: the records queues emit and the message the DLX receives.

A queue never publishes; it returns ``DeadLetter`` records (reason, source queue, the
message) and the virtual host routes them through the queue's dead-letter exchange. This
module builds the re-published message exactly as RabbitMQ 3.x does (rabbit_dead_letter):

- ``x-death`` is an array of tables, one per (queue, reason), newest first. A repeat of a
  (queue, reason) increments that entry's ``count`` (a long) and moves it to the front;
  its other fields (time, exchange, routing-keys) keep the values of its first death.
  Field order as RabbitMQ 3.10 writes it (tests/fixtures/rabbitmq_x_death.json): the
  first death's entry is count, reason, queue, time, exchange, routing-keys,
  original-expiration (only when the message had a per-message TTL); an entry added to
  or updated in an existing x-death is sorted by name. Older entries keep their fields.
- The whole headers table is written sorted by key, as RabbitMQ does.
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
from typing import Any, Final

from warrenmq.message import Message
from warrenmq.protocol.fields import Long, encode_shortstr
from warrenmq.protocol.properties import get_property, rewrite_properties

REJECTED: Final = "rejected"
EXPIRED: Final = "expired"
MAXLEN: Final = "maxlen"
DELIVERY_LIMIT: Final = "delivery_limit"
REASONS: Final = (REJECTED, EXPIRED, MAXLEN, DELIVERY_LIMIT)

_DROP_EXPIRATION: Final = frozenset({"expiration"})


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


def _long_count(death: dict[str, Any]) -> dict[str, Any]:
    count = death.get("count")
    if isinstance(count, int) and not isinstance(count, bool | Long):
        return {**death, "count": Long(count)}
    return death


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
        # RabbitMQ's field order for a new entry (rabbit_dead_letter: count first, then
        # the death info); it sorts the entry by name only when x-death already existed.
        entry = {
            "count": 1,
            "reason": reason,
            "queue": queue,
            "time": datetime.fromtimestamp(int(now), tz=UTC),
            "exchange": message.exchange,
            "routing-keys": [message.routing_key],
        }
        expiration = get_property(message.properties, "expiration")
        if expiration is not None:
            entry["original-expiration"] = expiration
        others = deaths
    if deaths:
        entry = dict(sorted(entry.items()))
    # Older entries are decoded and re-encoded: keep their count a long ('l'), not the
    # 'I' a plain int would become (typed clients read it as a 64-bit Long).
    others = [_long_count(d) for d in others]
    entry["count"] = Long(entry["count"])
    out: dict[str, Any] = {"x-death": [entry, *others]}
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
        sort_headers=True,
    )
    key = message.routing_key if routing_key is None else routing_key
    route = encode_shortstr(exchange) + encode_shortstr(key)
    return Message(exchange, key, route, properties, message.load_body())


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
