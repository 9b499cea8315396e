"""Topology sections of the config: exchanges, queues, bindings, policies, permissions.

Owns the frozen dataclasses of the declarative sections, the rules each entity must meet
on its own (names, regexes, argument types, RabbitMQ's policy keys), and the mapping
between a queue's friendly spellings (``message_ttl: 30s``) and RabbitMQ's x-arguments
(``x-message-ttl: 30000``) in both directions. Rules that need the whole config
(references, duplicates per vhost, known users) are in :mod:`warrenmq.config.checks`.
Must not import the broker: the argument checks mirror ``queues/arguments.py`` so that
``check-config`` catches what the broker would refuse with 406. An exchange's type is
checked against the exchange-type registry (``warrenmq.exchange.registry``, which imports
nothing above ``warrenmq.errors``), read at check time so that plugin types count, and
the type's own ``validate_arguments`` judges its arguments.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from warrenmq.config.spec import (
    Finding,
    FreeMap,
    Path,
    rule,
    shortstr_problem,
    spec,
)
from warrenmq.config.units import age_ms

OVERFLOW_MODES = ("drop-head", "reject-publish", "reject-publish-dlx")
APPLY_TO = ("queues", "exchanges", "all")
MAX_TTL_MS = 2**32 - 1  # RabbitMQ's limit for x-message-ttl
MAX_PRIORITY = 255  # RabbitMQ's limit for x-max-priority
MAX_CACHE_SIZE = 10_000_000  # x-cache-size (queues/dedup.py)
DEDUP_KEY_SOURCES = ("header", "message_id")  # x-deduplication-key
#: Exchanges every vhost has; bindings may use them without declaring them.
STANDARD_EXCHANGES = {
    "amq.direct": "direct",
    "amq.fanout": "fanout",
    "amq.topic": "topic",
    "amq.headers": "headers",
    "amq.match": "headers",
}
X_MATCH_MODES = ("all", "any", "all-with-x", "any-with-x")

_MS = spec(unit="duration_ms", minimum=0, maximum=MAX_TTL_MS)
NO_ARGUMENTS = FreeMap()


#: Queue types a config may name; quorum runs as classic (no replication here).
QUEUE_TYPES = ("classic", "quorum", "stream")

@dataclass(frozen=True, slots=True)
class ExchangeConfig:
    """An exchange declared at start (and on reload); ``vhost`` None = the default vhost."""

    name: str = field(metadata=spec(non_empty=True))
    type: str = field(default="direct", metadata=spec(non_empty=True))  # see _exchange_type
    vhost: str | None = field(default=None, metadata=spec(non_empty=True))
    durable: bool = True
    auto_delete: bool = False
    internal: bool = False
    alternate_exchange: str | None = None  # the "alternate-exchange" argument
    # "x-delayed-type": the type an x-delayed-message exchange routes as (checked by it)
    delayed_type: str | None = None
    # deduplication (x-message-deduplication, x-cache-size...: docs/deduplication.md)
    message_deduplication: bool | None = None
    cache_size: int | None = field(default=None, metadata=spec(minimum=1,
                                                               maximum=MAX_CACHE_SIZE))
    cache_ttl: int | None = field(default=None, metadata=_MS)
    deduplication_header: str | None = field(default=None, metadata=spec(non_empty=True))
    deduplication_key: str | None = field(default=None,
                                          metadata=spec(choices=DEDUP_KEY_SOURCES))
    arguments: FreeMap = NO_ARGUMENTS


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """A queue declared at start; the friendly keys are its x-arguments, spelled for people."""

    name: str = field(metadata=spec(non_empty=True))
    vhost: str | None = field(default=None, metadata=spec(non_empty=True))
    durable: bool = True
    auto_delete: bool = False
    dead_letter_exchange: str | None = None
    dead_letter_routing_key: str | None = None
    message_ttl: int | None = field(default=None, metadata=_MS)
    expires: int | None = field(
        default=None, metadata=spec(unit="duration_ms", minimum=1, maximum=MAX_TTL_MS))
    max_length: int | None = field(default=None, metadata=spec(minimum=0))
    max_length_bytes: int | None = field(default=None, metadata=spec(minimum=0, unit="size"))
    overflow: str | None = field(default=None, metadata=spec(choices=OVERFLOW_MODES))
    delivery_limit: int | None = field(default=None, metadata=spec(minimum=0))
    retry_delays: tuple[int, ...] = field(
        default=(), metadata=spec(item=_MS["spec"]))
    # the queue type (x-queue-type); "stream": queues/stream.py, with its retention keys
    type: str | None = field(default=None, metadata=spec(choices=QUEUE_TYPES))
    max_age: str | None = None  # streams: 7D, 12h, 30m (x-max-age)
    stream_max_segment_size_bytes: int | None = field(
        default=None, metadata=spec(minimum=1, maximum=3_000_000_000, unit="size"))
    max_priority: int | None = field(
        default=None, metadata=spec(minimum=0, maximum=MAX_PRIORITY))
    single_active_consumer: bool | None = None
    # deduplication, as on exchanges
    message_deduplication: bool | None = None
    cache_size: int | None = field(default=None, metadata=spec(minimum=1,
                                                               maximum=MAX_CACHE_SIZE))
    cache_ttl: int | None = field(default=None, metadata=_MS)
    deduplication_header: str | None = field(default=None, metadata=spec(non_empty=True))
    deduplication_key: str | None = field(default=None,
                                          metadata=spec(choices=DEDUP_KEY_SOURCES))
    arguments: FreeMap = NO_ARGUMENTS


@dataclass(frozen=True, slots=True)
class BindingConfig:
    """A binding from exchange ``source`` to a queue or exchange ``destination``."""

    source: str
    destination: str = field(metadata=spec(non_empty=True))
    destination_type: str = field(default="queue", metadata=spec(choices=("queue", "exchange")))
    routing_key: str = ""
    vhost: str | None = field(default=None, metadata=spec(non_empty=True))
    arguments: FreeMap = NO_ARGUMENTS


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """A RabbitMQ policy: ``definition`` applies to the queues/exchanges ``pattern`` matches."""

    name: str = field(metadata=spec(non_empty=True))
    pattern: str
    definition: FreeMap = field(metadata=spec(non_empty=True))
    vhost: str | None = field(default=None, metadata=spec(non_empty=True))
    apply_to: str = field(default="all", metadata=spec(choices=APPLY_TO))
    priority: int = 0


@dataclass(frozen=True, slots=True)
class PermissionConfig:
    """What ``user`` may configure, write and read in ``vhost``: regexes, as RabbitMQ."""

    user: str = field(metadata=spec(non_empty=True))
    configure: str
    write: str
    read: str
    vhost: str | None = field(default=None, metadata=spec(non_empty=True))


@dataclass(frozen=True, slots=True)
class TopicPermissionConfig:
    """RabbitMQ's topic authorisation: on topic exchange ``exchange`` of ``vhost``, the
    routing keys ``user`` may publish with (``write``) and the binding keys it may bind
    with (``read``); regexes in which ``{username}`` and ``{vhost}`` are substituted."""

    user: str = field(metadata=spec(non_empty=True))
    exchange: str
    write: str = ".*"
    read: str = ".*"
    vhost: str | None = field(default=None, metadata=spec(non_empty=True))


# ----------------------------------------------------------------- argument kinds


def _kind_int(low: int, high: int | None, unit: str = "") -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        in_range = isinstance(value, int) and not isinstance(value, bool) and value >= low \
            and (high is None or value <= high)
        if in_range:
            return None
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        return f"expected an integer {bound}{unit}, got {_show(value)}"
    return check


def _kind_bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"expected a boolean, got {_show(value)}"


def _kind_str(value: Any) -> str | None:
    return None if isinstance(value, str) else f"expected a string, got {_show(value)}"


def _kind_choice(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value in choices and isinstance(value, str):
            return None
        return "expected one of " + ", ".join(f'"{c}"' for c in choices) + f", got {_show(value)}"
    return check


_ms = _kind_int(0, MAX_TTL_MS, " (milliseconds)")


def _kind_ms_list(value: Any) -> str | None:
    if not isinstance(value, tuple | list) or not value or any(_ms(v) for v in value):
        return f"expected a non-empty list of delays in milliseconds, got {_show(value)}"
    return None


def _kind_age(value: Any) -> str | None:
    if age_ms(value) is None:
        return f"expected an age such as 7D, 12h or 30m (Y M D h m s), got {_show(value)}"
    return None


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple | list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return repr(value)


@dataclass(frozen=True, slots=True)
class Friendly:
    """One friendly queue key and the x-argument it stands for."""

    field: str  # QueueConfig field
    argument: str  # x-argument
    check: Callable[[Any], str | None]


def _kind_text(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return None
    return f"expected a non-empty string, got {_show(value)}"


#: Deduplication's arguments (queues/dedup.py), on queues and exchanges alike.
DEDUP_FRIENDLY = (
    Friendly("message_deduplication", "x-message-deduplication", _kind_bool),
    Friendly("cache_size", "x-cache-size", _kind_int(1, MAX_CACHE_SIZE)),
    Friendly("cache_ttl", "x-cache-ttl", _ms),
    Friendly("deduplication_header", "x-deduplication-header", _kind_text),
    Friendly("deduplication_key", "x-deduplication-key", _kind_choice(DEDUP_KEY_SOURCES)),
)
DEDUP_FIELDS = tuple(f.field for f in DEDUP_FRIENDLY)

#: Every x-argument the broker acts on (queues/arguments.py), with its friendly key.
QUEUE_FRIENDLY = (
    Friendly("dead_letter_exchange", "x-dead-letter-exchange", _kind_str),
    Friendly("dead_letter_routing_key", "x-dead-letter-routing-key", _kind_str),
    Friendly("message_ttl", "x-message-ttl", _ms),
    Friendly("expires", "x-expires", _kind_int(1, MAX_TTL_MS, " (milliseconds)")),
    Friendly("max_length", "x-max-length", _kind_int(0, None)),
    Friendly("max_length_bytes", "x-max-length-bytes", _kind_int(0, None)),
    Friendly("overflow", "x-overflow", _kind_choice(OVERFLOW_MODES)),
    Friendly("delivery_limit", "x-delivery-limit", _kind_int(0, None)),
    Friendly("retry_delays", "x-retry-delays", _kind_ms_list),
    Friendly("max_age", "x-max-age", _kind_age),
    Friendly("stream_max_segment_size_bytes", "x-stream-max-segment-size-bytes",
             _kind_int(1, 3_000_000_000)),
    Friendly("max_priority", "x-max-priority", _kind_int(0, MAX_PRIORITY)),
    Friendly("single_active_consumer", "x-single-active-consumer", _kind_bool),
    *DEDUP_FRIENDLY,
)
EXCHANGE_FRIENDLY = (
    Friendly("alternate_exchange", "alternate-exchange", _kind_str),
    Friendly("delayed_type", "x-delayed-type", _kind_str),
    *DEDUP_FRIENDLY,
)


def queue_arguments(queue: QueueConfig) -> dict[str, Any]:
    """The queue's x-arguments as the broker takes them: raw ``arguments`` + friendly keys."""
    out = _arguments(queue, QUEUE_FRIENDLY)
    if queue.type is not None:
        out["x-queue-type"] = queue.type
    return out


