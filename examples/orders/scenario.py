"""The demo's story, in order, against one broker URL.

Owns the run: the services' lifetimes (inventory restarted after its crash, email taken
down and brought back, analytics redeployed with the fix), the queue-depth monitor that
feeds the live view, the operator's steps (``warrenmq dlq inspect``, deploy the fix,
``warrenmq dlq replay``), and the :class:`tally.Tally` built from each service's own
state at the end. Every wait is bounded by the run's deadline.
Must not decide whether the run passed (``Tally`` does) or print the summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import topology
from aio_pika.abc import AbstractChannel
from analytics import AnalyticsV1, AnalyticsV2, Totals
from checkout import CATALOG, Checkout, Order
from email_service import Email, SentLog
from features import Features, dropped_by_broker
from inventory import Inventory, InventoryDB
from live import LiveView
from ops import dlq_inspect, dlq_replay_to_queue
from reporting import STREAM, Position, Reporting
from service import Service
from shipping import Shipping, ShippingResult
from tally import Tally
from topology import EXCHANGE

INITIAL_STOCK = 100_000
SAMPLE_EVERY = 0.25
STOP_GRACE = 10.0
CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Settings:
    orders: list[Order]
    rate: float
    burst: int
    email_down_after: int      # email goes down once this many orders are placed
    email_outage: float        # seconds
    email_latency: float       # seconds per mail
    crash_after: int | None    # inventory's K-th commit is never acked (once)
    timeout: float
    poison: str                # the order analytics release 1 cannot read
    customers: int = 12        # shipping: the placed orders' lifecycle events per customer
    republish: int = 3         # orders checkout publishes again after a lost confirm
    seed: int = 1
    management_url: str | None = None  # where the broker's dedup counter is read


class Demo:
    def __init__(self, settings: Settings, url: str, workdir: Path, *, tty: bool,
                 interval: float, own: bool) -> None:
        self.s = settings
        self.url = url
        self.own = own
        self.db_path = workdir / "inventory.sqlite"
        self.sent = SentLog()
        self.totals = Totals()
        self.report = Totals()  # what reporting counted from the stream
        self.position = Position()
        self.checkout = Checkout(url, settings.orders, settings.rate, settings.burst,
                                 on_placed=self._on_placed)
        self.view = LiveView(topology.ALL_QUEUES, self._describe, tty=tty, interval=interval)
        self.depths: dict[str, int] = dict.fromkeys(topology.ALL_QUEUES, 0)
        self.dead: dict[str, dict[str, Any]] = {}
        self.replay: dict[str, int] = {}
        self.services: dict[str, Service] = {}
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self.email_down = False
        self.inventory_restarting = False
        self.stopping = False
        self.deadline = 0.0
        self._email_due: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self.features = Features()
        self.shipping: ShippingResult | None = None
        self.republished = 0
        self.dropped: int | None = None

    def event(self, text: str) -> None:
        self.view.event(text)

    # ----------------------------------------------------------------------- the run

    async def run(self, document: dict[str, list[dict[str, Any]]]) -> Tally:
        self.deadline = time.monotonic() + self.s.timeout
        self._email_due, self._stop = asyncio.Event(), asyncio.Event()
        self.db = InventoryDB(self.db_path)  # the operator's view of inventory's database
        self.db.stock_up(dict.fromkeys(CATALOG, INITIAL_STOCK))
        admin = await aio_pika.connect(self.url, timeout=CONNECT_TIMEOUT)
        try:
            channel = await admin.channel()
            if self.own:
                await topology.check_present(channel)
            self.features = await Features.probe(self.url, admin)
            await topology.declare(channel, document, self.features.skip)
            for reason in self.features.skipped():
                self.event(f"skipped: {reason}")
            self.event("topology: " + ("the broker declared orders.yaml at start; the same"
                                       " declares again are a no-op" if self.own else
                                       "declared from orders.yaml (a no-op where it"
                                       " exists already)"))
            if not self.own and (purged := await topology.purge_leftovers(channel)):
                self.event(f"purged {purged} message(s) an earlier run left in the queues")
            monitor = asyncio.create_task(self._monitor(await admin.channel()))
            try:
                await self._story(channel)
            finally:
                await self._stop_services()
                monitor.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await monitor
            self.depths = await topology.depths(channel)
            self.view.sample(self.depths)
            self.view.finish()
            await self._collect_dead_letters(channel)
        finally:
            await admin.close()
        try:
            return self._tally()
        finally:
            self._report()
            self.db.close()

    async def _story(self, channel: AbstractChannel) -> None:
        self.tasks = {"inventory": asyncio.create_task(self._run_inventory()),
                      "email": asyncio.create_task(self._run_email()),
                      "analytics": asyncio.create_task(self._run_analytics(AnalyticsV1))}
        n, started = len(self.s.orders), time.monotonic()
        self.event(f"checkout: placing {n} orders, {self.s.rate:g}/s with a burst of "
                   f"{self.s.burst} in the middle")
        try:
            await asyncio.wait_for(self.checkout.run(), self._left())
        except TimeoutError:
            self.event("gave up: checkout did not finish in time")
            return
        self.event(f"checkout: {len(self.checkout.placed)} orders placed and confirmed in "
                   f"{time.monotonic() - started:.1f} s, never waiting for a consumer")
        if self.features.dedup and self.s.republish:
            await self._republish()
        analytics_dlq = topology.dlq_of("analytics")
        if not await self._until(lambda: self.depths[analytics_dlq] > 0,
                                 f"order {self.s.poison} to reach {analytics_dlq}"):
            return
        await self._collect_dead_letters(channel)
        await self._deploy(AnalyticsV2)
        self.replay = await dlq_replay_to_queue(self.url, analytics_dlq, "analytics")
        self.event(f"warrenmq dlq replay {analytics_dlq} --exchange '' --routing-key "
                   f"analytics: " + " ".join(f"{k}={v}" for k, v in self.replay.items()))
        if await self._until(self._all_done, "every service to process every order"):
            await self._reporting()
            if self.features.consistent_hash:
                shipping = Shipping(self.url, self.event)
                self.shipping = await shipping.run(list(self.checkout.placed),
                                                   self.s.customers, self.s.seed,
                                                   time.monotonic() + self._left())
        if self.features.dedup and self.republished:
            self.dropped = await dropped_by_broker(self.s.management_url, topology.EXCHANGE)
            if self.dropped is None:
                self.event("skipped: duplicates_dropped_by_broker is read from the management"
                           " API; give --management-url with --url to see it")
            else:
                self.event(f"broker: {self.dropped} duplicate(s) dropped by the {EXCHANGE!r}"
                           " exchange (x-message-deduplication on message_id), read from the"
                           " management API")

    async def _republish(self) -> None:
        """Checkout's retry after a lost confirm: a few orders published again, same
        message_id; the orders exchange (x-message-deduplication) drops them."""
        placed = self.checkout.placed
        step = max(1, len(placed) // (self.s.republish + 1))
        again = [placed[i] for i in range(step, len(placed), step)][:self.s.republish]
        self.event(f"checkout: the confirms of {len(again)} orders were lost (simulated);"
                   f" it publishes {', '.join(again)} again with the same message_id")
        self.republished = await self.checkout.republish(again)

    async def _reporting(self) -> None:
        """A new service replays order-events from `first`, is stopped half-way and
        restarted, and resumes from its tracked offset."""
        wanted = set(self.checkout.placed)
        half = max(1, len(wanted) // 2)
        self.event(f"reporting: a new service replays {STREAM} from first (the queues"
                   " forgot these orders once consumed; the stream did not)")
        first = Reporting(self.url, self.event, self.report, wanted, self.position,
                          stop_after=half, start="first")
        self.services["reporting"] = first
        await asyncio.wait_for(first.run(), self._left())
        self.event(f"reporting: stopped after {first.counted} orders; last acked offset"
                   f" {self.position.acked}")
        second = Reporting(self.url, self.event, self.report, wanted, self.position)
        self.services["reporting"] = second
        how = ("WarrenMQ's tracked offset for x-stream-consumer-name 'reporting'"
               if self.position.server_tracking else "its own saved offset")
        await asyncio.wait_for(second.run(), self._left())
        self.position.resumed_from = second.first_offset
        self.event(f"reporting: restarted, resumed from offset {second.first_offset} ({how});"
                   f" {second.counted} more orders, {self.report.duplicates} reprocessed")

    # ---------------------------------------------------------------- the services

    async def _run_inventory(self) -> None:
        crash_after = self.s.crash_after
        while not self.stopping:
            service = Inventory(self.url, self.event, self.db_path, crash_after)
            self.services["inventory"] = service
            if await service.run() != "crashed":
                return
            self.inventory_restarting = True
            crash_after = None  # it crashes once
            if await self._stopped_within(0.5):  # the supervisor's restart delay
                return
            self.inventory_restarting = False
            self.event("inventory: restarted; it knows only what its database committed")

    async def _run_email(self) -> None:
        service = Email(self.url, self.event, self.sent, self.s.email_latency)
        self.services["email"] = service
        running = asyncio.create_task(service.run())
        assert self._email_due is not None
        await self._email_due.wait()
        service.stop()
        await running
        if self.stopping:
            return
        self.email_down = True
        self.event(f"email: DOWN for {self.s.email_outage:g} s (its SMTP relay is "
                   "unreachable); checkout carries on and its queue grows")
        stopped = await self._stopped_within(self.s.email_outage)
        self.email_down = False
        if stopped:
            return
        service = Email(self.url, self.event, self.sent, self.s.email_latency)
        self.services["email"] = service
        self.event("email: back up; draining its queue")
        await service.run()

    async def _run_analytics(self, release: type[AnalyticsV1]) -> None:
        service = release(self.url, self.event, self.totals)
        self.services["analytics"] = service
        await service.run()

    async def _deploy(self, release: type[AnalyticsV1]) -> None:
        """Stop the running analytics (it finishes the delivery in hand) and start
        ``release`` on the same store."""
        self.services["analytics"].stop()
        await asyncio.wait_for(self.tasks["analytics"], STOP_GRACE)
        self.tasks["analytics"] = asyncio.create_task(self._run_analytics(release))
        self.event(f"analytics: fix deployed ({release.name}: totals may carry a thousands"
                   " separator)")

    async def _stopped_within(self, seconds: float) -> bool:
        """Sleep ``seconds``, or less if the run is stopping; True if it is."""
        assert self._stop is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
        return self.stopping

    def _on_placed(self, placed: int) -> None:
        if placed >= self.s.email_down_after and self._email_due is not None:
            self._email_due.set()

    async def _stop_services(self) -> None:
        self.stopping = True
        for event in (self._stop, self._email_due):
            if event is not None:
                event.set()
        for service in self.services.values():
            service.stop()
        if not self.tasks:
            return
        done, pending = await asyncio.wait(self.tasks.values(), timeout=STOP_GRACE)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            if not task.cancelled() and (exc := task.exception()) is not None:
                self.event(f"a service failed: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------ watching, waiting

    async def _monitor(self, channel: AbstractChannel) -> None:
        while True:
            self.depths = await topology.depths(channel)
            self.view.sample(self.depths)
            await asyncio.sleep(SAMPLE_EVERY)

    def _left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    async def _until(self, condition: Callable[[], bool], what: str) -> bool:
        while time.monotonic() < self.deadline:
            if condition():
                return True
            await asyncio.sleep(0.05)
        self.event(f"gave up waiting for {what}")
        return False

    def _all_done(self) -> bool:
        placed = len(self.checkout.placed)
        return (self.db.processed_count() >= placed and len(self.sent.sent) >= placed
                and len(self.totals.orders) >= placed
                and not any(self.depths[q] for q in topology.WORK_QUEUES))

    async def _collect_dead_letters(self, channel: AbstractChannel) -> None:
        """``warrenmq dlq inspect`` on every DLQ holding messages (they stay there)."""
        depths = await topology.depths(channel)
        for queue in topology.WORK_QUEUES:
            dlq = topology.dlq_of(queue)
            if not depths[dlq]:
                continue
            for record in await dlq_inspect(self.url, dlq):
                if record["message_id"] not in self.dead:
                    self.event(f"warrenmq dlq inspect {dlq}: order {record['message_id']} "
                               f"died in {record['queue']!r} ({record['reason']}): "
                               f"{record['body_preview'][:48]}...")
                self.dead[record["message_id"]] = record

    # ------------------------------------------------------------------ the result

    def _describe(self) -> tuple[str, dict[str, str]]:
        placed, n = len(self.checkout.placed), len(self.s.orders)
        title = (f"WarrenMQ orders demo  {self.view.elapsed():5.1f}s  checkout "
                 f"{placed}/{n} placed ({self.checkout.phase})")
        inventory = self.services.get("inventory")
        analytics = self.services.get("analytics")
        idle = "stopped" if self.stopping else "starting"
        inv_state = ("up" if inventory is not None and inventory.up
                     else "crashed, restarting" if self.inventory_restarting else idle)
        email_state = "down" if self.email_down else "up"
        an_state = (f"{analytics.name} up" if analytics is not None and analytics.up
                    else "stopped" if self.stopping else "deploying")
        states = {
            "inventory": f"{self.db.processed_count():>6} applied  {inv_state}",
            "email": f"{len(self.sent.sent):>6} sent     {email_state}",
            "analytics": f"{len(self.totals.orders):>6} counted  {an_state}",
        }
        if self.replay:
            states["analytics.dlq"] = f"{self.replay.get('replayed', 0):>6} replayed"
        return title, states

    def _tally(self) -> Tally:
        stock = self.db.stock()
        return Tally(
            orders=self.s.orders, placed=list(self.checkout.placed),
            publish_failures=list(self.checkout.failed),
            inventory=self.db.processed(), email=set(self.sent.sent),
            analytics=set(self.totals.orders),
            duplicates_skipped=(self.db.skipped_count() + self.sent.duplicates
                                + self.totals.duplicates),
            dead=dict(self.dead), replay=dict(self.replay), depths=dict(self.depths),
            stock_taken={sku: INITIAL_STOCK - qty for sku, qty in stock.items()},
            units_counted=self.totals.units.copy(), revenue_counted=self.totals.revenue,
            poison=self.s.poison, crash_injected=self.s.crash_after is not None,
            report_orders=dict(self.report.orders), report_units=self.report.units.copy(),
            report_duplicates=self.report.duplicates,
            resumed_from=self.position.resumed_from,
            shipping=self.shipping, shipping_expected=self.features.consistent_hash,
            republished=self.republished, dropped=self.dropped,
            dropped_expected=self.features.dedup and self.s.management_url is not None)

    def _report(self) -> None:
        units = ", ".join(f"{sku} {n}" for sku, n in self.totals.units.most_common())
        peaks = ", ".join(f"{q} {self.view.peak[q]}" for q in topology.WORK_QUEUES)
        self.view.note(f"analytics: {len(self.totals.orders)} orders, revenue EUR "
                       f"{self.totals.revenue:,.2f}; units {units}")
        self.view.note(f"inventory: {self.db.skipped_count()} redelivered order(s) skipped"
                       f" by the idempotency key; email: {len(self.sent.sent)} confirmations"
                       f" sent; queue depth peaks: {peaks}")
