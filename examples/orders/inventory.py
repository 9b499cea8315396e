"""Inventory: reserves stock for each order, an idempotent consumer.

The lesson's pattern: "Because at-least-once is the practical baseline, your consumers
should be idempotent." The order id (the message's ``message_id``) is the idempotency
key, recorded in SQLite in the same transaction as the stock change, so a redelivered
order — one committed just before a crash, whose ack never reached the broker — is
found there, acked and skipped (and logged in ``skipped``), never applied twice.

Owns the inventory database (``stock``, ``processed_orders``, ``skipped``) and the
consumer. Must not keep state that matters outside the database: a restarted instance
knows only what was committed.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from aio_pika.abc import AbstractIncomingMessage
from service import Crash, Events, Service, parse_order

SCHEMA = """
CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, qty INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS processed_orders (order_id TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS skipped (order_id TEXT NOT NULL, at REAL NOT NULL);
"""


class InventoryDB:
    """One SQLite connection to the inventory database (WAL, so readers never block)."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=10)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.executescript(SCHEMA)

    def stock_up(self, skus: dict[str, int]) -> None:
        with self.conn:
            self.conn.executemany("INSERT OR REPLACE INTO stock VALUES (?, ?)", skus.items())

    def apply(self, order_id: str, units: dict[str, int]) -> bool:
        """Take the order's units off the stock and record its id, in one transaction;
        False (and nothing changed but the ``skipped`` log) when the id is recorded."""
        cur = self.conn.cursor()
        cur.execute("BEGIN IMMEDIATE")  # the write lock first: check and record atomically
        try:
            seen = cur.execute("SELECT 1 FROM processed_orders WHERE order_id = ?",
                               (order_id,)).fetchone()
            if seen:
                cur.execute("INSERT INTO skipped VALUES (?, ?)", (order_id, time.time()))
            else:
                for sku, qty in units.items():
                    cur.execute("UPDATE stock SET qty = qty - ? WHERE sku = ?", (qty, sku))
                    if cur.rowcount != 1:
                        raise KeyError(f"unknown sku {sku!r}")
                cur.execute("INSERT INTO processed_orders VALUES (?, ?)",
                            (order_id, time.time()))
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")
        return not seen

    def processed(self) -> set[str]:
        return {row[0] for row in self.conn.execute("SELECT order_id FROM processed_orders")}

    def processed_count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM processed_orders").fetchone()[0])

    def skipped_count(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM skipped").fetchone()[0])

    def stock(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT sku, qty FROM stock").fetchall())

    def close(self) -> None:
        self.conn.close()


class Inventory(Service):
    name = "inventory"
    queue = "inventory"
    prefetch = 20

    def __init__(self, url: str, events: Events, db_path: Path,
                 crash_after: int | None = None) -> None:
        super().__init__(url, events)
        self.db_path = db_path
        self.crash_after = crash_after

    async def run(self) -> str:
        self.db = InventoryDB(self.db_path)  # a fresh instance reads only what was committed
        try:
            return await super().run()
        finally:
            self.db.close()

    async def handle(self, message: AbstractIncomingMessage) -> None:
        order = await parse_order(message, self.events, self.name)
        if order is None:
            return
        units: dict[str, int] = {}
        for item in order["items"]:
            units[item["sku"]] = units.get(item["sku"], 0) + int(item["qty"])
        if not self.db.apply(order["order_id"], units):
            self.events(f"inventory: order {order['order_id']} redelivered; already in the "
                        "database, so acked and skipped")
            await message.ack()
            return
        if self.crash_after is not None and self.db.processed_count() == self.crash_after:
            self.events(f"inventory: crashed after committing order {order['order_id']}, "
                        "before acking it")
            raise Crash
        await message.ack()