def exchange_arguments(exchange: ExchangeConfig) -> dict[str, Any]:
    return _arguments(exchange, EXCHANGE_FRIENDLY)


def _arguments(entity: Any, table: tuple[Friendly, ...]) -> dict[str, Any]:
    out: dict[str, Any] = entity.arguments.to_plain()
    for friendly in table:
        value = getattr(entity, friendly.field)
        if value is not None and value != ():
            out[friendly.argument] = list(value) if isinstance(value, tuple) else value
    return out


def split_queue_arguments(arguments: Mapping[str, Any]) -> tuple[dict[str, Any], FreeMap]:
    """x-arguments -> (friendly keyword values, the rest); invalid values stay in the rest.
    Only a stream's x-queue-type reads back as ``type`` (classic and quorum stay raw
    arguments, as documents written before streams existed have them)."""
    stream = arguments.get("x-queue-type") == "stream"
    friendly, rest = _split({k: v for k, v in arguments.items()
                             if not (stream and k == "x-queue-type")}, QUEUE_FRIENDLY)
    if stream:
        friendly["type"] = "stream"
    return friendly, rest


def split_exchange_arguments(arguments: Mapping[str, Any]) -> tuple[dict[str, Any], FreeMap]:
    return _split(arguments, EXCHANGE_FRIENDLY)


