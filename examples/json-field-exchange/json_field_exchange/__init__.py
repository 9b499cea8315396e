"""x-json-field: route by one field of a JSON message body (an example WarrenMQ plugin).

Owns an index from a field value (as text) to the destinations bound with it. Reads the
body, so it sets ``ROUTES_MESSAGE`` and implements ``route_message``; ``route`` (routing
key and headers only) finds nothing, as it has no body to read. Does no I/O, keeps no
state beyond its bindings, never changes the message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from warrenmq.errors import PreconditionFailed
from warrenmq.exchange import Binding, Destination, Exchange, HeadersGetter

if TYPE_CHECKING:
    from warrenmq.message import Message


def _text(value: Any) -> str | None:
    """A JSON scalar as the text a binding key names: strings as is, numbers and booleans
    as JSON writes them; objects, arrays and null match nothing."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return None


class JsonFieldExchange(Exchange):
    """Routes by a field of a JSON body (argument "field", a dotted path)."""

    type_name: ClassVar[str] = "x-json-field"
    ROUTES_MESSAGE: ClassVar[bool] = True

    @classmethod
    def validate_arguments(cls, arguments: Mapping[str, Any]) -> None:
        field = arguments.get("field")
        if isinstance(field, bytes):
            field = field.decode("utf-8", "replace")
        if not isinstance(field, str) or not field.strip("."):
            raise PreconditionFailed(
                "x-json-field needs the argument 'field': the dotted path of the body field"
                " to route on, e.g. 'order.country'")

    def _init_index(self) -> None:
        field = self.arguments["field"]
        path = field.decode() if isinstance(field, bytes) else str(field)
        self._path = [part for part in path.split(".") if part]
        self._routes: dict[str, dict[Destination, int]] = {}

    def route(self, routing_key: str, headers: HeadersGetter) -> set[Destination]:
        return set()  # no body here; the broker calls route_message (ROUTES_MESSAGE)

    def route_message(self, message: Message) -> set[Destination]:
        try:
            value: Any = json.loads(message.load_body())
        except (ValueError, UnicodeDecodeError):
            return set()
        for part in self._path:
            if not isinstance(value, dict) or part not in value:
                return set()
            value = value[part]
        text = _text(value)
        found = self._routes.get(text) if text is not None else None
        return set(found) if found else set()

    def _attach(self, binding: Binding) -> None:
        bound = self._routes.setdefault(binding.binding_key, {})
        bound[binding.destination] = bound.get(binding.destination, 0) + 1

    def _detach(self, binding: Binding) -> None:
        bound = self._routes[binding.binding_key]
        bound[binding.destination] -= 1
        if not bound[binding.destination]:
            del bound[binding.destination]
        if not bound:
            del self._routes[binding.binding_key]
