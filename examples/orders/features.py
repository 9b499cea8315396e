"""What the broker behind the URL offers, and the broker's own duplicate count.

Owns the demo's feature probe: whether the broker has the x-consistent-hash exchange
type (RabbitMQ: only with its rabbitmq_consistent_hash_exchange plugin enabled; probed by
declaring one on a connection of its own) and broker-side deduplication
(x-message-deduplication: WarrenMQ's, and LavinMQ's; RabbitMQ accepts the argument and
ignores it, so it is told by the server's product name). A part of the demo whose
feature is missing is skipped, with the reason printed. Also reads the number of
duplicates an exchange dropped from the management API (``deduplication.duplicates``).
Must not publish or consume.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from aio_pika.abc import AbstractConnection
from topology import LIFECYCLE, consistent_hash_available


@dataclass
class Features:
    product: str = "WarrenMQ"
    consistent_hash: bool = True
    dedup: bool = True

    @property
    def skip(self) -> frozenset[str]:
        """Exchanges of orders.yaml not to declare (their type is missing)."""
        return frozenset() if self.consistent_hash else frozenset({LIFECYCLE})

    def skipped(self) -> list[str]:
        out = []
        if not self.consistent_hash:
            out.append(f"shipping (ordering per customer): {self.product} has no"
                       " x-consistent-hash exchange type here (RabbitMQ: enable the"
                       " rabbitmq_consistent_hash_exchange plugin); ordering_violations"
                       " is not measured")
        if not self.dedup:
            out.append(f"checkout's retry after a lost confirm: {self.product} has no"
                       " broker-side deduplication (x-message-deduplication is WarrenMQ's"
                       " and LavinMQ's), so the retry is not simulated and"
                       " duplicates_dropped_by_broker is not measured")
        return out

    @classmethod
    async def probe(cls, url: str, connection: AbstractConnection) -> Features:
        transport = connection.transport
        properties: dict[str, Any] = (dict(transport.connection.server_properties)
                                      if transport is not None else {})
        product = properties.get("product", "the broker")
        product = product.decode() if isinstance(product, bytes) else str(product)
        return cls(product=product, consistent_hash=await consistent_hash_available(url),
                   dedup=product in ("WarrenMQ", "LavinMQ"))


async def dropped_by_broker(management_url: str | None, exchange: str) -> int | None:
    """Duplicates the exchange dropped, from ``GET /api/exchanges/%2F/<name>``; None when
    there is no management URL or it does not answer."""
    if management_url is None:
        return None
    return await asyncio.to_thread(_read_dropped, management_url, exchange)


def _read_dropped(management_url: str, exchange: str) -> int | None:
    parts = urlsplit(management_url)
    user, password = parts.username or "guest", parts.password or "guest"
    base = f"{parts.scheme}://{parts.hostname}:{parts.port or 15672}"
    request = urllib.request.Request(  # noqa: S310 - the operator's own management URL
        f"{base}/api/exchanges/%2F/{quote(exchange, safe='')}",
        headers={"Authorization": "Basic " + base64.b64encode(
            f"{user}:{password}".encode()).decode()})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            document = json.load(response)
    except (OSError, ValueError):
        return None
    return int(document.get("deduplication", {}).get("duplicates", 0))
