"""The ``x-delayed-message`` exchange type: routing by another type, after a delay.

RabbitMQ's rabbitmq-delayed-message-exchange plugin, so code written for it runs
unchanged: the required argument ``x-delayed-type`` names the exchange type whose rules
route the message (bindings behave as that type's), and a message whose ``x-delay``
header holds 1..2^32-1 milliseconds is held until then; anything else (absent, 0,
negative, too large, not a number) routes at once. ``delay_of`` reads the header as the
plugin does (integers of any width, numeric strings, floats and decimals truncated).

Owns the exchange's bindings (kept by an inner exchange of the delayed type, so any
registered type works behind it) and the messages it holds (``DelayHeap``: one packed
``bytes`` per message in a binary heap ordered by due time, then arrival). It must not
route a held message itself, store it, or know about timers: ``broker/delays.py`` holds
and releases, ``server/delay_timer.py`` decides when.
"""

from __future__ import annotations

import heapq
import re
import struct
from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, ClassVar, Final, NamedTuple

from warrenmq.errors import PreconditionFailed
from warrenmq.exchange.base import Binding, Destination, Exchange, HeadersGetter

if TYPE_CHECKING:
    from warrenmq.message import Message

DELAYED_TYPE: Final = "x-delayed-message"
TYPE_ARGUMENT: Final = "x-delayed-type"
DELAY_HEADER: Final = "x-delay"
#: The plugin's bound: Erlang's longest timer, (2^32)-1 ms (about 49.7 days).
MAX_DELAY: Final = 0xFFFF_FFFF
#: The plugin's words (its clients match on them), then what was wrong.
BAD_TYPE: Final = "Invalid argument, 'x-delayed-type' must be an existing exchange type"

_INTEGER: Final = re.compile(r"[+-]?[0-9]+")  # Erlang's binary_to_integer


def delay_of(headers: Mapping[str, Any] | None) -> int:
    """The delay in ms the ``x-delay`` header asks for, or 0 for "route now".

    As the plugin: integer types as they are, strings holding a (signed) decimal integer
    converted, floats and decimals truncated; booleans, timestamps, byte arrays, tables
    and anything outside 1..2^32-1 mean no delay.
    """
    if not headers:
        return 0
    value = headers.get(DELAY_HEADER)
    if value is None or isinstance(value, bool):
        return 0
    delay = 0
    if type(value) is int:  # not a Timestamp (an int subclass for 'T' past year 9999)
        delay = value
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return 0
        delay = int(value)
    elif isinstance(value, Decimal):
        try:
            delay = int(value)
        except (ValueError, OverflowError, InvalidOperation):
            return 0
    elif isinstance(value, str):
        if not _INTEGER.fullmatch(value):
            return 0
        delay = int(value)
    return delay if 1 <= delay <= MAX_DELAY else 0


# --------------------------------------------------------------------------- the heap
#: due ms, arrival sequence (the store's msg_id when stored), flags, route length,
#: properties length; big-endian, so comparing two entries' bytes compares (due, seq).
_HEAD: Final = struct.Struct(">QQBHI")
HEAD_SIZE: Final = _HEAD.size  # 23
STORED: Final = 1


class Held(NamedTuple):
    """One released (or listed) message, unpacked."""

    due_ms: int
    seq: int
    stored: bool
    route: bytes  # exchange and routing key as the two short strings of the publish
    properties: bytes
    body: bytes


def unpack(entry: bytes) -> Held:
    due, seq, flags, rlen, plen = _HEAD.unpack_from(entry, 0)
    start = HEAD_SIZE + rlen
    end = start + plen
    return Held(due, seq, bool(flags & STORED), entry[HEAD_SIZE:start], entry[start:end],
                entry[end:])