def _split(
    arguments: Mapping[str, Any], table: tuple[Friendly, ...]
) -> tuple[dict[str, Any], FreeMap]:
    friendly: dict[str, Any] = {}
    rest = dict(arguments)
    for entry in table:
        if entry.argument in rest and entry.check(rest[entry.argument]) is None:
            value = rest.pop(entry.argument)
            friendly[entry.field] = tuple(value) if isinstance(value, list | tuple) else value
    return friendly, FreeMap(rest)


# ------------------------------------------------------------------------ policies

#: The policy keys RabbitMQ 3.10 accepts (its policy_validator registry, plus the
#: federation plugin's); any other key makes ``rabbitmqctl set_policy`` fail with "not
#: recognised policy settings".
RABBIT_POLICY_KEYS = frozenset({
    "alternate-exchange", "dead-letter-exchange", "dead-letter-routing-key",
    "dead-letter-strategy", "delivery-limit", "expires", "ha-mode", "ha-params",
    "ha-promote-on-failure", "ha-promote-on-shutdown", "ha-sync-batch-size", "ha-sync-mode",
    "initial-cluster-size", "max-age", "max-in-memory-bytes", "max-in-memory-length",
    "max-length", "max-length-bytes", "message-ttl", "overflow", "queue-leader-locator",
    "queue-master-locator", "queue-mode", "queue-version", "stream-max-segment-size-bytes",
    "federation-upstream", "federation-upstream-set",
})
#: WarrenMQ's own policy keys (x-retry-delays, deduplication); left out of a RabbitMQ
#: export, with a note.
WARREN_POLICY_KEYS = frozenset({"retry-delays", "message-deduplication", "cache-size",
                                "cache-ttl", "deduplication-header", "deduplication-key"})
