"""Replay bookkeeping: the counts, a progress display on stderr and a rate limiter.

``Progress`` redraws a bar in place when its stream is a terminal and otherwise writes a
plain line every few seconds (logs and pipes get no carriage returns). ``Pacer`` spaces
operations at least 1/rate seconds apart and never bursts to catch up after a stall.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TextIO


@dataclass(slots=True)
class Counts:
    """What became of the messages fetched so far."""

    replayed: int = 0
    skipped: int = 0
    failed: int = 0

    @property
    def done(self) -> int:
        return self.replayed + self.skipped + self.failed

    def line(self) -> str:
        return f"replayed={self.replayed} skipped={self.skipped} failed={self.failed}"


class Progress:
    """A bar redrawn in place on a tty, else a plain line every few seconds."""

    WIDTH = 30
    TTY_INTERVAL = 0.1
    LINE_INTERVAL = 2.0

    def __init__(self, stream: TextIO, total: int, queue: str) -> None:
        self.stream = stream
        self.total = total
        self.queue = queue
        try:
            self.tty = stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self.last = time.monotonic()

    def update(self, counts: Counts, final: bool = False) -> None:
        now = time.monotonic()
        interval = self.TTY_INTERVAL if self.tty else self.LINE_INTERVAL
        if not final and now - self.last < interval:
            return
        self.last = now
        if self.tty:
            filled = self.WIDTH * counts.done // self.total if self.total else self.WIDTH
            bar = "#" * filled + "." * (self.WIDTH - filled)
            self.stream.write(f"\r{self.queue} [{bar}] {counts.done}/{self.total} "
                              f"{counts.line()}")
        elif not final:
            self.stream.write(f"{self.queue}: {counts.done}/{self.total} {counts.line()}\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        """Write a line of its own (on a tty, over the bar; the next update redraws it)."""
        self.stream.write(f"\r\x1b[K{text}\n" if self.tty else f"{text}\n")
        self.stream.flush()

    def finish(self, counts: Counts) -> None:
        if self.tty:
            self.update(counts, final=True)
            self.stream.write("\n")
            self.stream.flush()


class Pacer:
    """Spaces calls of ``wait`` at least 1/rate seconds apart (no catching up)."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.next = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        if self.next > now:
            await asyncio.sleep(self.next - now)
            now = self.next
        self.next = now + self.interval
