"""The headers exchange: routing by message header values; the routing key is ignored.

Owns one compiled matcher per binding and the validation of the ``x-match`` argument.
It decodes message headers only when it has bindings, through the lazy getter, and
touches no queues or I/O.

Semantics follow RabbitMQ's ``rabbit_exchange_type_headers.erl``:

* ``x-match`` is ``all`` (the default when absent), ``any``, ``all-with-x`` or
  ``any-with-x``; any other string, or a non-string value, is refused with 406.
* ``x-match`` itself never takes part in matching.  Other arguments starting with ``x-``
  are skipped for ``all``/``any`` and compared for the ``-with-x`` variants.
* A binding argument whose value is void (``None``) matches when the header is present,
  whatever its value.
* ``all`` starts true and ``any`` starts false, so a binding with nothing to compare
  matches every message under ``all`` and no message under ``any``.
* Values are compared with Erlang's ``==`` on the decoded values: ``true`` (an atom) never
  equals ``1``, integers and floats compare numerically (``1 == 1.0``), and nested arrays
  and tables compare typed.  A ``str`` and a ``bytes`` holding the same UTF-8 text are the
  same longstr.  Timestamps decode to ``datetime`` here, so unlike RabbitMQ (where a
  timestamp is a bare integer) they only equal timestamps.
* No ``headers`` property is treated as an empty table.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from warrenmq.errors import PreconditionFailed
from warrenmq.exchange.base import (
    Binding,
    BindingIdentity,
    Destination,
    Exchange,
    HeadersGetter,
    canonical_value,
)

X_MATCH: Final = "x-match"
_MODES: Final = ("all", "any", "all-with-x", "any-with-x")

#: A header table as compared: header name -> comparable form of its value.
_Table = dict[str, Hashable]


def _comparable(value: object) -> Hashable:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return ("number", value)
    return canonical_value(value)


def _x_match_mode(arguments: Mapping[str, Any]) -> str:
    value = arguments.get(X_MATCH, "all")
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return repr(bytes(value))
    if isinstance(value, str):
        return value
    raise PreconditionFailed(
        f"Invalid x-match field type {type(value).__name__} (value {value!r}); expected longstr"
    )


@dataclass(frozen=True, slots=True)
class _Matcher:
    """A binding compiled for matching; ``None`` in ``fields`` means "present"."""

    destination: Destination
    match_all: bool
    fields: tuple[tuple[str, Hashable | None], ...]

    @classmethod
    def compile(cls, destination: Destination, arguments: Mapping[str, Any]) -> _Matcher:
        mode = _x_match_mode(arguments)
        with_x = mode.endswith("-with-x")
        fields = tuple(
            (key, None if value is None else _comparable(value))
            for key, value in arguments.items()
            if key != X_MATCH and (with_x or not key.startswith("x-"))
        )
        return cls(destination, mode.startswith("all"), fields)

    def matches(self, table: _Table) -> bool:
        if self.match_all:
            return all(_field_matches(table, key, value) for key, value in self.fields)
        return any(_field_matches(table, key, value) for key, value in self.fields)


def _field_matches(table: _Table, key: str, expected: Hashable | None) -> bool:
    if key not in table:
        return False
    return expected is None or table[key] == expected


class HeadersExchange(Exchange):
    type_name: ClassVar[str] = "headers"

    def _init_index(self) -> None:
        self._matchers: dict[BindingIdentity, _Matcher] = {}

    def validate_binding(self, binding_key: str, arguments: Mapping[str, Any]) -> None:
        mode = _x_match_mode(arguments)
        if mode not in _MODES:
            raise PreconditionFailed(
                f"Invalid x-match field value {mode!r}; "
                "expected all, any, all-with-x, or any-with-x"
            )

    def route(self, routing_key: str, headers: HeadersGetter) -> set[Destination]:
        if not self._matchers:
            return set()
        decoded = headers()
        table: _Table = (
            {key: _comparable(value) for key, value in decoded.items()} if decoded else {}
        )
        found: set[Destination] = set()
        for matcher in self._matchers.values():
            if matcher.destination not in found and matcher.matches(table):
                found.add(matcher.destination)
        return found

    def _attach(self, binding: Binding) -> None:
        self._matchers[binding.identity] = _Matcher.compile(binding.destination, binding.arguments)

    def _detach(self, binding: Binding) -> None:
        del self._matchers[binding.identity]
