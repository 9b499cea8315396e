"""VirtualHost: the exchanges, queues and bindings of one AMQP virtual host.

It enforces AMQP 0-9-1 entity semantics as RabbitMQ implements them — reserved ``amq.``
names, the default exchange, declare equivalence, exclusive ownership, auto-delete — and
holds the vhost's policies (applied to each entity as it is declared, and re-applied to
all of them when a policy changes: ``policies.py``). Routing lives in ``routing.py``,
publishing and dead-lettering in ``flow.py``. It raises typed ``AMQPError`` subclasses
and never touches sockets, channels or the event loop; what the server must do in
response (cancel consumers of a deleted queue) comes back as return values. Declaring
and deleting queues is logged (``queue_declared``, ``queue_deleted`` with the reason).
"""

from __future__ import annotations

import base64
import itertools
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import structlog

from warrenmq.broker import dedup, delays, flow, policies, routing
from warrenmq.broker.policies import Policy
from warrenmq.clock import SYSTEM_CLOCK, Clock
from warrenmq.errors import (
    AccessRefused,
    CommandInvalid,
    NotFound,
    PreconditionFailed,
    ResourceLocked,
)
from warrenmq.exchange import EXCHANGE_TYPES, Exchange, create_exchange
from warrenmq.exchange.delayed import STORE_PREFIX, TYPE_ARGUMENT, DelayedExchange
from warrenmq.message import Message
from warrenmq.queues.arguments import parse_arguments
from warrenmq.queues.dedup import ARGUMENTS as DEDUP_ARGUMENTS
from warrenmq.queues.dedup import parse_settings as check_dedup
from warrenmq.queues.queue import COUNTERS, DEFAULT_MEMORY_LIMIT, DeliveryTarget, Queue
from warrenmq.queues.stream_args import is_stream
from warrenmq.queues.stream_open import open_stream
from warrenmq.storage import MessageStore
from warrenmq.storage.dedup_log import DedupLog
from warrenmq.storage.streams import StreamStore

log = structlog.get_logger("warrenmq.vhost")

STANDARD_EXCHANGES: Final = (
    ("amq.direct", "direct"),
    ("amq.fanout", "fanout"),
    ("amq.topic", "topic"),
    ("amq.headers", "headers"),
    ("amq.match", "headers"),
)

#: Queue arguments compared on redeclare (RabbitMQ compares only the ones it knows).
EQUIVALENCE_ARGUMENTS: Final = (
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-type",
    "x-single-active-consumer",
    "x-delivery-limit",
    "x-retry-delays",
    *DEDUP_ARGUMENTS,
)


#: Compared on redeclare of a stream as well (RabbitMQ's stream queue type does).
STREAM_EQUIVALENCE = ("x-max-age", "x-stream-max-segment-size-bytes")


def server_name() -> str:
    return "amq.gen-" + base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if not isinstance(value, str) else value


