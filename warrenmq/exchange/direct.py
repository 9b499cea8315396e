"""The direct exchange: a message goes to every destination bound with its exact routing key.

Owns an index from binding key to the destinations bound with it, so routing costs one
dictionary lookup whatever the number of bindings.  Binding arguments take no part in
routing (they only distinguish bindings), and nothing here touches queues or I/O.
"""

from __future__ import annotations

from collections import Counter
from typing import ClassVar

from warrenmq.exchange.base import (
    Binding,
    Destination,
    Exchange,
    HeadersGetter,
    add_reference,
    drop_reference,
)


class DirectExchange(Exchange):
    type_name: ClassVar[str] = "direct"

    def _init_index(self) -> None:
        self._routes: dict[str, Counter[Destination]] = {}

    def route(self, routing_key: str, headers: HeadersGetter) -> set[Destination]:
        destinations = self._routes.get(routing_key)
        return set(destinations) if destinations else set()

    def _attach(self, binding: Binding) -> None:
        destinations = self._routes.setdefault(binding.binding_key, Counter())
        add_reference(destinations, binding.destination)

    def _detach(self, binding: Binding) -> None:
        destinations = self._routes[binding.binding_key]
        drop_reference(destinations, binding.destination)
        if not destinations:
            del self._routes[binding.binding_key]
