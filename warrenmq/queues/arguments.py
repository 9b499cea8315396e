"""Queue x-arguments: parsed once at declare into a frozen ``QueueArguments``.

Validation follows RabbitMQ's rules and wording (406 PRECONDITION_FAILED, "invalid arg
'x-message-ttl' for queue 'q' in vhost '/': ..."), so a client gets the same error from
both brokers. Unknown arguments are kept on the queue and ignored, as RabbitMQ does.
``x-retry-delays`` is WarrenMQ's own: a list of delays in milliseconds (see
``queue.py``, "Retry with backoff"). ``x-max-priority`` (0..255; 0 is one level, a
plain FIFO, as RabbitMQ 3.10 behaves) and ``x-single-active-consumer`` (a boolean) are
declare-time only: no policy key sets them (RabbitMQ refuses both as policy settings).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from warrenmq.errors import PreconditionFailed

OVERFLOW_MODES = ("drop-head", "reject-publish", "reject-publish-dlx")
MAX_TTL_MS = 2**32 - 1  # RabbitMQ's limit for x-message-ttl and per-message expiration
MAX_PRIORITY = 255  # RabbitMQ's limit for x-max-priority (a message priority is an octet)


@dataclass(frozen=True, slots=True)
class QueueArguments:
    message_ttl: int | None = None  # ms
    expires: int | None = None  # ms
    dead_letter_exchange: str | None = None
    dead_letter_routing_key: str | None = None
    max_length: int | None = None
    max_length_bytes: int | None = None
    overflow: str = "drop-head"
    delivery_limit: int | None = None
    retry_delays: tuple[int, ...] = ()  # ms
    max_priority: int | None = None  # x-max-priority; 0 or None: no priority levels
    single_active_consumer: bool = False

    @property
    def has_limits(self) -> bool:
        return self.max_length is not None or self.max_length_bytes is not None

    @property
    def has_timers(self) -> bool:
        """The queue needs the timer tick whether or not messages carry an expiration."""
        return self.message_ttl is not None or self.expires is not None \
            or bool(self.retry_delays)

    @property
    def counts_deliveries(self) -> bool:
        """Failed deliveries matter: the x-delivery-count header is kept up to date."""
        return self.delivery_limit is not None or bool(self.retry_delays)


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _non_negative(value: Any) -> int:
    number = _int(value)
    if number is None:
        raise ValueError(f"expected an integer, got {_show(value)}")
    if number < 0:
        raise ValueError(f"value must not be negative, got {number}")
    return number


def _positive(value: Any) -> int:
    number = _non_negative(value)
    if number == 0:
        raise ValueError("value must be greater than zero, got 0")
    return number


def _ttl(value: Any) -> int:
    number = _non_negative(value)
    if number > MAX_TTL_MS:
        raise ValueError(f"value must be at most {MAX_TTL_MS}, got {number}")
    return number


def _string(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_show(value)}")
    return value


def _overflow(value: Any) -> str:
    mode = _string(value)
    if mode not in OVERFLOW_MODES:
        raise ValueError(f"unknown overflow mode '{mode}', expected one of "
                         + ", ".join(OVERFLOW_MODES))
    return mode


def _delays(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"expected a non-empty array of delays in ms, got {_show(value)}")
    return tuple(_ttl(item) for item in value)


def _max_priority(value: Any) -> int:
    number = _non_negative(value)
    if number > MAX_PRIORITY:
        raise ValueError(f"value must be at most {MAX_PRIORITY}, got {number}")
    return number


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected a boolean, got {_show(value)}")
    return value


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


_PARSERS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "x-message-ttl": ("message_ttl", _ttl),
    "x-expires": ("expires", _positive),
    "x-dead-letter-exchange": ("dead_letter_exchange", _string),
    "x-dead-letter-routing-key": ("dead_letter_routing_key", _string),
    "x-max-length": ("max_length", _non_negative),
    "x-max-length-bytes": ("max_length_bytes", _non_negative),
    "x-overflow": ("overflow", _overflow),
    "x-delivery-limit": ("delivery_limit", _non_negative),
    "x-retry-delays": ("retry_delays", _delays),
    "x-max-priority": ("max_priority", _max_priority),
    "x-single-active-consumer": ("single_active_consumer", _boolean),
}


QUEUE_TYPES = ("classic", "quorum", "stream")  # quorum runs as a classic queue here


def _queue_type(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {_show(value)}")
    if value not in QUEUE_TYPES:
        raise ValueError(f"unsupported queue type '{value}'")
    return value


#: Checked at declare as RabbitMQ checks them (406), not used by the queue itself.
_CHECKED: dict[str, Callable[[Any], Any]] = {
    "x-queue-type": _queue_type,
}


def parse_value(key: str, value: Any) -> Any:
    """One known x-argument's value as the queue uses it (``ValueError`` saying what is
    wrong); policies validate their definition keys with it."""
    return _PARSERS[key][1](value)


def parse_arguments(
    arguments: Mapping[str, Any], where: str, *, effective: bool = False
) -> QueueArguments:
    """Validate the x-arguments RabbitMQ knows (and ours); ``where`` names the queue.

    ``effective``: the declared arguments merged with a policy's, each part already
    validated; a routing key without an exchange is then simply unused, as in RabbitMQ.
    """
    values: dict[str, Any] = {}
    for key, (field, parse) in _PARSERS.items():
        if key not in arguments:
            continue
        try:
            values[field] = parse(arguments[key])
        except ValueError as exc:
            raise PreconditionFailed(f"invalid arg '{key}' for {where}: {exc}") from None
    if effective:
        return QueueArguments(**values)
    for key, check in _CHECKED.items():
        if key in arguments:
            try:
                check(arguments[key])
            except ValueError as exc:
                raise PreconditionFailed(f"invalid arg '{key}' for {where}: {exc}") from None
    if "dead_letter_routing_key" in values and "dead_letter_exchange" not in values:
        raise PreconditionFailed(
            f"invalid arg 'x-dead-letter-routing-key' for {where}:"
            " a routing key needs x-dead-letter-exchange as well"
        )
    return QueueArguments(**values)
