"""Policies: RabbitMQ's way of giving optional arguments to groups of queues and exchanges.

A policy names a vhost, a regular expression ``pattern`` searched in entity names (an
unanchored search, like RabbitMQ's ``re:run``: ``^orders\\.`` means "starts with
orders."), what it applies to (``queues``, ``exchanges`` or ``all``), a ``priority``
and a ``definition`` of RabbitMQ policy keys. For each queue or exchange at most one
policy applies: among those whose pattern matches, the highest priority. RabbitMQ
leaves a tie undefined; here the policy whose name sorts first wins, so the outcome is
at least stable. The default exchange ("") takes no policy.

Keys: for queues dead-letter-exchange, dead-letter-routing-key, message-ttl, expires,
max-length, max-length-bytes, overflow, delivery-limit and WarrenMQ's retry-delays
(each the x-argument of the same name), message-deduplication, cache-size, cache-ttl,
deduplication-header and deduplication-key (queues and exchanges: ``queues/dedup.py``),
and for stream queues max-age and
stream-max-segment-size-bytes (with max-length-bytes: there the policy's value wins,
see ``queues/stream.py``); for exchanges alternate-exchange. A key for the
other kind of entity is ignored there, as in RabbitMQ; an unknown key or a bad value is
a ``ValueError`` naming the key.

Declared arguments and a policy (decision, following RabbitMQ's classic queue code,
``rabbit_amqqueue_process:process_args_policy``, and ``rabbit_policy:get_arg`` for
exchanges): where both set a key, the declared x-argument wins, except for the numeric
limits expires, message-ttl, max-length, max-length-bytes and delivery-limit, where the
lower of the two applies (RabbitMQ's ``res_min``; the policies guide's sentence that
arguments always win describes the other keys). Declare equivalence compares declared
arguments only, never policy ones.

Owns: ``Policy`` (validated at construction), choosing the policy for a name, and the
effective arguments that result. Re-applying live, when a policy is set or cleared, is
``apply_to_queue``/``apply_to_exchange``: the queue takes its new limits at once (a
lower max-length with drop-head dead-letters the excess from the head, reject-publish
refuses only new messages), a new message-ttl applies to messages enqueued from then
on (RabbitMQ fixes a message's expiry when it is enqueued), a changed expires restarts
the queue's idle clock. Must not: know about connections, or persist anything (where
policies come from is the composition root's business).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import structlog

from warrenmq.broker import dedup
from warrenmq.exchange import Exchange
from warrenmq.queues.arguments import parse_arguments, parse_value
from warrenmq.queues.dedup import POLICY_KEYS as DEDUP_KEYS
from warrenmq.queues.dedup import check_value as check_dedup_value
from warrenmq.queues.queue import Queue
from warrenmq.queues.stream_args import validate_policy_value

if TYPE_CHECKING:
    from warrenmq.broker.vhost import VirtualHost

log = structlog.get_logger("warrenmq.policy")

APPLY_TO: tuple[str, ...] = ("queues", "exchanges", "all")

#: Policy key -> the queue x-argument it stands for.
QUEUE_KEYS: Mapping[str, str] = {
    "dead-letter-exchange": "x-dead-letter-exchange",
    "dead-letter-routing-key": "x-dead-letter-routing-key",
    "message-ttl": "x-message-ttl",
    "expires": "x-expires",
    "max-length": "x-max-length",
    "max-length-bytes": "x-max-length-bytes",
    "overflow": "x-overflow",
    "delivery-limit": "x-delivery-limit",
    "retry-delays": "x-retry-delays",
    **DEDUP_KEYS,  # message-deduplication, cache-size...: queues/dedup.py
}
#: Policy key -> the exchange argument it stands for.
EXCHANGE_KEYS: Mapping[str, str] = {"alternate-exchange": "alternate-exchange", **DEDUP_KEYS}
#: Keys where the lower of the declared argument and the policy value applies.
LOWER_WINS = frozenset({"expires", "message-ttl", "max-length", "max-length-bytes",
                        "delivery-limit"})


#: Stream-only keys (queues/stream_args.py; for streams a policy's value wins).
STREAM_KEYS: Mapping[str, str] = {
    "max-age": "x-max-age",
    "stream-max-segment-size-bytes": "x-stream-max-segment-size-bytes",
}


def _validate_value(key: str, value: Any) -> None:
    if key in DEDUP_KEYS:
        try:
            check_dedup_value(DEDUP_KEYS[key], value)
        except ValueError as exc:
            raise ValueError(f"policy key '{key}': {exc}") from None
    elif key in STREAM_KEYS:
        try:
            validate_policy_value(key, value)
        except ValueError as exc:
            raise ValueError(f"policy key '{key}': {exc}") from None
    elif key in QUEUE_KEYS:
        try:
            parse_value(QUEUE_KEYS[key], value)
        except ValueError as exc:
            raise ValueError(f"policy key '{key}': {exc}") from None
    elif key in EXCHANGE_KEYS:
        if not isinstance(value, str):
            raise ValueError(f"policy key '{key}': expected an exchange name, got {value!r}")
    else:
        known = ", ".join(sorted({*QUEUE_KEYS, *EXCHANGE_KEYS, *STREAM_KEYS}))
        raise ValueError(f"policy key '{key}' is not a recognised policy setting"
                         f" (known: {known})")


@dataclass(frozen=True, slots=True)
class Policy:
    """One policy, validated when built (``ValueError`` names what is wrong)."""

    name: str
    vhost: str
    pattern: str
    apply_to: str = "all"
    priority: int = 0
    definition: Mapping[str, Any] = field(default_factory=dict, hash=False)
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"policy name: expected a non-empty string, got {self.name!r}")
        if not isinstance(self.vhost, str) or not self.vhost:
            raise ValueError(f"policy '{self.name}' vhost: expected a non-empty string")
        if self.apply_to not in APPLY_TO:
            raise ValueError(f"policy '{self.name}' apply-to: '{self.apply_to}' is not one of "
                             + ", ".join(APPLY_TO))
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise ValueError(f"policy '{self.name}' priority: expected an integer,"
                             f" got {self.priority!r}")
        if not isinstance(self.pattern, str):
            raise ValueError(f"policy '{self.name}' pattern: expected a string")
        try:
            regex = re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"policy '{self.name}' pattern: invalid regular expression"
                             f" {self.pattern!r}: {exc}") from None
        if not isinstance(self.definition, Mapping) or not self.definition:
            raise ValueError(f"policy '{self.name}' definition: expected a non-empty mapping")
        for key, value in self.definition.items():
            _validate_value(key, value)
        object.__setattr__(self, "definition", dict(self.definition))
        object.__setattr__(self, "_regex", regex)

    def matches(self, kind: Literal["queue", "exchange"], name: str) -> bool:
        if self.apply_to != "all" and self.apply_to != kind + "s":
            return False
        return self._regex.search(name) is not None


def select(
    policies: Iterable[Policy], kind: Literal["queue", "exchange"], name: str
) -> Policy | None:
    """The policy that applies to a queue or exchange called ``name``, if any."""
    best: Policy | None = None
    for policy in policies:
        if not policy.matches(kind, name):
            continue
        if best is None or policy.priority > best.priority or (
            policy.priority == best.priority and policy.name < best.name
        ):
            best = policy
    return best


def _merge(
    declared: Mapping[str, Any], policy: Policy | None, keys: Mapping[str, str]
) -> dict[str, Any]:
    merged = dict(declared)
    if policy is None:
        return merged
    for key, value in policy.definition.items():
        argument = keys.get(key)
        if argument is None:
            continue
        mine = merged.get(argument)
        if mine is None:
            merged[argument] = value
        elif key in LOWER_WINS and isinstance(mine, int) and not isinstance(mine, bool):
            merged[argument] = min(mine, value)
    return merged


def queue_arguments(declared: Mapping[str, Any], policy: Policy | None) -> dict[str, Any]:
    """The x-arguments a queue works with: declared ones merged with its policy's."""
    return _merge(declared, policy, QUEUE_KEYS)


