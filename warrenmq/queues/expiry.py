"""Per-message property helpers for the queue's cold paths: TTL and delivery counts.

``message_expiration_ms`` reads the ``expiration`` property (a string of milliseconds,
as RabbitMQ requires; anything else means no per-message TTL). ``with_delivery_count``
returns properties carrying the ``x-delivery-count`` header (RabbitMQ quorum queues'
name for the number of failed deliveries so far).
"""

from __future__ import annotations

from typing import Final

from warrenmq.protocol.fields import FieldError, Long
from warrenmq.protocol.properties import get_property, rewrite_properties

MAX_EXPIRATION_MS: Final = 2**32 - 1


def message_expiration_ms(properties: bytes) -> int | None:
    try:
        value = get_property(properties, "expiration")
    except (FieldError, IndexError):
        return None
    if not isinstance(value, str) or not value.isdigit():
        return None
    return min(int(value), MAX_EXPIRATION_MS)


def with_delivery_count(properties: bytes, count: int) -> bytes:
    return rewrite_properties(properties, set_headers={"x-delivery-count": Long(count)})
