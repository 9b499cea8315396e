"""Routing inside a virtual host: which queues a published message reaches.

Walks exchange-to-exchange bindings with a visited set, so a binding cycle never
delivers a message twice, and hands a message that an exchange cannot route to that
exchange's alternate exchange (the ``alternate-exchange`` in force: declared, or from
a policy). Owns no state; reads the vhost's exchanges and queues. Must not enqueue,
store or await: ``flow`` does the rest of a publish.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from warrenmq.exchange import Exchange
from warrenmq.queues.queue import Queue

if TYPE_CHECKING:
    from warrenmq.broker.vhost import VirtualHost
    from warrenmq.message import Message


def route(
    vhost: VirtualHost, exchange: Exchange, message: Message,
    tried: set[Exchange] | None = None,
) -> list[Queue]:
    """Every queue the message reaches, each once, following E2E bindings.

    When nothing matches, the exchange's alternate-exchange (if any) gets the message;
    ``tried`` stops a loop of alternates.
    """
    if exchange.name == "":
        q = vhost.queues.get(message.routing_key)
        return [q] if q is not None else []
    headers = message.headers
    destinations = exchange.route(message.routing_key, headers)
    if not destinations:
        tried = tried or set()
        tried.add(exchange)
        return _alternate(vhost, exchange, message, tried)
    queues: list[Queue] = []
    seen_x: set[Exchange] = {exchange}
    seen_q: set[Queue] = set()
    stack = list(destinations)
    while stack:
        dest = stack.pop()
        if isinstance(dest, Queue):
            if dest not in seen_q:
                seen_q.add(dest)
                queues.append(dest)
        elif isinstance(dest, Exchange) and dest not in seen_x:
            seen_x.add(dest)
            found = dest.route(message.routing_key, headers)
            if found:
                stack.extend(found)
            elif "alternate-exchange" in dest.effective_arguments:
                # RabbitMQ (rabbit_exchange:route1, process_alternate): every exchange
                # walked that matches nothing hands the message to its own AE.
                stack.extend(_alternate(vhost, dest, message, set(seen_x)))
    return queues


def _alternate(
    vhost: VirtualHost, exchange: Exchange, message: Message, seen: set[Exchange]
) -> list[Queue]:
    alt_name = exchange.effective_arguments.get("alternate-exchange")
    if not isinstance(alt_name, str | bytes):
        return []
    alt = vhost.exchanges.get(alt_name.decode() if isinstance(alt_name, bytes) else alt_name)
    if alt is None or alt in seen:
        return []
    return route(vhost, alt, message, seen)
