"""The demo's summary and the checks behind its exit status.

Owns :class:`Tally`: what checkout placed, what each service's own state says it
processed, what was found in the DLQs and replayed, and the queues at the end; from it
the summary line (the demo's last line, key=value) and the list of problems. ``lost``
counts the placed orders that some service never processed: it is computed from the
order ids, not from counters.
Must not talk to the broker or the services.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from checkout import Order
from shipping import ShippingResult


@dataclass
class Tally:
    orders: list[Order]                      # what checkout was asked to place
    placed: list[str]                        # confirmed by the broker
    publish_failures: list[str]
    inventory: set[str]
    email: set[str]
    analytics: set[str]
    duplicates_skipped: int
    dead: dict[str, dict[str, Any]]          # message id -> `warrenmq dlq inspect` record
    replay: dict[str, int]                   # replayed / skipped / failed
    depths: dict[str, int]                   # every queue at the end
    stock_taken: dict[str, int]              # initial - final, from the inventory database
    units_counted: Counter[str]              # analytics' units per sku
    revenue_counted: Decimal                 # analytics' revenue
    poison: str | None                       # the order release 1 of analytics cannot read
    crash_injected: bool
    report_orders: dict[str, Decimal]        # reporting's replay of the stream
    report_units: Counter[str]
    report_duplicates: int
    resumed_from: int | None                 # the offset reporting's restart began at
    shipping: ShippingResult | None = None   # the lifecycle events per customer
    shipping_expected: bool = False          # the broker has x-consistent-hash
    republished: int = 0                     # orders checkout published again
    dropped: int | None = None               # duplicates the orders exchange dropped
    dropped_expected: bool = False           # the broker deduplicates and can say so

    @property
    def ordering_violations(self) -> str:
        return "skipped" if self.shipping is None else str(len(self.shipping.violations))

    @property
    def duplicates_dropped(self) -> str:
        return "skipped" if self.dropped is None else str(self.dropped)

    @property
    def stream_replay_matches(self) -> bool:
        """Reporting's totals from the stream equal analytics' from its queue."""
        return (set(self.report_orders) == self.analytics and self.report_duplicates == 0
                and sum(self.report_orders.values(), Decimal(0)) == self.revenue_counted
                and self.report_units == self.units_counted)

    @property
    def lost(self) -> int:
        done = self.inventory & self.email & self.analytics
        return len(set(self.placed) - done)

    @property
    def replayed(self) -> int:
        return self.replay.get("replayed", 0)

    def line(self) -> str:
        return (f"placed={len(self.placed)} inventory={len(self.inventory)} "
                f"email={len(self.email)} analytics={len(self.analytics)} "
                f"duplicates_skipped={self.duplicates_skipped} "
                f"dead_lettered={len(self.dead)} replayed={self.replayed} lost={self.lost} "
                f"stream_replay_matches={int(self.stream_replay_matches)} "
                f"stream_resumed_from={-1 if self.resumed_from is None else self.resumed_from} "
                f"ordering_violations={self.ordering_violations} "
                f"duplicates_dropped_by_broker={self.duplicates_dropped}")

    def problems(self) -> list[str]:
        placed = set(self.placed)
        out = [f"publish failed: {f}" for f in self.publish_failures]
        if len(placed) != len(self.orders):
            out.append(f"placed {len(placed)} of {len(self.orders)} orders")
        for name, done in (("inventory", self.inventory), ("email", self.email),
                           ("analytics", self.analytics)):
            if missing := placed - done:
                out.append(f"{name} never processed {_some(missing)}")
            if extra := done - placed:
                out.append(f"{name} processed orders nobody placed: {_some(extra)}")
        out += self._dead_letter_problems()
        if self.crash_injected and self.duplicates_skipped < 1:
            out.append("inventory crashed before an ack, yet no redelivery was skipped")
        if busy := {q: d for q, d in self.depths.items() if d}:
            out.append(f"messages left in queues: {busy}")
        out += self._sum_problems(placed)
        if not self.stream_replay_matches:
            out.append(f"reporting's replay of the stream counted {len(self.report_orders)}"
                       f" orders ({self.report_duplicates} twice); analytics"
                       f" {len(self.analytics)}")
        if self.resumed_from is None:
            out.append("reporting's restart received nothing: it did not resume")
        out += self._shipping_problems()
        if self.dropped_expected and self.dropped != self.republished:
            out.append(f"checkout republished {self.republished} orders; the broker dropped"
                       f" {self.duplicates_dropped} duplicates")
        return out

    def _shipping_problems(self) -> list[str]:
        result = self.shipping
        if result is None:
            return ["shipping did not run"] if self.shipping_expected else []
        out = [f"ordering violation: {v}" for v in result.violations[:5]]
        if result.published != result.events:
            out.append(f"shipping published {result.published} of {result.events} events")
        if result.handled != result.events:
            out.append(f"shipping handled {result.handled} of {result.events} events")
        if not result.standby_took_over:
            out.append(f"the standby never took over from {result.killed or 'the worker'}")
        return out

    def _dead_letter_problems(self) -> list[str]:
        out = []
        expected = {self.poison} if self.poison in self.placed else set()
        if set(self.dead) != expected:
            out.append(f"dead-lettered {sorted(self.dead)}, expected {sorted(expected)}")
        for message_id, record in self.dead.items():
            if record.get("reason") != "delivery_limit" or record.get("queue") != "analytics":
                out.append(f"{message_id} died in {record.get('queue')!r} for "
                           f"{record.get('reason')!r}, expected analytics/delivery_limit")
        if self.replayed != len(self.dead) or self.replay.get("failed", 0):
            out.append(f"replayed {self.replayed} of {len(self.dead)} dead letters "
                       f"(failed {self.replay.get('failed', 0)})")
        return out

    def _sum_problems(self, placed: set[str]) -> list[str]:
        out = []
        units: Counter[str] = Counter()
        revenue = Decimal("0")
        for order in self.orders:
            if order.order_id in placed:
                units.update(order.units)
                revenue += order.total
        if {k: v for k, v in self.stock_taken.items() if v} != dict(units):
            out.append(f"stock taken {self.stock_taken} != units ordered {dict(units)}")
        if self.units_counted != units:
            out.append(f"analytics counted units {dict(self.units_counted)} != {dict(units)}")
        if self.revenue_counted != revenue:
            out.append(f"analytics counted revenue {self.revenue_counted} != {revenue}")
        return out


def _some(ids: set[str]) -> str:
    shown = sorted(ids)[:5]
    return ", ".join(shown) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
