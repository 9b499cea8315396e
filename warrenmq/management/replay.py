"""Dead-letter queues for the dashboard, and replay: ``warrenmq dlq replay`` in-process.

A queue counts as a dead-letter queue when some queue of its vhost dead-letters into it
(its dead-letter exchange, from arguments or a policy, routes to it: the default
exchange by the dead-letter routing key, another exchange through its bindings,
exchange-to-exchange included) or when its name ends in ``.dlq``, ``-dlq`` or ``_dlq``.

``Replay`` does what the CLI's replay does, through the domain instead of a client
(POST /api/queues/{vhost}/{name}/replay, ``ReplayOptions``). By default (target
``queue``) each message goes back to the queue it died in (``replay_rules.died_in``),
through the default exchange, so no other queue gets a copy; target ``exchange``
re-routes it through ``x-first-death-exchange`` with the first death's first routing
key, and the answer's ``warnings`` name the queues that get copies although they did
not dead-letter it (a fanout). Filters (``from_queue``, ``reason``, ``message_id``,
``older_than`` seconds) leave the messages they do not match where they are (counted
as skipped). ``dry_run`` takes nothing: it counts what would go where (``targets``:
"vhost/queue" or "vhost/exchange" -> messages; ``routes``: the queues reached).
Published copies keep their properties and headers (``x-death`` history included;
``x-delivery-count``, ``CC`` and ``BCC`` dropped) and record the replay in
``x-replay-count`` and ``x-replayed-from``. A message is acked from the DLQ only once
its copy was routed and accepted by every queue; a persistent copy's publish record
goes into the store's log before the ack of the old one, so a crash at any point
loses nothing (at worst a duplicate). Skipped and failed messages stay held until the
end and are then returned to their positions, so none is fetched twice. Work goes in
steps of ``STEP`` messages with the event loop free in between, with a
``replay_progress`` log event every ``PROGRESS_EVERY``. Owns the messages it holds
during a run; must not leave any held when it ends, however it ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from warrenmq.broker.routing import route as route_message
from warrenmq.broker.vhost import VirtualHost
from warrenmq.exchange import Exchange
from warrenmq.message import Message
from warrenmq.protocol.fields import FieldError, encode_shortstr
from warrenmq.protocol.properties import decode_properties, encode_properties, get_property
from warrenmq.queues.queue import Queue
from warrenmq.queues.ready import QueuedMessage
from warrenmq.tools.deaths import origin
from warrenmq.tools.replay_rules import (
    REASONS,
    TARGETS,
    ReplayFilter,
    died_in,
    replay_headers,
)

log = structlog.get_logger("warrenmq.management")

DLQ_SUFFIXES = (".dlq", "-dlq", "_dlq")
PROGRESS_EVERY = 10_000  # messages between replay_progress events
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


def _replayed_properties(raw: bytes, dlq: str) -> bytes:
    """The properties with the replay's headers (``replay_rules.replay_headers``)."""
    props = decode_properties(raw)
    headers = props.get("headers")
    props["headers"] = replay_headers(headers if isinstance(headers, dict) else None, dlq)
    return encode_properties(props)


