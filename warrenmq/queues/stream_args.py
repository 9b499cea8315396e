"""Stream queue arguments: declare-time rules and consume-time offsets, RabbitMQ's way.

Declare (``parse_stream_declare``): durable, not exclusive, not auto-delete; retention by
``x-max-age`` (``^[0-9]+(Y|M|D|h|m|s)$``, > 0; Y = 365 days, M = 30 days) and
``x-max-length-bytes``; ``x-stream-max-segment-size-bytes`` up to 3,000,000,000; the
cluster-only ``x-initial-cluster-size`` and ``x-queue-leader-locator`` accepted and
ignored; the classic-queue features a log cannot have refused. Errors are 406 with
RabbitMQ 3.10.8's words (checked against a node: see docs/streams.md).

Consume (``parse_consume``): ``x-stream-offset`` first | last | next | an integer | an
AMQP timestamp | an interval string; ``x-stream-filter`` (string or list) and
``x-stream-match-unfiltered`` (bool), and WarrenMQ's ``x-stream-consumer-name`` (offset
tracking). Pure functions: no I/O, no queue state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from warrenmq.config.units import age_ms
from warrenmq.errors import PreconditionFailed
from warrenmq.storage.stream import DEFAULT_STREAM_SEGMENT_SIZE

MAX_SEGMENT_SIZE = 3_000_000_000
#: Classic-queue arguments RabbitMQ refuses on a stream.
REFUSED = ("x-max-length", "x-message-ttl", "x-expires", "x-dead-letter-exchange",
           "x-dead-letter-routing-key", "x-overflow", "x-max-priority",
           "x-single-active-consumer", "x-delivery-limit", "x-queue-mode",
           "x-retry-delays", "x-queue-master-locator", "x-queue-version")
MAX_FILTER_VALUE = 255  # bytes kept of a filter value (stored as a short string)


@dataclass(frozen=True, slots=True)
class StreamArguments:
    max_age_ms: int | None = None
    max_length_bytes: int | None = None
    segment_size: int = DEFAULT_STREAM_SEGMENT_SIZE


@dataclass(frozen=True, slots=True)
class ConsumeStart:
    """Where a consumer starts: ``kind`` is first | last | next | offset | time |
    tracked; ``value`` the offset or the time in ms."""

    kind: str
    value: int
    filters: frozenset[bytes] | None
    match_unfiltered: bool
    name: str | None
    explicit: bool  # x-stream-offset was given


def is_stream(arguments: Mapping[str, Any] | None) -> bool:
    kind = (arguments or {}).get("x-queue-type")
    if isinstance(kind, bytes | bytearray):
        kind = bytes(kind).decode("utf-8", "replace")
    return kind == "stream"


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def check_declare(where: str, *, durable: bool, exclusive: bool, auto_delete: bool) -> None:
    for bad, prop in ((not durable, "non-durable"), (exclusive, "exclusive-owner"),
                      (auto_delete, "auto-delete")):
        if bad:
            raise PreconditionFailed(f"invalid property '{prop}' for {where}")


def parse_stream_arguments(arguments: Mapping[str, Any], where: str,
                           policy: Mapping[str, Any] | None = None) -> StreamArguments:
    """Validate a stream's x-arguments; a policy's max-age, max-length-bytes and
    stream-max-segment-size-bytes win over them (already validated)."""
    for key in REFUSED:
        if key in arguments:
            raise PreconditionFailed(
                f"invalid arg '{key}' for {where} of queue type rabbit_stream_queue")
    values = {"x-max-age": arguments.get("x-max-age"),
              "x-max-length-bytes": arguments.get("x-max-length-bytes"),
              "x-stream-max-segment-size-bytes": arguments.get("x-stream-max-segment-size-bytes")}
    for key, value in (policy or {}).items():
        if f"x-{key}" in values:
            values[f"x-{key}"] = value
    max_age = None
    if values["x-max-age"] is not None:
        max_age = age_ms(values["x-max-age"])
        if max_age is None:
            raise PreconditionFailed(f"invalid arg 'x-max-age' for {where}: invalid_max_age"
                                     " (expected a string like 7D, 12h or 30m, > 0)")
    max_bytes = None
    if values["x-max-length-bytes"] is not None:
        max_bytes = _int(values["x-max-length-bytes"])
        if max_bytes is None or max_bytes < 0:
            raise PreconditionFailed(f"invalid arg 'x-max-length-bytes' for {where}:"
                                     f" expected a non-negative integer, got"
                                     f" {values['x-max-length-bytes']!r}")
    segment = DEFAULT_STREAM_SEGMENT_SIZE
    if values["x-stream-max-segment-size-bytes"] is not None:
        size = _int(values["x-stream-max-segment-size-bytes"])
        if size is None or size <= 0:
            raise PreconditionFailed(f"invalid arg 'x-stream-max-segment-size-bytes' for"
                                     f" {where}: expected a positive integer")
        if size > MAX_SEGMENT_SIZE:
            raise PreconditionFailed("Exceeded max value for x-stream-max-segment-size-bytes")
        segment = size
    return StreamArguments(max_age, max_bytes, segment)


def validate_policy_value(key: str, value: Any) -> None:
    """Policies: ``ValueError`` when a stream key's value is wrong."""
    if key == "max-age" and age_ms(value) is None:
        raise ValueError("expected a string like 7D, 12h or 30m, greater than zero")
    if key == "stream-max-segment-size-bytes":
        size = _int(value)
        if size is None or not 0 < size <= MAX_SEGMENT_SIZE:
            raise ValueError(f"expected an integer from 1 to {MAX_SEGMENT_SIZE}")


