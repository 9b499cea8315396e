"""Dead-letter queues for the dashboard, and replay: ``warrenmq dlq replay`` in-process.

A queue counts as a dead-letter queue when some queue of its vhost dead-letters into it
(its dead-letter exchange, from arguments or a policy, routes to it: the default
exchange by the dead-letter routing key, another exchange through its bindings,
exchange-to-exchange included) or when its name ends in ``.dlq``, ``-dlq`` or ``_dlq``.

``Replay`` does what the CLI's replay does, through the domain instead of a client: it
takes each message (at most the number held when it started), republishes it to its
origin — ``x-first-death-exchange`` and the first routing key of the first death's
``x-death`` entry — with ``x-delivery-count``, ``CC`` and ``BCC`` dropped from its
headers, and acks it from the DLQ only once the publish was routed and accepted by every
queue. A persistent message's new publish record goes into the store's log before the
ack of the old one, so a crash at any point loses nothing (at worst a duplicate).
Messages without ``x-death`` are skipped; unroutable or refused ones fail. Both stay
held until the end and are then returned to their positions, so none is fetched twice.
Work goes in steps of ``STEP`` messages with the event loop free in between. Owns the
messages it holds during a run; must not leave any held when it ends, however it ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from warrenmq.broker.vhost import VirtualHost
from warrenmq.exchange import Exchange
from warrenmq.message import Message
from warrenmq.protocol.fields import FieldError, encode_shortstr
from warrenmq.protocol.properties import decode_properties, encode_properties
from warrenmq.queues.queue import Queue
from warrenmq.queues.ready import QueuedMessage
from warrenmq.tools.deaths import origin

DLQ_SUFFIXES = (".dlq", "-dlq", "_dlq")
DROPPED_HEADERS = ("x-delivery-count", "CC", "BCC")
STEP = 500  # messages per step before the event loop gets a turn
MAX_ERRORS = 20  # failure descriptions kept for the answer


def _reachable_queues(vhost: VirtualHost, exchange: Exchange) -> set[str]:
    found: set[str] = set()
    seen: set[str] = set()
    stack = [exchange]
    while stack:
        current = stack.pop()
        if current.name in seen:
            continue
        seen.add(current.name)
        for destination, _key, _args in current.bindings():
            if isinstance(destination, Queue):
                found.add(destination.name)
            elif isinstance(destination, Exchange):
                stack.append(destination)
    return found


def dead_letter_queues(vhost: VirtualHost) -> dict[str, list[str]]:
    """DLQ name -> the queues that dead-letter into it (empty for a name-only DLQ)."""
    out: dict[str, list[str]] = {}
    for source in list(vhost.queues.values()):
        dlx = source.args.dead_letter_exchange
        if dlx is None:
            continue
        if dlx == "":
            key = source.args.dead_letter_routing_key
            targets = {key} if key is not None and key in vhost.queues else set()
        else:
            exchange = vhost.exchanges.get(dlx)
            targets = _reachable_queues(vhost, exchange) if exchange is not None else set()
        for target in targets - {source.name}:
            out.setdefault(target, []).append(source.name)
    for name in vhost.queues:
        if name.endswith(DLQ_SUFFIXES):
            out.setdefault(name, [])
    return out


def _properties_for_replay(raw: bytes) -> bytes:
    """The properties without the headers a replay drops; the same bytes if none."""
    try:
        props = decode_properties(raw)
    except FieldError:
        return raw
    headers = props.get("headers")
    if not isinstance(headers, dict) or not any(h in headers for h in DROPPED_HEADERS):
        return raw
    props["headers"] = {k: v for k, v in headers.items() if k not in DROPPED_HEADERS}
    return encode_properties(props)


@dataclass
class ReplayResult:
    replayed: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        return {"replayed": self.replayed, "skipped": self.skipped, "failed": self.failed,
                "errors": self.errors}


class Replay:
    def __init__(self, vhost: VirtualHost, queue: Queue, limit: int | None = None, *,
                 writable: Callable[[str], bool] = lambda exchange: True) -> None:
        self.vhost = vhost
        self.queue = queue
        self.writable = writable  # the user's write permission on an exchange
        self.total = queue.message_count if limit is None else min(limit, queue.message_count)
        self.result = ReplayResult()
        self.held: list[QueuedMessage] = []

    async def run(self) -> ReplayResult:
        done = 0
        try:
            while done < self.total and not self.queue.deleted:
                step = min(STEP, self.total - done)
                taken = self.step(step)
                done += step
                if taken < step:
                    break
                await asyncio.sleep(0)
        finally:
            self.release()
        return self.result

    def step(self, count: int) -> int:
        """Replay up to ``count`` messages; returns how many were taken."""
        queue = self.queue
        taken = 0
        for _ in range(count):
            qm = queue.get()
            if qm is None:
                break
            queue.track_unacked()
            taken += 1
            problem = self._republish(qm)
            if problem is None:
                queue.ack([qm])
                self.result.replayed += 1
                continue
            self.held.append(qm)
            if problem == "skip":
                self.result.skipped += 1
            else:
                self.result.failed += 1
                if len(self.result.errors) < MAX_ERRORS:
                    self.result.errors.append(problem)
        return taken

    def _republish(self, qm: QueuedMessage) -> str | None:
        """Publish the message to its origin; None when done, else why not."""
        message = qm.message
        found = origin(message.headers())
        if found is None or not found.routing_keys:
            return "skip"
        key = found.routing_keys[0]
        exchange = self.vhost.exchanges.get(found.exchange)
        if exchange is None:
            return f"no exchange '{found.exchange}' in vhost '{self.vhost.name}'"
        if exchange.internal:
            return f"exchange '{found.exchange}' is internal"
        if not self.writable(exchange.name):
            return f"write access to exchange '{found.exchange}' refused"
        route = encode_shortstr(exchange.name) + encode_shortstr(key)
        copy = Message(exchange.name, key, route, _properties_for_replay(message.properties),
                       message.load_body())
        routed, rejected, _ticket = self.vhost.publish(exchange, copy)
        if rejected:
            return f"refused by a queue of exchange '{exchange.name}' (x-overflow)"
        if not routed:
            return f"unroutable: exchange '{exchange.name}' routing key '{key}'"
        return None

    def release(self) -> None:
        """Give every held (skipped or failed) message back to the DLQ."""
        held, self.held = self.held, []
        if held:
            self.queue.requeue(held)
            if self.queue.dead:
                self.vhost.route_dead_letters([self.queue])
        self.queue.dispatch()
