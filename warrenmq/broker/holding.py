"""Exchanges that hold messages: the broker's half of the ``hold``/``release`` hooks.

An exchange type that sets ``HOLDS_MESSAGES`` (x-delayed-message) is offered each message
published to it (``offer``, called by ``flow.publish``); when it takes one, the exchange
joins ``vhost.holding`` and the server's timer visits it (``due``, called by
``flow.tick``), which hands back the messages whose time has come, to be routed through
the exchange's own ``route`` by ``flow.publish(..., offer_hold=False)``. Times are the
clock's wall time (``clock.time()``, seconds since the epoch), so a due time kept in the
store means the same after a restart. The hold itself (memory, store, order) is the
exchange type's: this module owns none of it. A type's exception is contained here as in
routing (``ExchangeTypeFailed``): on publish it closes the publishing channel; on the
timer it is logged and the exchange is visited again on the next tick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from warrenmq.broker import delays
from warrenmq.errors import AMQPError
from warrenmq.exchange.failure import contain

if TYPE_CHECKING:
    from warrenmq.broker.vhost import VirtualHost
    from warrenmq.exchange import Exchange
    from warrenmq.message import Message


def offer(vhost: VirtualHost, exchange: Exchange, message: Message,
          mandatory: bool = False) -> int | None:
    """``exchange.hold``: None to route now, else the store ticket of the hold (0: none).

    The built-in x-delayed-message type is held by ``broker/delays.py`` instead: it needs
    the vhost's store and message ids, the ``mandatory`` flag, and its own millisecond
    timer (``server/delay_timer.py``), none of which the plugin hook carries."""
    if delays.is_delayed(exchange):
        return delays.hold(vhost, exchange, message, mandatory)
    try:
        held = exchange.hold(message, vhost.clock.time())
    except AMQPError:
        raise
    except Exception as exc:
        raise contain(exchange, "hold a message", exc) from exc
    if held is not None:
        vhost.holding.add(exchange)
    return held


def due(vhost: VirtualHost) -> list[tuple[Exchange, Message]]:
    """Messages released by the holding exchanges now, each with its exchange; an exchange
    that holds nothing more (or was deleted) leaves ``vhost.holding``."""
    now = vhost.clock.time()
    out: list[tuple[Exchange, Message]] = []
    for exchange in list(vhost.holding):
        if vhost.exchanges.get(exchange.name) is not exchange:
            vhost.holding.discard(exchange)
            continue
        try:
            next_due = exchange.next_release()
            if next_due is None:
                vhost.holding.discard(exchange)
                continue
            if next_due > now:
                continue
            out.extend((exchange, message) for message in exchange.release(now))
            if exchange.next_release() is None:
                vhost.holding.discard(exchange)
        except Exception as exc:  # logged by contain; tried again next tick
            contain(exchange, "release held messages", exc)
    return out
