"""DelayTimer: releases delayed messages when they are due, to the millisecond.

The server's 20 ms tick is too coarse for ``x-delay``: this keeps ONE event-loop timer
armed for the earliest due time of any held message of any vhost (``loop.call_at``), and
moves it when a publish brings an earlier one (the vhosts' ``delay_wake`` callback).
When it fires it releases what is due through ``broker/delays.py`` in batches of
``delays.RELEASE_BATCH``; while more are due it runs again on the next loop turn
(``call_soon``) rather than in one go, so a restart with a million overdue messages
never keeps the loop from serving connections. Owns only the timer handle: what is held
and how it is routed belong to the broker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from warrenmq.broker import delays

if TYPE_CHECKING:
    from warrenmq.broker.broker import Broker

log = structlog.get_logger("warrenmq.delayed")


class DelayTimer:
    def __init__(self, broker: Broker, after_release: Callable[[], None]) -> None:
        self.broker = broker
        self.after_release = after_release  # kicks the store's commit
        self._handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._armed_ms = 0  # due time the handle is for (0: none)
        self._closed = False

    def attach(self) -> None:
        """Be told of new due times by every vhost (new vhosts: ``Server._tick``)."""
        for vhost in self.broker.vhosts.values():
            if vhost.delay_wake is None:
                vhost.delay_wake = self.wake
                if vhost.delayed:
                    self.wake(delays.next_due(vhost))

    def wake(self, due_ms: int) -> None:
        """A message is held until ``due_ms``: fire then at the latest."""
        if self._closed or (self._handle is not None and self._armed_ms <= due_ms):
            return
        self._arm(due_ms)

    def _arm(self, due_ms: int) -> None:
        if self._handle is not None:
            self._handle.cancel()
        loop = asyncio.get_running_loop()
        wait = max(0.0, due_ms / 1000.0 - time.time())
        self._armed_ms = due_ms
        self._handle = loop.call_at(loop.time() + wait, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._armed_ms = 0
        now_ms = int(time.time() * 1000)
        released = 0
        more = False
        try:
            for vhost in list(self.broker.vhosts.values()):
                if vhost.delayed:
                    count = delays.release(vhost, now_ms)
                    released += count
                    more = more or count >= delays.RELEASE_BATCH
        except Exception:
            log.exception("delayed_release_failed")
        if released:
            self.after_release()
        if self._closed:
            return
        if more:  # the rest on the next loop turn, after the connections' I/O
            self._armed_ms = now_ms
            self._handle = asyncio.get_running_loop().call_soon(self._fire)
            return
        dues = [due for vhost in self.broker.vhosts.values() if vhost.delayed
                for due in (delays.next_due(vhost),) if due]
        if dues:
            # a timer may fire a little early (the loop's clock resolution): then the
            # rest waits at least a millisecond instead of spinning
            self._arm(max(min(dues), now_ms + 1))

    def close(self) -> None:
        self._closed = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