class VirtualHost:
    """All routing state of one vhost. Exchanges and queues are keyed by name."""

    def __init__(self, name: str, clock: Clock = SYSTEM_CLOCK) -> None:
        self.name = name
        self.clock = clock
        self.timed: set[Queue] = set()  # queues the server's timer tick must visit
        self.holding: set[Exchange] = set()  # exchanges holding messages (broker/holding.py)
        # x-delayed-message exchanges holding messages, and the server's callback told of
        # each new earliest due time in ms (broker/delays.py, server/delay_timer.py)
        self.delayed: set[DelayedExchange] = set()
        self.delay_wake: Callable[[int], None] | None = None
        # bumped by every change to exchanges, queues or bindings (durable or not): the
        # server compares it to decide whether the durable definitions must be saved
        self.generation = 0
        self.max_queues: int | None = None  # RabbitMQ's vhost limit; set by Broker.set_limit
        self.store: MessageStore | None = None  # attach_store() for durability
        self.streams: StreamStore | None = None  # stream queues' logs (queues/stream.py)
        self.streams_in_use = False  # a stream was declared: publishes take its tickets
        # set while an entity deduplicates: publishes go through it (broker/dedup.py)
        self.dedup: dedup.Deduplication | None = None
        self.dedup_log: DedupLog | None = None  # durable entities' keys (app.Durability)
        self.msg_ids: Iterator[int] = itertools.count(1)
        self.queue_memory_limit = DEFAULT_MEMORY_LIMIT
        self.exchanges: dict[str, Exchange] = {}
        self.queues: dict[str, Queue] = {}
        self.policies: dict[str, Policy] = {}  # by name
        #: dead letters since the last log line: (event, queue, reason, exchange) -> count
        self.dead_letter_log: Counter[tuple[str, str, str, str]] = Counter()
        # statistics: messages published by clients, and the counters of deleted queues
        # (so vhost totals never go backwards when a queue goes)
        self.published = 0
        self.retired = dict.fromkeys(COUNTERS, 0)
        self.exchanges[""] = create_exchange("direct", "", durable=True)
        for xname, xtype in STANDARD_EXCHANGES:
            self.exchanges[xname] = create_exchange(xtype, xname, durable=True)

    # ----------------------------------------------------------------- lookups
    def _where(self, kind: str, name: str) -> str:
        return f"{kind} '{name}' in vhost '{self.name}'"

    def exchange(self, name: str) -> Exchange:
        try:
            return self.exchanges[name]
        except KeyError:
            raise NotFound(f"no {self._where('exchange', name)}") from None

    def queue(self, name: str, owner: object | None = None) -> Queue:
        try:
            queue = self.queues[name]
        except KeyError:
            raise NotFound(f"no {self._where('queue', name)}") from None
        self.check_exclusive(queue, owner)
        return queue

    def check_exclusive(self, queue: Queue, owner: object | None, *, strict: bool = False) -> None:
        """405 unless ``owner`` may use ``queue``; ``strict`` (redeclare) needs the same owner."""
        if queue.exclusive_owner is not owner and (strict or queue.exclusive_owner is not None):
            raise ResourceLocked(
                f"cannot obtain exclusive access to locked {self._where('queue', queue.name)}."
                " It could be originally declared on another connection or the exclusive"
                " property value does not match that of the original declaration."
            )

    # ----------------------------------------------------------------- exchanges
    def declare_exchange(
        self,
        name: str,
        type_name: str,
        *,
        passive: bool = False,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: Mapping[str, Any] | None = None,
    ) -> Exchange:
        # RabbitMQ: check_type comes first (503 even for an existing name), and the default
        # exchange is refused for passive declares too (check_not_default_exchange).
        if not passive and type_name not in EXCHANGE_TYPES:
            raise CommandInvalid(f"unknown exchange type '{type_name}'")
        if name == "":
            raise AccessRefused("operation not permitted on the default exchange")
        if passive:
            return self.exchange(name)
        existing = self.exchanges.get(name)
        if existing is None:
            if name.startswith("amq."):
                raise AccessRefused(
                    f"exchange name '{name}' contains reserved prefix 'amq.*'"
                )
            check_dedup(arguments or {}, self._where("exchange", name))
            exchange = create_exchange(
                type_name,
                name,
                durable=durable,
                auto_delete=auto_delete,
                internal=internal,
                arguments=arguments,
            )
            self.exchanges[name] = exchange
            self.generation += 1
            policies.apply_to_exchange(exchange, self.policies.values())
            dedup.configure_exchange(self, exchange)
            return exchange
        self._exchange_equivalent(existing, type_name, durable, auto_delete, internal, arguments)
        return existing

    def _assert_equivalent(
        self, kind: str, name: str, checks: list[tuple[str, Any, Any]]
    ) -> None:
        """406 naming the first (field, received, current) that differs, as RabbitMQ words it."""
        for field, received, current in checks:
            if received != current:
                raise PreconditionFailed(
                    f"inequivalent arg '{field}' for {self._where(kind, name)}:"
                    f" received '{_fmt(received)}' but current is '{_fmt(current)}'"
                )

    def _exchange_equivalent(
        self,
        x: Exchange,
        type_name: str,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: Mapping[str, Any] | None,
    ) -> None:
        args = dict(arguments or {})
        checks: list[tuple[str, Any, Any]] = [
            ("type", type_name, x.type_name),
            ("durable", durable, x.durable),
            ("auto_delete", auto_delete, x.auto_delete),
            ("internal", internal, x.internal),
            ("alternate-exchange", args.get("alternate-exchange"),
             x.arguments.get("alternate-exchange")),
            *[(key, args.get(key), x.arguments.get(key)) for key in DEDUP_ARGUMENTS],
        ]
        if isinstance(x, DelayedExchange):  # ours: RabbitMQ's plugin ignores a change
            checks.append((TYPE_ARGUMENT, args.get(TYPE_ARGUMENT), x.arguments.get(TYPE_ARGUMENT)))
        self._assert_equivalent("exchange", x.name, checks)

    def delete_exchange(self, name: str, *, if_unused: bool = False) -> None:
        if name == "":
            raise AccessRefused("operation not permitted on the default exchange")
        if name.startswith("amq."):
            raise AccessRefused(f"deletion of system {self._where('exchange', name)} not allowed")
        exchange = self.exchanges.get(name)
        if exchange is None:
            return  # RabbitMQ (rabbit_exchange:ensure_deleted): a missing exchange is ok
        if if_unused and exchange.has_bindings():
            raise PreconditionFailed(f"{self._where('exchange', name)} in use")
        del self.exchanges[name]
        self.generation += 1
        if isinstance(exchange, DelayedExchange):
            delays.discard(self, exchange)
        for other in list(self.exchanges.values()):
            if other.unbind_destination(exchange):
                self._maybe_auto_delete_exchange(other)

    def _maybe_auto_delete_exchange(self, exchange: Exchange) -> None:
        if exchange.auto_delete and not exchange.has_bindings() and exchange.name:
            self.exchanges.pop(exchange.name, None)
            self.generation += 1
            if isinstance(exchange, DelayedExchange):
                delays.discard(self, exchange)
            for other in list(self.exchanges.values()):
                if other.unbind_destination(exchange):
                    self._maybe_auto_delete_exchange(other)

    def _bindable_source(self, name: str) -> Exchange:
        if name == "":
            raise AccessRefused("operation not permitted on the default exchange")
        return self.exchange(name)

    def bind_exchange(
        self, destination: str, source: str, binding_key: str, arguments: Mapping[str, Any]
    ) -> None:
        src = self._bindable_source(source)
        if destination == "":
            raise AccessRefused("operation not permitted on the default exchange")
        dst = self.exchange(destination)
        src.check_binding(binding_key, arguments)
        if src.bind(dst, binding_key, arguments):
            self.generation += 1

    def unbind_exchange(
        self, destination: str, source: str, binding_key: str, arguments: Mapping[str, Any]
    ) -> None:
        if source == "" or destination == "":
            raise AccessRefused("operation not permitted on the default exchange")
        # RabbitMQ 3.10: unbinding from or to an exchange that does not exist is unbind-ok
        src, dst = self.exchanges.get(source), self.exchanges.get(destination)
        if src is not None and dst is not None and src.unbind(dst, binding_key, arguments):
            self.generation += 1
            self._maybe_auto_delete_exchange(src)

    # ----------------------------------------------------------------- queues
    def declare_queue(
        self,
        name: str,
        *,
        owner: object | None,
        passive: bool = False,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: Mapping[str, Any] | None = None,
        server_named: bool = False,
    ) -> Queue:
        """Declare a queue; "" (or ``server_named`` with a name from ``server_name()``)
        gets a server-generated amq.gen- name."""
        if passive:
            return self.queue(name, owner)
        if name == "":
            name = server_name()
            server_named = True
        existing = self.queues.get(name)
        if existing is not None:
            existing.touch()
            # RabbitMQ: check_exclusive_access(Q, Owner, strict), so a different exclusive
            # flag is 405 RESOURCE_LOCKED even on the declaring connection.
            self.check_exclusive(existing, owner if exclusive else None, strict=True)
            self._queue_equivalent(existing, durable, exclusive, auto_delete, arguments)
            return existing
        if name.startswith("amq.") and not server_named:
            raise AccessRefused(f"queue name '{name}' contains reserved prefix 'amq.*'")
        if name.startswith(STORE_PREFIX[0]):  # the store keys of delayed messages
            raise AccessRefused(f"queue name {name!r} may not start with a NUL character")
        if self.max_queues is not None and len(self.queues) >= self.max_queues:
            raise PreconditionFailed(
                f"cannot declare queue '{name}' in vhost '{self.name}': queue limit in vhost"
                f" '{self.name}' ({self.max_queues}) is reached")
        check_dedup(arguments or {}, self._where("queue", name))
        if is_stream(arguments):
            queue: Queue = open_stream(self, name, durable=durable, exclusive=exclusive,
                                       auto_delete=auto_delete, arguments=arguments or {})
            self.streams_in_use = True
        else:
            args = parse_arguments(arguments or {}, self._where("queue", name))
            queue = Queue(
                name,
                vhost=self.name,
                durable=durable,
                exclusive_owner=owner if exclusive else None,
                auto_delete=auto_delete,
                arguments=arguments,
                args=args,
                clock=self.clock,
            )
        self.queues[name] = queue
        if durable and not exclusive and self.store is not None:
            queue.journal = self.store
            queue.memory_limit = self.queue_memory_limit
        self.generation += 1
        policies.apply_to_queue(queue, self.policies.values(), self._where("queue", name))
        dedup.configure_queue(self, queue)
        if queue.args.has_timers or is_stream(arguments):  # streams: retention checks
            self.timed.add(queue)
        log.info("queue_declared", vhost=self.name, queue=name, durable=durable,
                 exclusive=exclusive, auto_delete=auto_delete, arguments=queue.arguments,
                 policy=queue.policy)
        return queue

    # ----------------------------------------------------------------- policies
    def set_policy(self, policy: Policy) -> None:
        """Add or replace a policy and re-apply policies to every entity at once."""
        self.policies[policy.name] = policy
        policies.reapply(self)

    def clear_policy(self, name: str) -> bool:
        """Remove a policy (False if there was none) and re-apply the rest."""
        if self.policies.pop(name, None) is None:
            return False
        policies.reapply(self)
        return True

    # ----------------------------------------------------------------- durability
    def attach_store(
        self, store: MessageStore, msg_ids: Iterator[int], queue_memory_limit: int
    ) -> None:
        """Journal durable queues' persistent messages to ``store`` from now on."""
        self.store = store
        self.msg_ids = msg_ids
        self.queue_memory_limit = queue_memory_limit
        for queue in self.queues.values():
            if queue.durable and not queue.exclusive:
                queue.journal = store
                queue.memory_limit = queue_memory_limit

    # ----------------------------------------------------------------- message flow
    def publish(self, exchange: Exchange, message: Message, mandatory: bool = False
                ) -> tuple[int, bool, int]:
        self.published += 1
        return flow.publish(self, exchange, message, mandatory=mandatory)

    def route_dead_letters(self, queues: list[Queue]) -> None:
        flow.route_dead_letters(self, queues)

    def tick(self, now: float) -> list[DeliveryTarget]:
        return flow.tick(self, now)

    def _queue_equivalent(
        self,
        q: Queue,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
        arguments: Mapping[str, Any] | None,
    ) -> None:
        args = dict(arguments or {})
        checks: list[tuple[str, Any, Any]] = [
            ("durable", durable, q.durable),
            ("exclusive", exclusive, q.exclusive),
            ("auto_delete", auto_delete, q.auto_delete),
        ]
        keys = EQUIVALENCE_ARGUMENTS + (STREAM_EQUIVALENCE if is_stream(q.arguments) else ())
        checks += [(key, args.get(key), q.arguments.get(key)) for key in keys]
        self._assert_equivalent("queue", q.name, checks)

    def bind_queue(
        self, queue: str, exchange: str, binding_key: str, arguments: Mapping[str, Any],
        owner: object | None,
    ) -> None:
        q = self.queue(queue, owner)
        x = self._bindable_source(exchange)
        x.check_binding(binding_key, arguments)
        if x.bind(q, binding_key, arguments):
            self.generation += 1

    def unbind_queue(
        self, queue: str, exchange: str, binding_key: str, arguments: Mapping[str, Any],
        owner: object | None,
    ) -> None:
        if exchange == "":
            raise AccessRefused("operation not permitted on the default exchange")
        # RabbitMQ 3.10: a queue, exchange or binding that does not exist is unbind-ok
        q, x = self.queues.get(queue), self.exchanges.get(exchange)
        if q is None or x is None:
            return
        self.check_exclusive(q, owner)
        if x.unbind(q, binding_key, arguments):
            self.generation += 1
            self._maybe_auto_delete_exchange(x)

    def purge_queue(self, name: str, owner: object | None) -> int:
        return self.queue(name, owner).purge()

    def delete_queue(
        self,
        name: str,
        *,
        owner: object | None,
        if_unused: bool = False,
        if_empty: bool = False,
    ) -> tuple[int, list[DeliveryTarget]]:
        """Delete a queue; returns its ready count and the consumers to cancel."""
        q = self.queue(name, owner)
        if if_unused and not q.is_unused():
            raise PreconditionFailed(f"{self._where('queue', name)} in use")
        if if_empty and q.message_count:
            raise PreconditionFailed(f"{self._where('queue', name)} not empty")
        return self.remove_queue(q)

    def remove_queue(
        self, q: Queue, reason: str = "deleted"
    ) -> tuple[int, list[DeliveryTarget]]:
        """Remove a queue unconditionally; ``reason`` (logged): deleted (by a client),
        auto_delete, expired (x-expires), exclusive_owner_closed."""
        if self.queues.get(q.name) is not q:
            return 0, []
        del self.queues[q.name]
        self.timed.discard(q)
        self.generation += 1
        log.info("queue_deleted", vhost=self.name, queue=q.name, reason=reason,
                 messages=q.message_count)
        for counter in COUNTERS:
            self.retired[counter] += getattr(q, counter)
        count = q.message_count
        for exchange in list(self.exchanges.values()):
            if exchange.unbind_destination(q):
                self._maybe_auto_delete_exchange(exchange)
        return count, q.delete()

    # ----------------------------------------------------------------- routing
    def route(
        self, exchange: Exchange, message: Message, tried: set[Exchange] | None = None
    ) -> list[Queue]:
        return routing.route(self, exchange, message, tried)
