"""Roster: a queue's consumers, and which of them may be sent messages now.

The queue's dispatch walks ``eligible`` (the queue keeps that very list object, so the
roster mutates it in place and never rebinds it). In the common case — no single active
consumer, every consumer at the same ``x-priority`` — ``eligible`` is every consumer in
registration order, ``tiered`` is False and the queue's own round-robin does the rest:
nothing here runs per message.

Consumer priorities (``x-priority`` in basic.consume, a signed integer, default 0): when
consumers differ, ``tiered`` is True and the queue asks ``pick`` for each delivery. It
returns a consumer of the highest priority that has credit, round-robin among equals (each
tier keeps its own turn), so a lower-priority consumer gets messages only while every
higher one is blocked (prefetch, channel.flow, a full socket), as in RabbitMQ.

Single active consumer (``x-single-active-consumer``): ``eligible`` holds at most the one
active consumer, so the queue's single-consumer batch path serves it. When it leaves,
the next one is the waiting consumer with the highest priority, then the earliest
registered (RabbitMQ 3.10: a consumer that registers later never takes over from an
active one, whatever its priority). The roster never dispatches: whoever removed the
consumer dispatches afterwards, so messages a closing channel requeues are back in their
place before the new active consumer is served.

Must not hold messages or credit, and never awaits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from warrenmq.errors import PreconditionFailed

if TYPE_CHECKING:
    from warrenmq.queues.queue import DeliveryTarget

#: A consumer's ``activity_status`` as RabbitMQ's management API reports it.
UP, SINGLE_ACTIVE, WAITING = "up", "single_active", "waiting"


def consumer_priority(arguments: Mapping[str, Any], where: str) -> int:
    """basic.consume's ``x-priority`` (default 0); 406 naming the argument if not an
    integer, with RabbitMQ's prefix ("invalid arg 'x-priority' for queue 'q' in ...")."""
    if "x-priority" not in arguments:
        return 0
    value = arguments["x-priority"]
    if isinstance(value, bool) or not isinstance(value, int):
        raise PreconditionFailed(f"invalid arg 'x-priority' for {where}: expected an integer,"
                                 f" got {type(value).__name__} {value!r}")
    return value


class Member:
    """One registered consumer: its priority and registration order."""

    def __init__(self, consumer: DeliveryTarget, priority: int, order: int) -> None:
        self.consumer = consumer
        self.priority = priority
        self.order = order


class Tier:
    """The consumers of one priority, with their round-robin turn."""

    def __init__(self, priority: int, members: list[DeliveryTarget], turn: int) -> None:
        self.priority = priority
        self.members = members
        self.turn = turn


class Roster:
    def __init__(self, single_active: bool) -> None:
        self.single_active = single_active
        self.members: list[Member] = []  # registration order
        self.eligible: list[DeliveryTarget] = []  # the queue's dispatch list
        self.tiers: list[Tier] = []  # highest priority first; only while ``tiered``
        self.tiered = False
        self._order = 0

    def __len__(self) -> int:
        return len(self.members)

    def add(self, consumer: DeliveryTarget, priority: int) -> None:
        self.members.append(Member(consumer, priority, self._order))
        self._order += 1
        if self.single_active:
            if not self.eligible:
                self.eligible.append(consumer)
            return
        self.eligible.append(consumer)
        self._retier()

    def remove(self, consumer: DeliveryTarget) -> bool:
        """Forget a consumer (False if unknown); a single active one gets a successor."""
        members = self.members
        for index, member in enumerate(members):
            if member.consumer is consumer:
                del members[index]
                break
        else:
            return False
        eligible = self.eligible
        if self.single_active:
            if eligible and eligible[0] is consumer:
                eligible.clear()
                successor = self._successor()
                if successor is not None:
                    eligible.append(successor)
            return True
        for index, target in enumerate(eligible):
            if target is consumer:
                del eligible[index]
                break
        self._retier()
        return True

    def clear(self) -> list[DeliveryTarget]:
        """Forget everyone (the queue is deleted); returns every consumer, waiting too."""
        consumers = [member.consumer for member in self.members]
        self.members.clear()
        self.eligible.clear()
        self.tiers = []
        self.tiered = False
        return consumers

    def _successor(self) -> DeliveryTarget | None:
        best: Member | None = None
        for member in self.members:  # registration order: the first of equals wins
            if best is None or member.priority > best.priority:
                best = member
        return None if best is None else best.consumer

    def _retier(self) -> None:
        priorities = sorted({member.priority for member in self.members}, reverse=True)
        if len(priorities) <= 1:
            self.tiers = []
            self.tiered = False
            return
        turns = {tier.priority: tier.turn for tier in self.tiers}
        self.tiers = [
            Tier(priority,
                 [m.consumer for m in self.members if m.priority == priority],
                 turns.get(priority, 0))
            for priority in priorities
        ]
        self.tiered = True

    def pick(self) -> tuple[DeliveryTarget | None, int]:
        """The consumer to serve next and how many messages it may take in a row: its
        credit when it is alone in its tier (every higher tier is blocked, so sending one
        at a time would pick it again), else 1 so equals take turns. (None, 0): nobody
        has credit."""
        for tier in self.tiers:
            members = tier.members
            count = len(members)
            for _ in range(count):
                index = tier.turn % count
                tier.turn = index + 1
                consumer = members[index]
                credit = consumer.credit()
                if credit > 0:
                    return consumer, (credit if count == 1 else 1)
        return None, 0

    def chosen(self) -> list[DeliveryTarget]:
        """``pick``'s consumer as a list of one, or an empty list (enqueue's fast path)."""
        consumer = self.pick()[0]
        return [] if consumer is None else [consumer]

    # ----------------------------------------------------------------- statistics
    def activity(self, consumer: object) -> str:
        """``up`` (not a single-active-consumer queue), ``single_active`` or ``waiting``."""
        if not self.single_active:
            return UP
        eligible = self.eligible
        return SINGLE_ACTIVE if eligible and eligible[0] is consumer else WAITING

    @property
    def active_tag(self) -> str | None:
        """The single active consumer's tag (None when not such a queue, or no one)."""
        if self.single_active and self.eligible:
            return self.eligible[0].tag
        return None
