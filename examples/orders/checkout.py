"""Checkout: confirms orders and publishes one OrderPlaced event each.

Owns the orders a run places (:func:`make_orders`, deterministic for a seed) and the
publisher: JSON bodies, ``message_id`` = the order id, persistent (delivery_mode 2),
``mandatory``, publisher confirms. An order counts as placed once the broker confirmed
it: that is the promise checkout makes to its caller. It publishes at a steady rate with
a burst in the middle and never waits for a consumer, only for the broker's confirm, so
an email outage costs checkout nothing.
Must not read the queues or know who consumes.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aio_pika
from aio_pika.abc import AbstractExchange
from aio_pika.exceptions import AMQPError, DeliveryError, PublishError
from topology import EXCHANGE

CATALOG: dict[str, Decimal] = {
    "mug": Decimal("9.50"),
    "tea-200g": Decimal("7.90"),
    "grinder": Decimal("49.00"),
    "kettle": Decimal("34.99"),
    "filter-papers": Decimal("3.25"),
    "espresso-machine": Decimal("1299.00"),
}
EVERYDAY = [sku for sku in CATALOG if sku != "espresso-machine"]
PUBLISH_ATTEMPTS = 3


@dataclass(frozen=True)
class Order:
    order_id: str
    body: dict[str, Any]
    total: Decimal
    units: dict[str, int]


def make_orders(count: int, run_id: str, seed: int, poison_index: int | None) -> list[Order]:
    """``count`` orders. The one at ``poison_index`` comes from the legacy storefront,
    which writes totals with a thousands separator ("1,299.00"): valid JSON that the
    first analytics release cannot parse."""
    rng = random.Random(seed)  # noqa: S311 - sample orders, not secrets
    orders = []
    for i in range(count):
        order_id = f"{run_id}-{i + 1:05d}"
        lines = {sku: rng.randint(1, 3) for sku in rng.sample(EVERYDAY, rng.randint(1, 3))}
        if i == poison_index:
            lines = {"espresso-machine": 1}
        total = sum((CATALOG[sku] * qty for sku, qty in lines.items()), Decimal("0"))
        body = {
            "event": "OrderPlaced",
            "order_id": order_id,
            "customer": {"name": f"Customer {i + 1}", "email": f"customer{i + 1}@example.com"},
            "items": [{"sku": sku, "qty": qty, "price": str(CATALOG[sku])}
                      for sku, qty in lines.items()],
            "total": f"{total:,.2f}" if i == poison_index else f"{total:.2f}",
            "currency": "EUR",
            "storefront": "legacy" if i == poison_index else "web",
        }
        orders.append(Order(order_id, body, total, lines))
    return orders


@dataclass
class Checkout:
    """Publishes ``orders``: the first two fifths at ``rate`` per second, then a burst
    (``burst`` orders at once, their confirms pipelined), then the rest at ``rate``."""

    url: str
    orders: list[Order]
    rate: float
    burst: int
    placed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    phase: str = "starting"
    on_placed: Callable[[int], None] = lambda placed: None

    async def run(self) -> None:
        connection = await aio_pika.connect(self.url, timeout=10)
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await channel.get_exchange(EXCHANGE, ensure=False)
            start = (len(self.orders) - self.burst) // 2
            self.phase = "steady"
            await self._steady(exchange, self.orders[:start])
            self.phase = "burst"
            await asyncio.gather(*(self._publish(exchange, o)
                                   for o in self.orders[start:start + self.burst]))
            self.phase = "steady"
            await self._steady(exchange, self.orders[start + self.burst:])
            self.phase = "done"
        finally:
            await connection.close()

    async def republish(self, order_ids: list[str]) -> int:
        """A retry after a lost confirm: checkout never heard back about these orders, so
        it publishes them again, the same event with the same ``message_id`` (the
        idempotency key). Returns how many the broker confirmed."""
        by_id = {order.order_id: order for order in self.orders}
        connection = await aio_pika.connect(self.url, timeout=10)
        confirmed = 0
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await channel.get_exchange(EXCHANGE, ensure=False)
            for order_id in order_ids:
                await exchange.publish(self._message(by_id[order_id]),
                                       routing_key="order.placed", mandatory=True)
                confirmed += 1
        finally:
            await connection.close()
        return confirmed

    def _message(self, order: Order) -> aio_pika.Message:
        return aio_pika.Message(
            json.dumps(order.body).encode(),
            content_type="application/json",
            message_id=order.order_id,
            type="OrderPlaced",
            app_id="checkout",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )

    async def _steady(self, exchange: AbstractExchange, orders: list[Order]) -> None:
        interval = 1.0 / self.rate
        due = time.monotonic()
        for order in orders:
            await self._publish(exchange, order)
            due += interval
            await asyncio.sleep(max(0.0, due - time.monotonic()))

    async def _publish(self, exchange: AbstractExchange, order: Order) -> None:
        message = self._message(order)
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                await exchange.publish(message, routing_key="order.placed", mandatory=True)
            except (DeliveryError, PublishError) as exc:  # nacked, or returned unroutable
                if attempt == PUBLISH_ATTEMPTS:
                    self.failed.append(f"{order.order_id}: {exc!r}")
                    return
                await asyncio.sleep(0.1 * attempt)
            except AMQPError as exc:
                self.failed.append(f"{order.order_id}: {exc!r}")
                raise
            else:
                self.placed.append(order.order_id)
                self.on_placed(len(self.placed))
                return
