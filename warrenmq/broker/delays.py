"""Delayed delivery inside a virtual host: holding, releasing and restoring messages.

``hold`` is what a publish to an ``x-delayed-message`` exchange does first: a message
whose ``x-delay`` asks for a delay is held by the exchange (``exchange/delayed.py``)
until ``now + delay`` -- an absolute wall-clock due time in ms, so nothing drifts --
instead of being routed. A persistent message held by a durable exchange is written to
the message store first, under the exchange's pseudo-queue key (see ARCHITECTURE.md,
"Delayed delivery"), with its due time in the record's publish-time field; its
publisher confirm then waits for that record's fsync like any persistent publish.

``release`` routes, by the delayed type's rules, the messages that are due, a bounded
batch per call (the server's ``DelayTimer`` calls it again at once while more are due,
so a restart with a million overdue messages never stalls the loop); a stored one is
acked from the pseudo-queue AFTER its new PUBLISH to the real queues was appended, so a
crash in between duplicates rather than loses it. ``restore`` puts the store's held
messages back at start-up. Nothing here awaits or knows about the loop: the vhost's
``delay_wake`` callback (set by the server) is told of each new earliest due time.

The mandatory flag (the plugin answers every delayed mandatory publish with a
basic.return, even one it later delivers -- its issue #7): a delayed publish with
``mandatory`` that no queue would take now is returned at once and NOT held; one that
routes now is held and not returned. What no queue takes at release (bindings removed
meanwhile) goes to the alternate exchange if there is one, else is dropped and counted
in ``DelayedExchange.unroutable`` (there is no publisher left to return it to).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, TypeGuard

import structlog

from warrenmq.exchange.delayed import (
    DELAY_HEADER,
    STORE_PREFIX,
    DelayedExchange,
    Held,
    delay_of,
    pack,
)
from warrenmq.message import Message
from warrenmq.protocol.fields import RAW_UTF8, encode_shortstr
from warrenmq.protocol.properties import rewrite_properties

if TYPE_CHECKING:
    from warrenmq.broker.vhost import VirtualHost
    from warrenmq.storage import RecoveredMessage

log = structlog.get_logger("warrenmq.delayed")

#: Reads a large body the store recovered as a location only (``MessageStore.read_body``).
ReadBody = Callable[[Any, int], bytes]
#: Messages released per call: a batch costs the loop a few milliseconds (about 5 ms
#: compiled, benchmarks/delayed_memory.py).
RELEASE_BATCH: Final = 500


def is_delayed(exchange: object) -> TypeGuard[DelayedExchange]:
    """Whether ``exchange`` is an x-delayed-message exchange.

    Not ``isinstance``: ``Exchange`` is an ABC compiled by mypyc, and compiled subclasses
    share its ABC cache, so in interpreted code ``isinstance(direct, DelayedExchange)``
    can be True (seen with the compiled build: the cache holds every Exchange subclass
    seen). The exact type is the type registered under the name."""
    return type(exchange) is DelayedExchange


def store_key(vhost: VirtualHost, exchange: DelayedExchange) -> str:
    return f"{vhost.name}\x00{STORE_PREFIX}{exchange.name}"


def hold(vhost: VirtualHost, exchange: DelayedExchange, message: Message,
         mandatory: bool) -> int | None:
    """Hold ``message`` if its ``x-delay`` asks for it: returns the store ticket of the
    hold (0 when not stored), or None to route it now (``holding.offer``'s contract)."""
    delay = delay_of(message.headers())
    if not delay:
        return None
    if mandatory and not vhost.route(exchange, message):
        return None  # routed now: to nowhere, so returned at once, never delivered later
    due = int(vhost.clock.time() * 1000) + delay
    # As the plugin: the header becomes -delay, so a release is never delayed again and
    # consumers can tell the message was delayed.
    properties = rewrite_properties(message.properties, set_headers={DELAY_HEADER: -delay})
    seq = next(vhost.msg_ids)
    store = vhost.store
    ticket = 0
    stored = store is not None and exchange.durable and message.persistent
    if stored and store is not None:
        ticket = store.publish(seq, (store_key(vhost, exchange),), message.exchange,
                               message.routing_key, properties, message.body,
                               (due + 0.5) / 1000.0).ticket
    if exchange.held.push(due, seq, stored, message.route, properties, message.body) or \
            exchange not in vhost.delayed:
        vhost.delayed.add(exchange)
        if vhost.delay_wake is not None:
            vhost.delay_wake(due)
    return ticket


def _message(exchange: DelayedExchange, held: Held) -> Message:
    route = held.route
    end = 1 + route[0]
    routing_key = route[end + 1:].decode("utf-8", RAW_UTF8)
    return Message(exchange.name, routing_key, route, held.properties, held.body)


def release(vhost: VirtualHost, now_ms: int, budget: int = RELEASE_BATCH) -> int:
    """Route up to ``budget`` due messages of the vhost's delayed exchanges; returns how
    many were released (``budget`` means: call again, more may be due)."""
    from warrenmq.broker.flow import publish  # flow imports this module (via holding)

    released = 0
    store = vhost.store
    for exchange in list(vhost.delayed):
        if vhost.exchanges.get(exchange.name) is not exchange:  # deleted meanwhile
            vhost.delayed.discard(exchange)
            continue
        key = store_key(vhost, exchange)
        for held in exchange.held.pop_due(now_ms, budget - released):
            routed, _rejected, _ticket = publish(vhost, exchange, _message(exchange, held),
                                                 offer_hold=False)
            if not routed:
                exchange.unroutable += 1
            if held.stored and store is not None:
                store.ack(key, held.seq)  # after the new PUBLISH: a crash duplicates
            released += 1
        if not exchange.held:
            vhost.delayed.discard(exchange)
        if released >= budget:
            break
    return released


def next_due(vhost: VirtualHost) -> int:
    """The earliest due time (ms) of any held message of the vhost, 0 when none."""
    dues = [x.held.next_due() for x in vhost.delayed if x.held]
    return min(dues) if dues else 0


def discard(vhost: VirtualHost, exchange: DelayedExchange) -> int:
    """The exchange was deleted: its held messages go (from the store too)."""
    held = exchange.held.clear()
    vhost.delayed.discard(exchange)
    if vhost.store is not None and any(h.stored for h in held):
        vhost.store.drop_queue(store_key(vhost, exchange))
    if held:
        log.warning("delayed_messages_dropped", vhost=vhost.name, exchange=exchange.name,
                    messages=len(held), reason="exchange_deleted")
    return len(held)


def restore(vhost: VirtualHost, exchange: DelayedExchange,
            recovered: Iterable[RecoveredMessage], read_body: ReadBody) -> int:
    """Put the store's held messages of ``exchange`` back (start-up); returns how many.
    Overdue ones are released by the first timer run, earliest first."""
    entries = []
    for r in recovered:
        route = encode_shortstr(r.exchange) + encode_shortstr(r.routing_key)
        body = r.body if r.body is not None else read_body(r.location, r.msg_id)
        entries.append(pack(round(r.published * 1000), r.msg_id, True, route, r.properties,
                            body))
    if entries:
        exchange.held.extend(entries)
        vhost.delayed.add(exchange)
    return len(entries)