POLICY_KEYS = RABBIT_POLICY_KEYS | WARREN_POLICY_KEYS
#: Value checks for the policy keys whose values RabbitMQ checks and WarrenMQ uses.
POLICY_VALUES: dict[str, Callable[[Any], str | None]] = {
    "alternate-exchange": _kind_str,
    "dead-letter-exchange": _kind_str,
    "dead-letter-routing-key": _kind_str,
    "message-ttl": _ms,
    "expires": _kind_int(1, MAX_TTL_MS, " (milliseconds)"),
    "max-length": _kind_int(0, None),
    "max-length-bytes": _kind_int(0, None),
    "delivery-limit": _kind_int(0, None),
    "max-age": _kind_age,
    "stream-max-segment-size-bytes": _kind_int(1, 3_000_000_000),
    "overflow": _kind_choice(OVERFLOW_MODES),
    "queue-mode": _kind_choice(("default", "lazy")),
    "retry-delays": _kind_ms_list,
    **{f.argument[2:]: f.check for f in DEDUP_FRIENDLY},
}


# -------------------------------------------------------------------------- rules


def regex_problem(pattern: str) -> str | None:
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"not a valid regular expression: {exc}"
    return None


def _name_rules(kind: str) -> Callable[[Any], Iterator[Finding]]:
    def check(entity: Any) -> Iterator[Finding]:
        problem = shortstr_problem(entity.name)
        if problem:
            yield ("name",), problem
        elif entity.name.startswith("amq.") and not (
                kind == "queue" and entity.name.startswith("amq.gen-")):  # server-named
            yield ("name",), (f"{kind} names starting with 'amq.' are reserved"
                              + (" (the standard exchanges exist already)"
                                 if kind == "exchange" else ""))
    return check


def _argument_findings(
    entity: Any, table: tuple[Friendly, ...]
) -> Iterator[Finding]:
    for entry in table:
        if entry.argument not in entity.arguments:
            continue
        where: Path = ("arguments", entry.argument)
        value = getattr(entity, entry.field)
        if value is not None and value != ():
            yield where, f"given twice: here and as {entry.field}; keep one"
            continue
        problem = entry.check(entity.arguments[entry.argument])
        if problem:
            yield where, problem


def _queue_arguments(queue: QueueConfig) -> Iterator[Finding]:
    yield from _argument_findings(queue, QUEUE_FRIENDLY)
    arguments = queue_arguments(queue)
    if "x-dead-letter-routing-key" in arguments and "x-dead-letter-exchange" not in arguments:
        yield (("dead_letter_routing_key",),
               "a dead-letter routing key needs dead_letter_exchange as well")


def _exchange_arguments(exchange: ExchangeConfig) -> Iterator[Finding]:
    yield from _argument_findings(exchange, EXCHANGE_FRIENDLY)
    if exchange.type != "x-delayed-message" and exchange.delayed_type is not None:
        yield ("delayed_type",), "only an exchange of type x-delayed-message takes this key"


def _exchange_type(exchange: ExchangeConfig) -> Iterator[Finding]:
    """The type is registered (built-in or a loaded plugin) and accepts the arguments."""
    from warrenmq.errors import AMQPError
    from warrenmq.exchange.registry import EXCHANGE_TYPES, PluginError, load_plugins

    try:
        load_plugins()
    except PluginError as exc:
        yield ("type",), str(exc)
        return
    cls = EXCHANGE_TYPES.get(exchange.type)
    if cls is None:
        known = ", ".join(f'"{name}"' for name in EXCHANGE_TYPES)
        yield ("type",), f'unknown exchange type "{exchange.type}"; expected one of {known}'
        return
    try:
        cls.validate_arguments(exchange_arguments(exchange))
    except AMQPError as exc:
        yield ("arguments",), f"the {exchange.type} exchange type refuses it: {exc.text}"
    except Exception as exc:  # a plugin's fault, reported rather than raised
        yield ("arguments",), (f"the {exchange.type} exchange type failed to check it:"
                               f" {type(exc).__name__}: {exc}")