def exchange_arguments(declared: Mapping[str, Any], policy: Policy | None) -> dict[str, Any]:
    """The arguments an exchange works with: declared ones merged with its policy's."""
    return _merge(declared, policy, EXCHANGE_KEYS)


def apply_to_queue(queue: Queue, policies: Iterable[Policy], where: str) -> bool:
    """Give ``queue`` the policy that matches it now; True if anything changed."""
    policy = select(policies, "queue", queue.name)
    effective = queue_arguments(queue.arguments, policy)
    name = policy.name if policy is not None else None
    definition = dict(policy.definition) if policy is not None else {}
    if (name == queue.policy and effective == queue.effective_arguments
            and definition == queue.effective_policy_definition):
        return False
    queue.policy = name
    queue.effective_policy_definition = definition
    queue.effective_arguments = effective
    queue.reconfigure(parse_arguments(effective, where, effective=True))
    return True


def apply_to_exchange(exchange: Exchange, policies: Iterable[Policy]) -> bool:
    """Give ``exchange`` the policy that matches it now; True if anything changed."""
    if exchange.name == "":
        return False
    policy = select(policies, "exchange", exchange.name)
    name = policy.name if policy is not None else None
    definition = dict(policy.definition) if policy is not None else {}
    effective = exchange_arguments(exchange.arguments, policy)
    if (name == exchange.policy and effective == exchange.effective_arguments
            and definition == exchange.effective_policy_definition):
        return False
    exchange.policy = name
    exchange.effective_policy_definition = definition
    exchange.effective_arguments = effective
    return True


def reapply(vhost: VirtualHost) -> tuple[int, int]:
    """Re-apply the vhost's policies to every queue and exchange (a policy was set or
    cleared); returns how many queues and exchanges changed. Dead letters from a lower
    limit are routed before this returns."""
    current = list(vhost.policies.values())
    queues = 0
    dead: list[Queue] = []
    for queue in list(vhost.queues.values()):
        if apply_to_queue(queue, current, f"queue '{queue.name}' in vhost '{vhost.name}'"):
            queues += 1
            if queue.args.has_timers:
                vhost.timed.add(queue)
            if queue.dead:
                dead.append(queue)
    exchanges = sum(apply_to_exchange(x, current) for x in list(vhost.exchanges.values()))
    dedup.reconfigure(vhost)
    if dead:
        vhost.route_dead_letters(dead)
    log.info("policies_applied", vhost=vhost.name, policies=sorted(vhost.policies),
             queues_changed=queues, exchanges_changed=exchanges)
    return queues, exchanges