class DelayHeap:
    """Messages waiting for their due time, earliest first.

    Each message is ONE ``bytes`` object (``_HEAD`` + route + properties + body) in a
    ``heapq`` list: the big-endian head makes byte order (due time, then arrival) order,
    so ``heapq`` compares in C and a waiting message costs its bytes, a 23-byte head,
    the ``bytes`` object header and a list slot -- no tuple, int or Message per message.
    """

    def __init__(self) -> None:
        self.entries: list[bytes] = []
        self.body_bytes = 0  # bodies held (for the management API)

    def __len__(self) -> int:
        return len(self.entries)

    def push(self, due_ms: int, seq: int, stored: bool, route: bytes, properties: bytes,
             body: bytes) -> bool:
        """Hold one message; True when it is now the earliest (a timer must be moved)."""
        entry = b"%s%s%s%s" % (
            _HEAD.pack(due_ms, seq, STORED if stored else 0, len(route), len(properties)),
            route, properties, body)
        entries = self.entries
        heapq.heappush(entries, entry)
        self.body_bytes += len(body)
        return entries[0] is entry

    def extend(self, entries: list[bytes]) -> None:
        """Add many packed entries at once (recovery): one heapify, O(n)."""
        self.entries.extend(entries)
        heapq.heapify(self.entries)
        self.body_bytes = sum(len(unpack(e).body) for e in self.entries)

    def next_due(self) -> int:
        """The earliest due time in ms, or 0 when nothing waits."""
        entries = self.entries
        return _HEAD.unpack_from(entries[0], 0)[0] if entries else 0

    def pop_due(self, now_ms: int, limit: int) -> list[Held]:
        """At most ``limit`` messages due at ``now_ms``, earliest first."""
        out: list[Held] = []
        entries = self.entries
        head = _HEAD.unpack_from
        while entries and len(out) < limit and head(entries[0], 0)[0] <= now_ms:
            held = unpack(heapq.heappop(entries))
            self.body_bytes -= len(held.body)
            out.append(held)
        return out

    def earliest(self, count: int) -> list[Held]:
        """The first ``count`` messages in due order, left in place (for listing)."""
        return [unpack(e) for e in heapq.nsmallest(count, self.entries)]

    def clear(self) -> list[Held]:
        """Take every message out (the exchange is going away)."""
        entries, self.entries = self.entries, []
        self.body_bytes = 0
        return [unpack(e) for e in entries]


def pack(due_ms: int, seq: int, stored: bool, route: bytes, properties: bytes,
         body: bytes) -> bytes:
    """One heap entry (recovery builds them all, then ``DelayHeap.extend``)."""
    return b"%s%s%s%s" % (
        _HEAD.pack(due_ms, seq, STORED if stored else 0, len(route), len(properties)),
        route, properties, body)


# --------------------------------------------------------------------------- the type
class DelayedExchange(Exchange):
    """Routes as its ``x-delayed-type``; holds delayed messages in ``held``.

    The bindings are those of an inner exchange of the delayed type (same name and
    arguments), which also validates them; the outer exchange keeps the common binding
    bookkeeping that listings and definitions read.
    """

    type_name: ClassVar[str] = DELAYED_TYPE
    HOLDS_MESSAGES: ClassVar[bool] = True  # held by broker/delays.py (see holding.offer)

    @classmethod
    def validate_arguments(cls, arguments: Mapping[str, Any]) -> None:
        _delayed_class(arguments)

    def _init_index(self) -> None:
        self.inner = self._make_inner()
        # a delayed type that routes on the whole message (x-consistent-hash on a
        # property, a plugin's) is asked through route_message, as it would be itself
        self.routes_message = self.inner.routes_message
        self.held = DelayHeap()
        self.unroutable = 0  # released messages that no queue took (dropped), counted

    def _make_inner(self) -> Exchange:
        found = _delayed_class(self.arguments)
        return found(self.name, durable=self.durable, auto_delete=self.auto_delete,
                     internal=self.internal, arguments=self.arguments)

    @property
    def delayed_type(self) -> str:
        return self.inner.type_name

    @property
    def store_key_name(self) -> str:
        """The store's pseudo-queue name for this exchange's held messages."""
        return STORE_PREFIX + self.name

    def validate_binding(self, binding_key: str, arguments: Mapping[str, Any]) -> None:
        self.inner.validate_binding(binding_key, arguments)

    def route(self, routing_key: str, headers: HeadersGetter) -> set[Destination]:
        return self.inner.route(routing_key, headers)

    def route_message(self, message: Message) -> set[Destination]:
        return self.inner.route_message(message)

    def _attach(self, binding: Binding) -> None:
        self.inner.bind(binding.destination, binding.binding_key, binding.arguments)

    def _detach(self, binding: Binding) -> None:
        self.inner.unbind(binding.destination, binding.binding_key, binding.arguments)

    def waiting(self) -> Iterator[Held]:
        """Every held message, in no particular order."""
        return (unpack(e) for e in self.held.entries)


def _delayed_class(arguments: Mapping[str, Any]) -> type[Exchange]:
    """The class of the ``x-delayed-type`` named in ``arguments``; 406 in the plugin's
    words (then what was given) for none, an unknown type, or x-delayed-message itself."""
    kind = arguments.get(TYPE_ARGUMENT)
    if isinstance(kind, bytes | bytearray):
        kind = bytes(kind).decode("utf-8", "replace")
    from warrenmq.exchange.registry import EXCHANGE_TYPES  # it imports this module

    found = EXCHANGE_TYPES.get(kind) if isinstance(kind, str) else None
    if found is None or kind == DELAYED_TYPE:
        got = "none given" if kind is None else f"got '{kind}'"
        raise PreconditionFailed(f"{BAD_TYPE} ({got})")
    return found


#: Held messages of a durable exchange live in the message store under the queue name
#: STORE_PREFIX + exchange name ("\x00" cannot start a queue name: vhost refuses it).
STORE_PREFIX: Final = "\x00x-delayed\x00"
