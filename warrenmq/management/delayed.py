"""Delayed messages in the management API: what an x-delayed-message exchange holds.

``delayed_json`` adds to an exchange object the fields the delayed-message plugin never
had: ``messages_delayed`` (how many wait), ``messages_delayed_bytes`` (their bodies),
``next_delayed_due`` (ISO 8601 UTC, null when none wait) and its ``next_delayed_due_ms``
(epoch ms), and ``delayed_unroutable`` (released messages no queue took).
``GET /api/exchanges/{vhost}/{name}/delayed?count=N`` lists the first N (default 100,
at most 10,000) in due order, without their bodies. Reads only; holds nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from warrenmq.broker.delays import is_delayed
from warrenmq.exchange.delayed import DelayedExchange, Held
from warrenmq.management.auth import bad_request, not_found
from warrenmq.protocol.fields import FieldError
from warrenmq.protocol.properties import decode_properties

if TYPE_CHECKING:
    from warrenmq.management.app import ManagementServer

MAX_LISTED = 10_000


def due_text(due_ms: int) -> str | None:
    if not due_ms:
        return None
    return datetime.fromtimestamp(due_ms / 1000, UTC).isoformat(timespec="milliseconds")


def delayed_json(exchange: DelayedExchange) -> dict[str, Any]:
    held = exchange.held
    due = held.next_due()
    return {
        "delayed_type": exchange.delayed_type,
        "messages_delayed": len(held),
        "messages_delayed_bytes": held.body_bytes,
        "next_delayed_due": due_text(due),
        "next_delayed_due_ms": due or None,
        "delayed_unroutable": exchange.unroutable,
    }


def held_json(held: Held) -> dict[str, Any]:
    route = held.route
    end = 1 + route[0]
    try:
        properties = decode_properties(held.properties)
    except FieldError:
        properties = {}
    from warrenmq.management.api import jsonable  # api imports this module

    return {
        "due": due_text(held.due_ms),
        "due_ms": held.due_ms,
        "routing_key": route[end + 1:].decode("utf-8", "replace"),
        "persistent": held.stored,
        "payload_bytes": len(held.body),
        "properties": jsonable(properties),
    }


def add_delayed_routes(app: web.Application, mgmt: ManagementServer) -> None:
    async def listing(request: web.Request) -> web.Response:
        p = mgmt.principal(request)
        vhost = p.vhost(request.match_info["vhost"])
        exchange = vhost.exchanges.get(request.match_info["name"])
        if not is_delayed(exchange):
            raise not_found()
        try:
            count = int(request.query.get("count", "100"))
        except ValueError:
            raise bad_request("count must be a whole number") from None
        if not 0 <= count <= MAX_LISTED:
            raise bad_request(f"count must be between 0 and {MAX_LISTED}")
        return web.json_response([held_json(h) for h in exchange.held.earliest(count)])

    app.router.add_get("/api/exchanges/{vhost}/{name}/delayed", listing)
