"""Reporting: the "new" service that reads the history instead of a queue.

It consumes the ``order-events`` stream (which the ``orders`` fanout also feeds, so every
order checkout placed is in it) from ``first``, and aggregates the same totals as
analytics, only for this run's orders (on a reused RabbitMQ the stream holds earlier
runs too). Consuming a stream removes nothing: analytics' queue and this replay see the
same orders, each at its own pace.

Its position: with ``x-stream-consumer-name: reporting`` WarrenMQ stores its last
contiguously acked offset, so a restarted instance consumes with no ``x-stream-offset``
and resumes after it. RabbitMQ has no such tracking over AMQP 0-9-1: there the service
keeps the offset itself (``Position``) and passes ``x-stream-offset`` = the next one.
Must not publish or declare.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from analytics import Totals
from service import Events, Service

STREAM = "order-events"
CONSUMER_NAME = "reporting"


@dataclass
class Position:
    """What outlives an instance: the last acked offset and where the restart began."""

    acked: int | None = None
    resumed_from: int | None = None
    server_tracking: bool = False


class Reporting(Service):
    name = "reporting"
    queue = STREAM
    prefetch = 50

    def __init__(self, url: str, events: Events, totals: Totals, wanted: set[str],
                 position: Position, *, stop_after: int | None = None,
                 start: str | None = None) -> None:
        super().__init__(url, events)
        self.totals = totals
        self.wanted = wanted  # this run's placed order ids
        self.position = position
        self.stop_after = stop_after
        self.start = start
        self.first_offset: int | None = None
        self.counted = 0

    def arguments(self) -> dict[str, Any]:
        arguments: dict[str, Any] = {"x-stream-consumer-name": CONSUMER_NAME}
        if self.start is not None:
            arguments["x-stream-offset"] = self.start
        elif not self.position.server_tracking and self.position.acked is not None:
            arguments["x-stream-offset"] = self.position.acked + 1  # RabbitMQ: ours
        return arguments

    def on_connected(self, server_properties: dict[str, Any]) -> None:
        product = server_properties.get("product")
        if isinstance(product, bytes):
            product = product.decode()
        self.position.server_tracking = product == "WarrenMQ"

    async def handle(self, message: AbstractIncomingMessage) -> None:
        offset = int(str((message.headers or {}).get("x-stream-offset", -1)))
        if self.first_offset is None:
            self.first_offset = offset
        try:
            order = json.loads(message.body)
            order_id = str(order.get("order_id", message.message_id))
            total = Decimal(str(order["total"]).replace(",", ""))
            items = order["items"]
        except (ValueError, KeyError, TypeError, AttributeError, InvalidOperation):
            order_id, total, items = "", Decimal(0), []  # not an order: nothing to count
        if order_id in self.wanted:
            if order_id in self.totals.orders:
                self.totals.duplicates += 1
            else:
                self.totals.orders[order_id] = total
                for item in items:
                    self.totals.units[item["sku"]] += int(item["qty"])
                self.counted += 1
        await message.ack()  # a stream ack: the position moves, nothing is removed
        self.position.acked = offset
        done = len(self.totals.orders) >= len(self.wanted)
        if done or (self.stop_after is not None and self.counted >= self.stop_after):
            self.stop()
