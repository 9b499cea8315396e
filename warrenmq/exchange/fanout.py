"""The fanout exchange: a message goes to every bound destination; the routing key is ignored.

Owns the multiset of bound destinations (several bindings may lead to one destination).
It never inspects keys, arguments or headers, and touches no queues or I/O.
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


class FanoutExchange(Exchange):
    type_name: ClassVar[str] = "fanout"

    def _init_index(self) -> None:
        self._destinations: Counter[Destination] = Counter()

    def route(self, routing_key: str, headers: HeadersGetter) -> set[Destination]:
        return set(self._destinations)

    def _attach(self, binding: Binding) -> None:
        add_reference(self._destinations, binding.destination)

    def _detach(self, binding: Binding) -> None:
        drop_reference(self._destinations, binding.destination)
