"""Message: what a publisher sent, held by reference in every queue it was routed to.

A message keeps the publisher's property bytes and body untouched; a queue wraps it in
its own ``QueuedMessage`` for per-queue state (position, redelivered, delivery count), so
a message routed to three queues exists once in memory. A persistent message in a durable
queue that holds more than its memory budget is paged out: its body is dropped from
memory and read back from the message store when it is delivered.
"""

from __future__ import annotations

from typing import Any, Protocol

from warrenmq.protocol.fields import FieldError
from warrenmq.protocol.properties import get_property


class BodyReader(Protocol):
    def read_body(self, location: Any, msg_id: int = 0) -> bytes: ...


class Message:
    """An immutable published message.

    ``route`` is the exchange and routing key as the two short strings they were on the
    wire; deliveries copy it verbatim instead of re-encoding (the hot-path saving).
    """

    __slots__ = (
        "_headers",
        "body",
        "exchange",
        "location",
        "msg_id",
        "paged",
        "properties",
        "route",
        "routing_key",
        "size",
        "store",
    )

    def __init__(
        self, exchange: str, routing_key: str, route: bytes, properties: bytes, body: bytes
    ) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.route = route
        self.properties = properties
        self.body = body
        self._headers: dict[str, Any] | bool | None = False
        self.size = len(body)
        # Set when the message store holds it (persistent, durable queue): its id, where
        # its body lies in the log, and the store to read it back from once paged out.
        self.msg_id = 0
        self.location: Any = None
        self.store: BodyReader | None = None
        self.paged = False

    def page_out(self) -> bool:
        """Drop the body from memory if the store can give it back; True if it did."""
        if self.store is None or self.paged:
            return False
        self.body = b""
        self.paged = True
        return True

    def load_body(self) -> bytes:
        """The body, read back from the message store when it was paged out."""
        if not self.paged:
            return self.body
        assert self.store is not None
        return self.store.read_body(self.location, self.msg_id)

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
        """delivery_mode == 2. Most publishers set no content type, encoding or headers
        before it, and then the mode is the first property byte: no walk needed."""
        props = self.properties
        flags = props[0]
        if not flags & 0x10:  # delivery_mode absent
            return False
        if not flags & 0xE0:  # content_type, content_encoding, headers absent
            return len(props) > 2 and props[2] == 2
        try:
            return bool(get_property(self.properties, "delivery_mode") == 2)
        except (FieldError, IndexError):
            return False
