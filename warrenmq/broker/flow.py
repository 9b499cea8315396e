"""Message flow inside a virtual host: publish, dead-letter routing and queue timers.

``publish`` routes a message and enqueues it in every queue it reaches, reporting
whether any queue refused it (x-overflow reject-publish). Queues emit dead-letter
records instead of publishing; ``route_dead_letters`` drains them through each queue's
dead-letter exchange, breadth first, until no queue has any left — a dead letter can
overflow its target and cause another. A message that would dead-letter back into a
queue it already died in without a rejection in between is dropped (RabbitMQ's cycle
rule), so nothing loops. ``tick`` is the server's timer callback: expiry, retry delays
and x-expires. Nothing here awaits.

Exchanges that hold messages (``HOLDS_MESSAGES``, x-delayed-message; see
``broker/holding.py``): ``publish`` offers the message to such an exchange first (one
attribute test for every other exchange), and ``tick`` publishes what holding exchanges
release, with ``offer_hold=False`` so the exchange's own routing rules apply.

Dead letters are counted, not logged one by one: ``vhost.dead_letter_log`` collects
(event, queue, reason, exchange or target) -> count, and ``log_dead_letters`` (called by
the server's tick, at most once a second) writes one ``message_dead_lettered`` line per
queue and reason with the ``count`` (or ``dead_letter_exchange_missing`` /
``dead_letter_cycle_dropped`` / ``dead_letter_route_failed`` warnings, counted the same
way; the last when the dead-letter exchange's type raised: see exchange/failure.py).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Final

import structlog

from warrenmq.broker import holding
from warrenmq.broker.routing import route
from warrenmq.errors import AMQPError
from warrenmq.message import Message
from warrenmq.queues.dead_letter import dead_letter_message, is_cycle
from warrenmq.queues.stream import stream_ticket

if TYPE_CHECKING:
    from warrenmq.broker.vhost import VirtualHost
    from warrenmq.exchange import Exchange
    from warrenmq.queues.queue import DeliveryTarget, Queue

log = structlog.get_logger("warrenmq.dead_letter")

#: Bounds the work one dead-letter cascade may do, whatever the topology.
MAX_CASCADE: Final = 100_000


def publish(
    vhost: VirtualHost, exchange: Exchange, message: Message, offer_hold: bool = True
) -> tuple[int, bool, int]:
    """Route, store and enqueue; returns (queues that took it, whether any queue refused
    it, the store ticket whose commit makes it durable, or 0 when nothing was stored).
    A holding exchange that takes the message counts as one queue that took it (offered
    first, so a vhost with deduplication still holds: a held message meets the
    deduplicating entities when it is released). With deduplication in the vhost,
    ``broker/dedup.py`` does it (routed is -1 for a dropped duplicate: confirmed, never
    returned)."""
    if offer_hold and exchange.holds_messages:
        held = holding.offer(vhost, exchange, message)
        if held is not None:
            return 1, False, held
    dedup = vhost.dedup
    if dedup is not None:
        return dedup.publish(exchange, message)
    queues = route(vhost, exchange, message)
    if not queues:
        return 0, False, 0
    return enqueue_routed(vhost, queues, message)


def enqueue_routed(vhost: VirtualHost, queues: list[Queue], message: Message
                   ) -> tuple[int, bool, int]:
    """``publish`` once the queues are known (at least one)."""
    ticket = persist(vhost, queues, message)
    routed = 0
    rejected = False
    dead: list[Queue] | None = None
    for queue in queues:
        if queue.enqueue(message):
            routed += 1
        else:
            rejected = True
        if queue.dead:
            if dead is None:
                dead = []
            dead.append(queue)
    if message.properties[0] & 0x01:  # the expiration property: the timer must visit
        vhost.timed.update(queues)
    if vhost.streams_in_use:  # a stream's append takes its own ticket (queues/stream.py)
        ticket = stream_ticket(queues, ticket)
    if dead:
        route_dead_letters(vhost, dead)
    return routed, rejected, ticket


def persist(vhost: VirtualHost, queues: list[Queue], message: Message) -> int:
    """Write a persistent message bound for durable queues to the store, once for all of
    them, before it is enqueued (its acks must come after it in the log)."""
    store = vhost.store
    if store is None:
        return 0
    keys = [q.journal_key for q in queues if q.journal is not None]
    if not keys or not message.persistent:
        return 0
    message.msg_id = next(vhost.msg_ids)
    published = store.publish(message.msg_id, keys, message.exchange, message.routing_key,
                              message.properties, message.body, vhost.clock.time())
    message.location = published.handle
    message.store = store
    return published.ticket


def route_dead_letters(vhost: VirtualHost, queues: list[Queue]) -> None:
    """Route every queued dead-letter record of ``queues`` (and of queues they fill)."""
    work = list(queues)
    steps = 0
    now = vhost.clock.time()
    counts = vhost.dead_letter_log
    while work and steps < MAX_CASCADE:
        source = work.pop(0)
        for record in source.take_dead():
            steps += 1
            args = source.args
            dlx_name = args.dead_letter_exchange
            exchange = vhost.exchanges.get(dlx_name) if dlx_name is not None else None
            if exchange is None:
                counts["dead_letter_exchange_missing", source.name, record.reason,
                       dlx_name or ""] += 1
                continue
            counts["message_dead_lettered", source.name, record.reason, exchange.name] += 1
            message = dead_letter_message(record, exchange.name, args.dead_letter_routing_key,
                                          now)
            try:
                reached = route(vhost, exchange, message)
            except AMQPError:  # the DLX's exchange type failed (logged by exchange/failure)
                counts["dead_letter_route_failed", source.name, record.reason,
                       exchange.name] += 1
                continue
            targets = []
            for target in reached:
                if is_cycle(message, target.name):
                    counts["dead_letter_cycle_dropped", source.name, record.reason,
                           target.name] += 1
                else:
                    targets.append(target)
            persist(vhost, targets, message)
            for target in targets:
                target.enqueue(message)
                if target.dead and target not in work:
                    work.append(target)
    if work:
        log.error("dead_letter_cascade_cut", vhost=vhost.name, queues=len(work))


def log_dead_letters(vhost: VirtualHost) -> None:
    """One line per (event, queue, reason) counted since the last call (see above)."""
    counts, vhost.dead_letter_log = vhost.dead_letter_log, Counter()
    for (event, queue, reason, other), count in counts.items():
        if event == "message_dead_lettered":
            log.info(event, vhost=vhost.name, queue=queue, reason=reason, exchange=other,
                     count=count)
        elif event == "dead_letter_cycle_dropped":
            log.warning(event, vhost=vhost.name, queue=queue, reason=reason, target=other,
                        count=count)
        else:
            log.warning(event, vhost=vhost.name, queue=queue, reason=reason, exchange=other,
                        count=count)


def tick(vhost: VirtualHost, now: float) -> list[DeliveryTarget]:
    """Run due timers; returns consumers to cancel (none today: expired queues have none)."""
    if vhost.holding:
        for exchange, message in holding.due(vhost):
            try:
                publish(vhost, exchange, message, offer_hold=False)
            except AMQPError as exc:  # its type failed to route it (logged): dropped
                log.warning("held_message_dropped", vhost=vhost.name, exchange=exchange.name,
                            error=exc.text)
    dead: list[Queue] = []
    expired: list[Queue] = []
    for queue in list(vhost.timed):
        if queue.deleted:
            vhost.timed.discard(queue)
            continue
        deadline = queue.next_deadline()
        if deadline is not None and deadline <= now:
            queue.tick(now)
        if queue.dead:  # from this tick, or expired messages a dispatch stepped over
            dead.append(queue)
        if queue.expired(now):
            expired.append(queue)
        elif deadline is None and not queue.args.has_timers:
            vhost.timed.discard(queue)
    if dead:
        route_dead_letters(vhost, dead)
    cancelled: list[DeliveryTarget] = []
    for queue in expired:
        cancelled.extend(vhost.remove_queue(queue, "expired")[1])
    return cancelled
