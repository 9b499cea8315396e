"""Analytics: aggregates revenue and units sold per product.

Owns :class:`Totals` (its store, which outlives a deployment) and two releases of the
consumer. Release 1 reads an order's total with ``Decimal(total)`` and cannot read the
legacy storefront's "1,299.00": it nacks the delivery with requeue, the queue's delivery
limit (3) then dead-letters it to ``analytics.dlq``. Release 2 is the fix (it drops the
thousands separator); the demo deploys it and replays the DLQ into the queue.
Must not touch other services' state.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from aio_pika.abc import AbstractIncomingMessage
from service import Events, Service, parse_order


@dataclass
class Totals:
    orders: dict[str, Decimal] = field(default_factory=dict)  # order id -> total
    units: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0

    @property
    def revenue(self) -> Decimal:
        return sum(self.orders.values(), Decimal("0"))


class AnalyticsV1(Service):
    name = "analytics v1"
    queue = "analytics"
    prefetch = 50

    def __init__(self, url: str, events: Events, totals: Totals) -> None:
        super().__init__(url, events)
        self.totals = totals

    @staticmethod
    def parse_total(text: str) -> Decimal:
        return Decimal(text)

    async def handle(self, message: AbstractIncomingMessage) -> None:
        order = await parse_order(message, self.events, self.name)
        if order is None:
            return
        order_id = order["order_id"]
        if order_id in self.totals.orders:
            self.totals.duplicates += 1
            await message.ack()
            return
        try:
            total = self.parse_total(str(order["total"]))
        except (InvalidOperation, KeyError) as exc:
            returned = int(str(message.headers.get("x-delivery-count", 0)))
            self.events(f"{self.name}: cannot read total {order.get('total')!r} of order "
                        f"{order_id} ({type(exc).__name__}; returned {returned} time(s) "
                        "so far): nack, requeue")
            await message.nack(requeue=True)
            return
        self.totals.orders[order_id] = total
        for item in order["items"]:
            self.totals.units[item["sku"]] += int(item["qty"])
        await message.ack()


class AnalyticsV2(AnalyticsV1):
    """The fix: totals may carry a thousands separator (the legacy storefront's)."""

    name = "analytics v2"

    @staticmethod
    def parse_total(text: str) -> Decimal:
        return Decimal(text.replace(",", ""))
