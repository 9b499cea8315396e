"""Clocks: the one place the domain gets the time from.

Queues stamp messages with ``monotonic()`` (TTL, retry delays, queue expiry) and write
``time()`` (wall-clock seconds) into x-death. Tests pass a ``FakeClock`` and move it by
hand, so expiry logic is tested without sleeping.

``COARSE`` is a wall-clock reading refreshed by the server's timer tick (every 20 ms):
statistics read it where calling ``time.time()`` per message would cost too much (the
enqueue time of each message, consumer-utilisation transitions). It is as precise as
the tick: 20 ms, more when the event loop is busy.
"""

from __future__ import annotations

import time
from typing import Final, Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: float = 1000.0, wall: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall - start

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now + self._wall_offset

    def advance(self, seconds: float) -> None:
        self._now += seconds


SYSTEM_CLOCK: Final = SystemClock()


class CoarseTime:
    """Wall-clock seconds as of the last timer tick (see the module docstring)."""

    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = time.time()

    def refresh(self) -> None:
        self.now = time.time()


COARSE: Final = CoarseTime()
