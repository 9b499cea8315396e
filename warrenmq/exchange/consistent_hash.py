"""The consistent-hash exchange (``x-consistent-hash``): each message goes to one queue,
chosen by a stable hash of its routing key, a header or a property.

RabbitMQ's plugin semantics: a binding's key is the destination's weight, an integer
string 1..10000 (refused otherwise with a 406 worded as the plugin's); only a
destination's first binding counts (later ones are kept and listed, and the oldest
remaining one takes over when it is unbound); the exchange arguments ``hash-header``
(or LavinMQ's spelling ``x-hash-on``) and ``hash-property`` (``message_id``,
``correlation_id``, ``timestamp``) choose what is hashed, and are mutually exclusive.

The mapping, stated so it can be relied on (docs/plugins.md, "x-consistent-hash"): the
hashed value as bytes (text as UTF-8; a number, or the timestamp property, as its decimal
text; absent: empty) -> the first 8 bytes of its BLAKE2b digest as a little-endian
64-bit integer -> Lamping and Veach's jump consistent hash over ``W`` buckets, ``W`` the
sum of the weights -> the destination owning that bucket (destinations own consecutive
bucket ranges, in the order they were first bound). No salt, no process state: the same
on every start and every machine. Adding a destination of weight ``w`` moves only the
share ``w / (W + w)`` of keys, all of them to the new destination.

Owns the weights and the bucket ranges; touches no queues or I/O.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from datetime import datetime
from hashlib import blake2b
from typing import TYPE_CHECKING, Any, ClassVar, Final

from warrenmq.errors import PreconditionFailed
from warrenmq.exchange.base import Binding, Destination, Exchange, HeadersGetter
from warrenmq.protocol.properties import get_property

if TYPE_CHECKING:
    from warrenmq.message import Message

#: newer RabbitMQ releases refuse weights above this; 3.10 accepts them
MAX_WEIGHT: Final = 10_000
HASH_PROPERTIES: Final = ("message_id", "correlation_id", "timestamp")
_MASK64: Final = (1 << 64) - 1
_JUMP_MULTIPLIER: Final = 2862933555777941757


def key_hash(key: bytes) -> int:
    """The documented 64-bit hash of a key: BLAKE2b (8-byte digest), little-endian."""
    return int.from_bytes(blake2b(key, digest_size=8).digest(), "little")


def jump_hash(key: int, buckets: int) -> int:
    """Lamping and Veach's jump consistent hash: a bucket in ``[0, buckets)`` for a
    64-bit key; growing ``buckets`` by one moves only 1/(buckets+1) of keys."""
    b = -1
    j = 0
    while j < buckets:
        b = j
        key = (key * _JUMP_MULTIPLIER + 1) & _MASK64
        j = int((b + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return b


def as_key_bytes(value: object) -> bytes:
    """The bytes hashed for a header or property value (see the module docstring)."""
    if value is None:
        return b""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, datetime):
        return str(int(value.timestamp())).encode()
    return str(value).encode("utf-8")


def parse_weight(binding_key: str) -> int:
    """The weight a binding key gives, or 406 in the plugin's words."""
    text = binding_key.strip()
    if not text or not (text.isdigit() or (text[0] in "+-" and text[1:].isdigit())):
        raise PreconditionFailed(f'The binding key must be an integer: <<"{binding_key}">>')
    weight = int(text)
    if weight < 1:
        raise PreconditionFailed("The binding key must be greater than 0")
    if weight > MAX_WEIGHT:
        raise PreconditionFailed(f"The binding key must be less than or equal to {MAX_WEIGHT}")
    return weight


def _text_argument(arguments: Mapping[str, Any], name: str) -> str | None:
    value = arguments.get(name)
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", "replace")
    if not isinstance(value, str) or not value:
        raise PreconditionFailed(f"{name} must be a non-empty string, got {value!r}")
    return value


def hash_source(arguments: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(header name, property name) to hash on, from the exchange arguments; 406s as
    the plugin words them for an unknown property or both at once."""
    header = _text_argument(arguments, "hash-header")
    lavin = _text_argument(arguments, "x-hash-on")
    prop = _text_argument(arguments, "hash-property")
    if header is not None and lavin is not None and header != lavin:
        raise PreconditionFailed("hash-header and x-hash-on are mutually exclusive")
    header = header or lavin
    if header is not None and prop is not None:
        raise PreconditionFailed("hash-header and hash-property are mutually exclusive")
    if prop is not None and prop not in HASH_PROPERTIES:
        raise PreconditionFailed(f"Unsupported property: {prop}")
    return header, prop


class ConsistentHashExchange(Exchange):
    type_name: ClassVar[str] = "x-consistent-hash"
    ROUTES_MESSAGE: ClassVar[bool] = True

    @classmethod
    def validate_arguments(cls, arguments: Mapping[str, Any]) -> None:
        hash_source(arguments)

    def _init_index(self) -> None:
        self._header, self._property = hash_source(self.arguments)
        # only a property needs the whole message; the key and headers take the cheap path
        self.routes_message = self._property is not None
        self._bound: dict[Destination, list[Binding]] = {}  # first-bind order
        self._owners: list[Destination] = []
        self._upper: list[int] = []  # cumulative weights: owner i holds [upper[i-1], upper[i])
        self._total = 0

    def validate_binding(self, binding_key: str, arguments: Mapping[str, Any]) -> None:
        parse_weight(binding_key)

    def destination_for(self, key: bytes) -> Destination | None:
        """The destination a key maps to (None with no bindings)."""
        if not self._total:
            return None
        bucket = jump_hash(key_hash(key), self._total)
        return self._owners[bisect_right(self._upper, bucket)]

    def route(self, routing_key: str, headers: HeadersGetter) -> set[Destination]:
        if not self._total:
            return set()
        if self._header is None:
            key = routing_key.encode("utf-8")
        else:
            table = headers()
            key = as_key_bytes(table.get(self._header) if table else None)
        found = self.destination_for(key)
        return {found} if found is not None else set()

    def route_message(self, message: Message) -> set[Destination]:
        if self._property is None:
            return self.route(message.routing_key, message.headers)
        if not self._total:
            return set()
        found = self.destination_for(as_key_bytes(get_property(message.properties,
                                                               self._property)))
        return {found} if found is not None else set()

    def weights(self) -> list[tuple[Destination, int]]:
        """(destination, weight in force) in ring order."""
        out: list[tuple[Destination, int]] = []
        low = 0
        for owner, upper in zip(self._owners, self._upper, strict=True):
            out.append((owner, upper - low))
            low = upper
        return out

    def _attach(self, binding: Binding) -> None:
        self._bound.setdefault(binding.destination, []).append(binding)
        self._rebuild()

    def _detach(self, binding: Binding) -> None:
        held = self._bound[binding.destination]
        held.remove(binding)
        if not held:
            del self._bound[binding.destination]
        self._rebuild()

    def _rebuild(self) -> None:
        owners: list[Destination] = []
        upper: list[int] = []
        total = 0
        for destination, held in self._bound.items():
            total += parse_weight(held[0].binding_key)
            owners.append(destination)
            upper.append(total)
        self._owners, self._upper, self._total = owners, upper, total