@dataclass
class ReplayOptions:
    """The request: POST /api/queues/{vhost}/{name}/replay's body, checked."""

    dry_run: bool = False
    target: str = "queue"  # "queue": where it died (default exchange); "exchange": re-route
    filter: ReplayFilter = field(default_factory=ReplayFilter)
    count: int | None = None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ReplayOptions:
        """From the JSON body; raises ValueError naming the bad field."""
        known = {"dry_run", "target", "from_queue", "reason", "message_id", "older_than",
                 "count"}
        unknown = sorted(set(body) - known)
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(unknown)}")
        dry_run = body.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise ValueError("dry_run must be true or false")
        target = body.get("target", "queue")
        if target not in TARGETS:
            raise ValueError('target must be "queue" (where each message died) or "exchange"'
                             " (re-route through the original exchange)")
        count = body.get("count")
        if count is not None and (not isinstance(count, int) or isinstance(count, bool)
                                  or count < 0):
            raise ValueError("count must be a non-negative integer")
        older = body.get("older_than")
        if older is not None and (not isinstance(older, int | float) or isinstance(older, bool)
                                  or older < 0):
            raise ValueError("older_than must be a number of seconds >= 0")
        strings = {}
        for name in ("from_queue", "reason", "message_id"):
            value = body.get(name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a string")
            strings[name] = value
        if strings["reason"] is not None and strings["reason"] not in REASONS:
            raise ValueError("reason must be one of " + ", ".join(REASONS))
        return cls(dry_run, target, ReplayFilter(older_than=older, **strings), count)


@dataclass
class ReplayResult:
    replayed: int = 0  # with dry_run: how many would be
    skipped: int = 0  # left in the DLQ: no x-death, or not matched by the filters
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    targets: dict[str, int] = field(default_factory=dict)  # "vhost/queue|exchange" -> n
    routes: dict[str, int] = field(default_factory=dict)  # "vhost/queue" reached -> n
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False

    def json(self) -> dict[str, Any]:
        return {"replayed": self.replayed, "skipped": self.skipped, "failed": self.failed,
                "errors": self.errors, "targets": self.targets, "routes": self.routes,
                "warnings": self.warnings, "dry_run": self.dry_run}


@dataclass
class _Plan:
    exchange: Exchange
    key: str
    target: str  # the targets key
    died_in: str


class Replay:
    def __init__(self, vhost: VirtualHost, queue: Queue, limit: int | None = None, *,
                 writable: Callable[[str], bool] = lambda exchange: True,
                 options: ReplayOptions | None = None) -> None:
        self.vhost = vhost
        self.queue = queue
        self.writable = writable  # the user's write permission on an exchange
        self.options = options or ReplayOptions(count=limit)
        count = self.options.count if self.options.count is not None else limit
        self.total = queue.message_count if count is None else min(count, queue.message_count)
        self.result = ReplayResult(dry_run=self.options.dry_run)
        self.held: list[QueuedMessage] = []
        self.extra: dict[str, set[str]] = {}  # exchange -> queues reached beyond died_in
        self.now = time.time()

    async def run(self) -> ReplayResult:
        if self.options.dry_run:
            self.preview()
            self._warn()
            return self.result
        done = 0
        try:
            while done < self.total and not self.queue.deleted:
                step = min(STEP, self.total - done)
                taken = self.step(step)
                done += step
                if taken < step:
                    break
                await asyncio.sleep(0)
                if done % PROGRESS_EVERY < step:
                    log.info("replay_progress", queue=self.queue.name, vhost=self.vhost.name,
                             done=done, total=self.total, replayed=self.result.replayed)
        finally:
            self.release()
        self._warn()
        log.info("replay_finished", queue=self.queue.name, vhost=self.vhost.name,
                 target=self.options.target, replayed=self.result.replayed,
                 skipped=self.result.skipped, failed=self.result.failed)
        return self.result

    def preview(self) -> None:
        """Dry run: what would go where, the queue untouched (messages in queue order)."""
        ready = sorted(self.queue.ready_messages(), key=lambda qm: qm.seq)
        for qm in ready[: self.total]:
            plan = self._plan(qm.message)
            if isinstance(plan, str):
                self._not_replayed(plan)
                continue
            problem = self._check(qm.message, plan)
            if problem is not None:
                self._not_replayed(problem)
                continue
            self.result.replayed += 1
            self._count(plan)

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
            self._not_replayed(problem)
        return taken

    def _not_replayed(self, problem: str) -> None:
        if problem == "skip":
            self.result.skipped += 1
            return
        self.result.failed += 1
        if len(self.result.errors) < MAX_ERRORS:
            self.result.errors.append(problem)

    def _plan(self, message: Message) -> _Plan | str:
        """Where the message goes, or "skip" / why it cannot."""
        headers = message.headers()
        found = origin(headers)
        dlq = self.queue.name
        queue = died_in(headers, dlq)
        if found is None or queue is None:
            return "skip"
        message_id = _message_id(message.properties)
        if not self.options.filter.matches(headers, message_id, dlq, self.now):
            return "skip"
        if self.options.target == "queue":
            return _Plan(self.vhost.exchanges[""], queue, f"{self.vhost.name}/{queue}", queue)
        if not found.routing_keys:
            return "skip"
        exchange = self.vhost.exchanges.get(found.exchange)
        if exchange is None:
            return f"no exchange '{found.exchange}' in vhost '{self.vhost.name}'"
        return _Plan(exchange, found.routing_keys[0], f"{self.vhost.name}/{exchange.name}",
                     queue)

    def _check(self, message: Message, plan: _Plan) -> str | None:
        """Why the publish would not be accepted, or None; notes the queues it reaches."""
        exchange = plan.exchange
        if exchange.internal:
            return f"exchange '{exchange.name}' is internal"
        if not self.writable(exchange.name):
            return f"write access to exchange '{exchange.name or 'amq.default'}' refused"
        route = encode_shortstr(exchange.name) + encode_shortstr(plan.key)
        probe = Message(exchange.name, plan.key, route, message.properties, b"")
        reached = {q.name for q in route_message(self.vhost, exchange, probe)}
        if not reached:
            if self.options.target == "queue":
                return f"queue '{plan.key}' no longer exists in vhost '{self.vhost.name}'"
            return f"unroutable: exchange '{exchange.name}' routing key '{plan.key}'"
        for name in reached:
            key = f"{self.vhost.name}/{name}"
            self.result.routes[key] = self.result.routes.get(key, 0) + 1
        if reached - {plan.died_in}:
            self.extra.setdefault(exchange.name, set()).update(reached - {plan.died_in})
        return None

    def _count(self, plan: _Plan) -> None:
        self.result.targets[plan.target] = self.result.targets.get(plan.target, 0) + 1

    def _republish(self, qm: QueuedMessage) -> str | None:
        """Publish the message to its target; None when done, else why not."""
        message = qm.message
        plan = self._plan(message)
        if isinstance(plan, str):
            return plan
        problem = self._check(message, plan)
        if problem is not None:
            return problem
        exchange = plan.exchange
        route = encode_shortstr(exchange.name) + encode_shortstr(plan.key)
        try:
            properties = _replayed_properties(message.properties, self.queue.name)
        except FieldError as exc:
            return f"cannot read its properties: {exc}"
        copy = Message(exchange.name, plan.key, route, properties, message.load_body())
        routed, rejected, _ticket = self.vhost.publish(exchange, copy)
        if rejected:
            return f"refused by a queue of exchange '{exchange.name}' (x-overflow)"
        if not routed:
            return f"unroutable: exchange '{exchange.name}' routing key '{plan.key}'"
        self._count(plan)
        return None

    def _warn(self) -> None:
        for name, queues in sorted(self.extra.items()):
            exchange = self.vhost.exchanges.get(name)
            kind = exchange.type_name if exchange is not None else "?"
            self.result.warnings.append(
                f"exchange '{name}' ({kind}) also routes these messages to"
                f" {', '.join(sorted(queues))}: queues that did not dead-letter them get"
                " copies; replay with target \"queue\" to send each message only to the"
                " queue it died in")

    def release(self) -> None:
        """Give every held (skipped or failed) message back to the DLQ."""
        held, self.held = self.held, []
        if held:
            self.queue.requeue(held)
            if self.queue.dead:
                self.vhost.route_dead_letters([self.queue])
        self.queue.dispatch()


def _message_id(raw: bytes) -> str | None:
    try:
        value = get_property(raw, "message_id")
    except (FieldError, IndexError):
        return None
    return value if isinstance(value, str) else None