def _policy_rules(policy: PolicyConfig) -> Iterator[Finding]:
    problem = regex_problem(policy.pattern)
    if problem:
        yield ("pattern",), problem
    for key, value in policy.definition.items():
        if key not in POLICY_KEYS:
            yield ("definition", key), (f"'{key}' is not a policy key (RabbitMQ's, or"
                                        " WarrenMQ's retry-delays)")
            continue
        check = POLICY_VALUES.get(key)
        message = check(value) if check else None
        if message:
            yield ("definition", key), message
    if "dead-letter-routing-key" in policy.definition \
            and "dead-letter-exchange" not in policy.definition:
        yield (("definition", "dead-letter-routing-key"),
               "a dead-letter-routing-key needs dead-letter-exchange as well")


#: Friendly keys a stream refuses (RabbitMQ: "invalid arg ... of queue type
#: rabbit_stream_queue"), and the stream-only ones.
_NOT_ON_STREAMS = ("dead_letter_exchange", "dead_letter_routing_key", "message_ttl",
                   "expires", "max_length", "overflow", "delivery_limit", "retry_delays",
                   "max_priority", "single_active_consumer")
_STREAM_ONLY = ("max_age", "stream_max_segment_size_bytes")


def _stream_rules(queue: QueueConfig) -> Iterator[Finding]:
    if queue.max_age is not None and age_ms(queue.max_age) is None:
        yield ("max_age",), _kind_age(queue.max_age) or "invalid"
    if queue.type != "stream" and queue.arguments.get("x-queue-type") != "stream":
        for name in _STREAM_ONLY:
            if getattr(queue, name) is not None:
                yield (name,), "only a stream queue (type: stream) takes this key"
        return
    if not queue.durable:
        yield ("durable",), "a stream queue must be durable"
    if queue.auto_delete:
        yield ("auto_delete",), "a stream queue cannot be auto-delete"
    for name in _NOT_ON_STREAMS:
        if getattr(queue, name) not in (None, ()):
            yield (name,), "a stream queue does not take this key (RabbitMQ refuses it too)"


def _permission_rules(permission: PermissionConfig) -> Iterator[Finding]:
    for name in ("configure", "write", "read"):
        problem = regex_problem(getattr(permission, name))
        if problem:
            yield (name,), problem


def _topic_permission_rules(permission: TopicPermissionConfig) -> Iterator[Finding]:
    for name in ("write", "read"):
        problem = regex_problem(getattr(permission, name).replace("{username}", "u")
                                .replace("{vhost}", "v"))
        if problem:
            yield (name,), problem


def _binding_rules(binding: BindingConfig) -> Iterator[Finding]:
    if binding.source == "":
        yield ("source",), "the default exchange cannot be bound"
    for name in ("source", "destination", "routing_key"):
        problem = shortstr_problem(getattr(binding, name))
        if problem:
            yield (name,), problem


RULES = {
    ExchangeConfig: (
        rule(_name_rules("exchange"), "name"),
        rule(_exchange_arguments, "arguments", "alternate_exchange", "delayed_type", "type",
             *DEDUP_FIELDS),
        rule(_exchange_type, "type", "arguments", "alternate_exchange", "delayed_type"),
    ),
    QueueConfig: (
        rule(_name_rules("queue"), "name"),
        rule(_queue_arguments, "arguments", "dead_letter_exchange", "dead_letter_routing_key",
             "message_ttl", "expires", "max_length", "max_length_bytes", "overflow",
             "delivery_limit", "retry_delays", "max_priority", "single_active_consumer",
             *DEDUP_FIELDS),
        rule(_stream_rules, "type", "max_age", "stream_max_segment_size_bytes", "durable",
             "auto_delete", "arguments", *_NOT_ON_STREAMS),
    ),
    BindingConfig: (rule(_binding_rules, "source", "destination", "routing_key"),),
    PolicyConfig: (rule(_policy_rules, "pattern", "definition"),),
    PermissionConfig: (rule(_permission_rules, "configure", "write", "read"),),
    TopicPermissionConfig: (rule(_topic_permission_rules, "write", "read"),),
}
