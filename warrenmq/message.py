"""Message: what a publisher sent, held by reference in every queue it was routed to.

A message keeps the publisher's property bytes and body untouched; a queue wraps it in
its own ``QueuedMessage`` for per-queue state (position, redelivered, delivery count), so
a message routed to three queues exists once in memory.
"""

from __future__ import annotations

from typing import Any

from warrenmq.protocol.fields import FieldError
from warrenmq.protocol.properties import get_property


class Message:
    """An immutable published message.

    ``route`` is the exchange and routing key as the two short strings they were on the
    wire; deliveries copy it verbatim instead of re-encoding (the hot-path saving).
    """

    __slots__ = ("_headers", "body", "exchange", "msg_id", "properties", "route", "routing_key")

    def __init__(
        self, exchange: str, routing_key: str, route: bytes, properties: bytes, body: bytes
    ) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.route = route
        self.properties = properties
        self.body = body
        self._headers: dict[str, Any] | bool | None = False
        self.msg_id = 0  # set when the message store holds it (persistent, durable queue)

    @property
    def body_size(self) -> int:
        return len(self.body)

    def headers(self) -> dict[str, Any] | None:
        """The headers table, decoded on first use (only headers exchanges ask)."""
        if self._headers is False:
            try:
                self._headers = get_property(self.properties, "headers")
            except (FieldError, IndexError):
                self._headers = None
        return self._headers  # type: ignore[return-value]

    @property
    def persistent(self) -> bool:
        try:
            return bool(get_property(self.properties, "delivery_mode") == 2)
        except (FieldError, IndexError):
            return False
