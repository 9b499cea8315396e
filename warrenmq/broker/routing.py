"""Routing inside a virtual host: which queues a published message reaches.

Walks exchange-to-exchange bindings with a visited set, so a binding cycle never
delivers a message twice, and hands a message that an exchange cannot route to that
exchange's alternate exchange (the ``alternate-exchange`` in force: declared, or from
a policy). Owns no state; reads the vhost's exchanges and queues. Must not enqueue,
store or await: ``flow`` does the rest of a publish.

An exchange whose type routes on the whole message (``routes_message``, read from the
instance: the built-in types leave it False and keep the two-argument ``route``) is asked
through ``route_message``. An exception from an exchange type's code that is not an
``AMQPError`` becomes ``ExchangeTypeFailed`` (541, closing the publishing channel only);
the try block costs nothing on the path where nothing raises.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from warrenmq.errors import AMQPError
from warrenmq.exchange import Exchange
from warrenmq.exchange.failure import contain
from warrenmq.queues.queue import Queue

if TYPE_CHECKING:
    from warrenmq.broker.vhost import VirtualHost
    from warrenmq.message import Message


def route(  # noqa: C901 - one frame for the whole walk: it runs for every message
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
    current = exchange
    try:
        if exchange.routes_message:
            destinations = exchange.route_message(message)
        else:
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
                current = dest
                if dest.routes_message:
                    found = dest.route_message(message)
                else:
                    found = dest.route(message.routing_key, headers)
                if found:
                    stack.extend(found)
                elif "alternate-exchange" in dest.effective_arguments:
                    # RabbitMQ (rabbit_exchange:route1, process_alternate): every exchange
                    # walked that matches nothing hands the message to its own AE.
                    stack.extend(_alternate(vhost, dest, message, set(seen_x)))
    except AMQPError:
        raise
    except Exception as exc:  # an exchange type's fault: 541 on this channel only
        raise contain(current, f"route a message (routing key '{message.routing_key}')",
                      exc) from exc
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
