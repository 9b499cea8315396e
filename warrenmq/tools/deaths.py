"""Reading the dead-lettering headers RabbitMQ (and WarrenMQ) put on a message.

``x-death`` is an array of tables, newest first, one per (queue, reason) with a
``count``; ``x-first-death-exchange/-queue/-reason`` name where the message first died.
``origin`` condenses them into what an operator needs: where the message came from
(exchange, routing keys, queue of the first death), why it died last, how many times
it died in all and when. Values may arrive as ``str`` or ``bytes`` depending on the
client's decoder; both are accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

PREVIEW_BYTES = 60
_ESCAPES = {0x5C: "\\\\", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a dead-lettered message came from and how it died."""

    exchange: str  # x-first-death-exchange ("" is the default exchange)
    routing_keys: tuple[str, ...]  # routing-keys of the first death's x-death entry
    queue: str  # x-first-death-queue
    reason: str  # the latest death's reason (rejected, expired, maxlen, delivery_limit)
    count: int  # deaths in all (sum of the x-death counts)
    time: datetime | None  # time of the latest x-death entry


def text(value: Any) -> str:
    """A header value as text (AMQP strings may decode as ``bytes``)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return "" if value is None else str(value)


def deaths(headers: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """The ``x-death`` entries of ``headers``, newest first ([] when absent)."""
    value = (headers or {}).get("x-death")
    if not isinstance(value, list | tuple):
        return []
    return [entry for entry in value if isinstance(entry, Mapping)]


def _first_entry(headers: Mapping[str, Any], entries: list[Mapping[str, Any]]
                 ) -> Mapping[str, Any]:
    """The x-death entry of the first death (x-first-death-queue/-reason), oldest first."""
    queue = headers.get("x-first-death-queue")
    reason = headers.get("x-first-death-reason")
    matches = [
        entry for entry in entries
        if (queue is None or text(entry.get("queue")) == text(queue))
        and (reason is None or text(entry.get("reason")) == text(reason))
    ]
    return (matches or entries)[-1]


def _count(entry: Mapping[str, Any]) -> int:
    try:
        return int(entry.get("count", 1))
    except (TypeError, ValueError):
        return 1


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, tz=UTC)
    return None


def origin(headers: Mapping[str, Any] | None) -> Origin | None:
    """The origin of a dead-lettered message, or None without ``x-death``."""
    entries = deaths(headers)
    if not entries or headers is None:
        return None
    first = _first_entry(headers, entries)
    keys = first.get("routing-keys")
    routing_keys = tuple(text(k) for k in keys) if isinstance(keys, list | tuple) else ()
    exchange = headers.get("x-first-death-exchange", first.get("exchange"))
    queue = headers.get("x-first-death-queue", first.get("queue"))
    reason = headers.get("x-last-death-reason", entries[0].get("reason"))
    return Origin(
        exchange=text(exchange),
        routing_keys=routing_keys,
        queue=text(queue),
        reason=text(reason),
        count=sum(_count(entry) for entry in entries),
        time=_time(entries[0].get("time")),
    )


def preview(body: bytes, limit: int = PREVIEW_BYTES) -> str:
    """The first ``limit`` bytes of ``body``, printable ASCII kept and the rest escaped
    (``\\n``, ``\\xNN``...); ``...`` marks a cut."""
    out = []
    for byte in body[:limit]:
        if byte in _ESCAPES:
            out.append(_ESCAPES[byte])
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02x}")
    return "".join(out) + ("..." if len(body) > limit else "")


def json_safe(value: Any) -> Any:
    """``value`` (a decoded AMQP field) with datetimes, bytes and decimals made JSON-able."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, datetime):
        return _time(value).isoformat()  # type: ignore[union-attr]
    if isinstance(value, bytes | bytearray):
        return text(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