def _bad_offset(where: str, value: Any) -> PreconditionFailed:
    return PreconditionFailed(
        f"invalid arg 'x-stream-offset' for {where}: expected first, last, next, an offset,"
        f" a timestamp or an interval like 30m, got {type(value).__name__} {value!r}")


def _text(value: Any) -> str | None:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def parse_consume(arguments: Mapping[str, Any], where: str, now_ms: int) -> ConsumeStart:
    filters = _filters(arguments.get("x-stream-filter"), where)
    unfiltered = arguments.get("x-stream-match-unfiltered", False)
    if not isinstance(unfiltered, bool):
        raise PreconditionFailed(f"invalid arg 'x-stream-match-unfiltered' for {where}:"
                                 f" expected a boolean, got {unfiltered!r}")
    name = None
    if "x-stream-consumer-name" in arguments:
        name = _text(arguments["x-stream-consumer-name"])
        if not name or len(name.encode()) > 255:
            raise PreconditionFailed(f"invalid arg 'x-stream-consumer-name' for {where}:"
                                     " expected a non-empty string of at most 255 bytes")
    if "x-stream-offset" not in arguments:
        kind = "tracked" if name else "next"
        return ConsumeStart(kind, 0, filters, unfiltered, name, False)
    value = arguments["x-stream-offset"]
    text = _text(value)
    if text in ("first", "last", "next"):
        assert text is not None
        return ConsumeStart(text, 0, filters, unfiltered, name, True)
    if text is not None:
        age = age_ms(text)
        if age is None:
            raise _bad_offset(where, value)
        return ConsumeStart("time", now_ms - age, filters, unfiltered, name, True)
    if isinstance(value, datetime):
        return ConsumeStart("time", int(value.timestamp()) * 1000, filters, unfiltered,
                            name, True)
    number = _int(value)
    if number is None:
        raise _bad_offset(where, value)
    return ConsumeStart("offset", number, filters, unfiltered, name, True)


def _filters(value: Any, where: str) -> frozenset[bytes] | None:
    if value is None:
        return None
    items = value if isinstance(value, list | tuple) else [value]
    out = set()
    for item in items:
        text = _text(item)
        if text is None:
            raise PreconditionFailed(f"invalid arg 'x-stream-filter' for {where}: expected"
                                     f" a string or a list of strings, got {value!r}")
        out.add(text.encode()[:MAX_FILTER_VALUE])
    return frozenset(out)


def looks_like_unix_time(number: int, now_ms: int) -> str | None:
    """'seconds' or 'milliseconds' when ``number`` is within 20 years of now as one."""
    span = 20 * 365 * 86400
    now_s = now_ms // 1000
    if abs(number - now_s) < span:
        return "seconds"
    if abs(number - now_ms) < span * 1000:
        return "milliseconds"
    return None
